"""A realistic INT8 figure: the real all-MiniLM-L6-v2 weights, briefly fine-tuned as a clinical NER model
(cached per version of this file and tests/finetune.py), exported with the default recipe and gated."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import requires_export

pytestmark = [requires_export, pytest.mark.slow]


def _train_minilm_ner(folder: Path, steps: int = 150) -> Path:
    import builders
    import finetune
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    labels = finetune.NER_LABELS
    tok: Any = AutoTokenizer.from_pretrained(str(builders.minilm_dir()))
    model = BertForTokenClassification.from_pretrained(
        str(builders.minilm_dir()),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)},
    )
    rng = random.Random(7)
    batches = []
    for _ in range(20):
        rows = []
        for _ in range(16):
            pieces: list[str] = []
            tags: list[str] = []
            while len(pieces) < 96:
                more_pieces, more_tags = finetune._token_labels(finetune.sentence(rng), "BIO", tok)
                pieces, tags = pieces + more_pieces, tags + more_tags
            width = rng.randint(8, 96)
            start = rng.randint(0, len(pieces) - width)
            ids = tok.convert_tokens_to_ids(pieces[start : start + width])
            target = [labels.index(t) for t in tags[start : start + width]]
            rows.append(([tok.cls_token_id, *ids, tok.sep_token_id], [-100, *target, -100]))
        width = max(len(r[0]) for r in rows)
        batches.append(
            {
                "input_ids": torch.tensor([r[0] + [0] * (width - len(r[0])) for r in rows]),
                "attention_mask": torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows]),
                "labels": torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows]),
            }
        )
    finetune._train(model, batches, steps, lr=1e-4)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def minilm_ner_bundle(fixture_root: Path, probe_file: Path) -> Path:
    import hashlib
    import os

    import finetune
    from clinbert_onnx.export import ExportOptions, export_bundle

    key = hashlib.sha256(Path(__file__).read_bytes() + Path(finetune.__file__).read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("CLINBERT_TEST_CACHE", Path.home() / ".cache" / "clinbert-onnx-tests")) / key
    ckpt = cache / "minilm-ner"
    if not (ckpt / "config.json").is_file():
        scratch = cache / ".minilm-ner-partial"
        scratch.mkdir(parents=True, exist_ok=True)
        _train_minilm_ner(scratch)
        scratch.rename(ckpt)
    return export_bundle(ExportOptions(model=str(ckpt), out=fixture_root / "minilm-ner", probe=probe_file))


def test_minilm_ner_int8_keeps_fp32_entities(minilm_ner_bundle):
    quality = json.loads((minilm_ner_bundle / "manifest.json").read_text())["variants"]["int8"]["quality"]
    assert quality["passed"] is True and quality["reference_entities"] >= 100
    assert quality["entity_f1"] >= 0.95 and quality["entity_recall"] >= 0.95
