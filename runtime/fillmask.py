"""Fill-mask post-processing, shaped exactly like transformers' ``pipeline("fill-mask")``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Prediction = dict[str, Any]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float64)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def resolve_targets(tokenizer: Tokenizer, targets: Sequence[str] | None) -> tuple[np.ndarray | None, list[str]]:
    """Target words to vocabulary ids, as the pipeline does: a word outside the vocabulary is replaced by its
    first sub-token; one that tokenizes to nothing is ignored. Returns the ids and notes about those cases (which
    name targets by position only): a library call warns with them, the server does not."""
    if targets is None:
        return None, []
    items = [targets] if isinstance(targets, str) else list(targets)
    if not items:
        raise InputError("targets is empty: give at least one target or leave it out")
    vocab = tokenizer.get_vocab()
    ids: list[int] = []
    notes: list[str] = []
    for i, target in enumerate(items):
        if not isinstance(target, str):
            raise InputError(f"target {i} is {type(target).__name__}, not a string")
        token_id = vocab.get(target)
        if token_id is None:
            pieces = tokenizer.encode(target, add_special_tokens=False).ids
            if not pieces:
                notes.append(f"target {i} does not tokenize to anything; ignoring it")
                continue
            token_id = pieces[0]
            notes.append(f"target {i} is not a single vocabulary token; using its first sub-token (id {token_id})")
        ids.append(token_id)
    if not ids:
        raise InputError("none of the targets maps to a vocabulary token")
    return np.array(sorted(set(ids)), dtype=np.int64), notes


def top_predictions(logits: np.ndarray, top_k: int, target_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``logits [masks, vocab]`` → (scores, token ids), each ``[masks, k]``, best first."""
    probs = softmax(logits.astype(np.float32, copy=False))
    candidates = probs if target_ids is None else probs[:, target_ids]
    k = min(top_k, candidates.shape[1])
    part = np.argpartition(-candidates, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(candidates, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    scores = np.take_along_axis(candidates, idx, axis=1)
    ids = idx if target_ids is None else target_ids[idx]
    return scores, ids


def format_text(
    tokenizer: Tokenizer,
    full_ids: np.ndarray,
    mask_positions: np.ndarray,
    scores: np.ndarray,
    ids: np.ndarray,
    pad_id: int,
) -> list[Prediction] | list[list[Prediction]]:
    """Build the pipeline's output for one text: a list of dicts (one mask) or a list per mask."""
    single = len(mask_positions) == 1
    full_ids = full_ids[full_ids != pad_id]
    result: list[list[Prediction]] = []
    for position, row_scores, row_ids in zip(mask_positions, scores, ids, strict=True):
        row: list[Prediction] = []
        for score, token in zip(row_scores.tolist(), row_ids.tolist(), strict=True):
            tokens = full_ids.copy()
            tokens[position] = token
            row.append(
                {
                    "score": float(score),
                    "token": int(token),
                    "token_str": tokenizer.decode([int(token)], skip_special_tokens=False),
                    "sequence": tokenizer.decode(tokens.tolist(), skip_special_tokens=single),
                }
            )
        result.append(row)
    return result[0] if single else result
