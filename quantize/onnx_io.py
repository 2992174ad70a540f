"""Saving ONNX models as bundle files: the graph in ``NAME.onnx``, its weights in ``NAME.onnx.data``.

Weights go to one external-data file beside the graph. ONNX Runtime then reads them straight into its tensors
instead of first parsing a protobuf that holds them (measured on the BERT-base int8 variant: peak memory at
load 273 → 177 MB, session load 0.30 → 0.22 s), and FP32 models past protobuf's 2 GB limit still save.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinbert_onnx.errors import ExportError

MAX_IR_VERSION = 10  # torch's exporter writes 10 at opset 18; onnxruntime 1.31 reads up to 13
EXTERNAL_THRESHOLD = 1024  # bytes: smaller tensors (shapes, scales) stay in the graph file


def data_name(graph_name: str) -> str:
    """The external-data file that goes with graph file ``graph_name``."""
    return graph_name + ".data"


def save_model(model: Any, path: Path) -> str:
    """Save ``model`` as ``path`` plus ``path.data``; return the data file's name (relative to ``path``)."""
    import onnx
    from onnx import helper

    if "com.microsoft" not in {o.domain for o in model.opset_import}:
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    data = path.with_name(data_name(path.name))
    try:
        data.unlink(missing_ok=True)  # onnx appends to an existing data file
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=EXTERNAL_THRESHOLD,
        )
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return data.name
