"""Export a BERT checkpoint to a clinbert-onnx bundle. Needs the ``[export]`` extra (torch, transformers, optimum)."""

from __future__ import annotations

from clinbert_onnx.errors import require

require("torch", "export")
require("optimum.exporters.onnx", "export")

from .pipeline import ExportOptions, export_bundle  # noqa: E402

__all__ = ["ExportOptions", "export_bundle"]
