"""Fine-tuned derivatives end to end: export, pipeline parity (FP32), long notes, errors, the per-task gate."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clinbert_onnx import ClinicalBert
from clinbert_onnx.entities import group_starts
from clinbert_onnx.errors import ExportError, InputError, NoMaskHeadError, QualityGateError, TaskNotServedError
from conftest import requires_export

pytestmark = requires_export
STRATEGIES = ("none", "simple", "first", "average", "max")


def _texts(seed: int, n: int, sentences: int = 2) -> list[str]:
    import finetune

    rng = random.Random(seed)
    return [finetune.note(rng, sentences)[0] for _ in range(n)]


def _pipeline(task: str, checkpoint: Path) -> Any:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        pipeline,
    )

    cls = AutoModelForTokenClassification if task == "token-classification" else AutoModelForSequenceClassification
    model = cls.from_pretrained(str(checkpoint)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    return pipeline(task, model=model, tokenizer=tokenizer, device="cpu")  # type: ignore[call-overload]


def _fp32(bundle: Path) -> ClinicalBert:
    return ClinicalBert.load(bundle, device="cpu", variant="fp32")


def _same_entities(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    fields = [k for k in theirs[0] if k != "score"] if theirs else []
    assert [[e[k] for k in fields] for e in ours] == [[e[k] for k in fields] for e in theirs]
    assert [set(e) for e in ours] == [set(e) for e in theirs]
    np.testing.assert_allclose([e["score"] for e in ours], [float(e["score"]) for e in theirs], atol=1e-4)


def _same_labels(ours: Any, theirs: Any) -> None:
    """Pipeline-shaped results equal: same nesting, labels and order; scores within 1e-4."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs) and ours["label"] == theirs["label"]
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-4)
        return
    assert isinstance(ours, list) and len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        _same_labels(a, b)


# ------------------------------------------------------------------------------------------------ export
def test_manifests_record_task_labels_and_scoring(ner_bundle, bilou_bundle, assertion_bundle, multilabel_bundle):
    ner = json.loads((ner_bundle / "manifest.json").read_text())
    assert ner["task"] == "token-classification"
    assert ner["model"]["architecture"] == "BertForTokenClassification"
    assert ner["head"]["labels"].index("O") == 6 and ner["head"]["scheme"] == "BIO"
    assert ner["head"]["ignore_labels"] == ["O"] and ner["head"]["function"] == "softmax"
    assert "logits" in ner["graph"]["outputs"] and "mean_pooled" in ner["graph"]["outputs"]
    assert ner["variants"]["fp32"]["parity"]["max_abs_diff_logits"] < 1e-4
    quality = ner["variants"]["int8"]["quality"]
    assert quality["passed"] is True and quality["reference_entities"] >= 20
    assert quality["entity_f1"] >= 0.9 and quality["entity_recall"] >= 0.95
    assert ner["variants"]["int8"]["fused_ops"]["QGemm"] > 0
    bilou = json.loads((bilou_bundle / "manifest.json").read_text())["head"]
    assert bilou["scheme"] == "BILOU" and bilou["ignore_labels"] == ["O", "X"]
    assertion = json.loads((assertion_bundle / "manifest.json").read_text())
    assert assertion["head"] == {
        "labels": ["present", "absent", "possible"],
        "function": "softmax",
        "problem_type": "single_label_classification",
        "ignore_labels": [],
    }
    # a vocab.txt-only derivative keeps the lowercasing it was fine-tuned with
    assert assertion["tokenizer"]["lowercase"] is True
    assert assertion["tokenizer"]["lowercase_source"] == "derivative-tokenizer"
    assert assertion["variants"]["int8"]["quality"]["label_top1_agreement"] >= 0.95
    multi = json.loads((multilabel_bundle / "manifest.json").read_text())["head"]
    assert multi["function"] == "sigmoid" and multi["problem_type"] == "multi_label_classification"


def test_reranker_manifest_and_gate(reranker_bundle):
    m = json.loads((reranker_bundle / "manifest.json").read_text())
    assert m["head"]["labels"] == ["LABEL_0"] and m["head"]["function"] == "sigmoid"
    quality = m["variants"]["int8"]["quality"]
    assert quality["rank_correlation_mean"] >= 0.95 and quality["passed"] is True


def test_probe_file_is_recorded(ner_bundle, probe_file):
    from clinbert_onnx.quantize.task_gate import probe_hash, read_probe

    quality = json.loads((ner_bundle / "manifest.json").read_text())["variants"]["int8"]["quality"]
    assert quality["probe_sha256"] == probe_hash(read_probe(probe_file)) and quality["probe_texts"] == 40


