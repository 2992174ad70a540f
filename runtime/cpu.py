"""This CPU's model name, instruction sets (Linux ``/proc/cpuinfo``) and peak rates, for engine choice and reports.

Standard library only. Off Linux the flags are unknown (an empty set): nothing is then assumed about the CPU.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
#: The instruction sets that decide INT8/BF16 speed, as /proc/cpuinfo spells them.
ISA_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
#: INT8 dot-product instructions OpenVINO's static INT8 kernels are fast with (AVX2-only machines are not).
INT8_ACCELERATED = ("avx512_vnni", "amx_int8")


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """Every flag of the first CPU (empty when unknown)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def isa(flags: Iterable[str] | None = None) -> list[str]:
    """The instruction sets of :data:`ISA_FLAGS` this CPU (or ``flags``) has, in that order."""
    have = cpu_flags() if flags is None else set(flags)
    return [f for f in ISA_FLAGS if f in have]


def int8_accelerated(flags: Iterable[str] | None = None) -> bool:
    """AVX-512 VNNI or AMX: where static INT8 on OpenVINO beats ONNX Runtime's kernels."""
    have = cpu_flags() if flags is None else set(flags)
    return any(f in have for f in INT8_ACCELERATED)


def cpu_ghz() -> float | None:
    """Nominal clock from the model name ("@ 2.10GHz") or ``cpu MHz``; None when unknown."""
    text = _cpuinfo()
    for line in text.splitlines():
        if line.startswith("model name") and "GHz" in line:
            return float(line.rsplit("@", 1)[-1].strip().removesuffix("GHz"))
    for line in text.splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":", 1)[1]) / 1000
    return None


def cpu_peaks(cores: int, ghz: float, flags: set[str]) -> dict[str, float]:
    """Peak GOP/s per instruction set: ops per cycle per core × cores × GHz (two 512-bit FMA ports assumed).

    FP32 AVX-512: 2 ports × 16 lanes × 2 = 64; INT8 VNNI (vpdpbusd): 2 × 64 × 2 = 256; AMX-INT8: 2048;
    AMX-BF16: 1024. Only the sets the CPU reports are listed.
    """
    per_cycle = {
        "fp32_avx512": (64, "avx512f"),
        "fp32_avx2": (32, "avx2"),
        "int8_vnni": (256, "avx512_vnni"),
        "int8_amx": (2048, "amx_int8"),
        "bf16_amx": (1024, "amx_bf16"),
    }
    return {name: ops * cores * ghz for name, (ops, flag) in per_cycle.items() if flag in flags}


def machine_info() -> dict[str, Any]:
    from .session import available_cpus

    flags = cpu_flags()
    ghz = cpu_ghz()
    cores = available_cpus()
    model = cpu_model()
    versions = {}
    for dist in ("clinbert-onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tokenizers", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": model,
        "cores": cores,
        "ghz": ghz,
        "isa": isa(flags),
        "peaks_gops": cpu_peaks(cores, ghz, flags) if ghz else {},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
