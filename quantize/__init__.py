"""Quantization of bundle graphs: INT8 dynamic (CPU) and FP16 (CUDA), with an accuracy gate against FP32.

Needs onnx and onnxruntime; never torch. ``requantize`` rebuilds a variant of an existing bundle in place,
crash-safely: new files under temporary names, renamed into place, manifest last.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from clinbert_onnx.bundle import file_entry, open_bundle, write_manifest
from clinbert_onnx.errors import BundleError
from clinbert_onnx.schema import MANIFEST, ONNXRUNTIME, OPENVINO, Quality, VariantInfo

from .onnx_io import data_name, save_model
from .recipes import DEFAULT_INT8, RECIPES, GateThresholds, QuantRecipe, get_recipe

__all__ = [
    "DEFAULT_INT8",
    "RECIPES",
    "GateThresholds",
    "QuantRecipe",
    "build_variant",
    "get_recipe",
    "requantize",
]


def build_variant(fp32_path: Path, out_path: Path, recipe: QuantRecipe, name: str | None = None) -> VariantInfo:
    """Write the quantized/converted model for ``recipe`` to ``out_path``; return its manifest record (no quality).

    ``name`` is the variant's name in the manifest (default: the recipe's ``default_variant``).
    """
    devices: tuple[str, ...]
    engines: tuple[str, ...] | None = None
    if recipe.static:
        from .static import check_static, quantize_static

        model = quantize_static(fp32_path, recipe)
        counts = check_static(model, recipe)
        devices, engines = ("cpu",), (OPENVINO, ONNXRUNTIME)
        info = recipe.info()
        if recipe.quantize_embeddings:
            from .embed_table import compress_embeddings

            if compress_embeddings(model) == 0:  # a tied decoder reads the table: it stays FP32
                info = replace(info, quantize_embeddings=False)
            counts = check_static(model, recipe)
    elif recipe.precision == "int8":
        info = recipe.info()
        from .int8 import check_quantized, quantize_int8

        model = quantize_int8(fp32_path, out_path, recipe)
        counts = check_quantized(model, recipe)
        devices = ("cpu",)
    elif recipe.precision == "fp16":
        info = recipe.info()
        from .fp16 import convert_fp16

        model, counts = convert_fp16(fp32_path)
        devices = ("cuda",)
    else:
        raise BundleError(f"unknown precision {recipe.precision!r}")
    data = save_model(model, out_path)
    return VariantInfo(
        name=name or recipe.default_variant,
        file=out_path.name,
        data=data,
        precision=recipe.precision,
        devices=devices,
        fused_ops=counts,
        recipe=info,
        engines=engines,
    )


def gate_quality(
    bundle_dir: Path,
    variant: str,
    recipe: QuantRecipe,
    thresholds: GateThresholds,
    allow_degraded: bool,
    probe: Path | None = None,
) -> Quality:
    """The accuracy gate's report for ``variant`` of the bundle in ``bundle_dir`` (raises QualityGateError).
    ``probe``: a classifier bundle's probe text (one text per line; None: the shipped probe set)."""
    from .gate import gate_device, gate_engine, run_gate

    return run_gate(
        bundle_dir,
        variant,
        thresholds,
        allow_degraded,
        gate_device(recipe),
        recipe.batch_invariant,
        gate_engine(recipe),
        probe,
    )


def requantize(
    bundle_dir: Path,
    recipe: QuantRecipe,
    thresholds: GateThresholds,
    allow_degraded: bool,
    variant: str | None = None,
    probe: Path | None = None,
) -> VariantInfo:
    """Rebuild one variant (default: the recipe's ``default_variant``) of an existing bundle from its fp32 variant."""
    bundle = open_bundle(bundle_dir)
    fp32 = bundle.variant("fp32")
    bundle.verify(fp32.files)
    name = variant or recipe.default_variant
    final = bundle.path / f"model.{name}.onnx"
    final_data = bundle.path / data_name(final.name)
    staging = bundle.path / f".requantize-{name}-{os.getpid()}"
    original = (bundle.path / MANIFEST).read_bytes()
    try:
        staging.mkdir()
        built = build_variant(bundle.path / fp32.file, staging / final.name, recipe, name)
        staged = replace(built, file=f"{staging.name}/{final.name}", data=f"{staging.name}/{built.data}")
        staged_files = {**bundle.files, **{f: file_entry(bundle.path / f) for f in staged.files}}
        # the gate reads the staged files through a valid manifest
        write_manifest(bundle.path, bundle.manifest.with_variant(staged).with_files(staged_files))
        try:
            quality = gate_quality(bundle.path, name, recipe, thresholds, allow_degraded, probe)
        except BaseException:
            _restore(bundle.path / MANIFEST, original)
            raise
        (bundle.path / str(staged.data)).replace(final_data)
        (bundle.path / staged.file).replace(final)
        done = replace(built, file=final.name, data=final_data.name, quality=quality)
        files = {k: v for k, v in bundle.files.items() if k not in staged.files}
        files[final.name] = file_entry(final)
        files[final_data.name] = file_entry(final_data)
        write_manifest(bundle.path, bundle.manifest.with_variant(done).with_files(files))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done


def _restore(path: Path, content: bytes) -> None:
    """Put back the manifest exactly as it was (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)
