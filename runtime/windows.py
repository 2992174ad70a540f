"""Tokenization and windowing of long clinical notes.

Texts are tokenized once without special tokens; each text becomes one or more *windows* of at most
``max_length`` tokens (``[CLS] content [SEP]``). Embeddings use overlapping windows whose pooled vectors are
combined by the number of new tokens each window contributes; fill-mask predicts each [MASK] from a window
centred on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import InputError, TextTooLongError

LongText = Literal["chunk", "truncate", "error"]
LONG_TEXT_MODES: tuple[str, ...] = ("chunk", "truncate", "error")


@dataclass
class Window:
    """One model input row: ``ids`` includes [CLS]/[SEP]; ``masks`` are positions (in ``ids``) to predict."""

    item: int
    ids: np.ndarray
    weight: int
    masks: list[int] = field(default_factory=list)
    mask_ordinals: list[int] = field(default_factory=list)


def check_texts(texts: object) -> list[str]:
    """Validate user input: a string or a sequence of non-empty strings of valid Unicode."""
    if isinstance(texts, str):
        items: list[object] = [texts]
    elif isinstance(texts, Sequence) and not isinstance(texts, bytes | bytearray):
        items = list(texts)
    else:
        raise InputError(f"expected a string or a list of strings, got {type(texts).__name__}")
    out: list[str] = []
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InputError(f"input {i} is {type(text).__name__}, not a string")
        if not text.strip():
            raise InputError(f"input {i} is empty or whitespace only")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"input {i} is not valid Unicode (lone surrogate characters)") from None
        out.append(text)
    return out


def check_long_text(mode: str) -> None:
    if mode not in LONG_TEXT_MODES:
        raise InputError(f"long_text must be one of {', '.join(LONG_TEXT_MODES)}; got {mode!r}")


def _row(cls_id: int, content: np.ndarray, sep_id: int) -> np.ndarray:
    return np.concatenate(([cls_id], content, [sep_id])).astype(np.int64)


def embed_windows(
    token_ids: Sequence[np.ndarray],
    *,
    max_length: int,
    cls_id: int,
    sep_id: int,
    long_text: str,
    overlap: int,
) -> list[Window]:
    """Split each text's content ids into windows for embedding."""
    capacity = max_length - 2
    if not 0 <= overlap < capacity:
        raise InputError(f"window overlap must be between 0 and {capacity - 1} tokens; got {overlap}")
    step = capacity - overlap
    windows: list[Window] = []
    for item, ids in enumerate(token_ids):
        n = len(ids)
        if n <= capacity:
            windows.append(Window(item, _row(cls_id, ids, sep_id), weight=max(n, 1)))
            continue
        if long_text == "error":
            raise TextTooLongError(
                f"input {item} has {n} tokens; the model takes {capacity} per window "
                "(use long_text='chunk' or 'truncate')"
            )
        if long_text == "truncate":
            windows.append(Window(item, _row(cls_id, ids[:capacity], sep_id), weight=capacity))
            continue
        start, covered = 0, 0
        while True:
            end = min(start + capacity, n)
            windows.append(Window(item, _row(cls_id, ids[start:end], sep_id), weight=end - covered))
            covered = end
            if end == n:
                break
            start = min(start + step, n - capacity)
    return windows


def mask_windows(
    token_ids: Sequence[np.ndarray],
    *,
    max_length: int,
    cls_id: int,
    sep_id: int,
    mask_id: int,
    long_text: str,
) -> tuple[list[Window], list[np.ndarray]]:
    """Windows for fill-mask. Returns the windows and, per text, the content positions of its masks."""
    capacity = max_length - 2
    windows: list[Window] = []
    positions: list[np.ndarray] = []
    for item, ids in enumerate(token_ids):
        where = np.flatnonzero(ids == mask_id)
        if len(where) == 0:
            raise InputError(f"input {item} has no [MASK] token")
        if len(where) > capacity:
            raise InputError(f"input {item} has {len(where)} [MASK] tokens; at most {capacity} fit in one window")
        positions.append(where)
        n = len(ids)
        if n <= capacity:
            windows.append(
                Window(
                    item,
                    _row(cls_id, ids, sep_id),
                    weight=n,
                    masks=[int(p) + 1 for p in where],
                    mask_ordinals=list(range(len(where))),
                )
            )
            continue
        if long_text == "error":
            raise TextTooLongError(
                f"input {item} has {n} tokens; the model takes {capacity} per window "
                "(use long_text='chunk' or 'truncate')"
            )
        if long_text == "truncate":
            if where[-1] >= capacity:
                raise TextTooLongError(
                    f"input {item} has a [MASK] at token {int(where[-1])}, past the {capacity}-token truncation "
                    "point (use long_text='chunk')"
                )
            windows.append(
                Window(
                    item,
                    _row(cls_id, ids[:capacity], sep_id),
                    weight=capacity,
                    masks=[int(p) + 1 for p in where],
                    mask_ordinals=list(range(len(where))),
                )
            )
            continue
        # One window centred on each mask; masks whose centred windows start at the same token share it.
        by_start: dict[int, Window] = {}
        for ordinal, p in enumerate(where):
            start = min(max(int(p) - capacity // 2, 0), n - capacity)
            win = by_start.get(start)
            if win is None:
                win = Window(item, _row(cls_id, ids[start : start + capacity], sep_id), weight=capacity)
                by_start[start] = win
                windows.append(win)
            win.masks.append(int(p) - start + 1)
            win.mask_ordinals.append(ordinal)
    return windows, positions
