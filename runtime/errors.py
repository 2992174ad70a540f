"""The error hierarchy. Raised anywhere; mapped to exit codes (CLI) and HTTP statuses (server) at the edges only.

Messages never contain input text: it is patient data.
"""

from __future__ import annotations


class ClinBertError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1
    http_status = 500
    code = "internal_error"


class InputError(ClinBertError, ValueError):
    """The caller's input is unusable (empty text, no [MASK], too long, wrong type...)."""

    exit_code = 2
    http_status = 422
    code = "invalid_input"


class TextTooLongError(InputError):
    """A text exceeds the model's window and the caller asked for ``long_text="error"``."""

    code = "text_too_long"


class NoMaskHeadError(InputError):
    """Fill-mask was asked of a bundle exported from an encoder without a masked-LM head."""

    code = "no_mlm_head"


class BundleError(ClinBertError):
    """The bundle is missing, malformed, fails its checksums or lacks the asked-for variant."""

    exit_code = 3
    http_status = 500
    code = "bundle_error"


class ChecksumError(BundleError):
    code = "checksum_mismatch"


class DeviceError(ClinBertError):
    """The requested execution device cannot be used (e.g. CUDA asked for, no CUDA provider)."""

    exit_code = 4
    code = "device_error"


class ExportError(ClinBertError):
    """The checkpoint cannot be exported (missing files, unsupported architecture, disk full...)."""

    exit_code = 5
    code = "export_error"


class QualityGateError(ClinBertError):
    """A quantized variant missed an accuracy threshold against FP32."""

    exit_code = 6
    code = "quality_gate"


class MissingDependencyError(ClinBertError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that provides it."""

    exit_code = 7
    code = "missing_dependency"


def require(module: str, extra: str) -> None:
    """Raise MissingDependencyError naming ``extra`` if ``module`` cannot be imported."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # find_spec("a.b") imports "a" first: a missing parent raises instead of None
        spec = None
    if spec is None:
        raise MissingDependencyError(
            f"this feature needs the '{module}' package: pip install \"clinbert-onnx[{extra}]\""
        )
