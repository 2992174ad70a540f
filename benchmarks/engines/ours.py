"""clinbert-onnx: our bundle through the public ``ClinicalBert`` API and its engine (gathered MLM head).

``ours-fp32`` / ``ours-int8``: ONNX Runtime; ``ours-ov-static`` / ``ours-ort-static``: the int8-static variant on
OpenVINO / ONNX Runtime (added to the bundle by ``build`` when absent: needs the [static] extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from clinbert_onnx.schema import (
    ATTENTION_MASK,
    INPUT_IDS,
    LAST_HIDDEN_STATE,
    MASK_LOGITS,
    MASK_POSITIONS,
    TOKEN_TYPE_IDS,
)

from .base import ModelSpec, top_k

#: adapter name → (engine, variant, streams: batches in flight in ``embed``, as ``clinbert score`` runs them)
RUNS = {
    "ours-fp32": ("onnxruntime", "fp32", 1),
    "ours-int8": ("onnxruntime", "int8", 1),
    "ours-int8-2s": ("onnxruntime", "int8", 2),
    "ours-int8-dynamic": ("onnxruntime", "int8-dynamic", 1),
    "ours-ov-static": ("openvino", "int8-static", 1),
    "ours-ov-static-2s": ("openvino", "int8-static", 2),
    "ours-ort-static": ("onnxruntime", "int8-static", 1),
}
STATIC = "int8-static"


def build(spec: ModelSpec, cache: Path) -> None:
    """The bundle is built by run.py (``export_bundle``) before any engine loads; the static variant is added by
    ``load`` the first time a static adapter needs it (``build`` does not know which adapter asks)."""


def add_static_variant(spec: ModelSpec) -> None:
    from clinbert_onnx.bundle import open_bundle

    if STATIC in open_bundle(spec.bundle).variants:
        return
    from clinbert_onnx.quantize import GateThresholds, get_recipe, requantize

    requantize(spec.bundle, get_recipe(STATIC), GateThresholds(), allow_degraded=True)


class Ours:
    def __init__(self, name: str, spec: ModelSpec, threads: int) -> None:
        from clinbert_onnx import ClinicalBert, SessionConfig

        self.name = name
        engine, self.variant, streams = RUNS[name]
        self.model = ClinicalBert.load(
            spec.bundle,
            device="cpu",
            variant=self.variant,
            verify=False,
            session_config=SessionConfig(intra_op_threads=threads, streams=streams),
            engine=engine,
        )
        self.engine = self.model.engine
        self.inputs = set(self.engine.input_names)
        self.spec = spec

    def _feed(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray | None = None) -> dict[str, np.ndarray]:
        feed = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if TOKEN_TYPE_IDS in self.inputs:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)
        if MASK_POSITIONS in self.inputs:
            feed[MASK_POSITIONS] = positions if positions is not None else np.zeros(0, dtype=np.int64)
        return feed

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.engine.run([LAST_HIDDEN_STATE], self._feed(ids, mask))[0]

    def mask_top(self, ids: np.ndarray, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
        if MASK_POSITIONS not in self.inputs:
            raise NotImplementedError("no masked-LM head")
        flat = (rows * ids.shape[1] + cols).astype(np.int64)
        (logits,) = self.engine.run([MASK_LOGITS], self._feed(ids, mask, flat))  # [M, V]: masks only
        return top_k(logits, k)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model.embed(texts)  # length-sorted token-budget batches, windows for long texts

    def size_mb(self) -> float:
        bundle = self.model.bundle
        return bundle.variant_mb(bundle.variants[self.variant])


def load(name: str, spec: ModelSpec, cache: Path, threads: int) -> Ours:
    if RUNS[name][1] == STATIC:
        add_static_variant(spec)
    return Ours(name, spec, threads)
