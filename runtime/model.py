"""``ClinicalBert``: fill-mask and embeddings from a bundle, with onnxruntime, tokenizers and numpy only.

Each task runs in three stages — tokenize into windows, run batches, post-process — so a batcher (the
server, ``clinbert score``) can merge requests before the run stage and split results after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import fillmask
from .batching import CALL_OVERHEAD_TOKENS, plan_batches
from .bundle import Bundle, VariantInfo, open_bundle
from .errors import BundleError, InputError, NoMaskHeadError
from .pooling import POOLINGS, combine_windows, l2_normalize, pool
from .schema import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS
from .schema import LAST_HIDDEN_STATE as HIDDEN_OUTPUT
from .schema import MASK_LOGITS as LOGITS_OUTPUT
from .schema import MASK_POSITIONS as MASK_INPUT
from .schema import MEAN_POOLED as POOLED_OUTPUT
from .session import SessionConfig, create_session
from .windows import Window, check_long_text, check_texts, embed_windows, mask_windows

DEFAULT_OVERLAP = 64
#: Padded tokens per batch and rows per batch, by device. On CPU, small batches are both faster and smaller
#: (BERT-base int8, 64 × 122-token texts, `embed`: 1024 tokens → 28 seq/s at 234 MB peak RSS; 8192 → 23 seq/s
#: at 626 MB): the activations stay in cache and ONNX Runtime's arena stays small.
DEFAULT_BUDGETS = {"cpu": (1024, 64), "cuda": (65536, 256)}


@dataclass(frozen=True)
class EmbedResult:
    """Embeddings plus per-input metadata: ``windows`` run and ``tokens`` (content tokens, before truncation)."""

    vectors: np.ndarray
    windows: list[int]
    tokens: list[int]


@dataclass(frozen=True)
class FillMaskResult:
    predictions: list[Any]
    windows: list[int]
    tokens: list[int]


class ClinicalBert:
    """A loaded bundle. Thread-safe: one instance can serve concurrent callers."""

    def __init__(
        self,
        bundle: Bundle,
        session: Any,
        device: str,
        variant: str,
        token_budget: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        self.bundle = bundle
        self.session = session
        self.device = device
        self.variant = variant
        budget, rows = DEFAULT_BUDGETS[device]
        self.token_budget = token_budget or budget
        self.max_batch = max_batch or rows
        self.call_overhead = CALL_OVERHEAD_TOKENS[device]
        tok = bundle.tokenizer
        self.tokenizer = Tokenizer.from_file(str(bundle.path / tok.file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_length = tok.max_length
        self._inputs = {i.name for i in session.get_inputs()}
        self._outputs = {o.name for o in session.get_outputs()}

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
    ) -> ClinicalBert:
        """Open a bundle folder, verify the checksums of the files it will read, and start a session.

        ``device``: "cpu" | "cuda" | "auto". ``variant``: defaults to int8 on CPU, fp16 (else fp32) on CUDA.
        ``verify=False`` skips hashing (for trusted hot paths; the external-data check still runs).
        """
        import onnxruntime as ort

        from .session import resolve_device

        bundle = open_bundle(path)
        target = resolve_device(device, ort.get_available_providers())
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
        return cls(bundle, session, actual, chosen.name, token_budget, max_batch)

    # ----------------------------------------------------------------------------------------------- info
    @property
    def hidden_size(self) -> int:
        return self.bundle.hidden_size

    @property
    def has_mlm_head(self) -> bool:
        return self.bundle.has_mlm_head

    def info(self) -> dict[str, Any]:
        quality = self.bundle.variants[self.variant].quality
        return {
            "model_id": self.bundle.model_id,
            "revision": self.bundle.manifest.source.revision,
            "variant": self.variant,
            "device": self.device,
            "hidden_size": self.hidden_size,
            "max_length": self.max_length,
            "fill_mask": self.has_mlm_head,
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

    # ----------------------------------------------------------------------------------------------- stage 2
    def _feed(self, rows: list[np.ndarray]) -> dict[str, np.ndarray]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.bundle.tokenizer.pad_token_id, dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            attention[i, : len(r)] = 1
        feed: dict[str, np.ndarray] = {INPUT_IDS: ids, ATTENTION_MASK: attention}
        if TOKEN_TYPE_IDS in self._inputs:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)
        if MASK_INPUT in self._inputs:
            feed[MASK_INPUT] = np.zeros(0, dtype=np.int64)
        return feed

    def _run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One inference. On CUDA through I/O binding: inputs copied to the device once, and only the
        requested outputs (pooled vectors or masked logits, never the whole hidden state) copied back."""
        if self.device != "cuda":
            return list(self.session.run(outputs, feed))
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        for name in outputs:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def run_embed(self, windows: list[Window], pooling: str) -> np.ndarray:
        """Pooled (not normalized) vector per window, in window order, computed in token-budget batches."""
        out = np.empty((len(windows), self.hidden_size), dtype=np.float32)
        in_graph = pooling == "mean" and POOLED_OUTPUT in self._outputs
        for batch in plan_batches([len(w.ids) for w in windows], self.token_budget, self.max_batch, self.call_overhead):
            feed = self._feed([windows[i].ids for i in batch])
            if in_graph:
                (out[batch],) = self._run([POOLED_OUTPUT], feed)
            else:
                (hidden,) = self._run([HIDDEN_OUTPUT], feed)
                out[batch] = pool(hidden, feed[ATTENTION_MASK], pooling)
        return out

    def run_masks(self, windows: list[Window]) -> list[np.ndarray]:
        """Logits ``[masks_in_window, vocab]`` per window; the MLM head runs on masked positions only."""
        results: list[np.ndarray] = [np.empty(0)] * len(windows)
        for batch in plan_batches([len(w.ids) for w in windows], self.token_budget, self.max_batch, self.call_overhead):
            feed = self._feed([windows[i].ids for i in batch])
            width = feed[INPUT_IDS].shape[1]
            flat = [row * width + p for row, i in enumerate(batch) for p in windows[i].masks]
            feed[MASK_INPUT] = np.asarray(flat, dtype=np.int64)
            (logits,) = self._run([LOGITS_OUTPUT], feed)
            offset = 0
            for i in batch:
                count = len(windows[i].masks)
                results[i] = logits[offset : offset + count]
                offset += count
        return results

    # ----------------------------------------------------------------------------------------------- tasks
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        pooling: str = "mean",
        normalize: bool = True,
        long_text: str = "chunk",
        overlap: int = DEFAULT_OVERLAP,
    ) -> EmbedResult:
        """Embeddings with metadata. See :meth:`embed`."""
        if pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        check_long_text(long_text)
        items = check_texts(texts)
        ids = self.tokenize(items)
        windows = embed_windows(
            ids,
            max_length=self.max_length,
            cls_id=self.bundle.tokenizer.cls_token_id,
            sep_id=self.bundle.tokenizer.sep_token_id,
            long_text=long_text,
            overlap=overlap,
        )
        pooled = self.run_embed(windows, pooling)
        vectors = np.empty((len(items), self.hidden_size), dtype=np.float32)
        counts = [0] * len(items)
        start = 0
        for item in range(len(items)):
            end = start
            while end < len(windows) and windows[end].item == item:
                end += 1
            weights = np.array([w.weight for w in windows[start:end]], dtype=np.float64)
            vectors[item] = combine_windows(pooled[start:end], weights, pooling)
            counts[item] = end - start
            start = end
        if normalize:
            vectors = l2_normalize(vectors)
        return EmbedResult(vectors=vectors, windows=counts, tokens=[len(x) for x in ids])

    def embed(
        self,
        texts: str | Sequence[str],
        *,
        pooling: str = "mean",
        normalize: bool = True,
        long_text: str = "chunk",
        overlap: int = DEFAULT_OVERLAP,
    ) -> np.ndarray:
        """``float32 [n, hidden]`` embeddings in input order.

        ``pooling``: "mean" (attention-masked), "cls" or "max". ``long_text``: "chunk" (overlapping windows of
        ``max_length`` tokens, ``overlap`` tokens shared, combined by tokens contributed), "truncate" or "error".
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
        if not self.has_mlm_head:
            raise NoMaskHeadError(
                f"bundle {self.bundle.model_id} was exported from an encoder without a masked-LM head: "
                "it serves embeddings only"
            )
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InputError(f"top_k must be a positive integer; got {top_k!r}")
        check_long_text(long_text)
        items = check_texts(texts)
        target_ids = fillmask.resolve_targets(self.tokenizer, targets)
        tok = self.bundle.tokenizer
        ids = self.tokenize(items)
        windows, positions = mask_windows(
            ids,
            max_length=self.max_length,
            cls_id=tok.cls_token_id,
            sep_id=tok.sep_token_id,
            mask_id=tok.mask_token_id,
            long_text=long_text,
        )
        logits = self.run_masks(windows)
        per_item: list[np.ndarray] = [np.empty((len(p), 0), dtype=np.float32) for p in positions]
        window_counts = [0] * len(items)
        for win, win_logits in zip(windows, logits, strict=True):
            window_counts[win.item] += 1
            if per_item[win.item].shape[1] == 0:
                per_item[win.item] = np.empty((len(positions[win.item]), win_logits.shape[1]), dtype=np.float32)
            per_item[win.item][win.mask_ordinals] = win_logits
        predictions = []
        for item, content in enumerate(ids):
            scores, top_ids = fillmask.top_predictions(per_item[item], top_k, target_ids)
            full = np.concatenate(([tok.cls_token_id], content, [tok.sep_token_id]))
            predictions.append(
                fillmask.format_text(self.tokenizer, full, positions[item] + 1, scores, top_ids, tok.pad_token_id)
            )
        return FillMaskResult(predictions=predictions, windows=window_counts, tokens=[len(x) for x in ids])

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
