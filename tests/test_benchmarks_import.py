"""Every benchmark module imports, and every name it imports from clinbert_onnx (at any depth) exists."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MODULES = sorted(
    p.relative_to(BENCHMARKS).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
    for p in BENCHMARKS.rglob("*.py")
)


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import each other by bare name


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports(name):
    importlib.import_module(name)


def _clinbert_imports(path: Path) -> list[tuple[str, str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.module, alias.name, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clinbert_onnx"
        for alias in node.names
    ]


@pytest.mark.parametrize("name", MODULES)
def test_names_imported_inside_functions_exist(name):
    path = BENCHMARKS / (name.replace(".", "/") + ".py")
    if not path.exists():
        path = BENCHMARKS / name.replace(".", "/") / "__init__.py"
    missing = []
    for module, attr, line in _clinbert_imports(path):
        try:
            target = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and not exc.name.startswith("clinbert_onnx"):
                continue  # an optional dependency of that module (openvino, matplotlib) is not installed here
            raise
        if not hasattr(target, attr) and importlib.util.find_spec(f"{module}.{attr}") is None:
            missing.append(f"{path.name}:{line}: {module}.{attr}")
    assert missing == []


def test_modules_found():
    assert {"serve_bench", "run", "engines", "engines.ours"} <= set(MODULES)
    assert "benchmarks" not in sys.modules
