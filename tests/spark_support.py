"""Shared by the Spark tests: notes with bad rows, the single-process reference, reading a Spark output."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent / "data"
BAD = {7: "", 11: None, 23: "   "}  # row index → bad text (empty, missing, blank)


def note_rows(n: int) -> list[tuple[str, str | None]]:
    corpus = [line for line in (DATA / "clinical_corpus.txt").read_text(encoding="utf-8").splitlines() if line]
    long_note = (DATA / "long_note.txt").read_text(encoding="utf-8")
    rows: list[tuple[str, str | None]] = []
    for i in range(n):
        text: str | None = corpus[(i * 7 + 3) % len(corpus)]
        if i % 97 == 5:
            text = long_note  # several windows
        rows.append((f"N{i:05d}", BAD.get(i, text)))
    return rows


def write_notes(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for note_id, text in note_rows(n):
            fh.write(json.dumps({"note_id": note_id, "note_text": text}) + "\n")
    return path


def reference(bundle: Path, notes: Path, out: Path, window: int) -> tuple[dict[str, Any], dict[str, str]]:
    """``clinbert score`` in one process: ({id: (embedding, windows, tokens)}, {id: error reason})."""
    import pyarrow.parquet as pq
    from clinbert_onnx.score import ScoreOptions, run_score

    run_score(
        ScoreOptions(
            bundle=bundle,
            input=str(notes),
            out=out,
            text_column="note_text",
            id_column="note_id",
            window_rows=window,
            quiet=True,
        )
    )
    rows = pq.read_table(out).to_pylist()
    errors = [json.loads(line) for line in out.with_name(out.name + ".errors.jsonl").read_text().splitlines()]
    return (
        {r["id"]: (np.asarray(r["embedding"], dtype=np.float32), r["windows"], r["tokens"]) for r in rows},
        {e["id"]: e["reason"] for e in errors},
    )


def by_id(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Spark output rows → (scored, errors) like :func:`reference`; asserts every id appears once."""
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "an id was written twice"
    scored = {
        r["id"]: (np.asarray(r["embedding"], dtype=np.float32), r["windows"], r["tokens"])
        for r in rows
        if r["error"] is None
    }
    return scored, {r["id"]: r["error"] for r in rows if r["error"] is not None}


def assert_same(got: tuple[dict[str, Any], dict[str, str]], want: tuple[dict[str, Any], dict[str, str]]) -> None:
    scored, errors = got
    ref_scored, ref_errors = want
    assert errors == ref_errors
    assert set(scored) == set(ref_scored)
    for key, (vector, windows, tokens) in ref_scored.items():
        np.testing.assert_allclose(scored[key][0], vector, atol=1e-6)
        assert scored[key][1:] == (windows, tokens)


def read_folder(out: Path) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    return ds.dataset(out, format="parquet").to_table().to_pylist()


def session_members(sid: int) -> list[int]:
    """Processes in session ``sid`` (a test's own subprocess and everything it started: the JVM, Spark's
    Python daemon, whose workers sit in a process group of their own)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_session(sid: int, timeout: float = 30.0) -> None:
    """SIGKILL every process of session ``sid`` until none is left."""
    deadline = time.monotonic() + timeout
    while (pids := session_members(sid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    assert not session_members(sid), "processes of the killed job survived"
