"""FP16 variant: what can be checked without a GPU (conversion facts, gate, selection); GPU checks skip."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from clinbert_onnx import ClinicalBert
from clinbert_onnx.bundle import open_bundle
from clinbert_onnx.cli import main
from clinbert_onnx.model import _default_variant
from clinbert_onnx.session import CUDA_EP
from conftest import requires_export

pytestmark = requires_export


@pytest.fixture(scope="module")
def fp16_bundle(tiny_bundle, tmp_path_factory):
    copy = tmp_path_factory.mktemp("fp16") / "b"
    shutil.copytree(tiny_bundle, copy)
    assert main(["quantize", str(copy), "--recipe", "fp16"]) == 0
    return copy


def test_fp16_graph_keeps_io_layernorm_and_pooling_in_fp32(fp16_bundle):
    import onnx
    from clinbert_onnx.quantize.fp16 import fp32_islands
    from onnx import TensorProto

    model = onnx.load(str(fp16_bundle / "model.fp16.onnx"))
    assert {i.type.tensor_type.elem_type for i in model.graph.output} == {TensorProto.FLOAT}
    halves = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16]
    assert sum(np.prod(i.dims) for i in halves) > 0.9 * sum(np.prod(i.dims) for i in model.graph.initializer)
    islands = fp32_islands(model)
    assert islands.get("LayerNormalization") == ["mlm/LayerNorm"]
    assert {"pool/mul", "pool/sum", "pool/div"} <= {name for names in islands.values() for name in names}
    for fused in ("Attention", "SkipLayerNormalization", "EmbedLayerNormalization"):
        assert fused not in islands, f"{fused} should run in fp16"


def test_fp16_manifest_gate_and_cpu_numerics(fp16_bundle):
    manifest = json.loads((fp16_bundle / "manifest.json").read_text())
    v = manifest["variants"]["fp16"]
    assert v["devices"] == ["cuda"] and v["precision"] == "fp16"
    assert v["quality"]["passed"] is True and v["quality"]["device"] in ("cpu", "cuda")
    assert v["quality"]["embedding_cosine_mean"] >= 0.999
    assert main(["verify", str(fp16_bundle)]) == 0
    texts = ["Chest pain radiating to the left arm.", "Afebrile, BP 120/80."]
    half = ClinicalBert.load(fp16_bundle, device="cpu", variant="fp16").embed(texts)
    full = ClinicalBert.load(fp16_bundle, device="cpu", variant="fp32").embed(texts)
    assert (half * full).sum(axis=1).min() >= 0.999


def test_cuda_prefers_fp16_then_fp32(fp16_bundle, tiny_bundle):
    assert _default_variant(open_bundle(fp16_bundle), "cuda").name == "fp16"
    assert _default_variant(open_bundle(tiny_bundle), "cuda").name == "fp32"
    assert _default_variant(open_bundle(fp16_bundle), "cpu").name == "int8"


def test_export_with_fp16_variant(tmp_path, tiny_checkpoint):
    out = tmp_path / "b"
    assert main(["export", str(tiny_checkpoint), "--out", str(out), "--variants", "fp32,int8,fp16"]) == 0
    assert set(open_bundle(out).variants) == {"fp32", "int8", "fp16"}


def _need_cuda() -> None:
    import onnxruntime as ort

    if CUDA_EP not in ort.get_available_providers():
        pytest.skip("no CUDA provider (run on a GPU machine)")


@pytest.mark.cuda
def test_fp16_on_gpu_matches_fp32(fp16_bundle):
    """GPU acceptance: cosine >= 0.999 and fill-mask top-1 agreement >= 0.98 against FP32 on the probe set."""
    _need_cuda()
    from clinbert_onnx.quantize.gate import measure

    report = measure(fp16_bundle, "fp16", device="cuda")
    assert report.device == "cuda"
    assert report.embedding_cosine_min is not None and report.embedding_cosine_min >= 0.999
    assert report.fill_mask_top1_agreement is not None and report.fill_mask_top1_agreement >= 0.98
