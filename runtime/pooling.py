"""Pooling as small pure numpy functions over ``hidden [batch, seq, dim]`` and ``mask [batch, seq]``."""

from __future__ import annotations

from typing import Literal

import numpy as np

Pooling = Literal["mean", "cls", "max"]
POOLINGS: tuple[str, ...] = ("mean", "cls", "max")


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Attention-masked mean over tokens (special tokens included, as sentence-transformers does)."""
    m = mask.astype(hidden.dtype)[..., None]
    summed = (hidden * m).sum(axis=1)
    counts = np.clip(m.sum(axis=1), 1e-9, None)
    return summed / counts


def cls_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return hidden[:, 0, :]


def max_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    masked = np.where(mask[..., None].astype(bool), hidden, -np.inf)
    return masked.max(axis=1)


POOLERS = {"mean": mean_pool, "cls": cls_pool, "max": max_pool}


def pool(hidden: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    return POOLERS[how](hidden, mask).astype(np.float32, copy=False)


def combine_windows(vectors: np.ndarray, weights: np.ndarray, how: str) -> np.ndarray:
    """Combine the pooled vectors of one text's windows: token-weighted mean, or element-wise max for max."""
    if len(vectors) == 1:
        return vectors[0]
    if how == "max":
        return vectors.max(axis=0)
    w = weights.astype(np.float64) / weights.sum()
    return (vectors.astype(np.float64) * w[:, None]).sum(axis=0).astype(np.float32)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)
