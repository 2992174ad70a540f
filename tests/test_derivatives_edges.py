"""Fine-tuned derivatives at the edges: the CLI, ``clinbert score`` and the server's TEI-shaped routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from clinbert_onnx import ClinicalBert
from clinbert_onnx.cli import main
from conftest import requires_export

pytestmark = requires_export
NOTE = "Started on Zosyn 4.5 g IV q8h. She reports fever."


def _checkpoint_labels(name: str) -> list[str]:
    """The fine-tuned checkpoint's labels in id order (its config.json's id2label)."""
    import finetune

    id2label = json.loads((finetune.cached(name) / "config.json").read_text())["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_token_classification_table_and_json(ner_bundle, capsys):
    assert main(["token-classification", str(ner_bundle), NOTE, "--variant", "fp32"]) == 0
    table = capsys.readouterr().out
    assert "DRUG" in table and "entity_group" not in table
    assert main(["token-classification", str(ner_bundle), NOTE, "--json", "--aggregation", "first"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    entities = json.loads(lines[0])["entities"]
    expected = ClinicalBert.load(ner_bundle).token_classification(NOTE, aggregation_strategy="first")
    assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == [
        (e["entity_group"], e["start"], e["end"]) for e in expected
    ]


def test_cli_text_classification_and_rerank(assertion_bundle, reranker_bundle, tmp_path, capsys):
    assert main(["text-classification", str(assertion_bundle), "Patient denies fever.", "--top-k", "all"]) == 0
    assert {"present", "absent", "possible"} <= set(capsys.readouterr().out.split())
    assert main(["text-classification", str(assertion_bundle), "a", "b", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and len(rows[0]["labels"]) == 1
    notes = tmp_path / "notes.txt"
    notes.write_text("She reports fever.\n\nHe reports chest pain.\n", encoding="utf-8")
    assert main(["rerank", str(reranker_bundle), "chest pain", str(notes), "--json"]) == 0
    ranked = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert sorted(r["index"] for r in ranked) == [0, 1]
    assert ranked[0]["score"] >= ranked[1]["score"]


def test_cli_errors_exit_2(assertion_bundle, ner_bundle, capsys):
    cases = [
        ["token-classification", str(ner_bundle), "x", "--aggregation", "longest"],
        ["text-classification", str(assertion_bundle), "x", "--top-k", "4"],
        ["rerank", str(assertion_bundle), "fever", "x"],
        ["token-classification", str(assertion_bundle), "x"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    main(["token-classification", str(assertion_bundle), "x"])
    assert "text-classification bundle" in capsys.readouterr().err


def test_cli_info_shows_task_and_labels(ner_bundle, assertion_bundle, reranker_bundle, capsys):
    assert main(["info", str(ner_bundle)]) == 0
    out = capsys.readouterr().out
    assert "token-classification: 9 labels" in out and "B-DRUG, I-DRUG" in out and "entity_f1" in out
    for name, bundle in (("assertion", assertion_bundle), ("reranker", reranker_bundle)):
        assert main(["info", str(bundle)]) == 0
        lines = capsys.readouterr().out.splitlines()
        labels = _checkpoint_labels(name)
        assert f"task       text-classification: {len(labels)} labels, scores by" in "\n".join(lines)
        assert f"labels     {', '.join(labels)}" in lines  # in id order


# ------------------------------------------------------------------------------------------------ score
def test_score_entities_to_parquet_and_labels_to_jsonl(ner_bundle, assertion_bundle, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    notes = tmp_path / "notes.txt"
    notes.write_text(f"{NOTE}\n\nHe reports chest pain.\n", encoding="utf-8")
    out = tmp_path / "entities.parquet"
    args = ["score", str(ner_bundle), str(notes), "--out", str(out), "--task", "token-classification", "--quiet"]
    assert main(args) == 0
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == [1, 3]
    assert set(rows[0]) == {"id", "entities", "windows", "tokens"}  # never the note text
    expected = ClinicalBert.load(ner_bundle).token_classification(NOTE, aggregation_strategy="simple")
    assert [e["word"] for e in rows[0]["entities"]] == [e["word"] for e in expected]
    assert set(rows[0]["entities"][0]) == {"entity_group", "score", "word", "start", "end"}
    labels = tmp_path / "labels.jsonl"
    argv = ["score", str(assertion_bundle), str(notes), "--out", str(labels), "--task", "text-classification"]
    assert main([*argv, "--quiet"]) == 0
    first = json.loads(labels.read_text().splitlines()[0])
    assert [x["label"] for x in first["labels"]] and len(first["labels"]) == 3  # --top-k 5 clamped to 3 labels
    wrong = ["score", str(assertion_bundle), str(notes), "--out", str(tmp_path / "x.jsonl")]
    assert main([*wrong, "--task", "token-classification", "--quiet"]) == 2


# ------------------------------------------------------------------------------------------------ server
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def servers(ner_bundle, assertion_bundle, reranker_bundle) -> Iterator[dict[str, str]]:
    pytest.importorskip("fastapi")
    from clinbert_onnx.serve import ServeConfig, create_app
    from serve_support import running

    config = ServeConfig(max_inputs=8, max_chars=2000)
    models = {
        name: ClinicalBert.load(b, variant="fp32")
        for name, b in (("ner", ner_bundle), ("assertion", assertion_bundle), ("reranker", reranker_bundle))
    }
    with (
        running(create_app(models["ner"], config)) as ner,
        running(create_app(models["assertion"], config)) as assertion,
        running(create_app(models["reranker"], config)) as reranker,
    ):
        yield {"ner": ner, "assertion": assertion, "reranker": reranker}


def _post(url: str, path: str, body: Any) -> Any:
    return httpx.post(f"{url}{path}", json=body, timeout=30)


def _tei_error(response: Any, status: int, error_type: str) -> str:
    """TEI's routes (/predict, /rerank) answer in TEI's error shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type, body
    return str(body["error"])


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


