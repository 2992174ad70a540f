"""Environment report: which onnxruntime is installed, which providers really start, and why not."""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

from .session import CUDA_EP, available_cpus, cuda_unavailable_reason


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cuda_starts() -> str:
    """Start a one-node CUDA session to prove the provider loads (its libraries are loaded lazily)."""
    from importlib import resources

    import numpy as np
    import onnxruntime as ort

    model = resources.files("clinbert_onnx").joinpath("data/identity.onnx").read_bytes()
    try:
        sess = ort.InferenceSession(model, providers=[CUDA_EP, "CPUExecutionProvider"])
        sess.run(None, {"x": np.ones(1, dtype=np.float32)})
    except Exception as exc:  # report whatever the provider library says
        return f"fails to start: {str(exc).splitlines()[0][:200]}"
    return "starts" if CUDA_EP in sess.get_providers() else "falls back to CPU (CUDA/cuDNN libraries not found)"


def report() -> dict[str, Any]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    reason = cuda_unavailable_reason(available)
    return {
        "onnxruntime": ort.__version__,
        "onnxruntime (CPU wheel)": _version("onnxruntime"),
        "onnxruntime-gpu wheel": _version("onnxruntime-gpu"),
        "providers": ", ".join(available),
        "cuda": reason if reason else _cuda_starts(),
        "cpus available": available_cpus(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch installed": _version("torch") is not None,
    }
