"""Install metadata: the GPU build installs onnxruntime-gpu only, `[bench]` brings the plot, `make setup` the tests'
extras, and the scripts that build wheels work."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ORT = {"onnxruntime", "onnxruntime-gpu"}


def _gpu_build() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_build", ROOT / "packaging" / "gpu" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _project(text: str) -> dict[str, object]:
    return dict(tomllib.loads(text)["project"])


def _resolved(project: dict[str, object], extras: tuple[str, ...]) -> set[str]:
    """The distributions ``pip install NAME[extras]`` asks for directly (markers evaluated as pip does)."""
    reqs = [Requirement(r) for r in project["dependencies"]]  # type: ignore[attr-defined]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]  # type: ignore[index]
    names = set()
    for req in reqs:
        # pip evaluates base requirements with extra="" and each extra's with extra=<name>
        envs = [{"extra": ""}, *({"extra": e} for e in extras)]
        if req.marker is None or any(req.marker.evaluate(env) for env in envs):
            names.add(req.name.lower())
    return names


def test_no_extra_combination_installs_both_onnxruntime_wheels():
    main = _project(PYPROJECT.read_text())
    gpu = _project(_gpu_build().gpu_pyproject(PYPROJECT.read_text()))
    assert gpu["name"] == "clinbert-onnx-gpu"
    extras = sorted(main["optional-dependencies"])  # type: ignore[call-overload]
    assert "gpu" not in extras, "an extra cannot replace a base requirement; the GPU build is clinbert-onnx-gpu"
    for n in range(len(extras) + 1):
        for combo in itertools.combinations(extras, n):
            assert _resolved(main, combo) & ORT == {"onnxruntime"}, combo
            assert _resolved(gpu, combo) & ORT == {"onnxruntime-gpu"}, combo
    main_rest = {k: v for k, v in main.items() if k not in ("name", "dependencies")}
    gpu_rest = {k: v for k, v in gpu.items() if k not in ("name", "dependencies")}
    assert main_rest == gpu_rest


def test_bench_extra_brings_matplotlib_and_setup_installs_the_tests_extras():
    main = _project(PYPROJECT.read_text())
    assert any(Requirement(r).name == "matplotlib" for r in main["optional-dependencies"]["bench"])  # type: ignore[index]
    setup = re.search(r'pip install -q -e "\.\[([a-z,]+)\]"', (ROOT / "Makefile").read_text())
    assert setup and {"export", "serve", "score", "test", "bench"} <= set(setup.group(1).split(","))
    assert 'pip install "clinbert-onnx[bench]"' in (ROOT / "README.md").read_text()
    assert 'pip install "clinbert-onnx[gpu]"' not in (ROOT / "README.md").read_text().replace("# not ", "")


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.mark.network
@pytest.mark.parametrize("gpu", [True, False], ids=["clinbert-onnx-gpu", "clinbert-onnx"])
def test_pip_dry_run_installs_exactly_one_onnxruntime(tmp_path, gpu):
    """pip's own resolver on the built wheel, as a user's `pip install` would run it (metadata only, no installs)."""
    wheel = _gpu_build().build(tmp_path / "dist", gpu=gpu)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report"]
    done = subprocess.run([*cmd, str(report), str(wheel)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and not _index_reachable():
        pytest.skip("no package index answers here")
    assert done.returncode == 0, done.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert names & ORT == ({"onnxruntime-gpu"} if gpu else {"onnxruntime"})
