"""ONNX Runtime session factory: provider choice, session options, and honest CUDA fallback."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .errors import BundleError, DeviceError, InputError

if TYPE_CHECKING:
    import onnxruntime as ort

Device = Literal["cpu", "cuda", "auto"]
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


@dataclass(frozen=True)
class SessionConfig:
    """Options for ONNX Runtime sessions. Frozen; derive variants with :meth:`with_`.

    Attributes:
        intra_op_threads: threads for one operator; 0 means "physical cores available to this process".
        inter_op_threads: threads across operators (the graphs here are sequential: 1 is right).
        graph_optimization: ``"disable" | "basic" | "extended" | "all"``. Bundles are fused offline, but
            ``"extended"`` is still needed to fold int8 MatMulInteger chains into DynamicQuantizeMatMul.
        cpu_arena: ONNX Runtime's CPU memory arena (faster repeated runs; holds on to peak memory).
        memory_pattern: pre-plans buffers for a fixed input shape; useless with varying shapes.
        spin: let idle intra-op threads spin (lower latency, burns CPU between requests).
        cuda_device_id: which GPU when running on CUDA.
        streams: inference calls in flight at once when a call has several batches (``ClinicalBert.run``),
            each with ``threads / streams`` threads: ONNX Runtime runs them concurrently on one session,
            OpenVINO as ``NUM_STREAMS``. One session, one copy of the weights; what ``clinbert score`` uses.
            Ignored on CUDA.
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "extended"
    cpu_arena: bool = True
    memory_pattern: bool = False
    spin: bool = True
    cuda_device_id: int = 0
    streams: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.streams, bool) or not isinstance(self.streams, int) or self.streams < 1:
            raise InputError(f"streams must be an integer >= 1; got {self.streams!r}")

    def threads_per_stream(self) -> int:
        """Threads for each call in flight (``intra_op_threads`` or every core, shared by the streams)."""
        return max(1, (self.intra_op_threads or available_cpus()) // self.streams)

    def with_(self, **changes: object) -> SessionConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


#: Named presets (each differs from the others in what it trades):
#:
#: - ``latency``: every core for one call, idle threads spin between calls, so a lone request starts at once
#:   (it burns CPU while idle: for interactive use on a machine of its own);
#: - ``throughput``: every core for one call, idle threads sleep between calls, so the cores go to
#:   tokenization and batching between batches (what ``clinbert serve`` and batch jobs use);
#: - ``shared``: one thread, no spinning, for a process that shares the CPU with others (or N worker processes).
PRESETS: dict[str, SessionConfig] = {
    "latency": SessionConfig(spin=True),
    "throughput": SessionConfig(spin=False),
    "shared": SessionConfig(intra_op_threads=1, spin=False),
}


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _installed(dist: str) -> bool:
    from importlib import metadata  # lazily: 30 ms of import time, only needed to explain CUDA failures

    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def cuda_unavailable_reason(available: list[str]) -> str | None:
    """Why CUDA cannot be used with this onnxruntime install, or None if the provider is compiled in."""
    if CUDA_EP in available:
        return None
    if _installed("onnxruntime-gpu") and _installed("onnxruntime"):
        return (
            "both 'onnxruntime' (CPU) and 'onnxruntime-gpu' are installed and the CPU wheel shadows the GPU one; "
            "fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    if not _installed("onnxruntime-gpu"):
        return (
            "the installed onnxruntime is the CPU-only build; install the GPU build with "
            "pip uninstall -y clinbert-onnx onnxruntime && pip install clinbert-onnx-gpu"
        )
    return f"onnxruntime-gpu is installed but offers only {available}; check the CUDA/cuDNN libraries"


def resolve_device(device: str, available: list[str]) -> Literal["cpu", "cuda"]:
    """Map the requested device onto what this onnxruntime can do. Raises DeviceError for a bad or impossible ask."""
    if device not in ("cpu", "cuda", "auto"):
        raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'auto'")
    if device == "cpu":
        return "cpu"
    reason = cuda_unavailable_reason(available)
    if reason is None:
        return "cuda"
    if device == "cuda":
        raise DeviceError(f"device='cuda' requested but the CUDA execution provider is not available: {reason}")
    return "cpu"


def _session_options(config: SessionConfig) -> ort.SessionOptions:
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.threads_per_stream()
    opts.inter_op_num_threads = config.inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = levels[config.graph_optimization]
    opts.enable_cpu_mem_arena = config.cpu_arena
    opts.enable_mem_pattern = config.memory_pattern
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spin else "0")
    return opts


def _load_errors() -> tuple[type[Exception], ...]:
    """The exceptions ONNX Runtime raises for a graph it cannot load (its own classes, derived from Exception)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented")
    return (*(getattr(state, n) for n in names if hasattr(state, n)), RuntimeError)


def _cpu_session(model_path: Path, opts: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session; a graph ONNX Runtime rejects becomes a BundleError naming the file."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=[CPU_EP])
    except _load_errors() as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"ONNX Runtime cannot load {model_path}: {first}") from None


def create_session(
    model_path: Path, device: str, config: SessionConfig
) -> tuple[ort.InferenceSession, Literal["cpu", "cuda"]]:
    """Create an InferenceSession on ``device`` ("cpu" | "cuda" | "auto"); return it with the device it really uses.

    ``auto`` falls back to CPU with one warning when the CUDA provider is compiled in but cannot start.
    ``cuda`` raises DeviceError instead of silently running on CPU (ONNX Runtime's own behaviour). A graph
    ONNX Runtime rejects on CPU raises BundleError.
    """
    import onnxruntime as ort

    resolved = resolve_device(device, ort.get_available_providers())
    opts = _session_options(config)
    if resolved == "cpu":
        return _cpu_session(model_path, opts), "cpu"
    providers: list[str | tuple[str, dict[str, object]]] = [
        (CUDA_EP, {"device_id": config.cuda_device_id}),
        CPU_EP,
    ]
    try:
        session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
        failure = None if CUDA_EP in session.get_providers() else "ONNX Runtime fell back to CPU"
    except Exception as exc:  # onnxruntime raises its own untyped errors when CUDA libraries are broken
        session, failure = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if failure is None and session is not None:
        return session, "cuda"
    if device == "cuda":
        raise DeviceError(f"device='cuda' requested but the CUDA provider could not start ({failure})")
    warnings.warn(f"CUDA provider could not start ({failure}); running on CPU", RuntimeWarning, stacklevel=3)
    return _cpu_session(model_path, opts), "cpu"
