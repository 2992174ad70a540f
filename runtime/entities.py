"""Token-classification post-processing: per-token scores → entities, as transformers' pipeline computes them.

Pure functions over numpy arrays (no tokenizer object: the caller passes a ``decode`` function, the tokenizer's
WordPiece decoder, which is what the pipeline's ``convert_tokens_to_string`` calls). What the pipeline does,
reproduced here for ``aggregation_strategy`` "none", "simple", "first", "average" and "max":

- scores are the softmax of each token's logits; special tokens are skipped; a token is a sub-word when its
  string is longer or shorter than the text it covers (a "##" continuation); an unknown token's word is the
  text it covers;
- "none": one entity per token (``entity``, ``score``, ``index``, ``word``, ``start``, ``end``);
- "simple": per-token labels, grouped; "first"/"average"/"max": one label per word (its first token's, the
  mean of its tokens' scores, or its most confident token's), then grouped;
- grouping: a ``B-`` label starts an entity; a label of the same type continues it; the group's label is the
  label after its first ``-``, its score the mean of its members', its word the decoder's output;
- then entities whose label is in ``ignore_labels`` are dropped.

One difference, on purpose: with BILOU or BIOES labels (``scheme``), ``L-``/``E-`` close an entity and
``U-``/``S-`` are one-token entities, so ``B-DATE I-DATE L-DATE`` is one DATE (the pipeline only knows ``B-``
and ``I-`` and returns ``B-DATE I-DATE`` and ``L-DATE`` as two). For BIO and other label sets the output is
the pipeline's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

AGGREGATIONS = ("none", "simple", "first", "average", "max")
#: Prefixes that close an entity / make a one-token entity, by label scheme.
_CLOSING = {"BILOU": ("L", "U"), "BIOES": ("E", "S")}
_SINGLE = {"BILOU": "U", "BIOES": "S"}

Decode = Callable[[list[str]], str]


@dataclass(frozen=True)
class TokenTable:
    """One text's content tokens (no [CLS]/[SEP]): ``words`` (the token strings; an unknown token's is the text
    it covers), character ``offsets [n, 2]`` into the text, and ``subword [n]`` (continues the previous word)."""

    words: list[str]
    offsets: np.ndarray
    subword: np.ndarray

    def __len__(self) -> int:
        return len(self.words)

    def head(self, n: int) -> TokenTable:
        return TokenTable(self.words[:n], self.offsets[:n], self.subword[:n])


def token_table(
    tokens: Sequence[str], offsets: Sequence[tuple[int, int]], unknown: np.ndarray, text: str
) -> TokenTable:
    """The table of one encoded text (``unknown``: which tokens are the unknown token)."""
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    words = list(tokens)
    subword = np.zeros(len(words), dtype=bool)
    for i, (start, end) in enumerate(spans):
        if unknown[i]:
            words[i] = text[start:end]
        else:
            subword[i] = len(words[i]) != end - start
    return TokenTable(words, spans, subword)


# ------------------------------------------------------------------------------------------------ scores
def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed as the pipelines compute it."""
    maxes = np.max(logits, axis=-1, keepdims=True)
    shifted = np.exp(logits - maxes)
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def apply_function(logits: np.ndarray, function: str) -> np.ndarray:
    """ "softmax" | "sigmoid" | "none" over the last axis."""
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    return logits


