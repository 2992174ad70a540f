"""Length-aware batching: group rows of similar length, cut by a token budget, restore input order afterwards.

On CPU, padding costs as much as real tokens, so a batch of short sentences with one long one wastes most of
its compute. ``plan_batches`` splits rows (sorted by length) into groups minimising
``sum(call_overhead + rows x longest row)``, an exact dynamic programme, subject to the token budget and a
row cap. On CUDA a call costs more than padding does, so the overhead is set high and batches stay large.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The fixed cost of one inference call, in padded tokens' worth of compute, by device (measured on CPU with
#: BERT-base int8; on CUDA a launch-bound call is worth thousands of tokens).
CALL_OVERHEAD_TOKENS = {"cpu": 48, "cuda": 8192}


def plan_batches(
    lengths: Sequence[int], token_budget: int, max_batch: int, call_overhead: int = CALL_OVERHEAD_TOKENS["cpu"]
) -> list[list[int]]:
    """Group indices into batches of similar length.

    Each batch's padded size (rows x longest row) stays within ``token_budget`` (a row longer than the budget
    gets a batch of its own) and it has at most ``max_batch`` rows. Among such groupings of the rows sorted by
    length, the one with the least ``call_overhead + padded size`` summed over batches is chosen.
    """
    if token_budget < 1 or max_batch < 1 or call_overhead < 0:
        raise ValueError("token_budget and max_batch must be positive, call_overhead non-negative")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ordered = [lengths[i] for i in order]
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = ordered[end - 1]
        for start in range(end - 1, max(0, end - max_batch) - 1, -1):
            rows = end - start
            if rows > 1 and rows * longest > token_budget:
                break
            cost = best[start] + call_overhead + rows * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches: list[list[int]] = []
    end = n
    while end > 0:
        batches.append(order[cut[end] : end][::-1])  # longest first within a batch
        end = cut[end]
    return batches


def pad_rows(rows: Sequence[Sequence[int] | np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 ``[len(rows), longest]``: rows left-aligned, padded with ``pad_id``."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask
