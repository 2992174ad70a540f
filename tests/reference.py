"""Independent references: transformers' fill-mask pipeline and PyTorch mean pooling on the same checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def bundle_tokenizer(bundle: Path) -> Any:
    """The bundle's tokenizer as a transformers fast tokenizer (same casing as the runtime)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(bundle / "tokenizer.json"),
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        unk_token="[UNK]",
        clean_up_tokenization_spaces=True,
    )


def fill_mask_pipeline(checkpoint: Path, bundle: Path) -> Any:
    from transformers import BertForMaskedLM, pipeline

    model = BertForMaskedLM.from_pretrained(str(checkpoint)).eval()
    return pipeline("fill-mask", model=model, tokenizer=bundle_tokenizer(bundle), device="cpu")


def torch_embeddings(checkpoint: Path, bundle: Path, texts: list[str], pooling: str = "mean") -> np.ndarray:
    """PyTorch reference: BertModel last hidden state, attention-masked pooling, L2-normalised."""
    import torch
    from transformers import BertModel

    tok = bundle_tokenizer(bundle)
    model = BertModel.from_pretrained(str(checkpoint), add_pooling_layer=False).eval()
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    if pooling == "mean":
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    elif pooling == "cls":
        pooled = hidden[:, 0]
    else:
        pooled = hidden.masked_fill(mask == 0, float("-inf")).max(1).values
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()
