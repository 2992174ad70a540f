"""Parity of the exported FP32 graph with the PyTorch model, on varied padded batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from clinbert_onnx.errors import ExportError
from clinbert_onnx.schema import (
    ATTENTION_MASK,
    INPUT_IDS,
    LAST_HIDDEN_STATE,
    LOGITS,
    MASK_LOGITS,
    MASK_POSITIONS,
    TOKEN_TYPE_IDS,
    Parity,
    TokenizerInfo,
)


def _batches(
    tokenizer: Any, texts: list[str], max_length: int, cls_id: int, sep_id: int, pad_id: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Two padded batches of different widths: short texts, then a full-length row with a short one."""
    ids = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    long_ids = [t for row in ids for t in row][: max_length - 2]
    groups = [ids[:5], [long_ids, ids[5][:7]]]
    for group in groups:
        rows = [[cls_id, *g[: max_length - 2], sep_id] for g in group]
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        yield input_ids, mask


def check_parity(
    torch_model: Any,
    onnx_path: Path,
    tokenizer_json: Path,
    texts: list[str],
    special: TokenizerInfo,
    has_head: bool,
    tolerance: float,
    classifier: bool = False,
) -> Parity:
    """Worst differences of ``last_hidden_state`` (and the masked-LM or classifier logits) between the FP32 graph
    and ``torch_model``; ``classifier``: the graph has a classifier head (``logits``), compared at real tokens
    (token classification) or per row (text classification)."""
    import onnxruntime as ort
    import torch
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    worst_hidden = worst_logits = 0.0
    for input_ids, mask in _batches(
        tokenizer,
        texts,
        special.max_length,
        special.cls_token_id,
        special.sep_token_id,
        special.pad_token_id,
    ):
        lengths = mask.sum(axis=1)
        positions = (lengths // 2).astype(np.int64)
        if has_head:
            input_ids = input_ids.copy()
            input_ids[np.arange(len(input_ids)), positions] = special.mask_token_id
        feed = {INPUT_IDS: input_ids, ATTENTION_MASK: mask}
        if TOKEN_TYPE_IDS in names:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(input_ids)
        flat = np.arange(len(input_ids)) * input_ids.shape[1] + positions
        if has_head:
            feed[MASK_POSITIONS] = flat
        outputs = [LAST_HIDDEN_STATE, MASK_LOGITS] if has_head else [LAST_HIDDEN_STATE]
        if classifier:
            outputs = [LAST_HIDDEN_STATE, LOGITS]
        onnx_out = session.run(outputs, feed)
        valid = mask.astype(bool)
        with torch.inference_mode():
            t_in = {k: torch.from_numpy(v) for k, v in feed.items() if k != MASK_POSITIONS}
            if classifier:
                out = torch_model(**t_in, output_hidden_states=True)
                hidden = out.hidden_states[-1].numpy()
                logits = out.logits.numpy()
                diff = np.abs(onnx_out[1] - logits)
                worst_logits = max(worst_logits, float((diff[valid] if diff.ndim == 3 else diff).max()))
            elif has_head:
                out = torch_model(**t_in, output_hidden_states=True)
                hidden = out.hidden_states[-1].numpy()
                logits = out.logits.numpy().reshape(-1, out.logits.shape[-1])[flat]
                worst_logits = max(worst_logits, float(np.abs(onnx_out[1] - logits).max()))
            else:
                hidden = torch_model(**t_in).last_hidden_state.numpy()
        worst_hidden = max(worst_hidden, float(np.abs(onnx_out[0][valid] - hidden[valid]).max()))
    worst = max(worst_hidden, worst_logits)
    if worst > tolerance:
        raise ExportError(
            f"FP32 ONNX differs from PyTorch by {worst:.2e} (hidden {worst_hidden:.2e}, logits {worst_logits:.2e}), "
            f"over the {tolerance:.0e} tolerance"
        )
    return Parity(
        max_abs_diff_hidden=worst_hidden,
        tolerance=tolerance,
        max_abs_diff_mask_logits=worst_logits if has_head else None,
        max_abs_diff_logits=worst_logits if classifier else None,
    )
