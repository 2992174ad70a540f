"""Quantization of bundle graphs: INT8 dynamic (CPU) and FP16 (CUDA), with an accuracy gate against FP32.

Needs onnx and onnxruntime; never torch. ``requantize`` rebuilds a variant of an existing bundle in place,
crash-safely: new files under temporary names, renamed into place, manifest last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clinbert_onnx.bundle import file_entry, open_bundle, write_manifest
from clinbert_onnx.errors import BundleError

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
    from .onnx_io import save_model

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
    save_model(model, out_path)
    return {
        "file": out_path.name,
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
    bundle.verify([fp32.file])
    name = variant or recipe.precision
    final = bundle.path / f"model.{name}.onnx"
    staging = bundle.path / f".model.{name}.onnx.{os.getpid()}.tmp"
    manifest = dict(bundle.manifest)
    try:
        entry = build_variant(bundle.path / fp32.file, staging, recipe)
        entry["file"] = staging.name
        manifest["variants"] = {**manifest["variants"], name: entry}
        manifest["files"] = {**manifest["files"], staging.name: file_entry(staging)}
        write_manifest(bundle.path, manifest)  # gate reads the staged file through a valid manifest
        try:
            entry["quality"] = run_gate(bundle.path, name, thresholds, allow_degraded, gate_device(recipe))
        except BaseException:
            write_manifest(bundle.path, bundle.manifest)
            raise
        staging.replace(final)
        entry["file"] = final.name
        files = {k: v for k, v in manifest["files"].items() if k != staging.name}
        files[final.name] = file_entry(final)
        manifest["files"] = files
        write_manifest(bundle.path, manifest)
    finally:
        staging.unlink(missing_ok=True)
    return manifest["variants"][name]
