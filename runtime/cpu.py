"""This CPU's model name and instruction sets (Linux ``/proc/cpuinfo``), for engine choice and reports.

Standard library only. Off Linux the flags are unknown (an empty set): nothing is then assumed about the CPU.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from pathlib import Path

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
