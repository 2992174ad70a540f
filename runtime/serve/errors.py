"""HTTP errors: one JSON shape for every failure, ``{"error": {"message", "type", "code"}}`` (OpenAI style).

Exceptions are mapped to statuses here and only here. Messages never contain request text: ``ClinBertError``
messages are written that way, validation messages are rebuilt from field locations only, and anything
unexpected becomes a generic 500 whose log line names the exception type and code location, not its message.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from ..errors import (  # re-exported: the server's errors are part of the one hierarchy
    ClinBertError,
    InferenceFailedError,
    InputTooLongError,
    QueueFullError,
    ShuttingDownError,
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
    429: "rate_limit_error",
    503: "service_unavailable",
}
__all__ = [
    "ApiError",
    "InferenceFailedError",
    "InputTooLongError",
    "QueueFullError",
    "ShuttingDownError",
    "TooManyInputsError",
    "error_body",
    "from_clinbert",
]
GENERIC_500 = "internal server error; the request was not processed (details are in the server log)"


class ApiError(Exception):
    """An HTTP-level failure that is not a library error (404, 401, a body FastAPI could not parse...), answered
    as-is: status, machine-readable code, message (no request text), extra headers. Library errors
    (``ClinBertError``) are mapped by :func:`from_clinbert`, from their own fields."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_type(status: int) -> str:
    return TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "code": code}}


def error_bytes(status: int, code: str, message: str) -> bytes:
    return json.dumps(error_body(status, code, message), separators=(",", ":")).encode()


def from_clinbert(exc: ClinBertError) -> ApiError:
    """Map a library error: 4xx keep their (text-free) message; 5xx become the generic message."""
    status = exc.http_status
    if status == 500:
        log.error("%s: %s", type(exc).__name__, exc)  # library messages never quote input text
        return ApiError(500, "internal_error", GENERIC_500)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFullError) else None
    return ApiError(status, exc.code, str(exc), headers)


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
