"""Fine-tuned derivatives: the token-classification and text-classification tasks and the classifier head.

Registered with ``tasks.register`` like the base tasks, so ``prepare``/``run``/``finish``, the server's batcher
and ``clinbert score`` run them unchanged:

- ``token-classification``: a note is tokenized once (ids and character offsets); a note longer than the window
  is cut into windows overlapping by ``stride`` tokens, each token's logits are taken from the window in which
  it is most central, and entities come from the whole note's token table (``entities.py``), so their offsets
  are into the original note and none is lost or doubled at a seam;
- ``text-classification``: a text or a pair (``[CLS] a [SEP] b [SEP]``, segment ids 1 for ``b``), truncated or
  refused when longer than the window; the result is the scored logits, formatted by the callers (pipeline,
  TEI ``/predict``, rerank).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import entities as ent
from .errors import InputError, TaskNotServedError
from .schema import LOGITS, SCORE_FUNCTIONS, TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION, HeadInfo
from .tasks import HEADS, Prepared, register
from .windows import Window, check_text, default_overlap, fit

if TYPE_CHECKING:
    from .engine import Engine
    from .model import ClinicalBert

TOKEN_LONG_TEXT = ("chunk", "truncate", "error")
TEXT_LONG_TEXT = ("truncate", "error")
DIRECTIONS = ("right", "left")


# ------------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class TokenOptions:
    """``aggregation_strategy``: "none" | "simple" | "first" | "average" | "max" (as the pipeline's);
    ``ignore_labels``: None = the bundle's default ("O" and pseudo-labels such as X); ``stride``: tokens shared
    by consecutive windows of a long note (None: follows the window); ``long_text``: "chunk" | "truncate" |
    "error"."""

    aggregation_strategy: str = "none"
    ignore_labels: tuple[str, ...] | None = None
    stride: int | None = None
    long_text: str = "chunk"


@dataclass(frozen=True)
class ClassifyOptions:
    """``function_to_apply``: "softmax" | "sigmoid" | "none" | None (the bundle's default, chosen from
    ``problem_type`` and the number of labels as the pipeline does); ``long_text``: "truncate" | "error";
    ``truncation_direction``: which end of a too-long text (the longer text of a pair) is cut."""

    function_to_apply: str | None = None
    long_text: str = "truncate"
    truncation_direction: str = "right"


@dataclass(frozen=True)
class TokenResult:
    entities: list[list[dict[str, Any]]]
    windows: list[int]
    tokens: list[int]


@dataclass(frozen=True)
class ClassifyResult:
    """``scores [n, labels]`` after ``function``; ``labels`` by id."""

    scores: np.ndarray
    labels: tuple[str, ...]
    function: str
    windows: list[int]
    tokens: list[int]


# ------------------------------------------------------------------------------------------------- checks
def require_task(model: ClinicalBert, task: str) -> HeadInfo:
    """The bundle's head, if the bundle was exported for ``task``; else a TaskNotServedError naming its task."""
    bundle = model.bundle
    head = bundle.manifest.head
    if bundle.task != task or head is None:
        serves = "embeddings" + (" and fill-mask" if bundle.has_mlm_head else "")
        if bundle.task != task and head is not None:
            serves = f"{bundle.task} and embeddings"
        raise TaskNotServedError(
            f"bundle {bundle.model_id} is a {bundle.task} bundle: it cannot serve {task} (it serves {serves})"
        )
    return head


def check_aggregation(strategy: object) -> str:
    if not isinstance(strategy, str) or strategy.lower() not in ent.AGGREGATIONS:
        raise InputError(f"aggregation_strategy must be one of {', '.join(ent.AGGREGATIONS)}; got {strategy!r}")
    return strategy.lower()


def check_function(function: object) -> str | None:
    if function is None:
        return None
    if not isinstance(function, str) or function.lower() not in SCORE_FUNCTIONS:
        raise InputError(f"function_to_apply must be one of {', '.join(SCORE_FUNCTIONS)} or None; got {function!r}")
    return function.lower()


def check_pair(index: int, item: object) -> str | tuple[str, str]:
    """A text, or a pair: ``{"text", "text_pair"}`` or a 2-tuple of texts. An empty member is an error."""
    if isinstance(item, str):
        return check_text(index, item)
    if isinstance(item, dict):
        unknown = set(item) - {"text", "text_pair"}
        if unknown or "text" not in item:
            raise InputError.at(index, 'must be a text or {"text": ..., "text_pair": ...}')
        if "text_pair" not in item:
            return check_text(index, item["text"])
        first, second = item["text"], item["text_pair"]
    elif isinstance(item, tuple | list) and len(item) == 2:
        first, second = item
    else:
        raise InputError.at(index, f"is {type(item).__name__}: give a text or a pair of texts")
    for member, name in ((first, "text"), (second, "text_pair")):
        if not isinstance(member, str) or not member.strip():
            raise InputError.at(index, f"has an empty or non-string {name} (both members of a pair are needed)")
    return check_text(index, first), check_text(index, second)


# ------------------------------------------------------------------------------------------------- head
class LogitsHead:
    """The classifier's logits per window: ``[content tokens, labels]`` (token classification, without
    [CLS]/[SEP]) or ``[labels]`` (text classification)."""

    def run(self, engine: Engine, feed: dict[str, np.ndarray], windows: Sequence[Window]) -> list[np.ndarray]:
        (logits,) = engine.run([LOGITS], feed)
        if logits.ndim == 3:
            return [np.array(logits[i, 1 : len(w.ids) - 1]) for i, w in enumerate(windows)]
        return [np.array(row) for row in logits]


HEADS[LOGITS] = LogitsHead()


def _row(model: ClinicalBert, content: np.ndarray) -> np.ndarray:
    tok = model.bundle.tokenizer
    return np.concatenate(([tok.cls_token_id], content, [tok.sep_token_id])).astype(np.int64)


# ------------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class _TokenState:
    table: ent.TokenTable
    starts: np.ndarray
    lengths: np.ndarray


class TokenClassificationTask:
    def supports(self, model: ClinicalBert) -> bool:
        return model.bundle.task == TOKEN_CLASSIFICATION and model.bundle.manifest.head is not None

    options_type: type = TokenOptions

    def begin(self, model: ClinicalBert, options: TokenOptions) -> tuple[Any, list[str]]:
        head = require_task(model, TOKEN_CLASSIFICATION)
        check_aggregation(options.aggregation_strategy)
        if options.long_text not in TOKEN_LONG_TEXT:
            raise InputError(f"long_text must be one of {', '.join(TOKEN_LONG_TEXT)}; got {options.long_text!r}")
        capacity = model.max_length - 2
        if options.stride is not None and (
            isinstance(options.stride, bool)
            or not isinstance(options.stride, int)
            or not 0 <= options.stride < capacity
        ):
            raise InputError(f"stride must be an integer between 0 and {capacity - 1} tokens; got {options.stride!r}")
        ignore = head.ignore_labels if options.ignore_labels is None else options.ignore_labels
        if isinstance(ignore, str) or not all(isinstance(x, str) for x in ignore):
            raise InputError("ignore_labels must be a list of label names")
        return (head, tuple(ignore)), []

    def check_item(self, index: int, item: object) -> Any:
        return check_text(index, item)

    def encode(self, model: ClinicalBert, items: list[Any]) -> list[tuple[np.ndarray, Any]]:
        unk = model.bundle.tokenizer.unk_token_id
        out = []
        for text, e in zip(items, model.tokenizer.encode_batch(items, add_special_tokens=False), strict=True):
            ids = np.asarray(e.ids, dtype=np.int64)
            out.append((ids, ent.token_table(e.tokens, e.offsets, ids == unk, text)))
        return out

    def windows(
        self, model: ClinicalBert, index: int, ids: np.ndarray, options: TokenOptions, data: Any
    ) -> tuple[list[Window], Any]:
        capacity = model.max_length - 2
        n = len(ids)
        how = fit(index, n, capacity, options.long_text)
        if how != "chunk":
            keep = min(n, capacity)
            win = Window(index, _row(model, ids[:keep]), weight=keep, head=LOGITS)
            return [win], _TokenState(data.head(keep), np.array([0]), np.array([keep]))
        stride = default_overlap(model.max_length) if options.stride is None else options.stride
        step = capacity - stride
        starts = [*range(0, n - capacity, step), n - capacity]
        wins = [Window(index, _row(model, ids[s : s + capacity]), weight=capacity, head=LOGITS) for s in starts]
        return wins, _TokenState(data, np.asarray(starts), np.full(len(starts), capacity))

    def finish(self, model: ClinicalBert, prepared: Prepared, outputs: Sequence[np.ndarray]) -> TokenResult:
        head, ignore = prepared.context
        strategy = check_aggregation(prepared.options.aggregation_strategy)
        per_item: list[list[np.ndarray]] = [[] for _ in prepared.kept]
        for win, output in zip(prepared.windows, outputs, strict=True):
            per_item[win.item].append(output)
        decode = model.tokenizer.decoder.decode
        found = []
        for state, window_logits in zip(prepared.state, per_item, strict=True):
            n = len(state.table)
            if len(window_logits) == 1:
                merged = window_logits[0][:n]
            else:
                owner = ent.central_owner(n, state.starts, state.lengths)
                stacked = np.stack(window_logits)  # [windows, capacity, labels]
                merged = stacked[owner, np.arange(n) - state.starts[owner]]
            scores = ent.softmax(merged.astype(np.float32, copy=False))
            found.append(ent.entities(state.table, scores, head.labels, strategy, ignore, decode, head.scheme))
        return TokenResult(found, prepared.window_counts(), prepared.tokens)


class TextClassificationTask:
    def supports(self, model: ClinicalBert) -> bool:
        return model.bundle.task == TEXT_CLASSIFICATION and model.bundle.manifest.head is not None

    options_type: type = ClassifyOptions

    def begin(self, model: ClinicalBert, options: ClassifyOptions) -> tuple[Any, list[str]]:
        head = require_task(model, TEXT_CLASSIFICATION)
        function = check_function(options.function_to_apply) or head.function
        if options.long_text not in TEXT_LONG_TEXT:
            raise InputError(f"long_text must be one of {', '.join(TEXT_LONG_TEXT)}; got {options.long_text!r}")
        if str(options.truncation_direction).lower() not in DIRECTIONS:
            raise InputError(f"truncation_direction must be right or left; got {options.truncation_direction!r}")
        return (head, function), []

    def check_item(self, index: int, item: object) -> Any:
        return check_pair(index, item)

    def encode(self, model: ClinicalBert, items: list[Any]) -> list[tuple[np.ndarray, Any]]:
        flat = [t for item in items for t in ((item,) if isinstance(item, str) else item)]
        encoded = iter(model.tokenize(flat))
        out = []
        for item in items:
            first = next(encoded)
            second = None if isinstance(item, str) else next(encoded)
            ids = first if second is None else np.concatenate((first, second))
            out.append((ids, (first, second)))
        return out

    def windows(
        self, model: ClinicalBert, index: int, ids: np.ndarray, options: ClassifyOptions, data: Any
    ) -> tuple[list[Window], Any]:
        first, second = data
        tok = model.bundle.tokenizer
        capacity = model.max_length - (2 if second is None else 3)
        if fit(index, len(ids), capacity, options.long_text) != "fits":
            first, second = _truncate(first, second, capacity, str(options.truncation_direction).lower())
        if second is None:
            row = _row(model, first)
            types = None
        else:
            row = np.concatenate(([tok.cls_token_id], first, [tok.sep_token_id], second, [tok.sep_token_id]))
            types = np.concatenate((np.zeros(len(first) + 2), np.ones(len(second) + 1))).astype(np.int64)
        return [Window(index, row.astype(np.int64), weight=len(row), head=LOGITS, type_ids=types)], None

    def finish(self, model: ClinicalBert, prepared: Prepared, outputs: Sequence[np.ndarray]) -> ClassifyResult:
        head, function = prepared.context
        logits = np.stack(outputs).astype(np.float32, copy=False) if outputs else np.empty((0, len(head.labels)))
        scores = ent.apply_function(logits, function)
        return ClassifyResult(scores, head.labels, function, prepared.window_counts(), prepared.tokens)


def _truncate(
    first: np.ndarray, second: np.ndarray | None, capacity: int, direction: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut to ``capacity`` content tokens: a single text from ``direction``; a pair longest-first."""

    def cut(ids: np.ndarray, keep: int) -> np.ndarray:
        return ids[:keep] if direction == "right" else ids[len(ids) - keep :]

    if second is None:
        return cut(first, capacity), None
    a, b = len(first), len(second)
    while a + b > capacity:
        if a > b:
            a -= 1
        else:
            b -= 1
    return cut(first, a), cut(second, b)


register(TOKEN_CLASSIFICATION, TokenClassificationTask())
register(TEXT_CLASSIFICATION, TextClassificationTask())
