"""Per-request input limits, checked before anything is queued. Errors name input indices, never text."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError, TextTooLongError
from ..model import ClinicalBert
from ..windows import check_texts
from .config import ServeConfig
from .errors import InputTooLongError, TooManyInputsError

#: Requests with more characters than this are tokenized off the event loop.
INLINE_TOKENIZE_CHARS = 4096


@dataclass(frozen=True)
class Prepared:
    texts: list[str]
    tokens: list[int]  # per text, incl. [CLS]/[SEP], before truncation

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)


def check_request_texts(raw: str | Sequence[str], config: ServeConfig, long_text: str) -> list[str]:
    """Count, size and content checks. With ``long_text="truncate"`` an over-long text is cut to ``max_chars``
    characters (the model keeps far fewer tokens than that anyway); otherwise it is a 422."""
    items = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise InputError("the input list is empty: give at least one text")
    if len(items) > config.max_inputs:
        raise TooManyInputsError(f"{len(items)} inputs in one request; this server accepts at most {config.max_inputs}")
    out: list[str] = []
    for i, text in enumerate(items):
        if len(text) > config.max_chars:
            if long_text != "truncate":
                raise InputTooLongError(
                    f"input {i} has {len(text)} characters; this server accepts at most {config.max_chars} "
                    "per input (ask for truncation to cut longer texts)"
                )
            text = text[: config.max_chars]
        out.append(text)
    return check_texts(out)


async def prepare(model: ClinicalBert, raw: str | Sequence[str], config: ServeConfig, long_text: str) -> Prepared:
    """Check limits and count tokens. ``long_text="error"`` rejects over-long texts here, before queueing."""
    texts = check_request_texts(raw, config, long_text)
    if sum(len(t) for t in texts) <= INLINE_TOKENIZE_CHARS:
        tokens = model.count_tokens(texts)
    else:
        tokens = await asyncio.to_thread(model.count_tokens, texts)
    if long_text == "error":
        for i, n in enumerate(tokens):
            if n > model.max_length:
                raise TextTooLongError(
                    f"input {i} has {n - 2} tokens; the model takes {model.max_length - 2} per window "
                    "(ask for truncation or chunking)"
                )
    return Prepared(texts, tokens)
