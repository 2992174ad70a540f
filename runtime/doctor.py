"""Environment report: which onnxruntime is installed, which providers really start, and why not; which inference
engines are installed, this CPU's instruction sets, and what ``engine="auto"`` would do with a static variant."""

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
        **engines(),
    }


def engines() -> dict[str, Any]:
    """The engines installed, the CPU's instruction sets and ``engine="auto"``'s choice for a bundle with an
    int8-static variant on this machine."""
    from .cpu import cpu_flags, cpu_model, isa
    from .engine_select import choose_engine, openvino_installed
    from .schema import OPENVINO, VariantInfo

    installed = openvino_installed()
    static = {"int8-static": VariantInfo(file="-", precision="int8", engines=(OPENVINO,))}
    choice, reason = choose_engine(static, None, "cpu", cpu_flags(), installed)
    return {
        "engines": ", ".join(["onnxruntime", *([OPENVINO] if installed else [])]),
        "openvino": _version("openvino") or "not installed (pip install 'clinbert-onnx[openvino]')",
        "cpu": cpu_model(),
        "instruction sets": ", ".join(isa()) or "unknown",
        "auto engine": f"{choice}: {reason}",
    }
