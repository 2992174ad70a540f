"""One small adapter per engine. Each takes the same padded int64 tensors and returns numpy arrays.

``ENGINES`` maps a name to its module; every module has ``build(spec, cache)`` (idempotent, writes under
``cache``) and ``load(spec, cache, threads) -> Engine``. Heavy imports happen inside ``load``/``build`` so a
fresh process can time them (cold start).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from .base import Engine, ModelSpec

ENGINES: dict[str, str] = {
    "torch-fp32": "torch_engine",
    "torch-int8": "torch_engine",
    "optimum-int8": "optimum_engine",
    "openvino-int8": "openvino_engine",
    "ours-fp32": "ours",
    "ours-int8": "ours",
    "ours-int8-dynamic": "ours",
    "ours-ov-static": "ours",
    "ours-ort-static": "ours",
    "ours-int8-2s": "ours",
    "ours-ov-static-2s": "ours",
}
LABELS = {
    "torch-fp32": "PyTorch eager FP32",
    "torch-int8": "PyTorch torch.ao dynamic INT8",
    "optimum-int8": "Optimum default (O2 + avx512_vnni dynamic INT8)",
    "openvino-int8": "OpenVINO INT8 (NNCF static)",
    "ours-fp32": "clinbert-onnx FP32",
    "ours-int8": "clinbert-onnx INT8 (per-token, default)",
    "ours-int8-dynamic": "clinbert-onnx INT8 dynamic per-tensor (0.1 default, batch-dependent)",
    "ours-ov-static": "clinbert-onnx INT8 static on OpenVINO",
    "ours-ort-static": "clinbert-onnx INT8 static on ONNX Runtime",
    "ours-int8-2s": "clinbert-onnx INT8 (per-token), 2 streams in embed (as clinbert score runs)",
    "ours-ov-static-2s": "clinbert-onnx INT8 static on OpenVINO, 2 streams in embed (as clinbert score runs)",
}


def module(name: str) -> ModuleType:
    return import_module(f".{ENGINES[name]}", __name__)


__all__ = ["ENGINES", "LABELS", "Engine", "ModelSpec", "module"]
