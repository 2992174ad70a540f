"""Saving ONNX models as self-contained bundle files (no external data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinbert_onnx.errors import ExportError

MAX_IR_VERSION = 10  # torch's exporter writes 10 at opset 18; onnxruntime 1.31 reads up to 13


def save_model(model: Any, path: Path) -> None:
    """Save ``model`` as one file; refuse models over protobuf's 2 GB limit (the bundle format has no external data)."""
    import onnx
    from onnx import helper

    if "com.microsoft" not in {o.domain for o in model.opset_import}:
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    size = model.ByteSize()
    if size >= 2**31 - 1:
        raise ExportError(f"the model is {size / 1e9:.1f} GB: over protobuf's 2 GB single-file limit")
    try:
        onnx.save_model(model, str(path))
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
