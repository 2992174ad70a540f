"""Which inference engine runs a bundle: ONNX Runtime (the default) or OpenVINO (``engine="openvino"``), and
what ``engine="auto"`` picks.

``auto`` picks OpenVINO only when all of these hold, else ONNX Runtime: the ``openvino`` package is installed,
the run is on CPU, the bundle has a variant built for OpenVINO (``engines`` listing it first: ``int8-static``)
— or the variant asked for is one — and the CPU has AVX-512 VNNI or AMX. On an AVX2-only CPU OpenVINO's INT8
kernels have no fast dot-product instructions, and ONNX Runtime's per-token INT8 is the better default.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping

from .cpu import INT8_ACCELERATED, cpu_flags, int8_accelerated
from .errors import BundleError, DeviceError, InputError
from .schema import ONNXRUNTIME, OPENVINO, VariantInfo

ENGINE_CHOICES = (ONNXRUNTIME, OPENVINO, "auto")


def check_engine(engine: object) -> str:
    if engine not in ENGINE_CHOICES:
        raise InputError(f"unknown engine {engine!r}: use {', '.join(repr(e) for e in ENGINE_CHOICES)}")
    return str(engine)


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def preferred_by_openvino(variants: Mapping[str, VariantInfo], variant: str | None) -> VariantInfo | None:
    """The variant OpenVINO should run: ``variant`` when given and built for OpenVINO first, else the first
    variant that is; None when there is none."""
    candidates = list(variants.values()) if variant is None else [v for v in variants.values() if v.name == variant]
    return next((v for v in candidates if v.engines and v.engines[0] == OPENVINO), None)


def choose_engine(
    variants: Mapping[str, VariantInfo],
    variant: str | None,
    device: str,
    flags: Iterable[str],
    installed: bool,
) -> tuple[str, str]:
    """``auto``'s choice for a bundle's ``variants`` on resolved ``device`` ("cpu" | "cuda"), a CPU with
    ``flags``, with the ``openvino`` package ``installed`` or not: (engine, the reason, for logs/doctor)."""
    if device != "cpu":
        return ONNXRUNTIME, f"running on {device}"
    if not installed:
        return ONNXRUNTIME, "openvino is not installed (pip install 'clinbert-onnx[openvino]')"
    if preferred_by_openvino(variants, variant) is None:
        asked = f"variant {variant}" if variant else "the bundle"
        return ONNXRUNTIME, f"{asked} has no variant built for OpenVINO (export or quantize int8-static)"
    if not int8_accelerated(flags):
        return ONNXRUNTIME, f"this CPU has none of {', '.join(INT8_ACCELERATED)}"
    return OPENVINO, "openvino installed, a static INT8 variant, and INT8 dot-product instructions"


def resolve_engine(engine: str, variants: Mapping[str, VariantInfo], variant: str | None, device: str) -> str:
    """The engine to load for ``engine`` ("onnxruntime" | "openvino" | "auto") on resolved ``device``."""
    check_engine(engine)
    if engine == "auto":
        return choose_engine(variants, variant, device, cpu_flags(), openvino_installed())[0]
    if engine == OPENVINO and device == "cuda":
        raise DeviceError("the OpenVINO engine runs on CPU: use device='cpu' (or 'auto'), or engine='onnxruntime'")
    return engine


def openvino_variant(variants: Mapping[str, VariantInfo], variant: str | None) -> VariantInfo:
    """The variant the OpenVINO engine loads: ``variant`` if OpenVINO runs it, else the one built for it, else
    fp32. Raises BundleError for a variant OpenVINO does not run (ONNX Runtime's contrib-op int8)."""
    if variant:
        if variant not in variants:
            present = ", ".join(sorted(variants)) or "none"
            raise BundleError(f"the bundle has no variant {variant!r} (present: {present})")
        chosen = variants[variant]
        if not chosen.runs_on(OPENVINO):
            raise BundleError(
                f"variant {variant} is built for ONNX Runtime only (its INT8 ops are ONNX Runtime contrib ops); "
                "with engine='openvino' use int8-static (clinbert quantize BUNDLE --recipe int8-static) or fp32"
            )
        return chosen
    preferred = preferred_by_openvino(variants, None)
    if preferred is not None:
        return preferred
    if "fp32" in variants:
        return variants["fp32"]
    raise BundleError("the bundle has no variant OpenVINO runs (int8-static or fp32)")
