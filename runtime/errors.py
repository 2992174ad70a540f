"""The error hierarchy: the one place that says what each failure means at each edge.

Every error carries structured fields: ``code`` (stable, machine-readable), ``http_status`` (the server's
answer), ``exit_code`` (the CLI's), and for a per-item error the item's ``index`` and ``reason`` (the message
without the index, e.g. "has no [MASK] token"). Edges read these fields (the CLI prints ``str(exc)`` and
exits with ``exit_code``, the server answers ``http_status``/``code``, ``clinbert score`` writes ``reason``
to its errors file); nothing parses messages. Messages never contain input text: it is patient data.
"""

from __future__ import annotations


class ClinBertError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1
    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, *, index: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.reason = reason if reason is not None else message

    @classmethod
    def at(cls, index: int, reason: str) -> ClinBertError:
        """A per-item error: message ``input {index} {reason}``, with ``index`` and ``reason`` as fields."""
        return cls(f"input {index} {reason}", index=index, reason=reason)


class InputError(ClinBertError, ValueError):
    """The caller's input is unusable (empty text, no [MASK], too long, wrong type...)."""

    exit_code = 2
    http_status = 422
    code = "invalid_input"


class EmptyInputError(InputError):
    """An empty request (no texts, no ids) or an empty / whitespace-only text."""

    code = "empty_input"


class TokenizerError(InputError):
    """The tokenizer cannot work on the input (token ids it cannot decode...)."""

    code = "tokenizer_error"


class TextTooLongError(InputError):
    """A text exceeds the model's window and the caller asked for ``long_text="error"``."""

    code = "text_too_long"


class NoMaskHeadError(InputError):
    """Fill-mask was asked of a bundle exported from an encoder without a masked-LM head."""

    code = "no_mlm_head"


class TaskNotServedError(InputError):
    """A task the loaded bundle cannot serve (token classification on a text classifier, fill-mask on a NER
    bundle, rerank on a multi-label classifier...). The message names the bundle's task."""

    code = "task_not_supported"


class TooManyInputsError(InputError):
    """More texts in one request than the server's ``max_inputs``."""

    http_status = 413
    code = "too_many_inputs"


class InputTooLongError(InputError):
    """A text longer than the server's ``max_chars`` characters (without truncation)."""

    code = "input_too_long"


class NotApplicableError(ClinBertError):
    """The loaded bundle cannot do what was asked (a classifier route on an embedding model...): nothing the
    caller can fix in the request. The server answers 424, as Text Embeddings Inference does."""

    exit_code = 2
    http_status = 424
    code = "not_applicable"


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


class QueueFullError(ClinBertError):
    """The server's inference queue is full; ``retry_after`` seconds is a fair time to wait."""

    http_status = 429
    code = "queue_full"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OverloadedError(QueueFullError):
    """More requests in flight than the server's ``max_concurrent_requests``."""

    code = "overloaded"


class ShuttingDownError(ClinBertError):
    """The server is stopping and takes no new work."""

    http_status = 503
    code = "shutting_down"


class InferenceFailedError(ClinBertError):
    """Inference raised something unexpected (already logged without its message)."""

    code = "internal_error"


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
