"""``clinbert score --task text-classification --text-pair-column``: pairs (premise / hypothesis) from every
tabular format, equal to ``ClinicalBert.text_classification`` and transformers' pipeline; bad pairs as row
errors; neither text ever written. Also: the type of the ids of an input without an id column."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from clinbert_onnx import ClinicalBert
from clinbert_onnx.cli import main
from clinbert_onnx.errors import InputError
from clinbert_onnx.score import ResumeError, ScoreOptions, run_score
from conftest import crash_at_checkpoint, requires_export

pytestmark = requires_export
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _pairs(n: int) -> list[dict[str, Any]]:
    """MedNLI-like rows: ``premise``, ``hypothesis`` and a string id."""
    import finetune

    rng = random.Random(11)
    rows = []
    for i in range(n):
        problem = rng.choice(finetune.PROBLEMS)
        cue = rng.choice(finetune.CUES[rng.choice(["present", "absent"])])
        hypothesis = rng.choice(finetune.FILLERS) if i % 3 == 2 else f"The patient has {problem}."
        rows.append({"nid": f"n{i}", "premise": f"She {cue} {problem}.", "hypothesis": hypothesis})
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(pa.Table.from_pylist(rows), path)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return list(pq.read_table(path).to_pylist())


def _score(bundle: Path, inp: Path, out: Path, **kw: Any) -> Any:
    kw = {"task": "text-classification", "text_column": "premise", "quiet": True, "variant": "fp32", **kw}
    return run_score(ScoreOptions(bundle=bundle, input=str(inp), out=out, **kw))


@pytest.mark.parametrize(("fmt", "out_fmt"), [("csv", "parquet"), ("jsonl", "jsonl"), ("parquet", "parquet")])
def test_pairs_equal_the_core_and_never_reach_the_output(nli_bundle, tmp_path, fmt, out_fmt):
    rows = _pairs(12)
    inp = _write(tmp_path / f"pairs.{fmt}", rows)
    out = tmp_path / f"labels.{out_fmt}"
    summary = _score(nli_bundle, inp, out, id_column="nid", text_pair_column="hypothesis", top_k=3)
    assert summary.written == 12 and summary.errors == 0
    got = _read(out)
    model = ClinicalBert.load(nli_bundle, variant="fp32")
    expected = model.text_classification(
        [{"text": r["premise"], "text_pair": r["hypothesis"]} for r in rows], top_k=None
    )
    assert [r["id"] for r in got] == [r["nid"] for r in rows]
    for row, want in zip(got, expected, strict=True):
        assert [x["label"] for x in row["labels"]] == [x["label"] for x in want]
        assert [x["score"] for x in row["labels"]] == pytest.approx([x["score"] for x in want], abs=1e-6)
    # the pair is what is scored: some rows differ from their premise alone
    alone = model.text_classification([r["premise"] for r in rows], top_k=None)
    assert any(a[0]["label"] != b[0]["label"] for a, b in zip(alone, expected, strict=True))
    written = out.read_bytes() + summary.errors_path.read_bytes()
    assert not any(r["premise"].encode() in written or r["hypothesis"].encode() in written for r in rows)


def test_pairs_equal_the_transformers_pipeline(nli_bundle, tmp_path):
    import finetune
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    rows = _pairs(6)
    out = tmp_path / "labels.jsonl"
    _score(nli_bundle, _write(tmp_path / "p.jsonl", rows), out, text_pair_column="hypothesis", top_k=3)
    checkpoint = str(finetune.cached("nli"))
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    pipe = pipeline(
        "text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(checkpoint), device="cpu"
    )
    for row, got in zip(rows, _read(out), strict=True):
        theirs = pipe({"text": row["premise"], "text_pair": row["hypothesis"]}, top_k=None)
        assert [x["label"] for x in got["labels"]] == [x["label"] for x in theirs]
        assert [x["score"] for x in got["labels"]] == pytest.approx([x["score"] for x in theirs], abs=1e-4)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_bad_pair_is_a_row_error_without_its_text(nli_bundle, tmp_path, fmt):
    rows = _pairs(5)
    rows[1]["hypothesis"] = "" if fmt != "parquet" else None  # CSV: an empty field is a missing value
    rows[3]["hypothesis"] = "   " if fmt != "csv" else None
    out = tmp_path / "labels.jsonl"
    summary = _score(
        nli_bundle, _write(tmp_path / f"p.{fmt}", rows), out, id_column="nid", text_pair_column="hypothesis"
    )
    assert summary.written == 3 and summary.errors == 2
    assert [r["id"] for r in _read(out)] == ["n0", "n2", "n4"]
    errors = _read(summary.errors_path)
    assert [(e["row"], e["id"]) for e in errors] == [(2, "n1"), (4, "n3")]
    for e in errors:
        assert set(e) == {"row", "id", "reason"}
        assert "'hypothesis'" in e["reason"] or "text_pair" in e["reason"], e  # which member, never its text
    assert not any(r["premise"].encode() in summary.errors_path.read_bytes() for r in rows)
    with pytest.raises(InputError, match="row 2"):  # --on-error fail stops at the first
        _score(nli_bundle, tmp_path / f"p.{fmt}", tmp_path / "f.jsonl", text_pair_column="hypothesis", on_error="fail")


def test_the_pair_column_must_exist(nli_bundle, tmp_path):
    for fmt in ("csv", "jsonl", "parquet"):
        inp = _write(tmp_path / f"p.{fmt}", _pairs(2))
        with pytest.raises(InputError, match="column 'hyp' not found"):
            _score(nli_bundle, inp, tmp_path / "o.jsonl", text_pair_column="hyp")


def test_cli_pair_column_needs_a_pair_task_and_columns(nli_bundle, tiny_bundle, tmp_path, capsys):
    inp = _write(tmp_path / "p.csv", _pairs(2))
    txt = tmp_path / "p.txt"
    txt.write_text("a\n")
    out = str(tmp_path / "o.jsonl")
    cases = {
        "--task text-classification (pairs of texts)": [str(tiny_bundle), str(inp), "--text-pair-column", "hypothesis"],
        "--task text-classification": [str(inp), "--task", "token-classification", "--text-pair-column", "hypothesis"],
        "a .txt input has no columns": [str(txt), "--task", "text-classification", "--text-pair-column", "h"],
        "--text-pair-column and --text-column": [
            str(inp),
            "--task",
            "text-classification",
            "--text-pair-column",
            "text",
        ],
        "--text-pair-column and --id-column": [
            *[str(inp), "--task", "text-classification", "--text-pair-column", "nid", "--id-column", "nid"]
        ],
        "--text-pair-column is for the local engine": [
            *[str(inp), "--task", "text-classification", "--text-pair-column", "h", "--engine", "spark"]
        ],
        "run --task text-classification on the local engine": [
            *[str(inp), "--task", "text-classification", "--engine", "spark"]
        ],
    }
    for message, argv in cases.items():
        if argv[0] != str(tiny_bundle):
            argv = [str(nli_bundle), *argv]
        assert main(["score", *argv, "--out", out, "--quiet"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not Path(out).exists()
    assert main(["score", str(nli_bundle), str(inp), "--out", out, "--quiet", "--task", "text-classification",
                 "--text-column", "premise", "--text-pair-column", "hypothesis"]) == 0  # fmt: skip
    assert len(_read(Path(out))) == 2


def test_resume_refuses_another_pair_column(nli_bundle, tmp_path, monkeypatch):

    rows = [{**r, "other": r["premise"]} for r in _pairs(30)]
    inp = _write(tmp_path / "p.jsonl", rows)
    out = tmp_path / "o.jsonl"
    with crash_at_checkpoint(monkeypatch, 3):
        _score(nli_bundle, inp, out, text_pair_column="hypothesis", window_rows=10)
    for other in ("other", None):
        with pytest.raises(ResumeError, match="text_pair_column"):
            _score(nli_bundle, inp, out, text_pair_column=other, window_rows=10, resume=True)
    summary = _score(nli_bundle, inp, out, text_pair_column="hypothesis", window_rows=10, resume=True)
    assert summary.resumed_from == 10 and [r["id"] for r in _read(out)] == list(range(1, 31))


# ---------------------------------------------------------------------------------------------- ids
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("out_fmt", ["parquet", "jsonl"])
def test_without_an_id_column_ids_are_row_numbers(tiny_bundle, assertion_bundle, tmp_path, fmt, out_fmt):
    """Regression: a CSV without --id-column to Parquet failed with "Expected bytes, got int" (the writer's id
    column was typed as CSV ids are, strings, but the ids were row numbers). Row numbers are integers in every
    format and output, for every task."""
    inp = _write(tmp_path / f"n.{fmt}", [{"text": t} for t in ("Patient denies fever.", "She reports chest pain.")])
    for task, bundle in (("embed", tiny_bundle), ("text-classification", assertion_bundle)):
        out = tmp_path / f"{task}.{out_fmt}"
        run_score(ScoreOptions(bundle=bundle, input=str(inp), out=out, task=task, quiet=True))
        assert [r["id"] for r in _read(out)] == [1, 2]
        if out_fmt == "parquet":
            assert pq.read_schema(out).field("id").type == pa.int64()


def test_gate_of_a_pair_classifier_runs_pairs_from_the_probe_file(nli_bundle, tmp_path):
    """A probe line ``premise<TAB>hypothesis`` is a pair: the INT8 gate judges what the model reads."""
    import json
    import shutil

    from clinbert_onnx.quantize.task_gate import probe_items

    rows = _pairs(30)
    probe = tmp_path / "pairs.txt"
    probe.write_text("".join(f"{r['premise']}\t{r['hypothesis']}\n" for r in rows) + "A single sentence.\n")
    items = probe_items(probe.read_text().splitlines())
    assert items[0] == {"text": rows[0]["premise"], "text_pair": rows[0]["hypothesis"]}
    assert items[-1] == "A single sentence." and probe_items(["a\tb\tc", "a\t"]) == ["a\tb\tc", "a\t"]
    copy = tmp_path / "nli"
    shutil.copytree(nli_bundle, copy)
    assert main(["quantize", str(copy), "--recipe", "int8", "--probe", str(probe), "--allow-degraded"]) == 0
    quality = json.loads((copy / "manifest.json").read_text())["variants"]["int8"]["quality"]
    assert quality["probe_texts"] == 31 and quality["probe_pairs"] == 30
    assert 0.0 <= quality["label_top1_agreement"] <= 1.0 and quality["probability_change_mean"] >= 0.0
