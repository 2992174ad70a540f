"""The runtime against independent references on the same checkpoint (FP32 variant)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from clinbert_onnx import ClinicalBert
from conftest import requires_export

pytestmark = requires_export

TEXTS = [
    "The patient was started on [MASK] for community acquired pneumonia.",
    "Chest radiograph shows a [MASK] left lower lobe consolidation.",
    "Vancomycin 1 g IV q12h was [MASK] after cultures returned.",
    "[MASK] denies chest pain , SOB or palpitations.",
]


@pytest.fixture(scope="module")
def fp32(tiny_bundle):
    return ClinicalBert.load(tiny_bundle, device="cpu", variant="fp32")


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint, tiny_bundle):
    from reference import fill_mask_pipeline

    return fill_mask_pipeline(tiny_checkpoint, tiny_bundle)


def _same(ours, theirs):
    assert [p["token"] for p in ours] == [p["token"] for p in theirs]
    assert [p["token_str"] for p in ours] == [p["token_str"] for p in theirs]
    assert [p["sequence"] for p in ours] == [p["sequence"] for p in theirs]
    np.testing.assert_allclose([p["score"] for p in ours], [p["score"] for p in theirs], atol=1e-4)
    assert set(ours[0]) == {"score", "token", "token_str", "sequence"}


@pytest.mark.parametrize("text", TEXTS)
def test_fill_mask_matches_pipeline(fp32, pipe, text):
    _same(fp32.fill_mask(text, top_k=5), pipe(text, top_k=5))


def test_fill_mask_batch_and_several_masks_match_pipeline(fp32, pipe):
    texts = [TEXTS[0], "Patient with [MASK] and [MASK] on admission."]
    ours = fp32.fill_mask(texts, top_k=3)
    theirs = pipe(texts, top_k=3)
    _same(ours[0], theirs[0])
    assert len(ours[1]) == 2 and isinstance(ours[1][0], list)
    for a, b in zip(ours[1], theirs[1], strict=True):
        _same(a, b)


def test_targets_match_pipeline(fp32, pipe):
    vocab = fp32.tokenizer.get_vocab()
    targets = [w for w in ("patient", "was", "the", "for") if w in vocab][:3]
    assert targets, "tiny vocabulary lacks common words"
    _same(fp32.fill_mask(TEXTS[0], targets=targets), pipe(TEXTS[0], targets=targets))


def test_multi_token_target_warns_and_uses_first_piece_like_pipeline(fp32, pipe):
    target = "Zzyzxventricular"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = fp32.fill_mask(TEXTS[0], targets=[target, "the"])
    assert any("first sub-token" in str(w.message) for w in caught)
    assert target not in " ".join(str(w.message) for w in caught), "warning must not echo input"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pipe(TEXTS[0], targets=[target, "the"])
    _same(ours, theirs)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_embeddings_match_torch_pooling(fp32, tiny_checkpoint, tiny_bundle, pooling):
    from reference import torch_embeddings

    texts = [t.replace("[MASK]", "aspirin") for t in TEXTS] + ["Short.", "BP 120/80 , HR 72 , afebrile"]
    ours = fp32.embed(texts, pooling=pooling)
    ref = torch_embeddings(tiny_checkpoint, tiny_bundle, texts, pooling)
    cos = (ours * ref).sum(axis=1)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), fp32.hidden_size)
    assert cos.min() >= 0.99999


def test_minilm_real_weights_int8_close_to_torch(minilm_bundle):
    """Real pretrained weights: FP32 is exact, INT8 (default recipe) keeps mean cosine >= 0.99 to PyTorch."""
    from builders import minilm_dir
    from clinbert_onnx.quantize.gate import probe_sentences
    from reference import torch_embeddings

    texts = probe_sentences()
    ref = torch_embeddings(minilm_dir(), minilm_bundle, texts)
    fp32 = ClinicalBert.load(minilm_bundle, device="cpu", variant="fp32").embed(texts)
    int8 = ClinicalBert.load(minilm_bundle, device="cpu").embed(texts)
    assert (fp32 * ref).sum(axis=1).min() >= 0.99999
    assert (int8 * ref).sum(axis=1).mean() >= 0.99
