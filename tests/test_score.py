"""``clinbert score``: formats, ids, ordering, bad rows, overwrite rules, workers, progress and the CLI."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from clinbert_onnx.errors import BundleError, InputError, MissingDependencyError, NoMaskHeadError, TextTooLongError
from clinbert_onnx.score import OutputExistsError, ResumeError, RowError, ScoreOptions, run_score
from clinbert_onnx.score.engine import row_reason
from clinbert_onnx.score.writers import NPY_HEADER, npy_header
from conftest import crash_at_checkpoint

DATA = Path(__file__).parent / "data"
CORPUS = [line for line in (DATA / "clinical_corpus.txt").read_text(encoding="utf-8").splitlines() if line]
LONG = " ".join((DATA / "long_note.txt").read_text(encoding="utf-8").split())


def texts(n: int = 120) -> list[str]:
    return [CORPUS[i % len(CORPUS)] for i in range(n)]


def write_txt(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def score(bundle: Path, inp: Path | str, out: Path, **kw: object):
    kw.setdefault("quiet", True)
    return run_score(ScoreOptions(bundle=bundle, input=str(inp), out=out, **kw))


def vectors_of(out: Path) -> tuple[list, np.ndarray]:
    if out.suffix == ".npy":
        ids = [r["id"] for r in read_jsonl(out.with_suffix(".ids.jsonl"))]
        return ids, np.load(out)
    if out.suffix == ".jsonl":
        rows = read_jsonl(out)
        return [r["id"] for r in rows], np.asarray([r["embedding"] for r in rows], dtype=np.float32)
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    return table["id"].to_pylist(), np.asarray(table["embedding"].to_pylist(), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("fmt", ["jsonl", "npy", "parquet"])
def test_embed_outputs_match_the_model(tiny_bundle: Path, tmp_path: Path, fmt: str) -> None:
    from clinbert_onnx import ClinicalBert

    lines = [*texts(150), LONG]
    inp = write_txt(tmp_path / "notes.txt", lines)
    out = tmp_path / f"emb.{fmt}"
    summary = score(tiny_bundle, inp, out, variant="fp32", window_rows=64)
    ids, vecs = vectors_of(out)
    assert ids == list(range(1, len(lines) + 1))
    model = ClinicalBert.load(tiny_bundle, variant="fp32")
    np.testing.assert_allclose(vecs, model.embed(lines), atol=2e-5)
    assert summary.rows == summary.written == len(lines) and summary.errors == 0
    assert summary.long_rows >= 1 and summary.long_windows > summary.long_rows
    assert not (tmp_path / f"emb.{fmt}.partial").exists()
    assert (tmp_path / f"emb.{fmt}.errors.jsonl").read_text() == ""


def test_formats_hold_identical_vectors_and_window_counts(tiny_bundle: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    inp = write_txt(tmp_path / "notes.txt", [*texts(40), LONG, *texts(5)])
    results = {}
    for fmt in ("jsonl", "npy", "parquet"):
        score(tiny_bundle, inp, tmp_path / f"e.{fmt}", window_rows=16)
        results[fmt] = vectors_of(tmp_path / f"e.{fmt}")
    for fmt in ("npy", "parquet"):
        assert results[fmt][0] == results["jsonl"][0]
        np.testing.assert_array_equal(results[fmt][1], results["jsonl"][1])
    windows = pq.read_table(tmp_path / "e.parquet")["windows"].to_pylist()
    assert windows[40] > 1 and set(windows[:40]) == {1}
    assert [r["windows"] for r in read_jsonl(tmp_path / "e.ids.jsonl")] == windows
    assert [r["windows"] for r in read_jsonl(tmp_path / "e.jsonl")] == windows


def test_npy_header_is_fixed_size_and_loadable(tmp_path: Path) -> None:
    for rows in (0, 7, 10**12):
        header = npy_header(rows, 768)
        assert len(header) == NPY_HEADER
    path = tmp_path / "x.npy"
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    path.write_bytes(npy_header(3, 4) + data.tobytes())
    np.testing.assert_array_equal(np.load(path), data)
    assert np.load(path, mmap_mode="r").shape == (3, 4)


def test_fill_mask_jsonl_and_parquet(tiny_bundle: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    records = [
        {"nid": f"n{i}", "note": t}
        for i, t in enumerate(
            ["The patient [MASK] well.", "No [MASK] here [MASK].", "no mask at all", "Chest [MASK] resolved."]
        )
    ]
    inp = write_jsonl(tmp_path / "m.jsonl", records)
    kw = {"task": "fill-mask", "text_column": "note", "id_column": "nid", "top_k": 3}
    score(tiny_bundle, inp, tmp_path / "p.jsonl", **kw)
    rows = read_jsonl(tmp_path / "p.jsonl")
    assert [r["id"] for r in rows] == ["n0", "n1", "n3"]
    assert len(rows[0]["predictions"]) == 3 and isinstance(rows[0]["predictions"][0], dict)
    assert len(rows[1]["predictions"]) == 2 and len(rows[1]["predictions"][0]) == 3
    assert read_jsonl(tmp_path / "p.jsonl.errors.jsonl") == [
        {"row": 3, "id": "n2", "reason": "text has no [MASK] token"}
    ]
    score(tiny_bundle, inp, tmp_path / "p.parquet", **kw)
    table = pq.read_table(tmp_path / "p.parquet")
    assert table["id"].to_pylist() == ["n0", "n1", "n3"]
    preds = table["predictions"].to_pylist()
    assert [len(p) for p in preds] == [1, 2, 1]  # one list per mask
    assert preds[0][0][0]["token_str"] == rows[0]["predictions"][0]["token_str"]


def test_targets_are_checked_before_work(tiny_bundle: Path, tmp_path: Path) -> None:
    inp = write_txt(tmp_path / "m.txt", ["the [MASK] is stable"])
    with pytest.raises(InputError, match="targets"):
        score(tiny_bundle, inp, tmp_path / "p.jsonl", task="fill-mask", targets=("",))
    score(tiny_bundle, inp, tmp_path / "p.jsonl", task="fill-mask", targets=("stable", "patient"))
    preds = read_jsonl(tmp_path / "p.jsonl")[0]["predictions"]
    assert {p["token_str"] for p in preds} <= {"stable", "patient"}


# ---------------------------------------------------------------------------------------------- inputs
def test_parquet_and_csv_inputs_keep_ids(tiny_bundle: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = texts(30)
    ids = [1000 + 3 * i for i in range(30)]
    pq.write_table(pa.table({"note_id": ids, "note_text": lines}), tmp_path / "n.parquet", row_group_size=7)
    score(tiny_bundle, tmp_path / "n.parquet", tmp_path / "a.parquet", text_column="note_text", id_column="note_id")
    got = pq.read_table(tmp_path / "a.parquet")
    assert got["id"].to_pylist() == ids and str(got.schema.field("id").type) == "int64"

    rows = [f'{i},"{t.replace(chr(34), "")}","x,y"' for i, t in zip(ids, lines, strict=True)]
    csv_lines = ["note_id,note_text,other", *rows]
    (tmp_path / "n.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    score(tiny_bundle, tmp_path / "n.csv", tmp_path / "c.jsonl", text_column="note_text", id_column="note_id")
    assert [r["id"] for r in read_jsonl(tmp_path / "c.jsonl")] == [str(i) for i in ids]


def test_stdin_txt_and_jsonl(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = "".join(t + "\n" for t in texts(10)).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    score(tiny_bundle, "-", tmp_path / "s.jsonl")
    assert [r["id"] for r in read_jsonl(tmp_path / "s.jsonl")] == list(range(1, 11))
    data = "".join(json.dumps({"k": i, "text": t}) + "\n" for i, t in enumerate(texts(5))).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    score(tiny_bundle, "-", tmp_path / "s2.jsonl", input_format="jsonl", id_column="k")
    assert [r["id"] for r in read_jsonl(tmp_path / "s2.jsonl")] == [0, 1, 2, 3, 4]
    with pytest.raises(InputError, match="stdin"):
        score(tiny_bundle, "-", tmp_path / "s3.jsonl", resume=True)


def test_bad_rows_go_to_the_errors_file_without_text(tiny_bundle: Path, tmp_path: Path) -> None:
    secret = "Zanzibar-patient-secret"
    records: list[object] = [
        {"id": "a", "text": f"{secret} stable"},
        {"id": "b", "text": "   "},
        {"id": "c"},
        {"id": "d", "text": None},
        {"id": "e", "text": 12},
        {"text": f"{secret} no id"},
        [1, 2],
        {"id": 7, "text": f"{secret} numeric id becomes a string"},
        {"id": "h", "text": f"{secret} {LONG}"},
        {"id": "i", "text": f"{secret} fine"},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", records)
    with inp.open("a") as fh:
        fh.write("{not json " + secret + "\n\n")
    out = tmp_path / "o.jsonl"
    summary = score(tiny_bundle, inp, out, id_column="id", long_text="error")
    assert [r["id"] for r in read_jsonl(out)] == ["a", "7", "i"]
    errors = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert [(e["row"], e["id"]) for e in errors] == [
        (2, "b"),
        (3, "c"),
        (4, "d"),
        (5, "e"),
        (6, None),
        (7, None),
        (9, "h"),
        (11, None),
        (12, None),
    ]
    reasons = [e["reason"] for e in errors]
    assert reasons[0] == "empty text" and "missing value in column 'text'" in reasons[1]
    assert "int" in reasons[3] and "id column" in reasons[4] and "tokens" in reasons[6]
    assert reasons[-2:] == ["line is not valid JSON", "blank line"]
    assert secret not in (tmp_path / "o.jsonl.errors.jsonl").read_text()
    assert summary.errors == 9 and summary.written == 3 and summary.rows == 12


def test_one_bad_row_does_not_cost_its_window(tiny_bundle: Path, tmp_path: Path) -> None:
    lines = texts(40)
    lines[17] = LONG  # too long under long_text="error": found by bisection, the other 39 are scored
    inp = write_txt(tmp_path / "in.txt", lines)
    score(tiny_bundle, inp, tmp_path / "o.npy", long_text="error", window_rows=40)
    ids, vecs = vectors_of(tmp_path / "o.npy")
    assert ids == [i for i in range(1, 41) if i != 18] and vecs.shape[0] == 39
    (error,) = read_jsonl(tmp_path / "o.npy.errors.jsonl")
    assert error["row"] == 18 and error["reason"].startswith("text has ")


def test_on_error_fail_names_the_row(tiny_bundle: Path, tmp_path: Path) -> None:
    inp = write_txt(tmp_path / "in.txt", ["fine text", "", "more"])
    with pytest.raises(RowError, match=r"row 2 \(id 2\): empty text"):
        score(tiny_bundle, inp, tmp_path / "o.jsonl", on_error="fail")
    assert not (tmp_path / "o.jsonl").exists()


def test_input_problems_fail_before_any_work(tiny_bundle: Path, minilm_bundle: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "o.jsonl"
    with pytest.raises(InputError, match="not found"):
        score(tiny_bundle, tmp_path / "missing.txt", out)
    pq.write_table(pa.table({"a": ["x"]}), tmp_path / "n.parquet")
    with pytest.raises(InputError, match="column 'text' not found"):
        score(tiny_bundle, tmp_path / "n.parquet", out)
    write_jsonl(tmp_path / "n.jsonl", [{"body": "x"}])
    with pytest.raises(InputError, match="column 'note' not found in the first record"):
        score(tiny_bundle, tmp_path / "n.jsonl", out, text_column="note")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="cannot read"):
        score(tiny_bundle, tmp_path / "bad.parquet", out)
    (tmp_path / "bad.jsonl").write_text("hello\n")
    with pytest.raises(InputError, match="not valid JSON"):
        score(tiny_bundle, tmp_path / "bad.jsonl", out)
    inp = write_txt(tmp_path / "t.txt", ["a [MASK]"])
    with pytest.raises(NoMaskHeadError):
        score(minilm_bundle, inp, out, task="fill-mask")
    with pytest.raises(InputError, match="embeddings only"):
        score(tiny_bundle, inp, tmp_path / "o.npy", task="fill-mask")
    with pytest.raises(InputError, match="suffix"):
        score(tiny_bundle, tmp_path / "t.xlsx", out)
    with pytest.raises(InputError, match="overwrite the input"):
        score(tiny_bundle, tmp_path / "n.jsonl", tmp_path / "n.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "bad.parquet", "n.jsonl", "n.parquet", "t.txt"]


def test_never_overwrites_without_force(tiny_bundle: Path, tmp_path: Path) -> None:
    inp = write_txt(tmp_path / "in.txt", texts(5))
    out = tmp_path / "o.jsonl"
    score(tiny_bundle, inp, out)
    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        score(tiny_bundle, inp, out)
    with pytest.raises(OutputExistsError, match="already complete"):
        score(tiny_bundle, inp, out, resume=True)
    assert out.read_bytes() == before
    write_txt(inp, texts(3))
    score(tiny_bundle, inp, out, force=True)
    assert len(read_jsonl(out)) == 3
    (tmp_path / "x.jsonl.partial").mkdir()
    (tmp_path / "x.jsonl.partial" / "precious.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--resume"):
        score(tiny_bundle, inp, tmp_path / "x.jsonl")
    with pytest.raises(OutputExistsError, match="did not write"):
        score(tiny_bundle, inp, tmp_path / "x.jsonl", force=True)
    assert (tmp_path / "x.jsonl.partial" / "precious.txt").exists()


def test_without_pyarrow_txt_to_jsonl_and_npy_work(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # any import of pyarrow now raises ImportError
    inp = write_txt(tmp_path / "in.txt", texts(5))
    score(tiny_bundle, inp, tmp_path / "o.jsonl")
    score(tiny_bundle, inp, tmp_path / "o.npy")
    with pytest.raises(MissingDependencyError, match=r"clinbert-onnx\[score\]"):
        score(tiny_bundle, inp, tmp_path / "o.parquet")
    (tmp_path / "in.csv").write_text("text\nhello\n")
    with pytest.raises(MissingDependencyError):
        score(tiny_bundle, tmp_path / "in.csv", tmp_path / "c.jsonl")


# ---------------------------------------------------------------------------------------------- resume (in-process)
def test_resume_drops_uncommitted_tail(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(texts(100))])
    clean = tmp_path / "clean.jsonl"
    score(tiny_bundle, inp, clean, id_column="id", window_rows=10)
    out = tmp_path / "o.jsonl"
    # the 5th save: data of the 4th window is written and fsync'd, its checkpoint never lands
    with crash_at_checkpoint(monkeypatch, 5):
        score(tiny_bundle, inp, out, id_column="id", window_rows=10)
    partial = tmp_path / "o.jsonl.partial"
    assert json.loads((partial / "checkpoint.json").read_text())["rows_done"] == 30
    with (partial / "data.jsonl").open("ab") as fh:
        fh.write(b'{"id": "garbage", "embedding": [1')  # a torn write
    summary = score(tiny_bundle, inp, out, id_column="id", window_rows=10, resume=True)
    assert out.read_bytes() == clean.read_bytes()
    assert summary.resumed_from == 30 and summary.rows == 100 and summary.rows_this_run == 70


def test_resume_refuses_other_options_or_input(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    inp = write_txt(tmp_path / "in.txt", texts(50))
    out = tmp_path / "o.parquet"
    with crash_at_checkpoint(monkeypatch, 3):
        score(tiny_bundle, inp, out, window_rows=10)
    with pytest.raises(ResumeError, match="pooling"):
        score(tiny_bundle, inp, out, window_rows=10, pooling="cls", resume=True)
    with pytest.raises(ResumeError, match="variant"):
        score(tiny_bundle, inp, out, window_rows=10, variant="fp32", resume=True)
    with inp.open("a") as fh:
        fh.write("one more line\n")
    with pytest.raises(ResumeError, match="changed"):
        score(tiny_bundle, inp, out, window_rows=10, resume=True)
    score(tiny_bundle, inp, out, window_rows=10, force=True)
    assert vectors_of(out)[0] == list(range(1, 52))


# ---------------------------------------------------------------------------------------------- engine, workers, CLI
def test_row_reason_comes_from_the_error_fields_not_its_message() -> None:
    assert row_reason(InputError.at(12, "has no [MASK] token")) == "text has no [MASK] token"
    err = TextTooLongError("worded in any way", index=3, reason="has 900 tokens")
    assert row_reason(err) == "text has 900 tokens"


def test_each_row_is_tokenized_once(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One tokenizer pass per row: no counting pass, no re-run of a window with a bad row in it."""
    from clinbert_onnx.model import ClinicalBert

    seen: list[str] = []
    real = ClinicalBert.tokenize

    def counting(self, batch):
        seen.extend(batch)
        return real(self, batch)

    monkeypatch.setattr(ClinicalBert, "tokenize", counting)
    lines = [*texts(30), LONG]
    inp = write_txt(tmp_path / "in.txt", lines)
    score(tiny_bundle, inp, tmp_path / "o.jsonl", long_text="error", window_rows=16)
    assert sorted(seen) == sorted(lines)  # every row exactly once, the too-long one included
    masked = write_txt(tmp_path / "m.txt", ["the [MASK] is stable", "no mask here", "a [MASK] b"])
    seen.clear()
    score(tiny_bundle, masked, tmp_path / "m.jsonl", task="fill-mask")
    assert sorted(seen) == sorted(["the [MASK] is stable", "no mask here", "a [MASK] b"])


