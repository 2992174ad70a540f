"""Schemathesis (its CLI, as CI would run it) against the served OpenAPI schema of a real uvicorn on 127.0.0.1.

Valid and invalid requests for every operation: no 5xx, and every response matches its declared status codes,
content types, headers and schemas; with an API key, requests without it must get 401. Excluded:
``positive_data_acceptance``, because some limits are server settings (inputs per request: 413; characters per
input) and fill-mask texts must contain [MASK] — schema-valid requests can rightly get a 4xx.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("schemathesis")

from clinbert_onnx import ClinicalBert
from clinbert_onnx.serve import ServeConfig, create_app
from serve_support import running

KEY = "schemathesis-key-123"
EXAMPLES = 40  # per operation and phase; about 30 s a run on two cores


def schemathesis_cli() -> list[str]:
    script = Path(sys.executable).parent / "schemathesis"
    if script.is_file():
        return [str(script)]
    found = shutil.which("schemathesis")
    if found is None:
        pytest.skip("schemathesis CLI not installed")
    return [found]


@pytest.mark.parametrize("api_key", [None, KEY], ids=["open", "api-key"])
def test_schemathesis_no_5xx_and_conformance(tiny_bundle: Path, tmp_path: Path, api_key: str | None) -> None:
    config = ServeConfig(max_inputs=16, max_queue=64, max_chars=4000, max_body_bytes=256 * 1024, api_key=api_key)
    cmd = [
        *schemathesis_cli(),
        "run",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20240611",
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    if api_key:
        cmd += ["--header", f"Authorization: Bearer {api_key}"]
    with running(create_app(ClinicalBert.load(tiny_bundle), config)) as url:
        done = subprocess.run([*cmd, f"{url}/openapi.json"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout.split("SUMMARY")[-1], done.stdout[-3000:]
