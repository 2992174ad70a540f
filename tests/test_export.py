"""Export: fusion facts, parity report, casing, gate, atomic output, verify, and bad inputs."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from builders import make_checkpoint
from clinbert_onnx import ClinicalBert
from clinbert_onnx.cli import main
from clinbert_onnx.errors import ChecksumError
from conftest import requires_export

pytestmark = requires_export


def _ops(path: Path) -> Counter[str]:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_twelve_layer_fusion_counts_and_int8_facts(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ck12", layers=12, hidden=32, heads=2, intermediate=64)
    assert main(["export", str(ckpt), "--out", str(tmp_path / "b12"), "--allow-degraded"]) == 0
    fp32 = _ops(tmp_path / "b12" / "model.fp32.onnx")
    assert fp32["EmbedLayerNormalization"] == 1
    assert fp32["Attention"] == 12
    assert fp32["SkipLayerNormalization"] == 24
    assert fp32["BiasGelu"] == 12 + 1  # 12 layers + the MLM head's transform
    assert fp32["MatMul"] == 3 * 12 + 2  # out-proj + 2 FFN per layer, head dense + decoder
    # default: per-token int8, every linear layer a QGemm on per-row quantized activations
    int8 = _ops(tmp_path / "b12" / "model.int8.onnx")
    assert int8["MultiHeadAttention"] == 12 and int8["Attention"] == 0 and int8["QAttention"] == 0
    assert int8["QEmbedLayerNormalization"] == 1
    # Q, K, V (three QGemms on one quantized input) + out-proj + 2 FFN per layer, the head's dense, the tied
    # decoder (reading the uint8 table)
    assert int8["QGemm"] == 6 * 12 + 2
    assert int8["QuantizeLinear"] == 4 * 12 + 2
    assert int8["MatMul"] == 0 and int8["DynamicQuantizeMatMul"] == 0 and int8["DynamicQuantizeLinear"] == 0
    manifest = _manifest(tmp_path / "b12")
    assert manifest["variants"]["fp32"]["fused_ops"]["Attention"] == 12
    recipe = manifest["variants"]["int8"]["recipe"]
    assert recipe["activations"] == "per-token" and recipe["batch_invariant"] is True
    # the 0.1 recipe, now a named opt-in that says it is batch-dependent
    assert main(["quantize", str(tmp_path / "b12"), "--recipe", "int8-dynamic-tensor", "--allow-degraded"]) == 0
    dyn = _ops(tmp_path / "b12" / "model.int8.onnx")
    assert dyn["QAttention"] == 12 and dyn["Attention"] == 0
    assert dyn["MatMulInteger"] == 3 * 12 + 1  # every linear layer and the head's dense
    assert dyn["DynamicQuantizeMatMul"] == 1  # the tied decoder, reading the prepacked uint8 table
    assert dyn["MatMul"] == 0
    recipe = _manifest(tmp_path / "b12")["variants"]["int8"]["recipe"]
    assert recipe["name"] == "int8-dynamic-tensor" and recipe["batch_invariant"] is False


def test_manifest_records_what_the_spec_requires(tiny_bundle):
    m = _manifest(tiny_bundle)
    assert m["format"] == "clinbert-onnx-bundle" and m["format_version"] == 1
    assert m["source"]["local_path"] and len(m["source"]["weights_sha256"]) == 64
    for dist in ("optimum", "onnx", "onnxruntime", "torch", "transformers"):
        assert m["versions"][dist]
    assert m["opset"] >= 17
    assert m["model"]["has_mlm_head"] is True and m["model"]["decoder_tied_to_embeddings"] is True
    assert {"lowercase", "max_length", "mask_token_id", "cls_token_id"} <= set(m["tokenizer"])
    parity = m["variants"]["fp32"]["parity"]
    assert parity["max_abs_diff_hidden"] <= 1e-4 and parity["max_abs_diff_mask_logits"] <= 1e-4
    q = m["variants"]["int8"]["quality"]
    assert {
        "embedding_cosine_mean",
        "embedding_cosine_min",
        "fill_mask_top1_agreement",
        "fill_mask_top5_overlap",
    } <= set(q)
    assert m["variants"]["int8"]["recipe"]["per_channel"] is True
    on_disk = {p.name for p in tiny_bundle.iterdir() if p.name != "manifest.json"}
    assert set(m["files"]) == on_disk
    assert not [p for p in tiny_bundle.parent.iterdir() if ".partial-" in p.name]


def test_int8_shares_the_uint8_embedding_matrix(tiny_bundle):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tiny_bundle / "model.int8.onnx"))
    (qemb,) = [n for n in model.graph.node if n.op_type == "QEmbedLayerNormalization"]
    (decoder,) = [n for n in model.graph.node if n.name == "pt/mlm/decoder/QGemm"]
    (transpose,) = [n for n in model.graph.node if n.output[0] == decoder.input[3]]
    assert transpose.input[0] == qemb.input[2]  # one uint8 vocabulary matrix, read by both
    vocab = _manifest(tiny_bundle)["model"]["vocab_size"]
    big = [numpy_helper.to_array(i) for i in model.graph.initializer if i.dims and i.dims[0] == vocab]
    assert len(big) == 2, "one uint8 vocabulary matrix plus the decoder bias"
    assert sorted(str(a.dtype) for a in big) == ["float32", "uint8"]
    assert sum(a.size for a in big if a.dtype == np.float32) == vocab  # only the bias stays float
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dead = [n.name for n in model.graph.node if not any(o in used for o in n.output)]
    assert dead == [], "dead nodes still run in ONNX Runtime (e.g. a DequantizeLinear of the whole vocabulary)"


def test_casing_detected_and_overridable(tmp_path, tiny_checkpoint, tiny_bundle):
    m = _manifest(tiny_bundle)
    assert m["tokenizer"]["lowercase"] is False
    assert m["tokenizer"]["lowercase_source"] == "cased-vocab-detected"
    from clinbert_onnx import ClinicalBert

    model = ClinicalBert.load(tiny_bundle, device="cpu", variant="fp32")
    assert model.tokenizer.encode("Patient").ids != model.tokenizer.encode("patient").ids

    out = tmp_path / "lower"
    assert main(["export", str(tiny_checkpoint), "--out", str(out), "--lowercase", "--variants", "fp32"]) == 0
    assert _manifest(out)["tokenizer"] == {
        **_manifest(out)["tokenizer"],
        "lowercase": True,
        "lowercase_source": "override",
    }
    lowered = ClinicalBert.load(out, device="cpu", variant="fp32")
    assert lowered.tokenizer.encode("Patient").ids == lowered.tokenizer.encode("patient").ids


def test_cased_tokenizer_is_kept_without_warning(tmp_path, recwarn):
    ckpt = make_checkpoint(tmp_path / "cased", tokenizer_style="cased")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "b"), "--variants", "fp32"]) == 0
    assert _manifest(tmp_path / "b")["tokenizer"]["lowercase_source"] == "tokenizer"
    assert not [w for w in recwarn if "upper-case" in str(w.message)]


def _outlier_checkpoint(path: Path) -> Path:
    """A tiny model whose linear layers carry a few huge weights: per-tensor int8 cannot represent the rest."""
    import torch
    from transformers import BertForMaskedLM

    ckpt = make_checkpoint(path, seed=3, config_overrides={"initializer_range": 0.2})
    model = BertForMaskedLM.from_pretrained(str(ckpt))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "encoder" in name:
                p[0, 0] = 40.0
    model.save_pretrained(str(ckpt))
    return ckpt


def test_gate_fails_on_a_bad_recipe_and_names_the_figure(tmp_path, capsys):
    ckpt = _outlier_checkpoint(tmp_path / "outliers")
    out = tmp_path / "bundle"
    code = main(["export", str(ckpt), "--out", str(out), "--recipe", "int8-per-tensor"])
    err = capsys.readouterr().err
    assert code == 6
    assert "accuracy gate" in err and "embedding_cosine" in err
    assert not out.exists(), "a failed export leaves no bundle"
    assert not list(tmp_path.glob(".bundle.partial-*"))
    # the default (per-channel) recipe passes on the same model, and re-quantizing per-tensor is refused
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    before = _manifest(out)
    assert main(["quantize", str(out), "--recipe", "int8-per-tensor"]) == 6
    assert _manifest(out) == before
    assert main(["verify", str(out)]) == 0
    assert main(["quantize", str(out), "--recipe", "int8-per-tensor", "--allow-degraded"]) == 0
    after = _manifest(out)
    assert after["variants"]["int8"]["recipe"]["per_channel"] is False
    assert after["variants"]["int8"]["quality"]["passed"] is False
    assert main(["verify", str(out)]) == 0


def test_interrupted_export_leaves_nothing_that_looks_complete(tmp_path, tiny_checkpoint, monkeypatch):
    from clinbert_onnx.export import pipeline

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "build_variant", boom)
    out = tmp_path / "b"
    assert main(["export", str(tiny_checkpoint), "--out", str(out)]) == 130
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_and_existing_output_is_refused(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["export", str(tiny_checkpoint), "--out", str(out), "--variants", "fp32"]) == 5
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert main(["export", str(tiny_checkpoint), "--out", str(out), "--variants", "fp32", "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.json").exists()


def test_verify_catches_a_modified_file(tmp_path, tiny_bundle, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    assert main(["verify", str(copy)]) == 0
    for name in ("model.int8.onnx.data", "model.int8.onnx"):  # the weights, then the graph
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (copy / name).write_bytes(bytes(data))
        capsys.readouterr()
        assert main(["verify", str(copy)]) == 3
        err = capsys.readouterr().err
        assert name + " " in err and "sha256" in err and "Traceback" not in err
        with pytest.raises(ChecksumError, match=name.replace(".", r"\.") + " "):
            ClinicalBert.load(copy, device="cpu")
        data[len(data) // 2] ^= 0xFF
        (copy / name).write_bytes(bytes(data))


def _one_line_error(capsys, argv, code):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    assert "not found" in _one_line_error(capsys, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], 5)

    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert "gpt2" in _one_line_error(capsys, ["export", str(gpt), "--out", str(tmp_path / "o")], 5)

    notok = make_checkpoint(tmp_path / "notok", tokenizer_style="none")
    assert "tokenizer" in _one_line_error(capsys, ["export", str(notok), "--out", str(tmp_path / "o")], 5)

    pickled = make_checkpoint(tmp_path / "pickled", weights="bin")
    assert "--allow-pickle" in _one_line_error(capsys, ["export", str(pickled), "--out", str(tmp_path / "o")], 5)
    assert main(["export", str(pickled), "--out", str(tmp_path / "p"), "--allow-pickle", "--variants", "fp32"]) == 0
    capsys.readouterr()  # a successful export's progress lines
    assert _manifest(tmp_path / "p")["source"]["weights_format"].startswith("pytorch-pickle")

    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    err = _one_line_error(capsys, ["export", str(tiny_checkpoint), "--out", str(tmp_path / "o")], 5)
    assert "disk space" in err
    assert not (tmp_path / "o").exists()


def test_hub_id_offline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _one_line_error(
        capsys,
        ["export", "emilyalsentzer/Bio_ClinicalBERT", "--revision", "abc123", "--out", str(tmp_path / "o")],
        5,
    )
    assert "emilyalsentzer/Bio_ClinicalBERT" in err


def test_minilm_gives_embeddings_only_bundle(minilm_bundle, capsys):
    from clinbert_onnx import ClinicalBert, NoMaskHeadError

    m = _manifest(minilm_bundle)
    assert m["model"]["has_mlm_head"] is False
    assert m["variants"]["int8"]["quality"]["embedding_cosine_mean"] >= 0.99
    assert "fill_mask_top1_agreement" not in m["variants"]["int8"]["quality"]
    model = ClinicalBert.load(minilm_bundle, device="cpu")
    with pytest.raises(NoMaskHeadError):
        model.fill_mask("The patient has [MASK].")
    assert main(["fill-mask", str(minilm_bundle), "The patient has [MASK]."]) == 2
    assert "masked-LM head" in capsys.readouterr().err


@pytest.mark.slow
def test_bio_clinicalbert_shaped_int8_size(tmp_path):
    """BERT-base with Bio_ClinicalBERT's exact config: the int8 file stays <= 115 MB (Optimum's is 131 MB)."""
    from builders import bio_clinicalbert_shaped

    ckpt = bio_clinicalbert_shaped(tmp_path / "ck")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "b"), "--allow-degraded"]) == 0
    m = _manifest(tmp_path / "b")
    assert m["files"]["model.int8.onnx"]["size"] + m["files"]["model.int8.onnx.data"]["size"] <= 115e6
    assert m["variants"]["fp32"]["fused_ops"] == {
        "EmbedLayerNormalization": 1,
        "Attention": 12,
        "SkipLayerNormalization": 24,
        "BiasGelu": 12,
        "MatMul": 36,
    }
    assert m["variants"]["fp32"]["parity"]["max_abs_diff_hidden"] <= 1e-4


def test_quantize_exclude_node_keeps_it_fp32(tmp_path, tiny_bundle):
    import onnx

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    graph = onnx.load(str(copy / "model.fp32.onnx")).graph
    ffn = [n.name for n in graph.node if n.op_type == "MatMul" and "intermediate" in n.name]
    assert main(["quantize", str(copy), "--exclude-node", ffn[0]]) == 0
    assert _ops(copy / "model.int8.onnx")["MatMul"] == 1
    assert _manifest(copy)["variants"]["int8"]["recipe"]["nodes_to_exclude"] == [ffn[0]]


def test_low_memory_decoder_gives_the_same_logits(tmp_path, tiny_bundle):
    """The MatMulInteger decoder (packed per call, no prepacked copy) computes what the dynamic decoder does."""
    import onnx
    from clinbert_onnx import ClinicalBert

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    text = "The patient was started on [MASK] for pneumonia."
    assert main(["quantize", str(copy), "--recipe", "int8-dynamic-tensor"]) == 0
    dynamic_ops = _ops(copy / "model.int8.onnx")
    before = ClinicalBert.load(copy, device="cpu").fill_mask(text, top_k=5)
    assert main(["quantize", str(copy), "--recipe", "int8-low-memory"]) == 0
    ops = _ops(copy / "model.int8.onnx")
    assert ops["DynamicQuantizeMatMul"] == 0 and ops["MatMulInteger"] == dynamic_ops["MatMulInteger"] + 1
    graph = onnx.load(str(copy / "model.int8.onnx"), load_external_data=False).graph
    (decoder,) = [n for n in graph.node if n.name == "mlm/decoder_q/MatMulInteger"]
    assert decoder.input[0].endswith("word_embeddings.weight_quantized")
    assert not [p for p in copy.iterdir() if p.name.startswith(".")], "staging files left behind"
    after = ClinicalBert.load(copy, device="cpu").fill_mask(text, top_k=5)
    assert [p["token"] for p in after] == [p["token"] for p in before]
    np.testing.assert_allclose([p["score"] for p in after], [p["score"] for p in before], atol=1e-6)


def test_export_shows_one_line_per_step_and_no_library_chatter(tmp_path, tiny_checkpoint, capfd, caplog):
    chatter = ("pre-processing before quantization", "Failed to infer data type", "Some weights")
    with pytest.warns(UserWarning, match="upper-case letters"):  # the casing warning is the user's: it stays
        assert main(["export", str(tiny_checkpoint), "--out", str(tmp_path / "b")]) == 0
    out, err = capfd.readouterr()
    steps = re.findall(r"^\[(\d)/(\d)\] (.+?)  (\d+\.\d) s$", err, re.M)
    labels = [s[2] for s in steps]
    assert [int(s[0]) for s in steps] == list(range(1, 7)) and {s[1] for s in steps} == {"6"}, err
    for expected in ("load", "export to ONNX", "fuse", "parity", "int8: build", "int8: accuracy gate"):
        assert any(label.startswith(expected) for label in labels), (expected, labels)
    assert re.search(r"^export done in \d+ s$", err, re.M)
    assert "bundle written to" in out
    everything = out + err + caplog.text
    assert not [c for c in chatter if c in everything], everything


def test_export_verbose_lets_the_libraries_speak(tmp_path, tiny_checkpoint, caplog):
    with pytest.warns(UserWarning):
        assert main(["--verbose", "export", str(tiny_checkpoint), "--out", str(tmp_path / "b")]) == 0
    assert "pre-processing before quantization" in caplog.text