def test_pool_that_cannot_load_leaves_no_process(tmp_path: Path) -> None:
    import multiprocessing

    from clinbert_onnx.score.workers import LoadSpec, PoolScorer

    before = set(multiprocessing.active_children())
    with pytest.raises(BundleError):
        PoolScorer(LoadSpec(tmp_path / "missing", "cpu", None, False, 1), 1)
    # terminated and joined by the pool's close; the pool's manager thread may reap the same child at that
    # moment, and until it records the exit code (Python 3.11) the Process object still reads as alive: ask
    # the OS whether such a process still runs
    for process in set(multiprocessing.active_children()) - before:
        assert not _running(process.pid), f"worker {process.pid} outlived the failed start"


def _running(pid: int | None) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie awaiting its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_write_the_same_rows_in_order(tiny_bundle: Path, tmp_path: Path) -> None:
    inp = write_txt(tmp_path / "in.txt", [*texts(300), "", LONG])
    score(tiny_bundle, inp, tmp_path / "one.npy", window_rows=25)
    summary = score(tiny_bundle, inp, tmp_path / "two.npy", window_rows=25, workers=2)
    ids1, v1 = vectors_of(tmp_path / "one.npy")
    ids2, v2 = vectors_of(tmp_path / "two.npy")
    assert ids1 == ids2 == [i for i in range(1, 303) if i != 301]
    np.testing.assert_allclose(v1, v2, atol=1e-5)
    assert summary.errors == 1


