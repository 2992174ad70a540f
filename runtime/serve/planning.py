"""Length grouping of a merged batch, and cutting/pasting results.

Texts that arrive together have unrelated lengths; run as one batch, every row is padded to the longest, and
on CPU padding costs as much as real tokens (with short clinical sentences of 5 to 90 tokens, a random batch
of 16 is mostly padding). So a merged batch is split into groups of similar length that minimise
``sum(call overhead + rows x longest row)``, an exact dynamic programme over the texts sorted by length.
On CUDA a call costs more than padding does and groups are rarely worth it: the overhead is set accordingly.

The grouping itself is ``clinbert_onnx.batching.plan_batches``, which ``ClinicalBert.encode`` also uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..batching import plan_batches
from ..model import EmbedResult, FillMaskResult

Result = EmbedResult | FillMaskResult


def length_groups(lengths: Sequence[int], overhead: int, max_rows: int) -> list[list[int]]:
    """Indices grouped by similar length (at most ``max_rows`` each), minimising
    ``sum(overhead + len(group) * max(lengths in group))``: ``plan_batches`` with no token budget."""
    groups = plan_batches(
        lengths, token_budget=max(1, sum(lengths)) * max(1, max_rows), max_batch=max_rows, call_overhead=overhead
    )
    return [sorted(g, key=lambda i: (lengths[i], i)) for g in groups]


def run_grouped(
    run: Callable[[list[str]], Result], texts: list[str], lengths: list[int], overhead: int, max_rows: int
) -> Result:
    """``run(texts)`` in length groups, results pasted back in input order."""
    groups = length_groups(lengths, overhead, max_rows)
    if len(groups) <= 1:
        return run(texts)
    parts = [(group, run([texts[i] for i in group])) for group in groups]
    return paste(parts, len(texts))


def paste(parts: list[tuple[list[int], Result]], n: int) -> Result:
    windows = [0] * n
    tokens = [0] * n
    for group, result in parts:
        for row, i in enumerate(group):
            windows[i] = result.windows[row]
            tokens[i] = result.tokens[row]
    first = parts[0][1]
    if isinstance(first, EmbedResult):
        vectors = np.empty((n, first.vectors.shape[1]), dtype=first.vectors.dtype)
        for group, result in parts:
            vectors[group] = result.vectors  # type: ignore[union-attr]
        return EmbedResult(vectors, windows, tokens)
    predictions: list[Any] = [None] * n
    for group, result in parts:
        for row, i in enumerate(group):
            predictions[i] = result.predictions[row]  # type: ignore[union-attr]
    return FillMaskResult(predictions, windows, tokens)


def split(result: Result, sizes: list[int]) -> list[Result]:
    """Cut a merged result into consecutive per-job results of ``sizes`` texts."""
    out: list[Result] = []
    start = 0
    for n in sizes:
        end = start + n
        if isinstance(result, EmbedResult):
            out.append(EmbedResult(result.vectors[start:end], result.windows[start:end], result.tokens[start:end]))
        else:
            out.append(
                FillMaskResult(result.predictions[start:end], result.windows[start:end], result.tokens[start:end])
            )
        start = end
    return out
