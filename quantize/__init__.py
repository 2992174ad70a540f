"""Quantization of bundle graphs: INT8 dynamic (CPU) and FP16 (CUDA), with an accuracy gate against FP32.

Needs onnx and onnxruntime; never torch. ``requantize`` rebuilds a variant of an existing bundle in place,
crash-safely: new files under temporary names, renamed into place, manifest last.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from clinbert_onnx.bundle import file_entry, open_bundle, write_manifest
from clinbert_onnx.errors import BundleError

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


def build_variant(fp32_path: Path, out_path: Path, recipe: QuantRecipe) -> dict[str, Any]:
    """Write the quantized/converted model for ``recipe`` to ``out_path``; return its manifest entry (no quality)."""
    if recipe.precision == "int8":
        from .int8 import check_quantized, quantize_int8

        model = quantize_int8(fp32_path, out_path, recipe)
        counts = check_quantized(model, recipe)
        devices = ["cpu"]
    elif recipe.precision == "fp16":
        from .fp16 import convert_fp16

        model, counts = convert_fp16(fp32_path)
        devices = ["cuda"]
    else:
        raise BundleError(f"unknown precision {recipe.precision!r}")
    data = save_model(model, out_path)
    return {
        "file": out_path.name,
        "data": data,
        "precision": recipe.precision,
        "devices": devices,
        "fused_ops": counts,
        "recipe": recipe.to_manifest(),
    }


def requantize(
    bundle_dir: Path,
    recipe: QuantRecipe,
    thresholds: GateThresholds,
    allow_degraded: bool,
    variant: str | None = None,
) -> dict[str, Any]:
    """Rebuild one variant (default: the recipe's precision) of an existing bundle from its fp32 variant."""
    from .gate import gate_device, run_gate

    bundle = open_bundle(bundle_dir)
    fp32 = bundle.variant("fp32")
    bundle.verify(fp32.files)
    name = variant or recipe.precision
    final = bundle.path / f"model.{name}.onnx"
    final_data = bundle.path / data_name(final.name)
    staging = bundle.path / f".requantize-{name}-{os.getpid()}"
    manifest = dict(bundle.manifest)
    try:
        staging.mkdir()
        entry = build_variant(bundle.path / fp32.file, staging / final.name, recipe)
        staged = [f"{staging.name}/{final.name}", f"{staging.name}/{entry['data']}"]
        entry["file"], entry["data"] = staged
        manifest["variants"] = {**manifest["variants"], name: entry}
        manifest["files"] = {**manifest["files"], **{f: file_entry(bundle.path / f) for f in staged}}
        write_manifest(bundle.path, manifest)  # gate reads the staged files through a valid manifest
        try:
            entry["quality"] = run_gate(
                bundle.path, name, thresholds, allow_degraded, gate_device(recipe), recipe.batch_invariant
            )
        except BaseException:
            write_manifest(bundle.path, bundle.manifest)
            raise
        (bundle.path / staged[1]).replace(final_data)
        (bundle.path / staged[0]).replace(final)
        entry["file"], entry["data"] = final.name, final_data.name
        files = {k: v for k, v in manifest["files"].items() if k not in staged}
        files[final.name] = file_entry(final)
        files[final_data.name] = file_entry(final_data)
        manifest["files"] = files
        write_manifest(bundle.path, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest["variants"][name]
