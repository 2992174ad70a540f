"""Spark with separate executor JVMs (``local-cluster[2,1,1024]``: a standalone master and two workers on this
machine): the bundle copied to executors with ``SparkContext.addArchive`` (``ship="files"``), checked by its
manifest hash there, and results equal to ``clinbert score``. One session for the module."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyspark", reason="needs the [spark] extra")
import spark_support as sup
from clinbert_onnx import MissingDependencyError
from clinbert_onnx.spark import build_session, score
from clinbert_onnx.spark import session as spark_session

pytestmark = pytest.mark.spark

ROWS = 120


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    try:
        spark_session.check_java()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    session = build_session(
        "local-cluster[2,1,1024]",
        app_name="clinbert-cluster-tests",
        conf={"spark.ui.enabled": "false", "spark.executor.memory": "768m"},
    )
    deadline = time.monotonic() + 120
    while session.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < 3:  # the driver and two executors
        assert time.monotonic() < deadline, "the executors did not register"
        time.sleep(0.2)
    yield session
    session.stop()


def test_bundle_shipped_with_add_file(cluster: Any, tiny_bundle: Path, tmp_path: Path) -> None:
    notes = sup.write_notes(tmp_path / "notes.jsonl", ROWS)
    expected = sup.reference(tiny_bundle, notes, tmp_path / "reference.parquet", 16)
    copy = shutil.copytree(tiny_bundle, tmp_path / "bundle-copy")
    df = cluster.createDataFrame(sup.note_rows(ROWS), "note_id string, note_text string").repartition(4)
    out = score(df, copy, text_col="note_text", id_col="note_id", ship="files")
    shutil.rmtree(copy)  # executors read their own fetched copy, not this folder
    sup.assert_same(sup.by_id([r.asDict() for r in out.collect()]), expected)

    def where(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        for batch in batches:
            time.sleep(0.5)  # long enough for both executors to take tasks
            yield pa.RecordBatch.from_pylist([{"cwd": os.getcwd()}] * batch.num_rows)

    seen = {r.cwd for r in cluster.range(8).repartition(8).mapInArrow(where, "cwd string").collect()}
    assert len(seen) == 2, seen  # two executor JVMs, each in its own work folder
