"""Peak RSS of ``clinbert score`` does not grow with the input: 1M short rows vs 100k (slow: ~15 min on 2 cores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
PROBE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _peak_rss_mb(cmd: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "big"), [("npy", 1_000_000), ("parquet", 300_000)])
def test_peak_rss_does_not_grow_with_rows(tiny_bundle: Path, tmp_path: Path, fmt: str, big: int) -> None:
    corpus = [
        line for line in (DATA / "clinical_corpus.txt").read_text(encoding="utf-8").splitlines() if 0 < len(line) <= 80
    ]
    peaks = {}
    for rows in (big // 10, big):
        inp = tmp_path / f"in-{rows}.txt"
        with inp.open("w", encoding="utf-8") as fh:
            for i in range(rows):
                fh.write(corpus[(i * 7919) % len(corpus)] + "\n")
        out = tmp_path / f"out-{rows}.{fmt}"
        peaks[rows] = _peak_rss_mb(
            [
                sys.executable,
                "-m",
                "clinbert_onnx",
                "score",
                str(tiny_bundle),
                str(inp),
                "--out",
                str(out),
                "--quiet",
                "--no-verify",
            ]
        )
        if fmt == "npy":
            assert np.load(out, mmap_mode="r").shape[0] == rows
        inp.unlink()
        out.unlink()
    assert peaks[big] < peaks[big // 10] * 1.1 + 32, peaks