def central_owner(n: int, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each of ``n`` content tokens, the window (by ``starts``/``lengths`` in token positions) in which it
    is most central: the largest distance to that window's nearer edge (ties: the earlier window)."""
    pos = np.arange(n)[:, None]
    left = pos - starts[None, :]
    right = (starts + lengths)[None, :] - 1 - pos
    inside = (left >= 0) & (right >= 0)
    centrality = np.where(inside, np.minimum(left, right), -1)
    return np.asarray(centrality.argmax(axis=1), dtype=np.int64)


# ------------------------------------------------------------------------------------------------ entities
def entities(
    table: TokenTable,
    scores: np.ndarray,
    labels: Sequence[str],
    strategy: str,
    ignore_labels: Sequence[str],
    decode: Decode,
    scheme: str | None = None,
) -> list[dict[str, Any]]:
    """The pipeline's entities for one text from per-token ``scores [n, labels]``. Vectorised: dictionaries
    (and decoded words) are built only for the entities returned."""
    n = len(table)
    if n == 0:
        return []
    ignore = set(ignore_labels)
    if strategy in ("none", "simple"):
        best = scores.argmax(axis=1)
        best_score = scores[np.arange(n), best]
        if strategy == "none":
            return [
                {
                    "entity": labels[int(best[i])],
                    "score": float(best_score[i]),
                    "index": i + 1,
                    "word": table.words[i],
                    "start": int(table.offsets[i, 0]),
                    "end": int(table.offsets[i, 1]),
                }
                for i in range(n)
                if labels[int(best[i])] not in ignore
            ]
        starts = np.arange(n + 1)
        unit_score, unit_label = best_score, best
    else:  # words; decoded below for the returned entities only
        starts, unit_label, unit_score = word_labels(table, scores, strategy)
    bounds = group_starts([labels[int(i)] for i in unit_label], scheme)
    sums = np.add.reduceat(unit_score.astype(np.float64), bounds[:-1]) if len(bounds) > 1 else np.zeros(0)
    found = []
    for g in range(len(bounds) - 1):
        a, b = int(bounds[g]), int(bounds[g + 1])
        name = labels[int(unit_label[a])].split("-", 1)[-1]
        if name in ignore:
            continue
        if strategy == "simple":
            pieces = table.words[a:b]
        else:
            pieces = [decode(table.words[int(starts[k]) : int(starts[k + 1])]) for k in range(a, b)]
        found.append(
            {
                "entity_group": name,
                "score": float(np.float32(sums[g] / (b - a))),
                "word": decode(list(pieces)),
                "start": int(table.offsets[int(starts[a]), 0]),
                "end": int(table.offsets[int(starts[b]) - 1, 1]),
            }
        )
    return found


def word_labels(table: TokenTable, scores: np.ndarray, strategy: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One label per word ("first", "average" or "max", the pipeline's ``aggregate_words``): the words' token
    starts (plus the end), their label ids and their scores."""
    starts = np.flatnonzero(~table.subword)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate(([0], starts))
    ends = np.append(starts[1:], len(table))
    if strategy == "first":
        chosen = scores[starts]
    elif strategy == "average":
        sums = np.add.reduceat(scores, starts, axis=0)
        chosen = (sums / (ends - starts)[:, None]).astype(scores.dtype, copy=False)
    elif strategy == "max":
        peak = scores.max(axis=1)
        rows = [int(s + np.argmax(peak[s:e])) for s, e in zip(starts, ends, strict=True)]
        chosen = scores[rows]
    else:
        raise ValueError(f"not a word aggregation: {strategy}")
    best = chosen.argmax(axis=1)
    return np.append(starts, len(table)), best, chosen[np.arange(len(best)), best]


def _tag(label: str, scheme: str | None) -> tuple[str, str]:
    """(prefix, type) as the pipeline's ``get_tag`` splits a label; BILOU/BIOES prefixes too for those schemes."""
    prefixes = ("B", "I", *_CLOSING.get(scheme or "", ()))
    head, sep, rest = label.partition("-")
    if sep and head in prefixes:
        return head, rest
    return "I", label


def group_starts(sequence: Sequence[str], scheme: str | None = None) -> np.ndarray:
    """Where each entity of a label sequence starts (plus its length at the end): the pipeline's
    ``group_entities`` — a ``B-`` or a change of type starts one — and, for BILOU/BIOES, ``L-``/``E-`` close one
    and ``U-``/``S-`` stand alone."""
    closing = _CLOSING.get(scheme or "", ())
    single = _SINGLE.get(scheme or "")
    tags = [_tag(x, scheme) for x in sequence]
    starts = [
        i
        for i, (prefix, kind) in enumerate(tags)
        if i == 0 or kind != tags[i - 1][1] or prefix == "B" or prefix == single or tags[i - 1][0] in closing
    ]
    return np.asarray([*starts, len(tags)], dtype=np.int64)
