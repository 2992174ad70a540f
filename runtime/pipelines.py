"""What ``ClinicalBert.token_classification``, ``text_classification`` and ``rerank`` return: the shapes of
transformers' ``pipeline("token-classification")`` and ``pipeline("text-classification")``, and a
cross-encoder ranking. The tasks themselves live in ``classify``; these functions check the call's arguments,
run the three stages and shape the results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .classify import ClassifyOptions, ClassifyResult, TokenOptions, TokenResult, check_aggregation, require_task
from .errors import InputError, TaskNotServedError
from .schema import TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION

if TYPE_CHECKING:
    from .model import ClinicalBert

#: ``top_k``'s default: the pipeline's legacy shape (the best label as a dict per input).
LEGACY_TOP_K = "legacy"


def ignore_tuple(ignore_labels: Sequence[str] | None) -> tuple[str, ...] | None:
    if ignore_labels is None:
        return None
    if isinstance(ignore_labels, str) or not all(isinstance(x, str) for x in ignore_labels):
        raise InputError("ignore_labels must be a list of label names")
    return tuple(ignore_labels)


def token_classification(
    model: ClinicalBert,
    texts: str | Sequence[str],
    aggregation_strategy: str = "none",
    ignore_labels: Sequence[str] | None = None,
    stride: int | None = None,
    long_text: str = "chunk",
) -> Any:
    """For one text, its list of entities; for a list of texts, one list per text (the pipeline's shapes)."""
    options = TokenOptions(check_aggregation(aggregation_strategy), ignore_tuple(ignore_labels), stride, long_text)
    result: TokenResult = model.process(texts, TOKEN_CLASSIFICATION, options)
    return result.entities[0] if isinstance(texts, str) else result.entities


def check_top_k(top_k: object, num_labels: int) -> int | None:
    """``top_k``: an integer from 1 to the number of labels, or None (every label)."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_labels:
        raise InputError(
            f"top_k must be an integer from 1 to {num_labels} (the number of labels) or None; got {top_k!r}"
        )
    return top_k


def ranked(scores: np.ndarray, labels: Sequence[str], top_k: int | None) -> list[dict[str, Any]]:
    """Every label with its score, best first (ties in label order), the first ``top_k``."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    rows = [{"label": labels[i], "score": float(scores[i])} for i in order]
    return rows if top_k is None else rows[:top_k]


def text_classification(
    model: ClinicalBert,
    inputs: Any,
    top_k: int | str | None = LEGACY_TOP_K,
    function_to_apply: str | None = None,
    long_text: str = "truncate",
    truncation_direction: str = "right",
) -> Any:
    """Like ``pipeline("text-classification")``. ``top_k`` left out: the best label per input as a dict (a list
    of one dict for a single string, as the pipeline returns); an integer or None: per input the ``top_k`` (None:
    all) labels, best first. Inputs: a text, a ``{"text", "text_pair"}`` pair, or a list of those (pairs may
    also be 2-tuples)."""
    head = require_task(model, TEXT_CLASSIFICATION)
    legacy = isinstance(top_k, str) and top_k == LEGACY_TOP_K
    k = None if legacy else check_top_k(top_k, len(head.labels))
    single = isinstance(inputs, str | dict)
    items = [inputs] if single else inputs
    options = ClassifyOptions(function_to_apply, long_text, truncation_direction)
    result: ClassifyResult = model.process(items, TEXT_CLASSIFICATION, options)
    out: list[Any] = []
    for scores in result.scores:
        if legacy:
            best = int(scores.argmax())
            out.append({"label": result.labels[best], "score": float(scores[best])})
        else:
            out.append(ranked(scores, result.labels, k))
    if not single:
        return out
    return [out[0]] if legacy and isinstance(inputs, str) else out[0]


def is_reranker(model: ClinicalBert) -> bool:
    """The one test of "this bundle reranks": a text-classification head with a single logit (a cross-encoder).
    It decides ``rerank``, whether the server serves TEI's ``/rerank``, and TEI's ``model_type`` in ``/info``."""
    head = model.bundle.manifest.head
    return model.bundle.task == TEXT_CLASSIFICATION and head is not None and len(head.labels) == 1


def check_reranker(model: ClinicalBert) -> None:
    head = require_task(model, TEXT_CLASSIFICATION)
    if not is_reranker(model):
        raise TaskNotServedError(
            f"bundle {model.bundle.model_id} is a text-classification bundle with {len(head.labels)} labels: "
            "rerank needs a one-logit cross-encoder (a reranker)"
        )


def rerank_scores(
    model: ClinicalBert,
    query: object,
    texts: object,
    raw_scores: bool = False,
    long_text: str = "truncate",
    truncation_direction: str = "right",
) -> np.ndarray:
    """One score per text (sigmoid of the logit; the logit itself with ``raw_scores``), in input order."""
    check_reranker(model)
    if not isinstance(query, str) or not query.strip():
        raise InputError("query must be a non-empty text")
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise InputError("texts must be a non-empty list of texts")
    options = ClassifyOptions("none" if raw_scores else "sigmoid", long_text, truncation_direction)
    result: ClassifyResult = model.process([(query, t) for t in texts], TEXT_CLASSIFICATION, options)
    return result.scores[:, 0]


def rerank(model: ClinicalBert, query: object, texts: object, raw_scores: bool = False) -> list[dict[str, Any]]:
    """``[{"index", "score"}]`` for every text, best first (ties in input order)."""
    scores = rerank_scores(model, query, texts, raw_scores)
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    return [{"index": i, "score": float(scores[i])} for i in order]
