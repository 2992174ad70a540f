"""The int8-static variant: built by NNCF from the FP32 graph, gated on the engine it ships for (OpenVINO), fixed
scales so a text's result does not depend on its batch-mates, and close to PyTorch FP32 on real MiniLM weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clinbert_onnx import ClinicalBert
from clinbert_onnx.quantize.calibrate import calibration_hash, calibration_sentences
from clinbert_onnx.quantize.gate import probe_sentences
from clinbert_onnx.quantize.recipes import get_recipe
from clinbert_onnx.schema import Manifest
from conftest import requires_static
from test_faithful_int8 import TEXT, companions, held_out_sentences

pytestmark = requires_static

#: The static variant's acceptance line for a text alone vs among companions (issue 15).
STATIC_DRIFT = 1e-4


def _variant(bundle: Path, name: str = "int8-static") -> dict:
    return json.loads((bundle / "manifest.json").read_text())["variants"][name]


def test_recipe_is_static_batch_invariant_and_keeps_the_decoder_fp32() -> None:
    recipe = get_recipe("int8-static")
    assert recipe.static and recipe.batch_invariant and recipe.default_variant == "int8-static"
    manifest = recipe.info().to_dict()
    assert manifest["activations"] == "static" and manifest["quantize_embeddings"] is True
    assert manifest["nodes_to_exclude"] == ["mlm/decoder/MatMul"]
    assert str(manifest["quantizer"]).startswith("nncf 3.4")
    assert manifest["calibration_sha256"] == calibration_hash()
    # calibration and probe sets are disjoint: the gate never measures on what calibrated the scales
    assert manifest["calibration_sentences"] == len(calibration_sentences())
    assert not set(calibration_sentences()) & set(probe_sentences())


def test_export_writes_the_static_variant_with_its_gate_figures(static_bundle: Path) -> None:
    entry = _variant(static_bundle)
    assert entry["engines"] == ["openvino", "onnxruntime"] and entry["devices"] == ["cpu"]
    assert entry["fused_ops"]["QuantizeLinear"] > 0 and "Attention" not in entry["fused_ops"]
    q = entry["quality"]
    assert q["engine"] == "openvino" and q["passed"] is True and q["batch_invariant"] is True
    assert q["cpu"] and isinstance(q["cpu_flags"], list)
    assert q["batch_drift_max"] <= STATIC_DRIFT and q["batch_cosine_min"] >= 0.99999
    assert q["embedding_cosine_mean"] >= 0.99 and q["fill_mask_top1_agreement"] >= 0.8
    manifest = Manifest.from_dict(json.loads((static_bundle / "manifest.json").read_text()))
    assert manifest.variants["int8-static"].runs_on("openvino")
    assert not manifest.variants["int8"].runs_on("openvino") and manifest.variants["fp32"].runs_on("openvino")
    # the ONNX Runtime default is unchanged
    assert ClinicalBert.load(static_bundle).variant == "int8"
    # a tied MLM decoder reads the embedding table: it stays FP32, and the manifest says so
    assert entry["recipe"]["quantize_embeddings"] is False and entry["fused_ops"]["EmbedLayerNormalization"] == 1


def test_embedding_table_int8_where_no_decoder_reads_it(minilm_static_bundle: Path) -> None:
    """Weight-only int8 table (one scale per row) on an encoder-only bundle: a fact of the graph and the file."""
    import onnx
    from onnx import TensorProto

    entry = _variant(minilm_static_bundle)
    assert entry["recipe"]["quantize_embeddings"] is True
    assert "EmbedLayerNormalization" not in entry["fused_ops"] and entry["fused_ops"]["LayerNormalization"] >= 1
    graph = onnx.load(str(minilm_static_bundle / entry["file"]), load_external_data=False).graph
    vocab = json.loads((minilm_static_bundle / "config.json").read_text())["vocab_size"]
    tables = [i for i in graph.initializer if len(i.dims) == 2 and i.dims[0] == vocab and i.dims[1] > 1]
    assert [t.data_type for t in tables] == [TensorProto.INT8]
    # MiniLM's table is half its weights: int8 table ~0.25 of the FP32 file, an FP32 table would leave ~0.64
    sizes = [(minilm_static_bundle / e["data"]).stat().st_size for e in (entry, _variant(minilm_static_bundle, "fp32"))]
    assert sizes[0] < 0.45 * sizes[1]


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_same_vector_alone_and_in_any_batch(static_bundle: Path, engine: str) -> None:
    model = ClinicalBert.load(static_bundle, variant="int8-static", engine=engine)
    alone = model.embed([TEXT])[0]
    for seed in range(4):
        others = companions(16, seed)
        batch = model.embed([*others[:seed], TEXT, *others[seed:]])
        assert np.abs(batch[seed] - alone).max() <= STATIC_DRIFT
        assert float(batch[seed] @ alone) >= 0.99999
    masked = "The patient was started on [MASK] for pneumonia."
    one = model.fill_mask(masked, top_k=5)
    many = model.fill_mask([*[s + " [MASK]." for s in companions(7, 9)], masked], top_k=5)[-1]
    assert [p["token"] for p in many] == [p["token"] for p in one]
    np.testing.assert_allclose([p["score"] for p in many], [p["score"] for p in one], atol=STATIC_DRIFT)


def test_minilm_real_weights_static_int8_close_to_torch(minilm_static_bundle: Path) -> None:
    """Real pretrained weights, sentences the calibration never saw: mean cosine >= 0.995, min >= 0.99."""
    from builders import minilm_dir
    from reference import torch_embeddings

    texts = held_out_sentences()
    ref = torch_embeddings(minilm_dir(), minilm_static_bundle, texts)
    vectors = ClinicalBert.load(minilm_static_bundle, engine="openvino").embed(texts)
    cos = (vectors * ref).sum(axis=1)
    assert cos.mean() >= 0.995 and cos.min() >= 0.99, (cos.mean(), cos.min())
    quality = _variant(minilm_static_bundle)["quality"]
    assert quality["engine"] == "openvino" and quality["batch_drift_max"] <= STATIC_DRIFT


def test_static_variant_of_a_64_position_model(tmp_path: Path) -> None:
    """Calibration sentences are cut at the model's positions (64 here), not at a fixed 128 tokens."""
    import builders
    from clinbert_onnx.cli import main
    from clinbert_onnx.export import ExportOptions, export_bundle

    ckpt = builders.make_checkpoint(tmp_path / "ckpt64", max_positions=64)
    bundle = export_bundle(ExportOptions(model=str(ckpt), out=tmp_path / "b64", variants=("fp32",)))
    assert main(["quantize", str(bundle), "--recipe", "int8-static", "--allow-degraded"]) == 0
    model = ClinicalBert.load(bundle, engine="openvino")
    assert model.variant == "int8-static" and model.max_length == 64
    assert model.encode([" ".join(["fever"] * 200), "short"]).windows[0] > 1
