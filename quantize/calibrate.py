"""Activation ranges of the FP32 graph on the calibration sentences that ship with the package.

The calibration set (``clinbert_onnx/data/calibration.txt``) is disjoint from the gate's probe set (a test holds
that), and spans short and long clinical sentences. Only per-channel absolute maxima are kept: they set the
per-token recipe's smoothing factors (``per_token.py``), never an activation scale.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from clinbert_onnx.schema import (
    ATTENTION_MASK,
    CONFIG_FILE,
    INPUT_IDS,
    MASK_POSITIONS,
    TOKEN_TYPE_IDS,
    TOKENIZER_FILE,
)

CALIBRATION_FILE = "data/calibration.txt"


def calibration_sentences() -> list[str]:
    text = resources.files("clinbert_onnx").joinpath(CALIBRATION_FILE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def calibration_hash() -> str:
    import hashlib

    data = resources.files("clinbert_onnx").joinpath(CALIBRATION_FILE).read_bytes()
    return hashlib.sha256(data).hexdigest()


def activation_absmax(
    model: Any, model_dir: Path, tensors: list[str], sentences: list[str], batch: int = 16
) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each tensor in ``tensors`` over the real (non-padding) tokens of ``sentences``.

    ``model`` is the FP32 ModelProto (its weights loaded); it is copied, not changed. Masked-LM head tensors are
    calibrated on every token position (``mask_positions`` = all real tokens).
    """
    import onnx
    import onnxruntime as ort
    from tokenizers import Tokenizer

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in present:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(min(128, _max_positions(model_dir)))
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(sentences), batch):
        enc = tokenizer.encode_batch(sentences[start : start + batch])
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(enc):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feed: dict[str, np.ndarray] = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if TOKEN_TYPE_IDS in inputs:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)
        real = mask.reshape(-1).astype(bool)
        if MASK_POSITIONS in inputs:
            feed[MASK_POSITIONS] = np.flatnonzero(real).astype(np.int64)
        for name, value in zip(tensors, session.run(tensors, feed), strict=True):
            flat = value.reshape(-1, value.shape[-1])
            if flat.shape[0] == real.shape[0]:
                flat = flat[real]
            peak = np.abs(flat).max(axis=0)
            out[name] = np.maximum(out[name], peak) if name in out else peak
    return out


def _max_positions(model_dir: Path) -> int:
    """The checkpoint's position limit (config.json beside the graph), so short-window models calibrate too."""
    import json

    try:
        return int(json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return 512
