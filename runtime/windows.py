"""Tokenization checks and windowing of long clinical notes.

Texts are tokenized once without special tokens; each text becomes one or more *windows* of at most
``max_length`` tokens (``[CLS] content [SEP]``). Embeddings use overlapping windows whose pooled vectors are
combined by the number of new tokens each window contributes; fill-mask predicts each [MASK] from a window
centred on it. Every function here works on one item and raises errors that carry its ``index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import EmptyInputError, InputError, TextTooLongError

LongText = Literal["chunk", "truncate", "error"]
LONG_TEXT_MODES: tuple[str, ...] = ("chunk", "truncate", "error")
#: Which end of an over-long text ``long_text="truncate"`` keeps: "right" cuts the end, "left" the start.
DIRECTIONS: tuple[str, ...] = ("right", "left")
#: The overlap of consecutive embedding windows for BERT-base's 512 positions; smaller windows share a quarter.
MAX_OVERLAP = 64


def default_overlap(max_length: int) -> int:
    """Window overlap that follows the window: 64 tokens at 512 positions, a quarter of the window below that."""
    return max(0, min(MAX_OVERLAP, (max_length - 2) // 4))


@dataclass
class Window:
    """One model input row: ``ids`` includes [CLS]/[SEP]; ``masks`` are positions (in ``ids``) to predict.
    ``head`` names what the run stage computes for it (see ``clinbert_onnx.tasks.HEADS``)."""

    item: int
    ids: np.ndarray
    weight: int
    masks: list[int] = field(default_factory=list)
    mask_ordinals: list[int] = field(default_factory=list)
    head: str = "pool:mean"
    #: Segment ids (1 for the second text of a pair); None: all zeros.
    type_ids: np.ndarray | None = None


def check_text(index: int, text: object) -> str:
    """One input: a non-empty string of valid Unicode."""
    if not isinstance(text, str):
        raise InputError.at(index, f"is {type(text).__name__}, not a string")
    if not text.strip():
        raise EmptyInputError.at(index, "is empty or whitespace only")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError.at(index, "is not valid Unicode (lone surrogate characters)") from None
    return text


def as_items(texts: object) -> list[object]:
    """A string or a sequence of items, as a list (items are checked one by one by :func:`check_text`)."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, Sequence) and not isinstance(texts, bytes | bytearray):
        return list(texts)
    raise InputError(f"expected a string or a list of strings, got {type(texts).__name__}")


def check_texts(texts: object) -> list[str]:
    """Validate user input: a string or a sequence of non-empty strings of valid Unicode."""
    return [check_text(i, t) for i, t in enumerate(as_items(texts))]


def check_long_text(mode: str) -> None:
    if mode not in LONG_TEXT_MODES:
        raise InputError(f"long_text must be one of {', '.join(LONG_TEXT_MODES)}; got {mode!r}")


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise InputError(f"truncation_direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")


def fit(index: int, tokens: int, capacity: int, long_text: str) -> str:
    """How an item of ``tokens`` content tokens is cut: "fits", "truncate" or "chunk". The one place that
    raises TextTooLongError for ``long_text="error"``."""
    if tokens <= capacity:
        return "fits"
    if long_text == "error":
        raise TextTooLongError.at(
            index, f"has {tokens} tokens; the model takes {capacity} per window (use long_text='chunk' or 'truncate')"
        )
    return long_text


def _row(cls_id: int, content: np.ndarray, sep_id: int) -> np.ndarray:
    return np.concatenate(([cls_id], content, [sep_id])).astype(np.int64)


def embed_item(
    index: int,
    ids: np.ndarray,
    *,
    max_length: int,
    cls_id: int,
    sep_id: int,
    long_text: str,
    overlap: int,
    direction: str = "right",
) -> list[Window]:
    """One text's content ids as windows for embedding (``item`` is ``index``). Truncation keeps the first
    window's worth of tokens (``direction="right"``) or the last (``"left"``)."""
    capacity = max_length - 2
    if not 0 <= overlap < capacity:
        raise InputError(f"window overlap must be between 0 and {capacity - 1} tokens; got {overlap}")
    n = len(ids)
    how = fit(index, n, capacity, long_text)
    if how == "fits":
        return [Window(index, _row(cls_id, ids, sep_id), weight=max(n, 1))]
    if how == "truncate":
        kept = ids[:capacity] if direction == "right" else ids[n - capacity :]
        return [Window(index, _row(cls_id, kept, sep_id), weight=capacity)]
    windows: list[Window] = []
    start, covered, step = 0, 0, capacity - overlap
    while True:
        end = min(start + capacity, n)
        windows.append(Window(index, _row(cls_id, ids[start:end], sep_id), weight=end - covered))
        covered = end
        if end == n:
            return windows
        start = min(start + step, n - capacity)


def mask_item(
    index: int, ids: np.ndarray, *, max_length: int, cls_id: int, sep_id: int, mask_id: int, long_text: str
) -> tuple[list[Window], np.ndarray]:
    """One text's windows for fill-mask, and the content positions of its masks. "Has a mask" is decided here,
    by token id, and nowhere else."""
    capacity = max_length - 2
    where = np.flatnonzero(ids == mask_id)
    if len(where) == 0:
        raise InputError.at(index, "has no [MASK] token")
    if len(where) > capacity:
        raise InputError.at(index, f"has {len(where)} [MASK] tokens; at most {capacity} fit in one window")
    n = len(ids)
    how = fit(index, n, capacity, long_text)
    if how == "truncate" and where[-1] >= capacity:
        raise TextTooLongError.at(
            index,
            f"has a [MASK] at token {int(where[-1])}, past the {capacity}-token truncation point "
            "(use long_text='chunk')",
        )
    if how != "chunk":
        content = ids if how == "fits" else ids[:capacity]
        masks = [int(p) + 1 for p in where]
        return [Window(index, _row(cls_id, content, sep_id), len(content), masks, list(range(len(where))))], where
    # One window centred on each mask; masks whose centred windows start at the same token share it.
    windows: list[Window] = []
    by_start: dict[int, Window] = {}
    for ordinal, p in enumerate(where):
        start = min(max(int(p) - capacity // 2, 0), n - capacity)
        win = by_start.get(start)
        if win is None:
            win = Window(index, _row(cls_id, ids[start : start + capacity], sep_id), weight=capacity)
            by_start[start] = win
            windows.append(win)
        win.masks.append(int(p) - start + 1)
        win.mask_ordinals.append(ordinal)
    return windows, where


def embed_windows(
    token_ids: Sequence[np.ndarray], *, max_length: int, cls_id: int, sep_id: int, long_text: str, overlap: int
) -> list[Window]:
    """:func:`embed_item` over several texts."""
    return [
        w
        for i, ids in enumerate(token_ids)
        for w in embed_item(
            i, ids, max_length=max_length, cls_id=cls_id, sep_id=sep_id, long_text=long_text, overlap=overlap
        )
    ]


def mask_windows(
    token_ids: Sequence[np.ndarray], *, max_length: int, cls_id: int, sep_id: int, mask_id: int, long_text: str
) -> tuple[list[Window], list[np.ndarray]]:
    """:func:`mask_item` over several texts: all windows, and per text the content positions of its masks."""
    windows: list[Window] = []
    positions: list[np.ndarray] = []
    for i, ids in enumerate(token_ids):
        wins, where = mask_item(
            i, ids, max_length=max_length, cls_id=cls_id, sep_id=sep_id, mask_id=mask_id, long_text=long_text
        )
        windows.extend(wins)
        positions.append(where)
    return windows, positions
