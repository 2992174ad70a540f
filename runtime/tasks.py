"""Tasks and heads: what ``prepare`` cuts, what ``run`` computes per window, what ``finish`` returns.

A *task* (``TASKS``) turns one tokenized item into windows and turns the windows' outputs back into results.
A *head* (``HEADS``) is what the run stage computes for a window (a pooled vector, the logits at its masks);
windows of different requests and even different tasks share batches when their heads match. A new task is
one :func:`register` call (plus a head, if it needs a new graph output); the server, ``clinbert score`` and the
CLI only pass its name and options through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import fillmask
from .errors import InputError, NoMaskHeadError
from .pooling import POOLINGS, combine_windows, l2_normalize, pool
from .schema import (
    ATTENTION_MASK,
    FEATURE_EXTRACTION,
    INPUT_IDS,
    LAST_HIDDEN_STATE,
    MASK_LOGITS,
    MASK_POSITIONS,
    MEAN_POOLED,
)
from .windows import Window, check_direction, check_long_text, check_text, default_overlap, embed_item, mask_item

if TYPE_CHECKING:
    from .engine import Engine
    from .model import ClinicalBert

# The graph's tensor names (the bundle format's contract).
HIDDEN_OUTPUT = LAST_HIDDEN_STATE
LOGITS_OUTPUT = MASK_LOGITS
MASK_INPUT = MASK_POSITIONS
POOLED_OUTPUT = MEAN_POOLED


# ------------------------------------------------------------------------------------------------- options
def check_top_k(top_k: object, *, name: str = "top_k", limit: int | None = None) -> int:
    """The one ``top_k`` check: a positive integer, at most ``limit`` when one is set (the server's)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"{name} must be a positive integer; got {top_k!r}")
    if limit is not None and top_k > limit:
        raise InputError(f"{name} must be at most {limit}")
    return top_k


@dataclass(frozen=True)
class EmbedOptions:
    """``pooling``: "mean" | "cls" | "max"; ``long_text``: "chunk" | "truncate" | "error"; ``overlap``: tokens
    shared by consecutive windows (None: follows the window, see ``windows.default_overlap``);
    ``truncation_direction``: which end "truncate" keeps ("right": the start, "left": the end)."""

    pooling: str = "mean"
    normalize: bool = True
    long_text: str = "chunk"
    overlap: int | None = None
    truncation_direction: str = "right"


@dataclass(frozen=True)
class TokenOptions:
    """Token-level vectors (the encoder's last hidden state, special tokens included, not normalized) of one
    window per text: ``long_text`` is "truncate" or "error" (a text's tokens cannot be combined over windows)."""

    long_text: str = "error"
    truncation_direction: str = "right"


@dataclass(frozen=True)
class MaskOptions:
    """``top_k`` predictions per mask, optionally among ``targets`` words only."""

    top_k: int = 5
    targets: tuple[str, ...] | None = None
    long_text: str = "chunk"


# ------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class EmbedResult:
    """Embeddings plus per-input metadata: ``windows`` run and ``tokens`` (content tokens, before truncation)."""

    vectors: np.ndarray
    windows: list[int]
    tokens: list[int]


@dataclass(frozen=True)
class TokenEmbedResult:
    """Per input, ``float32 [tokens, hidden]`` (tokens after truncation, [CLS]/[SEP] included)."""

    vectors: list[np.ndarray]
    tokens: list[int]


@dataclass(frozen=True)
class FillMaskResult:
    predictions: list[Any]
    windows: list[int]
    tokens: list[int]


@dataclass
class Prepared:
    """The output of ``prepare``: every kept item's windows (``Window.item`` = position in ``kept``), its content
    ids, and the items refused (``errors``, each with its input ``index``; only with ``on_error="collect"``)."""

    task: str
    options: Any
    windows: list[Window]
    ids: list[np.ndarray]
    kept: list[int]
    state: list[Any] = field(default_factory=list)  # per kept item, the task's own (mask positions)
    context: Any = None  # per call, the task's own (target ids)
    errors: list[InputError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings for a library caller (sub-token targets)

    @property
    def tokens(self) -> list[int]:
        """Content tokens per kept item (before truncation; without [CLS]/[SEP])."""
        return [len(x) for x in self.ids]

    @property
    def window_tokens(self) -> int:
        return sum(len(w.ids) for w in self.windows)

    def window_counts(self) -> list[int]:
        counts = [0] * len(self.kept)
        for w in self.windows:
            counts[w.item] += 1
        return counts


# ------------------------------------------------------------------------------------------------- heads
class Head(Protocol):
    def run(self, engine: Engine, feed: dict[str, np.ndarray], windows: Sequence[Window]) -> list[np.ndarray]:
        """One output per window of the batch ``feed`` was built from."""
        ...


@dataclass(frozen=True)
class PoolHead:
    """A pooled, not normalized, vector per window (mean pooling in the graph when the bundle has it)."""

    pooling: str

    def run(self, engine: Engine, feed: dict[str, np.ndarray], windows: Sequence[Window]) -> list[np.ndarray]:
        if self.pooling == "mean" and POOLED_OUTPUT in engine.output_names:
            (pooled,) = engine.run([POOLED_OUTPUT], feed)
        else:
            (hidden,) = engine.run([HIDDEN_OUTPUT], feed)
            pooled = pool(hidden, feed[ATTENTION_MASK], self.pooling)
        return list(pooled.astype(np.float32, copy=False))


class MaskLogitsHead:
    """Logits ``[masks_in_window, vocab]`` per window; the MLM head runs on masked positions only."""

    def run(self, engine: Engine, feed: dict[str, np.ndarray], windows: Sequence[Window]) -> list[np.ndarray]:
        width = feed[INPUT_IDS].shape[1]
        flat = [row * width + p for row, w in enumerate(windows) for p in w.masks]
        feed[MASK_INPUT] = np.asarray(flat, dtype=np.int64)
        (logits,) = engine.run([LOGITS_OUTPUT], feed)
        out, offset = [], 0
        for w in windows:
            out.append(logits[offset : offset + len(w.masks)])
            offset += len(w.masks)
        return out


class HiddenHead:
    """The last hidden state of each window's own tokens (padding dropped), ``[len(window), hidden]``."""

    def run(self, engine: Engine, feed: dict[str, np.ndarray], windows: Sequence[Window]) -> list[np.ndarray]:
        (hidden,) = engine.run([HIDDEN_OUTPUT], feed)
        return [hidden[row, : len(w.ids)].astype(np.float32, copy=False) for row, w in enumerate(windows)]


HEADS: dict[str, Head] = {f"pool:{p}": PoolHead(p) for p in POOLINGS}
HEADS[MASK_LOGITS] = MaskLogitsHead()
HEADS["hidden"] = HiddenHead()


# ------------------------------------------------------------------------------------------------- tasks
class Task(Protocol):
    @property
    def options_type(self) -> type:
        """The task's options dataclass (its defaults are the task's defaults)."""
        ...

    def supports(self, model: ClinicalBert) -> bool:
        """Whether the loaded bundle can run this task at all (has the head / graph output it needs)."""
        ...

    def begin(self, model: ClinicalBert, options: Any) -> tuple[Any, list[str]]:
        """Check the options and the model once per call; return the call's context and notes."""
        ...

    def check_item(self, index: int, item: object) -> Any:
        """One input item, checked (a text for most tasks; a text or a pair for text classification)."""
        ...

    def encode(self, model: ClinicalBert, items: list[Any]) -> list[tuple[np.ndarray, Any]]:
        """Checked items → (content ids, the task's per-item data, e.g. offsets), tokenized in one batch."""
        ...

    def windows(
        self, model: ClinicalBert, index: int, ids: np.ndarray, options: Any, data: Any
    ) -> tuple[list[Window], Any]:
        """One item's windows and per-item state; raises per-item errors carrying ``index``."""
        ...

    def finish(self, model: ClinicalBert, prepared: Prepared, outputs: Sequence[np.ndarray]) -> Any:
        """Results of the kept items, in input order, from one output per window."""
        ...


def text_windows(
    model: ClinicalBert, index: int, ids: np.ndarray, long_text: str, overlap: int, direction: str, head: str
) -> list[Window]:
    """``ids`` cut into the model's windows (``windows.embed_item``), each computing ``head``."""
    tok = model.bundle.tokenizer
    wins = embed_item(
        index,
        ids,
        max_length=model.max_length,
        cls_id=tok.cls_token_id,
        sep_id=tok.sep_token_id,
        long_text=long_text,
        overlap=overlap,
        direction=direction,
    )
    for w in wins:
        w.head = head
    return wins


class TextItems:
    """Items are single texts, tokenized to content ids (no per-item data)."""

    def check_item(self, index: int, item: object) -> Any:
        return check_text(index, item)

    def encode(self, model: ClinicalBert, items: list[Any]) -> list[tuple[np.ndarray, Any]]:
        return [(ids, None) for ids in model.tokenize(items)]


class EmbedTask(TextItems):
    options_type: type = EmbedOptions

    def supports(self, model: ClinicalBert) -> bool:
        return True

    def begin(self, model: ClinicalBert, options: EmbedOptions) -> tuple[Any, list[str]]:
        if options.pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {', '.join(POOLINGS)}; got {options.pooling!r}")
        check_long_text(options.long_text)
        check_direction(options.truncation_direction)
        return None, []

    def windows(
        self, model: ClinicalBert, index: int, ids: np.ndarray, options: EmbedOptions, data: Any = None
    ) -> tuple[list[Window], Any]:
        overlap = default_overlap(model.max_length) if options.overlap is None else options.overlap
        head = f"pool:{options.pooling}"
        return text_windows(model, index, ids, options.long_text, overlap, options.truncation_direction, head), None

    def finish(self, model: ClinicalBert, prepared: Prepared, outputs: Sequence[np.ndarray]) -> EmbedResult:
        options: EmbedOptions = prepared.options
        n = len(prepared.kept)
        vectors = np.empty((n, model.hidden_size), dtype=np.float32)
        counts = [0] * n
        start = 0
        windows = prepared.windows
        for item in range(n):
            end = start
            while end < len(windows) and windows[end].item == item:
                end += 1
            weights = np.array([w.weight for w in windows[start:end]], dtype=np.float64)
            vectors[item] = combine_windows(np.stack(outputs[start:end]), weights, options.pooling)
            counts[item] = end - start
            start = end
        if options.normalize:
            vectors = l2_normalize(vectors)
        return EmbedResult(vectors=vectors, windows=counts, tokens=prepared.tokens)


class TokenEmbedTask(TextItems):
    options_type: type = TokenOptions

    def supports(self, model: ClinicalBert) -> bool:
        return HIDDEN_OUTPUT in model.engine.output_names

    def begin(self, model: ClinicalBert, options: TokenOptions) -> tuple[Any, list[str]]:
        if options.long_text not in ("truncate", "error"):
            raise InputError(f"long_text must be 'truncate' or 'error' for token vectors; got {options.long_text!r}")
        check_direction(options.truncation_direction)
        return None, []

    def windows(
        self, model: ClinicalBert, index: int, ids: np.ndarray, options: TokenOptions, data: Any = None
    ) -> tuple[list[Window], Any]:
        return text_windows(model, index, ids, options.long_text, 0, options.truncation_direction, "hidden"), None

    def finish(self, model: ClinicalBert, prepared: Prepared, outputs: Sequence[np.ndarray]) -> TokenEmbedResult:
        return TokenEmbedResult(vectors=list(outputs), tokens=prepared.tokens)  # one window per item


class FillMaskTask(TextItems):
    options_type: type = MaskOptions

    def supports(self, model: ClinicalBert) -> bool:
        return model.has_mlm_head

    def begin(self, model: ClinicalBert, options: MaskOptions) -> tuple[Any, list[str]]:
        if not model.has_mlm_head:
            task = model.bundle.task
            serves = "embeddings only" if task == FEATURE_EXTRACTION else f"{task} and embeddings"
            raise NoMaskHeadError(
                f"bundle {model.bundle.model_id} is a {task} bundle without a masked-LM head: it serves {serves}"
            )
        check_top_k(options.top_k)
        check_long_text(options.long_text)
        return fillmask.resolve_targets(model.tokenizer, options.targets)

    def windows(
        self, model: ClinicalBert, index: int, ids: np.ndarray, options: MaskOptions, data: Any = None
    ) -> tuple[list[Window], Any]:
        tok = model.bundle.tokenizer
        wins, where = mask_item(
            index,
            ids,
            max_length=model.max_length,
            cls_id=tok.cls_token_id,
            sep_id=tok.sep_token_id,
            mask_id=tok.mask_token_id,
            long_text=options.long_text,
        )
        for w in wins:
            w.head = MASK_LOGITS
        return wins, where

    def finish(self, model: ClinicalBert, prepared: Prepared, outputs: Sequence[np.ndarray]) -> FillMaskResult:
        tok = model.bundle.tokenizer
        positions: list[np.ndarray] = prepared.state
        per_item: list[np.ndarray] = [np.empty((len(p), 0), dtype=np.float32) for p in positions]
        for win, logits in zip(prepared.windows, outputs, strict=True):
            if per_item[win.item].shape[1] == 0:
                per_item[win.item] = np.empty((len(positions[win.item]), logits.shape[1]), dtype=np.float32)
            per_item[win.item][win.mask_ordinals] = logits
        predictions = []
        for item, content in enumerate(prepared.ids):
            scores, top_ids = fillmask.top_predictions(per_item[item], prepared.options.top_k, prepared.context)
            full = np.concatenate(([tok.cls_token_id], content, [tok.sep_token_id]))
            predictions.append(
                fillmask.format_text(model.tokenizer, full, positions[item] + 1, scores, top_ids, tok.pad_token_id)
            )
        return FillMaskResult(predictions=predictions, windows=prepared.window_counts(), tokens=prepared.tokens)


TASKS: dict[str, Task] = {}


def register(name: str, task: Task) -> None:
    """Make ``task`` available to ``ClinicalBert.prepare`` (and so to the server, score and the CLI) as ``name``."""
    TASKS[name] = task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}; got {name!r}")
    return TASKS[name]


def supported(name: str, model: ClinicalBert) -> bool:
    """Whether task ``name`` is registered and the loaded bundle can run it (what decides, e.g., whether the
    server's route for it answers or says "not applicable to this bundle")."""
    return name in TASKS and TASKS[name].supports(model)


def default_options(name: str) -> Any:
    return get_task(name).options_type()


register("embed", EmbedTask())
register("fill-mask", FillMaskTask())
register("token-embeddings", TokenEmbedTask())

__all__ = [
    "HEADS",
    "TASKS",
    "EmbedOptions",
    "EmbedResult",
    "FillMaskResult",
    "MaskOptions",
    "Prepared",
    "TokenEmbedResult",
    "TokenOptions",
    "check_top_k",
    "register",
    "supported",
]
