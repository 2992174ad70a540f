"""Per-request limits, checked before anything is tokenized or queued. Errors name input indices, never text."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import EmptyInputError, InputTooLongError, TooManyInputsError
from .config import ServeConfig

#: Requests with more characters than this are prepared (tokenized, windowed) off the event loop.
INLINE_TOKENIZE_CHARS = 4096


def check_request_texts(
    raw: str | Sequence[str], config: ServeConfig, long_text: str, direction: str = "right"
) -> list[str]:
    """Count and size limits. With ``long_text="truncate"`` an over-long text is cut to ``max_chars`` characters
    (its end with ``direction="left"``; the model keeps far fewer tokens than that anyway); otherwise it is a
    422. Content checks (empty, not a string, bad Unicode) are ``ClinicalBert.prepare``'s."""
    items = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise EmptyInputError("the input list is empty: give at least one text")
    if len(items) > config.max_inputs:
        raise TooManyInputsError(f"{len(items)} inputs in one request; this server accepts at most {config.max_inputs}")
    out: list[str] = []
    for i, text in enumerate(items):
        if isinstance(text, str) and len(text) > config.max_chars:
            if long_text != "truncate":
                raise InputTooLongError.at(
                    i,
                    f"has {len(text)} characters; this server accepts at most {config.max_chars} "
                    "per input (ask for truncation to cut longer texts)",
                )
            text = text[: config.max_chars] if direction == "right" else text[len(text) - config.max_chars :]
        out.append(text)
    return out