def test_tei_predict_shapes(servers, assertion_bundle, reranker_bundle):
    model = ClinicalBert.load(assertion_bundle, variant="fp32")
    one = _post(servers["assertion"], "/predict", {"inputs": "Patient denies fever."}).json()
    expected = model.text_classification("Patient denies fever.", top_k=None)
    assert [p["label"] for p in one] == [p["label"] for p in expected] and set(one[0]) == {"score", "label"}
    assert [p["score"] for p in one] == pytest.approx([p["score"] for p in expected], abs=1e-6)
    batch = _post(servers["assertion"], "/predict", {"inputs": ["a", "b", "c"]}).json()
    assert len(batch) == 3 and all(len(x) == 3 for x in batch)
    raw = _post(servers["assertion"], "/predict", {"inputs": "fever", "raw_scores": True}).json()
    logits = model.text_classification("fever", top_k=None, function_to_apply="none")
    assert [p["score"] for p in raw] == pytest.approx([p["score"] for p in logits], abs=1e-5)
    pair = ClinicalBert.load(reranker_bundle, variant="fp32")
    expected_pair = pair.text_classification({"text": "fever", "text_pair": "She reports fever."}, top_k=None)
    got = _post(servers["reranker"], "/predict", {"inputs": ["fever", "She reports fever."]}).json()  # one pair
    assert len(got) == 1 and got[0]["score"] == pytest.approx(expected_pair[0]["score"], abs=1e-6)
    pairs = _post(servers["reranker"], "/predict", {"inputs": [["fever", "She reports fever."]]}).json()
    assert len(pairs) == 1 and pairs[0][0]["score"] == pytest.approx(got[0]["score"], abs=1e-6)


def test_tei_predict_truncation(servers):
    long = "She reports fever. " * 60
    assert _post(servers["assertion"], "/predict", {"inputs": long, "truncate": True}).status_code == 200
    _tei_error(_post(servers["assertion"], "/predict", {"inputs": long}), 422, "Validation")
    left = {"inputs": long, "truncate": True, "truncation_direction": "Left"}
    assert _post(servers["assertion"], "/predict", left).status_code == 200


