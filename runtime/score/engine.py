"""Score one window of texts with a loaded model, isolating bad rows.

The window is sorted by length and cut into slices of a few token-budget batches; each slice is one call to
``ClinicalBert.encode`` / ``predict_masks`` (which sorts again by exact token counts and cuts batches by the
token budget). Results come back in submission order. When a call raises InputError (a text with no [MASK],
too long under ``long_text="error"``...) the slice is split in halves until the bad rows stand alone, so one
bad row never costs its neighbours. Runs in the main process or in a worker process (everything here pickles).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, NoMaskHeadError

_INDEX = re.compile(r"^input \d+ ")
#: A slice holds at most this many token-budget batches' worth of (estimated) tokens, or of rows.
SLICE_BATCHES = 8
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class TaskSpec:
    task: str
    pooling: str = "mean"
    normalize: bool = True
    long_text: str = "chunk"
    top_k: int = 5
    targets: tuple[str, ...] | None = None


@dataclass
class Scored:
    """What came out of one window. ``ok`` are positions (in the submitted texts, ascending) that were scored;
    ``vectors`` / ``predictions``, ``windows`` and ``tokens`` are aligned with ``ok``; ``failed`` holds
    (position, reason) for the rest."""

    ok: list[int] = field(default_factory=list)
    vectors: np.ndarray | None = None
    predictions: list[Any] | None = None
    windows: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


def row_reason(exc: InputError) -> str:
    """The runtime's message for one input, without its index within the call ("input 0 has ..." → "text has")."""
    return _INDEX.sub("text ", str(exc), count=1)


def plan_slices(texts: Sequence[str], token_budget: int, max_batch: int) -> list[list[int]]:
    """Positions sorted by length (characters, a cheap proxy for tokens), cut into slices of a few batches."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    max_tokens, max_rows = token_budget * SLICE_BATCHES, max_batch * SLICE_BATCHES
    slices: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        estimate = len(texts[i]) // _CHARS_PER_TOKEN + 2
        if current and (tokens + estimate > max_tokens or len(current) >= max_rows):
            slices.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += estimate
    if current:
        slices.append(current)
    return slices


def _call(model: Any, spec: TaskSpec, texts: list[str]) -> Any:
    if spec.task == "embed":
        return model.encode(texts, pooling=spec.pooling, normalize=spec.normalize, long_text=spec.long_text)
    targets = list(spec.targets) if spec.targets is not None else None
    return model.predict_masks(texts, top_k=spec.top_k, targets=targets, long_text=spec.long_text)


def _isolate(
    model: Any,
    spec: TaskSpec,
    texts: Sequence[str],
    positions: list[int],
    done: list[tuple[list[int], Any]],
    failed: list[tuple[int, str]],
) -> None:
    """Score ``positions``; on a per-row InputError, bisect until each bad row is alone and recorded."""
    try:
        done.append((positions, _call(model, spec, [texts[i] for i in positions])))
    except NoMaskHeadError:
        raise
    except InputError as exc:
        if len(positions) == 1:
            failed.append((positions[0], row_reason(exc)))
            return
        half = len(positions) // 2
        _isolate(model, spec, texts, positions[:half], done, failed)
        _isolate(model, spec, texts, positions[half:], done, failed)


def score_texts(
    model: Any, spec: TaskSpec, texts: Sequence[str], on_progress: Callable[[int], None] | None = None
) -> Scored:
    """Score ``texts`` (already checked for emptiness and, for fill-mask, a mask token); see the module doc."""
    done: list[tuple[list[int], Any]] = []
    failed: list[tuple[int, str]] = []
    for positions in plan_slices(texts, model.token_budget, model.max_batch):
        _isolate(model, spec, texts, positions, done, failed)
        if on_progress is not None:
            on_progress(len(positions))
    failed.sort()
    if not done:
        return Scored(failed=failed)
    ok = np.concatenate([np.asarray(p, dtype=np.int64) for p, _ in done])
    back = np.argsort(ok, kind="stable")
    windows = np.concatenate([np.asarray(r.windows, dtype=np.int64) for _, r in done])[back]
    tokens = np.concatenate([np.asarray(r.tokens, dtype=np.int64) for _, r in done])[back]
    scored = Scored(ok=ok[back].tolist(), windows=windows.tolist(), tokens=tokens.tolist(), failed=failed)
    if spec.task == "embed":
        scored.vectors = np.concatenate([r.vectors for _, r in done])[back]
    else:
        predictions = [p for _, r in done for p in r.predictions]
        scored.predictions = [predictions[i] for i in back.tolist()]
    return scored