def test_streams_write_the_same_rows_in_order(tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    """Two batches in flight (one session, threads shared) give the rows and vectors of one at a time."""
    from clinbert_onnx.cli import main

    inp = write_txt(tmp_path / "in.txt", [*texts(120), "", LONG])
    score(tiny_bundle, inp, tmp_path / "one.npy", window_rows=40, streams=1)
    score(tiny_bundle, inp, tmp_path / "two.npy", window_rows=40, streams=3)
    (ids1, v1), (ids2, v2) = vectors_of(tmp_path / "one.npy"), vectors_of(tmp_path / "two.npy")
    assert ids1 == ids2 and len(ids1) == 121
    np.testing.assert_allclose(v1, v2, atol=1e-6)
    out = tmp_path / "x.npy"
    assert main(["score", str(tiny_bundle), str(inp), "--out", str(out), "--streams", "0"]) == 2
    assert "--streams must be an integer >= 1" in capsys.readouterr().err
    spark = ["score", str(tiny_bundle), str(inp), "--out", str(out), "--engine", "spark", "--streams", "2"]
    assert main(spark) == 2 and "--streams is not for --engine spark" in capsys.readouterr().err
    budget = ["score", str(tiny_bundle), str(inp), "--out", str(tmp_path / "b.npy"), "--max-batch-tokens", "0"]
    assert main(budget) == 2 and "--max-batch-tokens must be an integer >= 1" in capsys.readouterr().err
    score(tiny_bundle, inp, tmp_path / "small.npy", window_rows=40, max_batch_tokens=48)
    np.testing.assert_allclose(vectors_of(tmp_path / "small.npy")[1], v1, atol=1e-5)


def test_progress_bar_and_summary(tiny_bundle: Path, tmp_path: Path) -> None:
    inp = write_txt(tmp_path / "in.txt", [*texts(60), ""])
    err = io.StringIO()
    run_score(
        ScoreOptions(bundle=tiny_bundle, input=str(inp), out=tmp_path / "o.jsonl", window_rows=20, progress=True),
        stderr=err,
    )
    text = err.getvalue()
    assert "\r" in text and "rows/s" in text and "%" in text
    assert "scored 61 rows" in text and "errors   1" in text
    quiet = io.StringIO()
    run_score(
        ScoreOptions(bundle=tiny_bundle, input=str(inp), out=tmp_path / "q.jsonl", quiet=True, progress=True),
        stderr=quiet,
    )
    assert quiet.getvalue() == ""
    silent = io.StringIO()  # not a terminal: no bar, but the summary
    run_score(ScoreOptions(bundle=tiny_bundle, input=str(inp), out=tmp_path / "s.jsonl"), stderr=silent)
    assert "\r" not in silent.getvalue() and "scored 61 rows" in silent.getvalue()


def test_progress_line_eta_and_resume_fraction() -> None:
    from clinbert_onnx.score.progress import Progress

    bar = Progress(io.StringIO(), enabled=False, total_bytes=1000, start_rows=100, start_bytes=200)
    bar.started -= 10.0
    bar.commit(rows_done=300, offset=600, errors=2)
    line = bar.line()
    assert "60.0%" in line and "300 rows" in line and "2 errors" in line
    assert "ETA 0:00:10" in line  # 40% done in 10 s since the resume point, 40% to go
    bar.advance(100)  # in-window rows count at the committed average row size
    assert bar.fraction() == (0.8, 0.2)
    assert Progress(io.StringIO(), enabled=False).fraction() is None


def test_cli(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clinbert_onnx.cli import main

    inp = write_txt(tmp_path / "in.txt", ["the [MASK] is stable", "no mask"])
    out = tmp_path / "p.jsonl"
    args = [
        "score",
        str(tiny_bundle),
        str(inp),
        "--out",
        str(out),
        "--task",
        "fill-mask",
        "--top-k",
        "2",
        "--targets",
        "stable, patient",
        "--no-verify",
    ]
    assert main(args) == 0
    assert "scored 2 rows" in capsys.readouterr().err
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--force", "--on-error", "fail", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clinbert score: error: row 2 (id 2): text has no [MASK] token")
