"""A real local Spark (``local[2,3]``: two cores, three attempts per task) on the tiny bundle: results equal to
``clinbert score``, threads from ``spark.task.cpus``, one model per worker, a worker killed mid-partition and a
whole job killed mid-way, the SQL UDF, and the errors users see. One session for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyspark", reason="needs the [spark] extra")
import spark_support as sup
from clinbert_onnx import BundleError, ChecksumError, InputError, MissingDependencyError
from clinbert_onnx.spark import SparkScoreOptions, build_session, embed_udf, run_spark_score, score, worker
from clinbert_onnx.spark import session as spark_session

pytestmark = pytest.mark.spark

ROWS = 300
WINDOW = 16


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    try:
        spark_session.check_java()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    before = os.environ.get("PYSPARK_PYTHON")
    session = build_session("local[2,3]", app_name="clinbert-tests", conf={"spark.ui.enabled": "false"})
    assert os.environ.get("PYSPARK_PYTHON") == before  # set for the build only
    yield session
    session.stop()


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sup.write_notes(tmp_path_factory.mktemp("spark") / "notes.jsonl", ROWS)


@pytest.fixture(scope="module")
def expected(tiny_bundle: Path, notes: Path) -> tuple[dict[str, Any], dict[str, str]]:
    return sup.reference(tiny_bundle, notes, notes.with_name("reference.parquet"), WINDOW)


def frame(spark: Any, rows: list[tuple[str, str | None]], partitions: int = 3) -> Any:
    return spark.createDataFrame(rows, "note_id string, note_text string").repartition(partitions)


def job(bundle: Path, notes: Path, out: Path, **kw: Any) -> SparkScoreOptions:
    kw.setdefault("chunk_rows", 2 * WINDOW)
    return SparkScoreOptions(
        bundle=bundle,
        input=str(notes),
        out=out,
        text_column="note_text",
        id_column="note_id",
        window_rows=WINDOW,
        quiet=True,
        **kw,
    )


# ---------------------------------------------------------------------------------------------- score(df)
def test_score_equals_clinbert_score(spark: Any, tiny_bundle: Path, expected: Any) -> None:
    out = score(frame(spark, sup.note_rows(ROWS)), tiny_bundle, text_col="note_text", id_col="note_id")
    assert [f.name for f in out.schema.fields] == ["id", "embedding", "windows", "tokens", "error"]
    assert out.schema["embedding"].dataType.simpleString() == "array<float>"
    rows = [r.asDict() for r in out.collect()]
    assert len(rows) == ROWS
    sup.assert_same(sup.by_id(rows), expected)
    assert expected[1] == {
        "N00007": "empty text",
        "N00011": "missing value in column 'note_text'",
        "N00023": "empty text",
    }


def test_fill_mask_and_its_bad_rows(spark: Any, tiny_bundle: Path) -> None:
    from clinbert_onnx import ClinicalBert

    texts = ["The patient was given [MASK] for pain.", "No mask here.", "[MASK] and [MASK] were stable."]
    out = score(
        frame(spark, [(f"M{i}", t) for i, t in enumerate(texts)], 2),
        tiny_bundle,
        text_col="note_text",
        id_col="note_id",
        task="fill-mask",
    )
    got = {r.id: r.asDict(recursive=True) for r in out.collect()}
    want = ClinicalBert.load(tiny_bundle).fill_mask([texts[0], texts[2]])
    assert got["M1"]["error"] == "text has no [MASK] token" and got["M1"]["predictions"] is None
    for key, preds in (("M0", [want[0]]), ("M2", want[1])):
        assert [[p["token"] for p in mask] for mask in got[key]["predictions"]] == [
            [p["token"] for p in m] for m in preds
        ]
        np.testing.assert_allclose(got[key]["predictions"][0][0]["score"], preds[0][0]["score"], rtol=1e-5)


def test_threads_follow_task_cpus_and_one_model_per_worker(
    spark: Any, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinbert_onnx.spark.api import model_spec

    spec = model_spec(tiny_bundle, "embed")

    def probe(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        for batch in batches:
            model = worker.get_model(spec)
            yield pa.RecordBatch.from_pylist(
                [
                    {
                        "pid": os.getpid(),
                        "model": id(model),
                        "threads": model.engine.threads,
                        "task": worker.task_threads(),
                    }
                ]
                * batch.num_rows
            )

    rows = spark.range(64).repartition(8).mapInArrow(probe, "pid long, model long, threads long, task long").collect()
    assert {(r.threads, r.task) for r in rows} == {(1, 1)}  # spark.task.cpus=1: two tasks, one thread each
    models: dict[int, set[int]] = {}
    for r in rows:
        models.setdefault(r.pid, set()).add(r.model)
    assert all(len(m) == 1 for m in models.values())  # 8 tasks, one load per Python worker

    class Context:
        def cpus(self) -> int:
            return 4

    import pyspark

    monkeypatch.setattr(pyspark.TaskContext, "get", classmethod(lambda cls: Context()))
    assert worker.task_threads() == 4 and worker.task_threads(3) == 3


def test_embed_udf_for_sql(spark: Any, tiny_bundle: Path, expected: Any) -> None:
    rows = sup.note_rows(40)
    spark.udf.register("clin_embed", embed_udf(tiny_bundle))
    frame(spark, rows, 2).createOrReplaceTempView("notes")
    got = spark.sql("SELECT note_id, clin_embed(note_text) AS e FROM notes").collect()
    assert len(got) == 40
    for r in got:
        if r.note_id in expected[1]:
            assert r.e.embedding is None and r.e.error in ("empty text", "missing value")
        else:
            vector, windows, tokens = expected[0][r.note_id]
            np.testing.assert_allclose(np.asarray(r.e.embedding), vector, atol=1e-6)
            assert (r.e.windows, r.e.tokens, r.e.error) == (windows, tokens, None)


def test_bad_requests_fail_on_the_driver(spark: Any, tiny_bundle: Path, tmp_path: Path) -> None:
    df = frame(spark, sup.note_rows(4), 1)
    with pytest.raises(InputError, match="'body' is not a column"):
        score(df, tiny_bundle, text_col="body", id_col="note_id")
    with pytest.raises(InputError, match="not string"):
        score(spark.range(3).selectExpr("id", "id AS n"), tiny_bundle, text_col="n")
    with pytest.raises(BundleError, match="bundle not found"):
        score(df, tmp_path / "nowhere", text_col="note_text", id_col="note_id")
    with pytest.raises(InputError, match="ship must be"):
        score(df, tiny_bundle, text_col="note_text", id_col="note_id", ship="broadcast")


def test_executor_refuses_another_bundle(tiny_bundle: Path, tmp_path: Path) -> None:
    spec = worker.ModelSpec(str(tiny_bundle), tiny_bundle.name, "0" * 64)
    with pytest.raises(ChecksumError, match="not the one the job was planned with"):
        worker.locate_bundle(spec)
    with pytest.raises(BundleError, match="ship='files'"):
        worker.locate_bundle(worker.ModelSpec(str(tmp_path), "x", "0" * 64))


# ---------------------------------------------------------------------------------------------- the job
def test_worker_killed_mid_partition_is_retried_once(
    spark: Any, tiny_bundle: Path, notes: Path, expected: Any, tmp_path: Path
) -> None:
    out = tmp_path / "emb"
    summary = run_spark_score(job(tiny_bundle, notes, out), spark=spark, crash_chunk=1)
    assert summary.retried == 1 and summary.rows == ROWS and summary.skipped == 0
    manifest = json.loads((out / "_chunks" / "part-000001.json").read_text())
    assert manifest["attempt"] == 1 and manifest["bundle_sha256"] and manifest["options"]["chunk_rows"] == 2 * WINDOW
    sup.assert_same(sup.by_id(sup.read_folder(out)), expected)
    assert not list(out.glob(".*.tmp")) and (out / "_SUCCESS").is_file()


def test_whole_job_killed_then_resumed(
    spark: Any, tiny_bundle: Path, notes: Path, expected: Any, tmp_path: Path
) -> None:
    out = tmp_path / "emb"
    cmd = [
        sys.executable,
        "-m",
        "clinbert_onnx",
        "score",
        str(tiny_bundle),
        str(notes),
        "--engine",
        "spark",
        "--master",
        "local[2]",
        "--out",
        str(out),
        "--text-column",
        "note_text",
        "--id-column",
        "note_id",
        "--window-rows",
        str(WINDOW),
        "--chunk-rows",
        str(WINDOW),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while len(list((out / "_chunks").glob("part-*.json"))) < 2:
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "no chunk committed in time"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        sup.kill_session(proc.pid)
    done = len(list((out / "_chunks").glob("part-*.json")))
    chunks = -(-ROWS // WINDOW)
    assert 2 <= done < chunks and not (out / "_SUCCESS").exists()

    with pytest.raises(InputError, match="--resume"):
        run_spark_score(job(tiny_bundle, notes, out, chunk_rows=WINDOW), spark=spark)
    with pytest.raises(InputError, match="options differ|differ from the interrupted"):
        run_spark_score(job(tiny_bundle, notes, out, chunk_rows=WINDOW, pooling="cls", resume=True), spark=spark)
    summary = run_spark_score(job(tiny_bundle, notes, out, chunk_rows=None, resume=True), spark=spark)
    assert summary.skipped >= done and summary.chunks == chunks and summary.rows == ROWS
    sup.assert_same(sup.by_id(sup.read_folder(out)), expected)
    assert not list(out.glob(".*.tmp"))


def test_cli_reports_missing_java_clearly(tiny_bundle: Path, notes: Path, tmp_path: Path) -> None:
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    cmd = [
        sys.executable,
        "-m",
        "clinbert_onnx",
        "score",
        str(tiny_bundle),
        str(notes),
        "--engine",
        "spark",
        "--out",
        str(tmp_path / "emb"),
        "--text-column",
        "note_text",
        "--id-column",
        "note_id",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == MissingDependencyError.exit_code, done.stderr
    assert "openjdk-17-jre-headless" in done.stderr and "Traceback" not in done.stderr and "Py4J" not in done.stderr
    assert spark_session.java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert spark_session.java_major('java version "1.8.0_292"') == 8


def test_importing_the_package_does_not_import_pyspark() -> None:
    code = "import sys, clinbert_onnx.spark, clinbert_onnx.cli; print('pyspark' in sys.modules, 'py4j' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_job_failure_shows_our_error_not_spark_text() -> None:
    from clinbert_onnx.spark.job import SparkJobError, _job_failed

    trace = "Traceback...\nclinbert_onnx.errors.BundleError: bundle not found on this executor at /x: ...\n\tat org..."
    err = _job_failed(RuntimeError(trace))
    assert isinstance(err, SparkJobError) and "BundleError: bundle not found on this executor" in str(err)
    leaked = _job_failed(RuntimeError("ValueError: could not parse 'Patient John Doe has chest pain'"))
    assert "John" not in str(leaked) and "--resume" in str(leaked)


@pytest.mark.parametrize("tail", ["\n", ""])
def test_chunks_cover_every_row_once_in_order(tmp_path: Path, tail: str) -> None:
    from clinbert_onnx.spark.chunks import chunk_rows_of, list_inputs, plan, scan

    folder = tmp_path / "in"
    folder.mkdir()
    lines = [json.dumps({"note_id": i, "note_text": f"note {i} " + "é" * (i % 5)}) for i in range(103)]
    (folder / "a.jsonl").write_text("\ufeff" + "\n".join(lines) + tail, encoding="utf-8")
    (folder / "README.md").write_text("not data")
    (folder / "_SUCCESS").write_text("")
    assert [p.name for p, _ in list_inputs(folder, None)] == ["a.jsonl"]
    files = scan(folder, None, "note_text", "note_id", 8)
    assert files[0].rows == 103
    chunks = plan(files, 24, 8)
    assert [(c.start, c.stop) for c in chunks] == [(0, 24), (24, 48), (48, 72), (72, 96), (96, 103)]
    rows = [r for c in chunks for r in chunk_rows_of(c, "note_text", "note_id", files[0].id_kind)]
    assert [(r.number, r.id, r.error) for r in rows] == [(i + 1, i, None) for i in range(103)]
