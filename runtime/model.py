"""``ClinicalBert``: fill-mask and embeddings from a bundle, with onnxruntime, tokenizers and numpy only.

Every task runs in three stages, and every caller (the methods below, the server, ``clinbert score``) uses them:

- ``prepare(items, task, options)`` validates and tokenizes each item once and cuts it into windows; bad items
  raise (or, with ``on_error="collect"``, are set aside) with their ``index``;
- ``run(windows)`` plans length-aware batches over whatever windows it is given (one call's, or merged from
  many requests) and runs them through the :class:`~clinbert_onnx.engine.Engine`; one output per window;
- ``finish(prepared, outputs)`` pools / combines windows / decodes predictions, in input order.

Tasks and what the run stage computes for them live in ``tasks``; the engine in ``engine``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import pipelines
from .batching import CALL_OVERHEAD_TOKENS, pad_rows, plan_batches
from .bundle import Bundle, VariantInfo, open_bundle
from .engine import Engine, OrtEngine
from .errors import BundleError, InputError
from .schema import ATTENTION_MASK, INPUT_IDS, ONNXRUNTIME, OPENVINO, TOKEN_TYPE_IDS
from .session import SessionConfig, create_session
from .tasks import (
    HEADS,
    HIDDEN_OUTPUT,
    LOGITS_OUTPUT,
    MASK_INPUT,
    POOLED_OUTPUT,
    EmbedOptions,
    EmbedResult,
    FillMaskResult,
    MaskOptions,
    Prepared,
    get_task,
)
from .windows import MAX_OVERLAP, Window, as_items, check_texts

#: The default window overlap at 512 positions; smaller windows use ``windows.default_overlap(max_length)``.
DEFAULT_OVERLAP = MAX_OVERLAP
#: Padded tokens per batch and rows per batch, by device. On CPU, small batches are both faster and smaller
#: (BERT-base int8, 64 × 122-token texts, `embed`: 1024 tokens → 28 seq/s at 234 MB peak RSS; 8192 → 23 seq/s
#: at 626 MB): the activations stay in cache and ONNX Runtime's arena stays small.
DEFAULT_BUDGETS = {"cpu": (1024, 64), "cuda": (65536, 256)}

__all__ = [
    "DEFAULT_BUDGETS",
    "HIDDEN_OUTPUT",
    "LOGITS_OUTPUT",
    "MASK_INPUT",
    "POOLED_OUTPUT",
    "ClinicalBert",
    "EmbedResult",
    "FillMaskResult",
    "Prepared",
]


class ClinicalBert:
    """A loaded bundle. Thread-safe: one instance can serve concurrent callers.

    ``engine``: an :class:`~clinbert_onnx.engine.Engine` (a bare ``onnxruntime.InferenceSession`` is wrapped in
    :class:`~clinbert_onnx.engine.OrtEngine`).
    """

    def __init__(
        self,
        bundle: Bundle,
        engine: Engine | Any,
        device: str,
        variant: str,
        token_budget: int | None = None,
        max_batch: int | None = None,
        streams: int = 1,
    ) -> None:
        from tokenizers import Tokenizer

        self.bundle = bundle
        self.engine: Engine = engine if hasattr(engine, "output_names") else OrtEngine(engine, device)
        self.device = device
        self.variant = variant
        budget, rows = DEFAULT_BUDGETS[device]
        self.token_budget = token_budget or budget
        self.max_batch = max_batch or rows
        self.call_overhead = CALL_OVERHEAD_TOKENS[device]
        self.streams = streams if device == "cpu" else 1
        tok = bundle.tokenizer
        self.tokenizer = Tokenizer.from_file(str(bundle.path / tok.file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_length = tok.max_length

    @property
    def session(self) -> Any:
        """The ONNX Runtime session behind an :class:`OrtEngine` (None for another engine)."""
        return getattr(self.engine, "session", None)

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        variant: str | None = None,
        verify: bool = True,
        session_config: SessionConfig | None = None,
        token_budget: int | None = None,
        max_batch: int | None = None,
        engine: str = ONNXRUNTIME,
    ) -> ClinicalBert:
        """Open a bundle folder, verify the checksums of the files it will read, and start a session.

        ``device``: "cpu" | "cuda" | "auto". ``variant``: defaults to int8 on CPU, fp16 (else fp32) on CUDA.
        ``verify=False`` skips hashing (for trusted hot paths; the external-data check still runs).
        ``engine``: "onnxruntime" (default) | "openvino" (CPU; the ``[openvino]`` extra; default variant
        int8-static, else fp32) | "auto" (OpenVINO only where it wins: see ``engine_select``).
        """
        import onnxruntime as ort

        from .engine_select import check_engine
        from .session import resolve_device

        check_engine(engine)
        bundle = open_bundle(path)
        target = resolve_device(device, ort.get_available_providers())
        if engine != ONNXRUNTIME:
            from .engine_select import resolve_engine

            engine = resolve_engine(engine, bundle.variants, variant, device if engine == OPENVINO else target)
        if engine == OPENVINO:
            return cls._load_openvino(bundle, variant, verify, session_config, token_budget, max_batch)
        chosen = bundle.variant(variant) if variant else _default_variant(bundle, target)
        wait = _check_variant(bundle, chosen, verify, bundle.tokenizer.file)
        session, actual = create_session(bundle.path / chosen.file, device, session_config or SessionConfig())
        wait()
        if variant is None and actual != target:
            # auto fell back to CPU: use the CPU variant rather than a GPU one on CPU
            fallback = _default_variant(bundle, actual)
            if fallback.name != chosen.name:
                wait = _check_variant(bundle, fallback, verify)
                chosen = fallback
                session, actual = create_session(bundle.path / chosen.file, actual, session_config or SessionConfig())
                wait()
        streams = (session_config or SessionConfig()).streams
        return cls(bundle, OrtEngine(session, actual), actual, chosen.name, token_budget, max_batch, streams)

    @classmethod
    def _load_openvino(
        cls,
        bundle: Bundle,
        variant: str | None,
        verify: bool,
        session_config: SessionConfig | None,
        token_budget: int | None,
        max_batch: int | None,
    ) -> ClinicalBert:
        from .engine_select import openvino_variant
        from .openvino_engine import OpenVinoEngine, settings_for

        chosen = openvino_variant(bundle.variants, variant)
        wait = _check_variant(bundle, chosen, verify, bundle.tokenizer.file)
        config = session_config or SessionConfig()
        settings = settings_for(config.intra_op_threads, bundle.tokenizer.max_length, config.streams)
        engine = OpenVinoEngine.load(bundle.path / chosen.file, settings)
        wait()
        return cls(bundle, engine, "cpu", chosen.name, token_budget, max_batch, config.streams)

    # ----------------------------------------------------------------------------------------------- info
    @property
    def hidden_size(self) -> int:
        return self.bundle.hidden_size

    @property
    def has_mlm_head(self) -> bool:
        return self.bundle.has_mlm_head

    @property
    def name(self) -> str:
        """The hub id the bundle was exported from, else the bundle folder's name (never a local path): what the
        server reports as its model."""
        source = self.bundle.manifest.source.model_id
        return str(source) if source else Path(self.bundle.path).resolve().name

    def info(self) -> dict[str, Any]:
        quality = self.bundle.variants[self.variant].quality
        return {
            "model_id": self.bundle.model_id,
            "revision": self.bundle.manifest.source.revision,
            "variant": self.variant,
            "device": self.device,
            "engine": getattr(self.engine, "name", ONNXRUNTIME),
            "hidden_size": self.hidden_size,
            "max_length": self.max_length,
            "fill_mask": self.has_mlm_head,
            "task": self.bundle.task,
            "labels": list(head.labels) if (head := self.bundle.manifest.head) else None,
            "quality": quality.to_dict() if quality else None,
        }

    # ----------------------------------------------------------------------------------------------- stage 1
    def tokenize(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Content token ids (no special tokens) for already-validated texts."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Tokens per text including [CLS] and [SEP] (as OpenAI-style usage counts them)."""
        return [len(ids) + 2 for ids in self.tokenize(check_texts(texts))]

    def prepare(self, items: object, task: str = "embed", options: Any = None, *, on_error: str = "raise") -> Prepared:
        """Stage 1: validate and tokenize each item once, cut it into windows.

        ``task``: a name in ``tasks.TASKS`` ("embed", "fill-mask"); ``options``: that task's options object
        (None: its defaults). A bad item raises an InputError carrying its ``index``; with
        ``on_error="collect"`` it is recorded in ``Prepared.errors`` instead and the other items go on.
        """
        spec = get_task(task)
        options = spec.options_type() if options is None else options
        if not isinstance(options, spec.options_type):
            raise InputError(f"options for {task!r} must be {spec.options_type.__name__}")
        if on_error not in ("raise", "collect"):
            raise InputError(f"on_error must be 'raise' or 'collect'; got {on_error!r}")
        context, notes = spec.begin(self, options)
        errors: list[InputError] = []
        texts: list[Any] = []
        valid: list[int] = []
        for index, item in enumerate(as_items(items)):
            try:
                texts.append(spec.check_item(index, item))
                valid.append(index)
            except InputError as exc:
                if on_error == "raise":
                    raise
                errors.append(exc)
        prepared = Prepared(task, options, [], [], [], context=context, errors=errors, notes=notes)
        for index, (ids, data) in zip(valid, spec.encode(self, texts), strict=True):
            try:
                windows, state = spec.windows(self, index, ids, options, data)
            except InputError as exc:
                if on_error == "raise" or exc.index is None:
                    raise
                errors.append(exc)
                continue
            for w in windows:
                w.item = len(prepared.kept)
            prepared.windows.extend(windows)
            prepared.ids.append(ids)
            prepared.kept.append(index)
            prepared.state.append(state)
        errors.sort(key=lambda e: e.index or 0)
        return prepared

    # ----------------------------------------------------------------------------------------------- stage 2
    def _feed(self, rows: Sequence[Window]) -> dict[str, np.ndarray]:
        ids, attention = pad_rows([r.ids for r in rows], self.bundle.tokenizer.pad_token_id)
        feed: dict[str, np.ndarray] = {INPUT_IDS: ids, ATTENTION_MASK: attention}
        inputs = self.engine.input_names
        if TOKEN_TYPE_IDS in inputs:
            types = np.zeros_like(ids)
            for i, r in enumerate(rows):
                if r.type_ids is not None:
                    types[i, : len(r.type_ids)] = r.type_ids
            feed[TOKEN_TYPE_IDS] = types
        if MASK_INPUT in inputs:
            feed[MASK_INPUT] = np.zeros(0, dtype=np.int64)
        return feed

    def run(self, windows: Sequence[Window]) -> list[np.ndarray]:
        """Stage 2: one output per window, in window order. Windows are grouped by head, then cut into batches
        of similar length within the token budget (``batching.plan_batches``), once over all of them; with
        ``streams`` above 1, that many batches run at once."""
        out: list[np.ndarray] = [np.empty(0)] * len(windows)
        by_head: dict[str, list[int]] = {}
        for i, w in enumerate(windows):
            by_head.setdefault(w.head, []).append(i)
        jobs: list[tuple[str, list[int]]] = []
        for name, members in by_head.items():
            lengths = [len(windows[i].ids) for i in members]
            for batch in plan_batches(lengths, self.token_budget, self.max_batch, self.call_overhead):
                jobs.append((name, [members[j] for j in batch]))

        def one(job: tuple[str, list[int]]) -> None:
            name, indices = job
            rows = [windows[i] for i in indices]
            for i, value in zip(indices, HEADS[name].run(self.engine, self._feed(rows), rows), strict=True):
                out[i] = value

        if self.streams > 1 and len(jobs) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.streams, thread_name_prefix="clinbert-stream") as pool:
                list(pool.map(one, jobs))
        else:
            for job in jobs:
                one(job)
        return out

    # ----------------------------------------------------------------------------------------------- stage 3
    def finish(self, prepared: Prepared, outputs: Sequence[np.ndarray]) -> Any:
        """Stage 3: the task's results for ``prepared``'s kept items, in input order."""
        return get_task(prepared.task).finish(self, prepared, outputs)

    def process(self, items: object, task: str, options: Any = None) -> Any:
        """All three stages for one call; notes (e.g. about sub-token targets) become warnings."""
        prepared = self.prepare(items, task, options)
        for note in prepared.notes:
            warnings.warn(note, UserWarning, stacklevel=3)
        return self.finish(prepared, self.run(prepared.windows))

    # ----------------------------------------------------------------------------------------------- tasks
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        pooling: str = "mean",
        normalize: bool = True,
        long_text: str = "chunk",
        overlap: int | None = None,
    ) -> EmbedResult:
        """Embeddings with metadata. See :meth:`embed`."""
        result: EmbedResult = self.process(texts, "embed", EmbedOptions(pooling, normalize, long_text, overlap))
        return result

    def embed(
        self,
        texts: str | Sequence[str],
        *,
        pooling: str = "mean",
        normalize: bool = True,
        long_text: str = "chunk",
        overlap: int | None = None,
    ) -> np.ndarray:
        """``float32 [n, hidden]`` embeddings in input order.

        ``pooling``: "mean" (attention-masked), "cls" or "max". ``long_text``: "chunk" (overlapping windows of
        ``max_length`` tokens, ``overlap`` tokens shared, combined by tokens contributed), "truncate" or "error".
        ``overlap``: None follows the window (64 tokens at 512 positions, a quarter of smaller windows).
        """
        return self.encode(texts, pooling=pooling, normalize=normalize, long_text=long_text, overlap=overlap).vectors

    def predict_masks(
        self,
        texts: str | Sequence[str],
        *,
        top_k: int = 5,
        targets: str | Sequence[str] | None = None,
        long_text: str = "chunk",
    ) -> FillMaskResult:
        """Fill-mask with metadata. ``predictions`` has one entry per input text (pipeline-shaped)."""
        wanted = (targets,) if isinstance(targets, str) else None if targets is None else tuple(targets)
        result: FillMaskResult = self.process(texts, "fill-mask", MaskOptions(top_k, wanted, long_text))
        return result

    def fill_mask(
        self,
        texts: str | Sequence[str],
        *,
        top_k: int = 5,
        targets: str | Sequence[str] | None = None,
        long_text: str = "chunk",
    ) -> list[Any]:
        """Like ``pipeline("fill-mask")``: for one text, a list of {score, token, token_str, sequence} (a list of
        such lists when the text has several masks); for a list of texts, one such result per text."""
        result = self.predict_masks(texts, top_k=top_k, targets=targets, long_text=long_text)
        return result.predictions[0] if isinstance(texts, str) else result.predictions

    # ------------------------------------------------------------------------------------------- derivatives
    def token_classification(
        self,
        texts: str | Sequence[str],
        *,
        aggregation_strategy: str = "none",
        ignore_labels: Sequence[str] | None = None,
        stride: int | None = None,
        long_text: str = "chunk",
    ) -> list[Any]:
        """Exactly ``pipeline("token-classification")`` (token-classification bundles): for one text a list of
        entities, for a list one list per text. Long notes are split into windows overlapping by ``stride``
        tokens; offsets are into the original note. ``ignore_labels`` None: "O" and pseudo-labels (X...)."""
        out: list[Any] = pipelines.token_classification(
            self, texts, aggregation_strategy, ignore_labels, stride, long_text
        )
        return out

    def text_classification(
        self,
        inputs: Any,
        *,
        top_k: int | str | None = pipelines.LEGACY_TOP_K,
        function_to_apply: str | None = None,
        long_text: str = "truncate",
        truncation_direction: str = "right",
    ) -> Any:
        """Exactly ``pipeline("text-classification")`` (text-classification bundles): texts, ``{"text",
        "text_pair"}`` pairs or lists of them; ``top_k`` left out, an integer, or None (all labels)."""
        return pipelines.text_classification(self, inputs, top_k, function_to_apply, long_text, truncation_direction)

    def rerank(self, query: str, texts: Sequence[str], *, raw_scores: bool = False) -> list[dict[str, Any]]:
        """A one-logit cross-encoder: ``[{"index", "score"}]`` for every text, best first; ``score`` is the
        sigmoid of the logit (the logit itself with ``raw_scores=True``)."""
        return pipelines.rerank(self, query, texts, raw_scores)


def _check_variant(bundle: Bundle, variant: VariantInfo, verify: bool, *extra: str) -> Callable[[], None]:
    """Verify the graph (and ``extra`` files) now and refuse external data from outside the bundle; hash the
    weights file in the background. Call the returned function (raises ChecksumError) before any inference."""
    if verify:
        bundle.verify([*extra, variant.file])
    data = bundle.check_external_data(variant)
    return bundle.verify_in_background(data if verify else [])


def _default_variant(bundle: Bundle, device: str) -> Any:
    order = ("int8", "fp32") if device == "cpu" else ("fp16", "fp32")
    for name in order:
        if name in bundle.variants:
            return bundle.variants[name]
    for v in bundle.variants.values():
        if device in v.devices:
            return v
    present = ", ".join(sorted(bundle.variants)) or "none"
    raise BundleError(f"bundle {bundle.path} has no variant for {device} (present: {present})")