def test_tei_rerank(servers, reranker_bundle):
    texts = ["He reports fever.", "She reports chest pain.", "Labs reviewed."]
    body = {"query": "chest pain", "texts": texts, "return_text": True}
    got = _post(servers["reranker"], "/rerank", body).json()
    expected = ClinicalBert.load(reranker_bundle, variant="fp32").rerank("chest pain", texts)
    assert [r["index"] for r in got] == [r["index"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-6)
    assert all(r["text"] == texts[r["index"]] for r in got)
    raw = _post(servers["reranker"], "/rerank", {"query": "chest pain", "texts": texts, "raw_scores": True}).json()
    assert "text" not in raw[0] and np.isclose(1 / (1 + np.exp(-raw[0]["score"])), got[0]["score"], atol=1e-5)
    _tei_error(_post(servers["reranker"], "/rerank", {"query": "chest pain", "texts": []}), 422, "Validation")
    _tei_error(_post(servers["reranker"], "/rerank", {"query": " ", "texts": ["x"]}), 422, "Validation")


def test_token_classification_route(servers, ner_bundle):
    model = ClinicalBert.load(ner_bundle, variant="fp32")
    got = _post(servers["ner"], "/token-classification", {"inputs": NOTE}).json()
    expected = model.token_classification(NOTE, aggregation_strategy="simple")
    assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in got] == [
        (e["entity_group"], e["start"], e["end"], e["word"]) for e in expected
    ]
    body = {"inputs": [NOTE, "fever"], "parameters": {"aggregation_strategy": "none", "ignore_labels": []}}
    both = _post(servers["ner"], "/token-classification", body).json()
    assert len(both) == 2 and "index" in both[0][0] and len(both[1]) == 1
    bad = {"inputs": NOTE, "parameters": {"aggregation_strategy": "longest"}}
    assert "aggregation_strategy" in _error(_post(servers["ner"], "/token-classification", bad), 422, "invalid_input")


@pytest.mark.parametrize(
    ("name", "task", "kind"),
    [
        ("assertion", "text-classification", "classifier"),
        ("reranker", "text-classification", "reranker"),
        ("ner", "token-classification", "classifier"),  # TEI has no NER model type: classifier, with the labels
    ],
)
def test_info_of_a_derived_bundle_is_teis(servers, name, task, kind):
    jsonschema = pytest.importorskip("jsonschema")
    import tei_contract

    info = httpx.get(f"{servers[name]}/info").json()
    jsonschema.validate(info, tei_contract.INFO)
    labels = _checkpoint_labels(name)
    assert info["task"] == task and info["labels"] == labels
    assert info["model_type"] == {
        kind: {"id2label": {str(i): x for i, x in enumerate(labels)}, "label2id": {x: i for i, x in enumerate(labels)}}
    }
    rerank = httpx.post(f"{servers[name]}/rerank", json={"query": "fever", "texts": ["She reports fever."]})
    assert (rerank.status_code == 200) is (kind == "reranker")  # the reranker model type is what serves /rerank


def test_a_route_the_bundle_cannot_serve_names_its_task(servers):
    # TEI's routes: TEI's 424 "not applicable" (as for /embed_sparse), naming the bundle's task
    message = _tei_error(_post(servers["ner"], "/predict", {"inputs": "x"}), 424, "Backend")
    assert "token-classification bundle" in message
    message = _tei_error(_post(servers["assertion"], "/rerank", {"query": "x", "texts": ["y"]}), 424, "Backend")
    assert "text-classification bundle" in message
    # our own route: 422 task_not_supported
    message = _error(_post(servers["assertion"], "/token-classification", {"inputs": "x"}), 422, "task_not_supported")
    assert "text-classification bundle" in message
    _error(_post(servers["ner"], "/fill-mask", {"inputs": "a [MASK]"}), 422, "no_mlm_head")
    _tei_error(_post(servers["reranker"], "/predict", {"inputs": [["a", ""]]}), 422, "Validation")
    _tei_error(_post(servers["reranker"], "/predict", {"inputs": [["a", "b", "c"]]}), 422, "Validation")
    assert _post(servers["ner"], "/embed", {"inputs": "fever"}).status_code == 200  # embeddings still served
    assert httpx.get(f"{servers['ner']}/info").json()["max_length"] == 64
