"""PyTorch eager (transformers) FP32, and torch.ao dynamic INT8 (nn.Linear → qint8), as users run them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from .base import ModelSpec, Tokens, embed_in_order, top_k


def build(spec: ModelSpec, cache: Path) -> None:
    """Nothing to build: both start from the checkpoint (INT8 is quantized at load time)."""


class TorchEngine:
    def __init__(self, name: str, spec: ModelSpec, threads: int) -> None:
        import torch
        from transformers import BertForMaskedLM, BertModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.name = name
        if spec.has_mlm:
            self.mlm: Any = BertForMaskedLM.from_pretrained(spec.checkpoint).eval()
        else:
            self.mlm = None
            encoder = BertModel.from_pretrained(spec.checkpoint, add_pooling_layer=False).eval()
        if name.endswith("int8"):
            target = self.mlm if self.mlm is not None else encoder
            target = torch.ao.quantization.quantize_dynamic(target, {torch.nn.Linear}, dtype=torch.qint8)
            if self.mlm is not None:
                self.mlm = target
            else:
                encoder = target
        self.encoder = self.mlm.bert if self.mlm is not None else encoder
        self.tokens = Tokens(spec.bundle)
        self.spec = spec

    def _inputs(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        t = self.torch.from_numpy
        return {"input_ids": t(ids), "attention_mask": t(mask), "token_type_ids": t(np.zeros_like(ids))}

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.encoder(**self._inputs(ids, mask)).last_hidden_state.numpy()

    def mask_top(self, ids: np.ndarray, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
        if self.mlm is None:
            raise NotImplementedError("no masked-LM head")
        with self.torch.inference_mode():
            logits = self.mlm(**self._inputs(ids, mask)).logits  # [B, S, V]: what pipeline("fill-mask") computes
            return top_k(logits[rows, cols].numpy(), k)

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed_in_order(self, self.tokens, texts)

    def size_mb(self) -> float:
        buf = io.BytesIO()
        self.torch.save((self.mlm or self.encoder).state_dict(), buf)
        return buf.getbuffer().nbytes / 1e6


def load(name: str, spec: ModelSpec, cache: Path, threads: int) -> TorchEngine:
    return TorchEngine(name, spec, threads)
