"""The bundle schema against its documentation, old manifests, and the rest of the code base."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from clinbert_onnx import schema
from clinbert_onnx.bundle import open_bundle
from clinbert_onnx.errors import BundleError

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "bundle-format.md").read_text(encoding="utf-8")
GRAPH_NAMES = {
    schema.INPUT_IDS,
    schema.ATTENTION_MASK,
    schema.TOKEN_TYPE_IDS,
    schema.MASK_POSITIONS,
    schema.LAST_HIDDEN_STATE,
    schema.MEAN_POOLED,
    schema.MASK_LOGITS,
    schema.LOGITS,
}


def _section(heading: str) -> str:
    """The text under ``heading`` (a markdown heading line) up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", DOC, re.S | re.M)
    assert match, f"docs/bundle-format.md has no section {heading!r}"
    return match.group(1)


def _table_names(text: str) -> list[str]:
    return re.findall(r"^\| `([^`]+)` \|", text, re.M)


def _example() -> dict[str, Any]:
    block = re.search(r"```jsonc\n(.*?)```", _section("manifest.json"), re.S)
    assert block
    text = re.sub(r"\s//[^\n]*", "", block.group(1))
    return dict(json.loads(text))


@pytest.mark.parametrize("path", list(schema.RECORDS))
def test_every_field_is_documented_and_nothing_else(path):
    documented = _table_names(_section(f"`{path}`"))
    assert documented == list(schema.RECORDS[path].keys())


def test_graph_tables_are_the_schema_names():
    assert set(_table_names(_section("The graph"))) == GRAPH_NAMES
    every_task = {name for spec in schema.TASKS.values() for name in (*spec.inputs, *spec.outputs)}
    assert every_task == GRAPH_NAMES
    assert set(_table_names(_section("Tasks"))) == set(schema.TASKS)


def test_no_stale_claims():
    assert "pooling happens in the runtime" not in DOC
    assert DOC.startswith(f"# Bundle format, version {schema.FORMAT_VERSION}\n")
    for task in schema.PLANNED_TASKS:
        assert f"`{task}`" in _section("Tasks")


def test_the_documented_example_round_trips():
    example = _example()
    manifest = schema.Manifest.from_dict(example)
    assert manifest.to_dict() == example
    assert manifest.variants["int8"].quality and manifest.variants["int8"].quality.passed is True
    assert manifest.graph == schema.GraphInfo.for_task(schema.FILL_MASK)


def test_a_manifest_written_before_task_still_loads(tmp_path):
    old = _example()
    del old["task"], old["graph"]
    manifest = schema.Manifest.from_dict(old)
    assert manifest.task == schema.FILL_MASK and schema.MASK_LOGITS in manifest.graph.outputs
    old["model"]["has_mlm_head"] = False
    assert schema.Manifest.from_dict(old).task == schema.FEATURE_EXTRACTION


def test_unknown_keys_survive_and_unknown_versions_or_tasks_are_refused():
    data = _example()
    data["future"] = {"x": 1}
    data["variants"]["int8"]["calibration"] = "new"
    assert schema.Manifest.from_dict(data).to_dict() == data
    for change, message in (
        ({"format_version": 2}, "format_version 2"),
        ({"format_version": True}, "format_version True"),
        ({"task": "question-answering"}, "newer clinbert-onnx"),
        ({"task": "token-classification"}, "needs 'head'"),
        ({"format": "other"}, "not a clinbert-onnx-bundle"),
    ):
        with pytest.raises(BundleError, match=message):
            schema.Manifest.from_dict({**data, **change})


def test_errors_name_the_field_path():
    data = _example()
    broken = copy.deepcopy(data)
    del broken["tokenizer"]["max_length"]
    with pytest.raises(BundleError, match="missing 'tokenizer.max_length'"):
        schema.Manifest.from_dict(broken)
    broken = copy.deepcopy(data)
    broken["variants"]["int8"]["devices"] = "cpu"
    with pytest.raises(BundleError, match="'variants.int8.devices' must be a list"):
        schema.Manifest.from_dict(broken)
    broken = copy.deepcopy(data)
    broken["files"]["config.json"]["size"] = "385"
    with pytest.raises(BundleError, match="'files.config.json.size' must be an integer"):
        schema.Manifest.from_dict(broken)


def test_open_bundle_reads_through_the_schema(tmp_path):
    (tmp_path / schema.MANIFEST).write_text(json.dumps(_example()))
    bundle = open_bundle(tmp_path)
    assert bundle.task == schema.FILL_MASK and bundle.tokenizer.max_length == 512
    assert bundle.variants["int8"].files == ("model.int8.onnx", "model.int8.onnx.data")
    assert bundle.raw == _example()
    bad = _example()
    bad["model"]["hidden_size"] = None
    (tmp_path / schema.MANIFEST).write_text(json.dumps(bad))
    with pytest.raises(BundleError, match=r"manifest.json: manifest field 'model.hidden_size'"):
        open_bundle(tmp_path)


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


#: Feeds for PyTorch / transformers models use transformers' argument names, which are not the graph's.
HF_FEEDS = {"benchmarks/engines/torch_engine.py", "benchmarks/engines/openvino_engine.py"}


def test_graph_names_are_spelled_only_in_the_schema():
    offenders = {}
    for folder in ("runtime", "export", "quantize", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "runtime/schema.py" or rel in HF_FEEDS:
                continue
            found = _string_constants(path) & (GRAPH_NAMES | {schema.MANIFEST})
            if found:
                offenders[rel] = sorted(found)
    assert offenders == {}
