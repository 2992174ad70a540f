"""What every engine adapter offers, and the helpers they share (tokenizing, pooling, top-k)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

EMBED_BATCH = 32


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: its checkpoint (torch, Optimum, OpenVINO start here) and our bundle of it."""

    name: str
    checkpoint: Path
    bundle: Path
    has_mlm: bool
    layers: int
    hidden: int
    intermediate: int
    vocab: int


class Engine(Protocol):
    name: str

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """last_hidden_state [B, S, H] for padded ``ids`` / ``mask`` (int64)."""
        ...

    def mask_top(self, ids: np.ndarray, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
        """Top-``k`` token ids [M, k] at the masked positions (rows[i], cols[i]), best first."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized mean-pooled embeddings, end to end from text."""
        ...

    def size_mb(self) -> float: ...


class Tokens:
    """The bundle's tokenizer.json (identical tokens for every engine, so only numerics differ)."""

    def __init__(self, bundle: Path) -> None:
        from clinbert_onnx.bundle import open_bundle
        from tokenizers import Tokenizer

        info = open_bundle(bundle).tokenizer
        max_length = info.max_length
        self.tok = Tokenizer.from_file(str(bundle / info.file))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length)
        self.max_length = max_length

    def batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.tok.encode_batch(texts)
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return ids, mask


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    v = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def embed_in_order(engine: Engine, tokens: Tokens, texts: list[str], batch: int = EMBED_BATCH) -> np.ndarray:
    """The usual recipe: batches of ``batch`` texts in input order, padded to the longest of each batch."""
    out = []
    for start in range(0, len(texts), batch):
        ids, mask = tokens.batch(texts[start : start + batch])
        out.append(mean_pool(engine.hidden(ids, mask), mask))
    return np.concatenate(out)


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values per row, best first."""
    part = np.argpartition(-logits, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(logits, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def folder_mb(*paths: Path) -> float:
    total = 0
    for p in paths:
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return total / 1e6
