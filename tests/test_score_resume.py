"""Kill a real ``clinbert score`` process (SIGKILL, SIGINT) mid-run, resume it, and check nothing is lost or doubled."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clinbert_onnx.score import ScoreOptions, run_score

DATA = Path(__file__).parent / "data"
ROWS = 1200
WINDOW = 40


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = [line for line in (DATA / "clinical_corpus.txt").read_text(encoding="utf-8").splitlines() if line]
    path = tmp_path_factory.mktemp("resume") / "notes.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(ROWS):
            text = corpus[(i * 7 + 3) % len(corpus)]
            fh.write(json.dumps({"note_id": f"N{i:05d}", "note_text": text}) + "\n")
    return path


def _command(bundle: Path, notes: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clinbert_onnx",
        "score",
        str(bundle),
        str(notes),
        "--out",
        str(out),
        "--text-column",
        "note_text",
        "--id-column",
        "note_id",
        "--window-rows",
        str(WINDOW),
        "--quiet",
        *extra,
    ]


def _rows_done(checkpoint: Path) -> int:
    try:
        return int(json.loads(checkpoint.read_text())["rows_done"])
    except (OSError, ValueError, KeyError):
        return 0


def _interrupt(cmd: list[str], checkpoint: Path, sig: int) -> subprocess.CompletedProcess[str]:
    """Start ``cmd``, wait until a window past the first is committed, then send ``sig``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _rows_done(checkpoint) < 2 * WINDOW:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"run ended before it could be interrupted (rc={proc.returncode}): {err[-2000:]}")
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _read(out: Path) -> tuple[list[str], np.ndarray]:
    if out.suffix == ".npy":
        ids = [json.loads(line)["id"] for line in out.with_suffix(".ids.jsonl").read_text().splitlines()]
        return ids, np.load(out)
    if out.suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        return [r["id"] for r in rows], np.asarray([r["embedding"] for r in rows], dtype=np.float32)
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    return table["id"].to_pylist(), np.asarray(table["embedding"].to_pylist(), dtype=np.float32)


@pytest.mark.parametrize(
    ("fmt", "workers", "sig"),
    [
        ("parquet", 1, signal.SIGKILL),
        ("npy", 1, signal.SIGKILL),
        ("jsonl", 2, signal.SIGKILL),
        ("jsonl", 2, signal.SIGINT),
    ],
)
def test_killed_run_resumes_without_loss_or_duplicates(
    tiny_bundle: Path, notes: Path, tmp_path: Path, fmt: str, workers: int, sig: int
) -> None:
    clean = notes.with_name(f"clean.{fmt}")
    if not clean.exists():
        run_score(
            ScoreOptions(
                bundle=tiny_bundle,
                input=str(notes),
                out=clean,
                text_column="note_text",
                id_column="note_id",
                window_rows=WINDOW,
                quiet=True,
            )
        )
    out = tmp_path / f"out.{fmt}"
    extra = ("--workers", str(workers))
    killed = _interrupt(
        _command(tiny_bundle, notes, out, *extra), tmp_path / f"out.{fmt}.partial" / "checkpoint.json", sig
    )
    if sig == signal.SIGKILL:
        assert killed.returncode == -signal.SIGKILL
    else:
        assert killed.returncode == 130, killed.stderr
        assert "--resume" in killed.stderr
    assert not out.exists() and (tmp_path / f"out.{fmt}.partial").is_dir()
    stopped_at = _rows_done(tmp_path / f"out.{fmt}.partial" / "checkpoint.json")
    assert 0 < stopped_at < ROWS

    again = subprocess.run(_command(tiny_bundle, notes, out, *extra), capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to start over silently

    resumed = subprocess.run([*_command(tiny_bundle, notes, out, *extra), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ids, vectors = _read(out)
    clean_ids, clean_vectors = _read(clean)
    assert ids == clean_ids == [f"N{i:05d}" for i in range(ROWS)]  # each once, in input order
    np.testing.assert_allclose(vectors, clean_vectors, atol=1e-6)
    if workers == 1:
        np.testing.assert_array_equal(vectors, clean_vectors)
    assert not (tmp_path / f"out.{fmt}.partial").exists()
    assert (tmp_path / f"out.{fmt}.errors.jsonl").read_text() == ""
