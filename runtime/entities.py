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
    """The pipeline's entities for one text from per-token ``scores [n, labels]``."""
    if len(table) == 0:
        return []
    if strategy in ("none", "simple"):
        best = scores.argmax(axis=1)
        best_score = scores[np.arange(len(best)), best]
        found = [
            {
                "entity": labels[int(best[i])],
                "score": float(best_score[i]),
                "index": i + 1,
                "word": table.words[i],
                "start": int(table.offsets[i, 0]),
                "end": int(table.offsets[i, 1]),
            }
            for i in range(len(table))
        ]
        if strategy == "simple":
            found = group(found, decode, scheme)
    else:
        found = group(words(table, scores, labels, strategy, decode), decode, scheme)
    ignore = set(ignore_labels)
    return [e for e in found if e.get("entity") not in ignore and e.get("entity_group") not in ignore]


def words(
    table: TokenTable, scores: np.ndarray, labels: Sequence[str], strategy: str, decode: Decode
) -> list[dict[str, Any]]:
    """One entity per word ("first", "average" or "max"): the pipeline's ``aggregate_words``."""
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
    return [
        {
            "entity": labels[int(best[k])],
            "score": float(chosen[k, best[k]]),
            "word": decode(table.words[s:e]),
            "start": int(table.offsets[s, 0]),
            "end": int(table.offsets[e - 1, 1]),
        }
        for k, (s, e) in enumerate(zip(starts, ends, strict=True))
    ]


def _tag(label: str, scheme: str | None) -> tuple[str, str]:
    """(prefix, type) as the pipeline's ``get_tag`` splits a label; BILOU/BIOES prefixes too for those schemes."""
    prefixes = ("B", "I", *_CLOSING.get(scheme or "", ()))
    head, sep, rest = label.partition("-")
    if sep and head in prefixes:
        return head, rest
    return "I", label


def group(found: list[dict[str, Any]], decode: Decode, scheme: str | None = None) -> list[dict[str, Any]]:
    """Consecutive entities of one type merged (the pipeline's ``group_entities``; see the module doc for
    BILOU/BIOES)."""
    closing = _CLOSING.get(scheme or "", ())
    single = _SINGLE.get(scheme or "")
    groups: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    last_prefix = last_type = ""
    for entity in found:
        prefix, kind = _tag(entity["entity"], scheme)
        joins = bool(members) and kind == last_type and prefix != "B" and prefix != single
        if joins and last_prefix in closing:
            joins = False
        if members and not joins:
            groups.append(_merge(members, decode))
            members = []
        members.append(entity)
        last_prefix, last_type = prefix, kind
    if members:
        groups.append(_merge(members, decode))
    return groups


def _merge(members: list[dict[str, Any]], decode: Decode) -> dict[str, Any]:
    scores = np.asarray([m["score"] for m in members], dtype=np.float32)
    return {
        "entity_group": members[0]["entity"].split("-", 1)[-1],
        "score": float(np.nanmean(scores)),
        "word": decode([m["word"] for m in members]),
        "start": members[0]["start"],
        "end": members[-1]["end"],
    }
