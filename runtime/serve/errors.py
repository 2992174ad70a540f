"""HTTP errors: mapped from the one error hierarchy here and only here, in the dialect of the route.

- OpenAI's ``/v1/embeddings`` and our own routes (fill-mask, probes...): ``{"error": {"message", "type", "code"}}``.
- Text Embeddings Inference's routes (``TEI_PATHS``): TEI's ``{"error", "error_type"}`` with TEI's statuses
  (``TEI_ERRORS``: empty → 400 ``Empty``, validation → 422 ``Validation``, too many inputs → 413 ``Validation``
  as TEI documents it, tokenizer → 422 ``Tokenizer``, overloaded → 429 ``Overloaded``, not applicable to this
  bundle / inference failure → 424 ``Backend``, stopping → 503 ``Unhealthy``).

Every failure becomes one :class:`ApiError` (a library error through :func:`from_clinbert`, from its class and
fields; never from its message) and is rendered by :func:`render` for the request's path. Messages never
contain request text: ``ClinBertError`` messages are written that way, validation messages are rebuilt from
field locations only, and anything unexpected becomes a generic message whose log line names the exception
type and code location, not its message.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from ..errors import (  # re-exported: the server's errors are part of the one hierarchy
    ClinBertError,
    EmptyInputError,
    InferenceFailedError,
    InputError,
    InputTooLongError,
    NotApplicableError,
    QueueFullError,
    ShuttingDownError,
    TokenizerError,
    TooManyInputsError,
)

log = logging.getLogger("clinbert_onnx.serve")

#: OpenAI's ``error.type`` values, by status.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    424: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}
#: TEI's ``ErrorType`` values (its OpenAPI ``ErrorType`` enum, serialized as the variant names).
TEI_TYPES = ("Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty")
#: Library error class → (TEI error_type, TEI status; None = the error's own ``http_status``). First match wins.
TEI_ERRORS: tuple[tuple[type[ClinBertError], str, int | None], ...] = (
    (EmptyInputError, "Empty", 400),
    (TokenizerError, "Tokenizer", 422),
    (TooManyInputsError, "Validation", 413),
    (InputError, "Validation", 422),
    (NotApplicableError, "Backend", 424),
    (QueueFullError, "Overloaded", 429),
    (ShuttingDownError, "Unhealthy", 503),
    (ClinBertError, "Backend", 424),  # inference failed: TEI's "Inference failed" answer, generic message
)
#: TEI error_type of HTTP-level failures (no library error behind them), by status.
TEI_HTTP_TYPES = {424: "Backend", 429: "Overloaded", 500: "Backend", 503: "Unhealthy"}
#: Routes that speak TEI (paths as Text Embeddings Inference serves them; POST / is TEI's root route).
TEI_PATHS = frozenset(
    {
        "/",
        "/embed",
        "/embed_all",
        "/embed_sparse",
        "/similarity",
        "/tokenize",
        "/decode",
        "/predict",
        "/rerank",
        "/invocations",
    }
)
__all__ = [
    "TEI_ERRORS",
    "TEI_PATHS",
    "ApiError",
    "InferenceFailedError",
    "InputTooLongError",
    "QueueFullError",
    "ShuttingDownError",
    "TooManyInputsError",
    "error_body",
    "from_clinbert",
    "render",
]
GENERIC_500 = "internal server error; the request was not processed (details are in the server log)"


class ApiError(Exception):
    """One failure, ready for either dialect: ``status``/``code``/``message`` (OpenAI and our own routes),
    ``tei_status``/``tei_type`` (TEI routes), extra ``headers``. HTTP-level failures (401, 404, a body FastAPI
    could not parse...) are built directly; library errors by :func:`from_clinbert`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        tei_type: str | None = None,
        tei_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.tei_type = tei_type or TEI_HTTP_TYPES.get(status, "Validation")
        self.tei_status = tei_status or status


def error_type(status: int) -> str:
    return TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "code": code}}


def tei_body(error_type: str, message: str) -> dict[str, Any]:
    return {"error": message, "error_type": error_type}


def render(path: str, err: ApiError) -> tuple[int, bytes]:
    """Status and JSON body of ``err`` in the dialect of ``path`` (TEI routes: TEI's; others: OpenAI's)."""
    if path in TEI_PATHS:
        status, body = err.tei_status, tei_body(err.tei_type, err.message)
    else:
        status, body = err.status, error_body(err.status, err.code, err.message)
    return status, json.dumps(body, separators=(",", ":")).encode()


def from_clinbert(exc: ClinBertError) -> ApiError:
    """Map a library error by its class and fields: 4xx keep their (text-free) message; failures that are not
    the caller's become a generic message (500 on our routes, TEI's 424 ``Backend`` on TEI's)."""
    tei_type, tei_status = next((t, s) for cls, t, s in TEI_ERRORS if isinstance(exc, cls))
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFullError) else None
    status = exc.http_status
    if status >= 500 and not isinstance(exc, ShuttingDownError):
        log.error("%s: %s", type(exc).__name__, exc)  # library messages never quote input text
        return ApiError(500, "internal_error", GENERIC_500, tei_type=tei_type, tei_status=tei_status)
    return ApiError(status, exc.code, str(exc), headers, tei_type=tei_type, tei_status=tei_status or status)


def validation_message(errors: list[Any]) -> str:
    """A readable message from pydantic errors, built from locations and messages only (never ``input``)."""
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            parts.append("the request body is not valid JSON")
        elif err.get("type") == "missing" and not loc:
            parts.append("the request body is missing")
        else:
            parts.append(f"{where}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    if any(err.get("type") == "string_type" and _token_ids(err.get("input")) for err in errors):
        more += " (token arrays are not supported: send text; LangChain: check_embedding_ctx_length=False)"
    return "; ".join(parts) + more


def _token_ids(value: object) -> bool:
    """An int or a list of ints: what OpenAI clients send when they tokenize on their side."""
    if isinstance(value, list):
        return bool(value) and all(type(v) is int for v in value)
    return type(value) is int


def log_unexpected(exc: BaseException) -> None:
    """Log an unexpected error by type and code location only: its message may quote request text."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    log.error("unexpected %s%s (message withheld: it may contain request text)", type(exc).__name__, where)
