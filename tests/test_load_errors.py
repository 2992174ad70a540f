"""Failures at load time surface as this package's errors (one line, an exit code), never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from clinbert_onnx import ClinicalBert
from clinbert_onnx.bundle import file_entry, open_bundle, write_manifest
from clinbert_onnx.cli import main
from clinbert_onnx.errors import BundleError, MissingDependencyError, require


def test_require_with_a_missing_parent_package_is_a_missing_dependency():
    with pytest.raises(MissingDependencyError, match=r"clinbert-onnx\[export\]"):
        require("no_such_package_clinbert.exporters.onnx", "export")
    with pytest.raises(MissingDependencyError):
        require("no_such_package_clinbert", "export")
    require("json.decoder", "export")  # present: no error


def _replace_graph(bundle: Path, name: str, content: bytes) -> None:
    """Put ``content`` in place of the variant's graph and re-list it, so the checksums pass."""
    opened = open_bundle(bundle)
    (bundle / name).write_bytes(content)
    write_manifest(bundle, opened.manifest.with_files({**opened.files, name: file_entry(bundle / name)}))


def _unknown_op_graph() -> bytes:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("NoSuchOperator", ["input_ids"], ["last"], domain="")
    graph = helper.make_graph(
        [node],
        "broken",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("last", TensorProto.FLOAT, ["b", "s"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return bytes(model.SerializeToString())


@pytest.mark.parametrize("kind", ["unknown-op", "not-protobuf"])
def test_a_graph_onnx_runtime_rejects_is_a_bundle_error_naming_the_file(tmp_path, tiny_bundle, capsys, kind):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    content = _unknown_op_graph() if kind == "unknown-op" else b"\x08\x07 this is not an ONNX model"
    _replace_graph(copy, "model.int8.onnx", content)
    with pytest.raises(BundleError, match=r"model\.int8\.onnx"):
        ClinicalBert.load(copy, device="cpu", variant="int8")
    assert main(["embed", str(copy), "chest pain", "--variant", "int8"]) == 3
    err = capsys.readouterr().err.strip()
    assert "model.int8.onnx" in err and err.count("\n") == 0 and "Traceback" not in err
