"""Tokenizer export: one ``tokenizer.json`` with the casing decided explicitly.

Bio_ClinicalBERT's vocabulary is cased, but its Hub repository has no tokenizer_config.json, so transformers
builds a lowercasing BertTokenizer for it (EmilyAlsentzer/clinicalBERT#26, huggingface/transformers#3823).
Lowercasing a cased vocabulary maps every capitalised word (drug names, acronyms) to other pieces. We detect
that mismatch and choose cased, with a warning; ``lowercase=True/False`` overrides.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinbert_onnx.errors import ExportError
from clinbert_onnx.schema import TOKENIZER_FILE, TokenizerInfo

_SPECIAL = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")
CASED_VOCAB_THRESHOLD = 0.02  # share of vocabulary entries with an upper-case letter


@dataclass(frozen=True)
class TokenizerExport:
    """``tokenizer.json``'s text and its manifest record (``lowercase_source``: "tokenizer" |
    "cased-vocab-detected" | "derivative-tokenizer" | "override")."""

    json_text: str
    info: TokenizerInfo


def _normalizer_lowercases(normalizer: dict[str, Any] | None) -> bool:
    if not normalizer:
        return False
    kind = normalizer.get("type")
    if kind == "BertNormalizer":
        return bool(normalizer.get("lowercase", True))
    if kind == "Lowercase":
        return True
    if kind == "Sequence":
        return any(_normalizer_lowercases(n) for n in normalizer.get("normalizers", []))
    return False


def _set_lowercase(normalizer: dict[str, Any] | None, lowercase: bool) -> dict[str, Any]:
    if normalizer is None:
        normalizer = {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": None,
            "lowercase": lowercase,
        }
        return normalizer
    kind = normalizer.get("type")
    if kind == "BertNormalizer":
        normalizer = dict(normalizer, lowercase=lowercase)
        if not lowercase and normalizer.get("strip_accents") is None:
            normalizer["strip_accents"] = False
        return normalizer
    if kind == "Sequence":
        parts = [p for p in normalizer.get("normalizers", []) if p.get("type") != "Lowercase"]
        parts = [_set_lowercase(p, lowercase) if p.get("type") == "BertNormalizer" else p for p in parts]
        if lowercase and not any(_normalizer_lowercases(p) for p in parts):
            parts.append({"type": "Lowercase"})
        return dict(normalizer, normalizers=parts)
    if kind == "Lowercase":
        return normalizer if lowercase else {"type": "Sequence", "normalizers": []}
    if lowercase:
        return {"type": "Sequence", "normalizers": [normalizer, {"type": "Lowercase"}]}
    return normalizer


def uppercase_share(vocab: dict[str, int]) -> float:
    words = [t for t in vocab if not (t.startswith("[") and t.endswith("]"))]
    if not words:
        return 0.0
    return sum(any(c.isupper() for c in t) for t in words) / len(words)


def prepare(
    checkpoint_dir: Path, max_positions: int, lowercase: bool | None, derivative: bool = False
) -> TokenizerExport:
    """Load the checkpoint's tokenizer (fast), decide casing, and serialise it without truncation/padding.

    ``derivative``: the checkpoint is a fine-tuned classifier. It was trained with the tokenizer its folder
    builds, so a lowercasing tokenizer over a cased vocabulary is kept (with a warning, recorded as
    "derivative-tokenizer") instead of being switched to cased as for the base model: flipping it would feed the
    classifier inputs it never saw."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(checkpoint_dir), use_fast=True)
    except Exception as exc:  # transformers raises OSError/ValueError/TypeError for broken tokenizer files
        raise ExportError(f"cannot load the tokenizer in {checkpoint_dir}: {str(exc).splitlines()[0][:200]}") from None
    if not getattr(tok, "is_fast", False):
        raise ExportError(f"{checkpoint_dir}: no fast (Rust) tokenizer could be built for this checkpoint")
    data = json.loads(tok.backend_tokenizer.to_str())
    share = uppercase_share(tok.get_vocab())
    cased_vocab = share >= CASED_VOCAB_THRESHOLD
    lowercases = _normalizer_lowercases(data.get("normalizer"))
    if lowercase is not None:
        chosen, source = lowercase, "override"
    elif lowercases and cased_vocab and derivative:
        warnings.warn(
            f"the tokenizer lowercases but {share:.1%} of the vocabulary has upper-case letters; this fine-tuned "
            "checkpoint was presumably trained with its own (lowercasing) tokenizer, so lowercasing is kept. Pass "
            "--no-lowercase if it was fine-tuned on cased input.",
            UserWarning,
            stacklevel=2,
        )
        chosen, source = True, "derivative-tokenizer"
    elif lowercases and cased_vocab:
        warnings.warn(
            f"the tokenizer lowercases but {share:.1%} of the vocabulary has upper-case letters (a cased model): "
            "exporting a cased tokenizer. Pass --lowercase to keep the checkpoint's lowercasing.",
            UserWarning,
            stacklevel=2,
        )
        chosen, source = False, "cased-vocab-detected"
    else:
        chosen, source = lowercases, "tokenizer"
    data["normalizer"] = _set_lowercase(data.get("normalizer"), chosen)
    data["truncation"] = None
    data["padding"] = None

    ids: dict[str, int] = {}
    for name in ("cls", "sep", "pad", "mask", "unk"):
        token_id = getattr(tok, f"{name}_token_id", None)
        if token_id is None:
            if name == "mask":
                token_id = -1
            else:
                raise ExportError(f"{checkpoint_dir}: the tokenizer has no {name} token")
        ids[name] = int(token_id)
    model_max = getattr(tok, "model_max_length", None) or max_positions
    max_length = int(min(model_max, max_positions)) if model_max < 1_000_000 else int(max_positions)
    info = TokenizerInfo(
        file=TOKENIZER_FILE,
        lowercase=chosen,
        lowercase_source=source,
        vocab_uppercase_share=round(share, 4),
        max_length=max_length,
        cls_token_id=ids["cls"],
        sep_token_id=ids["sep"],
        pad_token_id=ids["pad"],
        mask_token_id=ids["mask"],
        unk_token_id=ids["unk"],
        mask_token=str(tok.mask_token or "[MASK]"),
    )
    return TokenizerExport(json_text=json.dumps(data, ensure_ascii=False), info=info)
