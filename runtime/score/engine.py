"""Score one window of texts with a loaded model: the core's three stages, bad rows set aside by ``prepare``.

``prepare(..., on_error="collect")`` validates and tokenizes each text once; a bad one (no [MASK], too long
under ``long_text="error"``...) is recorded with its index and the others go on, so one bad row never costs its
neighbours and nothing is re-run. ``run`` then plans length-aware batches over the whole window (by exact token
counts) and ``finish`` puts results back in submission order. Runs in the main process or in a worker process
(everything here pickles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..classify import ClassifyOptions, TokenOptions
from ..errors import InputError
from ..pipelines import ranked
from ..tasks import EmbedOptions, MaskOptions


@dataclass(frozen=True)
class TaskSpec:
    """A task name (``tasks.TASKS``) and its options object."""

    task: str
    options: EmbedOptions | MaskOptions | TokenOptions | ClassifyOptions
    #: text classification: labels written per row (best first; clamped to the number of labels)
    top_k: int = 5


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
    """The errors file's reason for a bad row, from the error's structured ``reason`` ("text has no [MASK]...")."""
    return f"text {exc.reason}" if exc.index is not None else exc.reason


def score_texts(
    model: Any, spec: TaskSpec, texts: Sequence[Any], on_progress: Callable[[int], None] | None = None
) -> Scored:
    """Score ``texts`` (already checked for missing values; for text classification, texts or
    ``{"text", "text_pair"}`` pairs); see the module doc."""
    prepared = model.prepare(list(texts), spec.task, spec.options, on_error="collect")
    failed = [(int(e.index), row_reason(e)) for e in prepared.errors]
    result = model.finish(prepared, model.run(prepared.windows)) if prepared.kept else None
    if on_progress is not None:
        on_progress(len(texts))
    if result is None:
        return Scored(failed=failed)
    scored = Scored(ok=list(prepared.kept), windows=list(result.windows), tokens=list(result.tokens), failed=failed)
    if spec.task == "embed":
        scored.vectors = result.vectors
    elif spec.task == "token-classification":
        scored.predictions = list(result.entities)
    elif spec.task == "text-classification":
        k = min(spec.top_k, len(result.labels))
        scored.predictions = [ranked(row, result.labels, k) for row in result.scores]
    else:
        scored.predictions = list(result.predictions)
    return scored