def test_unserved_head_is_an_error_naming_it(tmp_path):
    import finetune
    from clinbert_onnx.export import ExportOptions, export_bundle

    ckpt = tmp_path / "qa"
    shutil.copytree(finetune.cached("assertion"), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["architectures"] = ["BertForQuestionAnswering"]
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="BertForQuestionAnswering"):
        export_bundle(ExportOptions(model=str(ckpt), out=tmp_path / "out"))


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_token_classification_equals_the_pipeline(ner_bundle, strategy):
    import finetune

    model = _fp32(ner_bundle)
    pipe = _pipeline("token-classification", finetune.cached("ner"))
    texts = [*_texts(11, 6), "Started on Zosyn 4.5 g IV q8h. ÜNKNOWN ☃ pain", "Vital signs were stable overnight."]
    ours = model.token_classification(texts, aggregation_strategy=strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pipe(texts, aggregation_strategy=strategy)
    assert sum(map(len, theirs)) > 10
    for a, b in zip(ours, theirs, strict=True):
        _same_entities(a, b)
    one = model.token_classification(texts[0], aggregation_strategy=strategy)
    _same_entities(one, theirs[0])


def test_token_classification_ignore_labels_and_bilou_none(bilou_bundle):
    import finetune

    model = _fp32(bilou_bundle)
    pipe = _pipeline("token-classification", finetune.cached("bilou"))
    texts = ["Restarted Zosyn 4.5 g intravenously twice daily. She reports hyperkalemia.", *_texts(12, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ours, theirs in zip(
            model.token_classification(texts, ignore_labels=["O", "X"]),
            pipe(texts, ignore_labels=["O", "X"]),
            strict=True,
        ):
            _same_entities(ours, theirs)
        everything = model.token_classification(texts[0], ignore_labels=[])
        _same_entities(everything, pipe(texts[0], ignore_labels=[]))
    # the pseudo-label X joins the default ignore_labels
    assert any(e["entity"] == "X" for e in everything)
    assert not any(e["entity"] == "X" for e in model.token_classification(texts[0]))


def test_bilou_groups_whole_entities(bilou_bundle):
    model = _fp32(bilou_bundle)
    text = "Started on piperacillin-tazobactam 4.5 g IV q8h."
    found = model.token_classification(text, aggregation_strategy="first")
    assert [(e["entity_group"], text[e["start"] : e["end"]]) for e in found][:3] == [
        ("DRUG", "piperacillin-tazobactam"),
        ("DOSE", "4.5 g"),
        ("ROUTE", "IV"),
    ]


def _groups(labels: list[str], scheme: str | None = None) -> list[str]:
    starts = group_starts(labels, scheme)
    return ["+".join(labels[a:b]) for a, b in itertools.pairwise(starts)]


def test_grouping_bilou_bioes_and_the_pipeline_rule():
    labels = ["B-DATE", "I-DATE", "L-DATE", "U-DATE", "U-DATE", "O", "B-AGE", "L-AGE", "I-AGE"]
    assert _groups(labels, "BILOU") == ["B-DATE+I-DATE+L-DATE", "U-DATE", "U-DATE", "O", "B-AGE+L-AGE", "I-AGE"]
    # transformers only knows B- and I-: L-DATE and U-DATE are types of their own
    assert _groups(labels) == ["B-DATE+I-DATE", "L-DATE", "U-DATE+U-DATE", "O", "B-AGE", "L-AGE", "I-AGE"]
    bioes = ["B-X", "E-X", "S-X", "B-X", "I-X", "E-X", "I-X"]
    assert _groups(bioes, "BIOES") == ["B-X+E-X", "S-X", "B-X+I-X+E-X", "I-X"]


@pytest.mark.parametrize("top_k", ["legacy", 1, 2, None])
@pytest.mark.parametrize("function", [None, "softmax", "sigmoid", "none"])
def test_text_classification_equals_the_pipeline(assertion_bundle, top_k, function):
    import finetune

    model = _fp32(assertion_bundle)
    pipe = _pipeline("text-classification", finetune.cached("assertion"))
    texts = ["Patient denies chest pain.", "She reports fever.", "Concern for pneumonia.", "He presents with Zosyn."]
    kwargs: dict[str, Any] = {} if top_k == "legacy" else {"top_k": top_k}
    if function is not None:
        kwargs["function_to_apply"] = function
    for inputs in (texts, texts[0]):
        _same_labels(model.text_classification(inputs, **kwargs), pipe(inputs, **kwargs))


def test_multilabel_and_pairs_equal_the_pipeline(multilabel_bundle, reranker_bundle):
    import finetune

    texts = _texts(13, 5, 3)
    multi = _pipeline("text-classification", finetune.cached("multilabel"))
    _same_labels(_fp32(multilabel_bundle).text_classification(texts, top_k=None), multi(texts, top_k=None))
    pairs = [{"text": "pneumonia", "text_pair": t} for t in ["She reports pneumonia.", "He reports fever."]]
    rerank = _pipeline("text-classification", finetune.cached("reranker"))
    model = _fp32(reranker_bundle)
    _same_labels(model.text_classification(pairs), rerank(pairs))
    _same_labels(model.text_classification(pairs[0], top_k=1), rerank(pairs[0], top_k=1))


def test_rerank_orders_by_the_cross_encoder(reranker_bundle):
    import finetune
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = _fp32(reranker_bundle)
    passages = ["He reports fever.", "She reports chest pain.", "Patient complains of chest pain.", "Labs reviewed."]
    ranked = model.rerank("chest pain", passages)
    ckpt = finetune.cached("reranker")
    tok = AutoTokenizer.from_pretrained(str(ckpt))
    torch_model = AutoModelForSequenceClassification.from_pretrained(str(ckpt)).eval()
    with torch.inference_mode():
        logits = torch_model(**tok(["chest pain"] * 4, passages, return_tensors="pt", padding=True)).logits[:, 0]
    expected = torch.sigmoid(logits).numpy()
    assert [r["index"] for r in ranked] == list(np.argsort(-expected, kind="stable"))
    assert [r["score"] for r in ranked] == pytest.approx(sorted(expected, reverse=True), abs=1e-4)
    raw = model.rerank("chest pain", passages, raw_scores=True)
    assert [r["score"] for r in raw] == pytest.approx(sorted(logits.numpy(), reverse=True), abs=1e-4)


# ------------------------------------------------------------------------------------------------ long notes
def _torch_central_labels(checkpoint: Path, ids: list[int], capacity: int, stride: int) -> list[int]:
    """Independent reference: PyTorch on each window, each token's label from the window it is most central in."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModelForTokenClassification.from_pretrained(str(checkpoint)).eval()
    n = len(ids)
    starts = [*range(0, n - capacity, capacity - stride), n - capacity]
    best: list[tuple[int, int]] = [(-1, 0)] * n  # (centrality, label)
    for s in starts:
        row = [tok.cls_token_id, *ids[s : s + capacity], tok.sep_token_id]
        with torch.inference_mode():
            labels = model(input_ids=torch.tensor([row])).logits[0, 1:-1].argmax(-1).tolist()
        for j, label in enumerate(labels):
            centrality = min(j, capacity - 1 - j)
            if centrality > best[s + j][0]:
                best[s + j] = (centrality, label)
    return [label for _, label in best]


def test_long_note_windows_match_an_independent_reference(ner_bundle):
    import finetune

    model = _fp32(ner_bundle)
    note = " ".join(_texts(21, 30, 1))
    ids = model.tokenize([note])[0].tolist()
    assert len(ids) > 3 * (model.max_length - 2)  # many windows
    ours = model.token_classification(note, ignore_labels=[], stride=16)
    head = model.bundle.manifest.head
    assert head is not None
    labels = head.labels
    expected = _torch_central_labels(finetune.cached("ner"), ids, model.max_length - 2, 16)
    assert [e["entity"] for e in ours] == [labels[i] for i in expected]
    assert [e["index"] for e in ours] == list(range(1, len(ids) + 1))


def test_long_note_entities_match_sentences_one_by_one(ner_bundle):
    """Entities of a 30-sentence note (many 64-position windows) against each sentence run alone, offsets
    shifted: none doubled or overlapping, and nearly all the same (a tiny model's labels still move a little
    with context; the exact window merge is checked against PyTorch above)."""
    model = _fp32(ner_bundle)
    sentences = _texts(22, 30, 1)
    note = " ".join(sentences)
    whole = model.token_classification(note, aggregation_strategy="first")
    assert model.encode(note).windows[0] > 3
    alone, offset = [], 0
    for sentence, found in zip(
        sentences, model.token_classification(sentences, aggregation_strategy="first"), strict=True
    ):
        alone += [(e["entity_group"], e["start"] + offset, e["end"] + offset, e["word"]) for e in found]
        offset += len(sentence) + 1
    ours = [(e["entity_group"], e["start"], e["end"], e["word"]) for e in whole]
    assert all(note[s:e] for _, s, e, _ in ours)
    assert len({(s, e) for _, s, e, _ in ours}) == len(ours)  # none doubled
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(ours))  # in order, no overlaps
    same = len(set(ours) & set(alone))
    assert same >= 0.9 * len(alone) and same >= 0.9 * len(ours)


# ------------------------------------------------------------------------------------------------ errors
def test_a_task_the_bundle_cannot_serve_names_its_task(ner_bundle, assertion_bundle, tiny_bundle):
    ner, assertion = _fp32(ner_bundle), _fp32(assertion_bundle)
    with pytest.raises(TaskNotServedError, match="is a text-classification bundle") as info:
        assertion.token_classification("She reports fever.")
    assert info.value.exit_code == 2 and info.value.http_status == 422
    with pytest.raises(TaskNotServedError, match="is a token-classification bundle"):
        ner.text_classification("She reports fever.")
    with pytest.raises(NoMaskHeadError, match="is a token-classification bundle"):
        ner.fill_mask("She reports [MASK].")
    with pytest.raises(TaskNotServedError, match="3 labels"):
        assertion.rerank("fever", ["She reports fever."])
    with pytest.raises(TaskNotServedError, match="fill-mask bundle"):
        ClinicalBert.load(tiny_bundle, device="cpu").token_classification("x")
    assert ner.embed("She reports fever.").shape == (1, 64)  # every bundle still serves embeddings


def test_bad_input_is_a_clear_error(ner_bundle, assertion_bundle, reranker_bundle):
    ner, assertion, reranker = _fp32(ner_bundle), _fp32(assertion_bundle), _fp32(reranker_bundle)
    cases = [
        (lambda: ner.token_classification("fever", aggregation_strategy="longest"), "aggregation_strategy"),
        (lambda: ner.token_classification("fever", stride=200), "stride"),
        (lambda: ner.token_classification("fever", ignore_labels="O"), "ignore_labels"),
        (lambda: ner.token_classification(["fever", "  "]), "input 1"),
        (lambda: assertion.text_classification("fever", top_k=0), "top_k"),
        (lambda: assertion.text_classification("fever", top_k=4), "top_k"),
        (lambda: assertion.text_classification("fever", function_to_apply="relu"), "function_to_apply"),
        (lambda: reranker.text_classification({"text": "fever", "text_pair": " "}), "text_pair"),
        (lambda: reranker.text_classification([("fever", "")]), "input 0"),
        (lambda: reranker.text_classification({"text": "a", "other": "b"}), "text_pair"),
        (lambda: reranker.rerank("fever", []), "texts"),
        (lambda: reranker.rerank("", ["x"]), "query"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()


def test_text_classification_long_text(assertion_bundle):
    model = _fp32(assertion_bundle)
    long = "She reports fever. " * 100
    assert model.text_classification(long)[0]["label"] in ("present", "absent", "possible")
    with pytest.raises(InputError, match="tokens"):
        model.text_classification(long, long_text="error")


# ------------------------------------------------------------------------------------------------ gate
def test_gate_fails_a_damaged_recipe_and_passes_the_default(tmp_path, probe_file):
    """An outlier column in the classifier (a label FP32 never predicts) crushes per-tensor INT8 weights;
    per-channel INT8 (the default) is unaffected."""
    import finetune
    import torch
    from clinbert_onnx.export import ExportOptions, export_bundle
    from clinbert_onnx.quantize import GateThresholds, get_recipe, requantize
    from transformers import AutoModelForTokenClassification

    ckpt = tmp_path / "outlier-ckpt"
    shutil.copytree(finetune.cached("ner"), ckpt)
    model = AutoModelForTokenClassification.from_pretrained(str(ckpt))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] + ["Z-OUTLIER"]
    old = model.classifier
    model.classifier = torch.nn.Linear(old.in_features, len(labels))
    with torch.no_grad():
        model.classifier.weight[:-1] = old.weight
        model.classifier.bias[:-1] = old.bias
        model.classifier.weight[-1] = 0.0
        model.classifier.weight[-1, 0] = 50.0  # per-tensor: one scale of 50/127 for every weight of the head
        model.classifier.bias[-1] = -500.0
    model.config.update({"num_labels": len(labels), "id2label": dict(enumerate(labels))})
    model.config.label2id = {x: i for i, x in enumerate(labels)}
    model.save_pretrained(ckpt)
    bundle = export_bundle(ExportOptions(model=str(ckpt), out=tmp_path / "outlier", probe=probe_file))
    assert json.loads((bundle / "manifest.json").read_text())["variants"]["int8"]["quality"]["passed"] is True
    with pytest.raises(QualityGateError, match="entity") as info:
        requantize(bundle, get_recipe("int8-per-tensor"), GateThresholds(), False, "int8", probe_file)
    assert info.value.exit_code == 6


def test_too_few_reference_entities_is_a_miss():
    from clinbert_onnx.quantize.task_gate import TaskThresholds, judge_task

    missed = judge_task({"probe_texts": 120, "reference_entities": 3, "entity_f1": 1.0}, TaskThresholds())
    assert len(missed) == 1 and "--probe" in missed[0]
