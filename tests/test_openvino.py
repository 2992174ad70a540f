"""The OpenVINO engine beside ONNX Runtime: the same Engine protocol and outputs, a clear error without the extra,
and what ``engine="auto"`` picks on which CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from clinbert_onnx import ClinicalBert
from clinbert_onnx.cli import main
from clinbert_onnx.engine_select import choose_engine, openvino_variant
from clinbert_onnx.errors import BundleError, InputError, MissingDependencyError
from clinbert_onnx.schema import VariantInfo
from conftest import requires_export, requires_openvino, requires_static

TEXTS = ["Chest pain radiating to the left arm.", "Afebrile, BP 120/80, started on ceftriaxone for pneumonia."]
MASKED = "The patient was started on [MASK] for pneumonia."
AVX2 = {"sse4_2", "avx", "avx2", "fma"}
VNNI = AVX2 | {"avx512f", "avx512_vnni"}
AMX = AVX2 | {"avx512f", "amx_int8", "amx_bf16"}


def _variants(*names: str) -> dict[str, VariantInfo]:
    built = {
        "fp32": VariantInfo(name="fp32", file="f", precision="fp32", devices=("cpu", "cuda")),
        "int8": VariantInfo(name="int8", file="i", precision="int8"),
        "int8-static": VariantInfo(name="int8-static", file="s", precision="int8", engines=("openvino", "onnxruntime")),
    }
    return {n: built[n] for n in names}


def _tokens(predictions: object) -> object:
    """The predicted token ids of a fill_mask result, nested as the result is."""
    if isinstance(predictions, dict):
        return predictions["token"]
    return [_tokens(p) for p in predictions]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- choice (no engine)
@pytest.mark.parametrize(
    ("flags", "installed", "names", "variant", "device", "expected"),
    [
        (VNNI, True, ("fp32", "int8", "int8-static"), None, "cpu", "openvino"),
        (AMX, True, ("fp32", "int8", "int8-static"), None, "cpu", "openvino"),
        (AMX, True, ("fp32", "int8", "int8-static"), "int8-static", "cpu", "openvino"),
        (AVX2, True, ("fp32", "int8", "int8-static"), None, "cpu", "onnxruntime"),  # never on AVX2-only
        (set(), True, ("fp32", "int8", "int8-static"), None, "cpu", "onnxruntime"),  # unknown CPU
        (AMX, False, ("fp32", "int8", "int8-static"), None, "cpu", "onnxruntime"),  # not installed
        (AMX, True, ("fp32", "int8"), None, "cpu", "onnxruntime"),  # no variant built for OpenVINO
        (AMX, True, ("fp32", "int8", "int8-static"), "int8", "cpu", "onnxruntime"),  # asked for ORT's int8
        (AMX, True, ("fp32", "int8", "int8-static"), "fp32", "cpu", "onnxruntime"),
        (AMX, True, ("fp32", "int8", "int8-static"), None, "cuda", "onnxruntime"),
    ],
)
def test_auto_choice(flags, installed, names, variant, device, expected) -> None:
    engine, reason = choose_engine(_variants(*names), variant, device, flags, installed)
    assert engine == expected and reason


def test_openvino_variant_choice() -> None:
    assert openvino_variant(_variants("fp32", "int8", "int8-static"), None).name == "int8-static"
    assert openvino_variant(_variants("fp32", "int8"), None).name == "fp32"
    with pytest.raises(BundleError, match="built for ONNX Runtime only"):
        openvino_variant(_variants("fp32", "int8"), "int8")
    with pytest.raises(BundleError, match="no variant 'x'"):
        openvino_variant(_variants("fp32"), "x")


def test_unknown_engine_is_an_input_error(tiny_bundle: Path) -> None:
    with pytest.raises(InputError, match="unknown engine"):
        ClinicalBert.load(tiny_bundle, engine="tensorrt")


@requires_export
def test_openvino_without_the_extra_names_it(tiny_bundle: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: find_spec → None, import fails
    with pytest.raises(MissingDependencyError, match=r"clinbert-onnx\[openvino\]"):
        ClinicalBert.load(tiny_bundle, engine="openvino", variant="fp32")
    assert main(["embed", str(tiny_bundle), "Chest pain.", "--engine", "openvino", "--variant", "fp32"]) == 7
    assert "[openvino]" in capsys.readouterr().err
    assert ClinicalBert.load(tiny_bundle, engine="auto").engine.name == "onnxruntime"


@requires_static
def test_auto_on_faked_cpus(static_bundle: Path, monkeypatch) -> None:
    import clinbert_onnx.engine_select as select

    monkeypatch.setattr(select, "cpu_flags", lambda: AVX2)
    model = ClinicalBert.load(static_bundle, engine="auto")
    assert (model.engine.name, model.variant) == ("onnxruntime", "int8")
    monkeypatch.setattr(select, "cpu_flags", lambda: VNNI)
    model = ClinicalBert.load(static_bundle, engine="auto")
    assert (model.engine.name, model.variant) == ("openvino", "int8-static")
    assert model.info()["engine"] == "openvino"


# ---------------------------------------------------------------------------------------------- both engines
@requires_static
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_engine_protocol_conformance(static_bundle: Path, engine: str) -> None:
    """Each engine offers the protocol's members and gives the same answers within INT8 tolerance."""
    model = ClinicalBert.load(static_bundle, engine=engine, variant="int8-static")
    e = model.engine
    assert e.device == "cpu" and {"input_ids", "attention_mask"} <= e.input_names
    assert {"last_hidden_state", "mean_pooled", "mask_logits"} <= e.output_names
    assert e.providers and e.threads >= 1
    reference = ClinicalBert.load(static_bundle, variant="fp32")
    a, b = model.embed(TEXTS), reference.embed(TEXTS)
    assert a.shape == b.shape and (a * b).sum(axis=1).min() >= 0.99
    # the two engines on the same static graph agree closely
    other = ClinicalBert.load(static_bundle, engine="onnxruntime", variant="int8-static").embed(TEXTS)
    assert (a * other).sum(axis=1).min() >= 0.999
    top = [p["token"] for p in model.fill_mask(MASKED, top_k=5)]
    ref_top = [p["token"] for p in reference.fill_mask(MASKED, top_k=5)]
    assert len(set(top) & set(ref_top)) >= 3
    hidden = model.engine.run(["last_hidden_state"], model._feed(model.prepare(TEXTS).windows))[0]
    assert hidden.shape[0] == 2 and hidden.shape[2] == model.hidden_size


@requires_openvino
@requires_export
def test_openvino_fp32_matches_onnxruntime_and_padding_is_invisible(tiny_bundle: Path) -> None:
    from clinbert_onnx.openvino_engine import OpenVinoEngine, OpenVinoSettings

    ort = ClinicalBert.load(tiny_bundle, variant="fp32")
    ov = ClinicalBert.load(tiny_bundle, variant="fp32", engine="openvino")
    assert ov.engine.settings.pad_multiple > 1 and ov.engine.settings.precision == "f32"
    np.testing.assert_allclose(ov.embed(TEXTS), ort.embed(TEXTS), atol=1e-5)
    unpadded = OpenVinoEngine.load(
        tiny_bundle / ov.bundle.variants["fp32"].file, OpenVinoSettings(pad_multiple=1, max_length=ov.max_length)
    )
    plain = ClinicalBert(ov.bundle, unpadded, "cpu", "fp32")
    np.testing.assert_allclose(ov.embed(TEXTS), plain.embed(TEXTS), atol=1e-5)
    masked = [MASKED, "Chest pain, given [MASK] and heparin, then [MASK]."]
    assert _tokens(ov.fill_mask(masked)) == _tokens(plain.fill_mask(masked)) == _tokens(ort.fill_mask(masked))
    with pytest.raises(BundleError, match="ONNX Runtime only"):
        ClinicalBert.load(tiny_bundle, variant="int8", engine="openvino")


@requires_openvino
@requires_export
def test_compiled_model_cache_in_the_user_cache(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLINBERT_CACHE_DIR", str(tmp_path / "cache"))
    ClinicalBert.load(tiny_bundle, variant="fp32", engine="openvino").embed(TEXTS)
    assert any((tmp_path / "cache" / "openvino").iterdir())


@requires_openvino
@requires_export
def test_cli_engine_flag_and_doctor(tiny_bundle: Path, capsys) -> None:
    assert main(["embed", str(tiny_bundle), "Chest pain.", "--json", "--engine", "openvino", "--variant", "fp32"]) == 0
    vec = np.asarray(json.loads(capsys.readouterr().out.splitlines()[0])["embedding"], dtype=np.float32)
    assert float(vec @ ClinicalBert.load(tiny_bundle, variant="fp32").embed("Chest pain.")[0]) > 0.9999
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "openvino" in report["engines"] and "instruction sets" in report and "auto engine" in report


@requires_static
def test_serve_and_score_on_openvino(static_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    import httpx
    from serve_support import serve_process

    expected = ClinicalBert.load(static_bundle, engine="openvino").embed(TEXTS)
    with serve_process(static_bundle, "--engine", "openvino") as (url, _proc):
        info = httpx.get(f"{url}/info", timeout=30).json()
        assert (info["engine"], info["variant"]) == ("openvino", "int8-static")
        got = np.asarray(httpx.post(f"{url}/embed", json={"inputs": TEXTS}, timeout=30).json(), dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    inp, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    inp.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["score", str(static_bundle), str(inp), "--out", str(out), "--quiet", "--engine", "openvino"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    np.testing.assert_allclose(np.asarray([r["embedding"] for r in rows], dtype=np.float32), expected, atol=1e-5)


@requires_openvino
@requires_export
def test_derived_tasks_on_openvino_equal_onnxruntime(ner_bundle: Path, assertion_bundle: Path) -> None:
    """Token logits are per token: OpenVINO's padding to a multiple of 16 must not reach the entities (long notes
    cut into many windows of odd widths); sequence logits come back whole."""
    note = " ".join(["Started on piperacillin-tazobactam 4.5 g IV q8h for pneumonia."] * 9)
    texts = ["Aspirin 81 mg PO daily.", note, "Denies chest pain."]
    for strategy in ("none", "simple"):
        a = ClinicalBert.load(ner_bundle, variant="fp32", engine="openvino").token_classification(
            texts, aggregation_strategy=strategy
        )
        b = ClinicalBert.load(ner_bundle, variant="fp32").token_classification(texts, aggregation_strategy=strategy)
        key = "entity" if strategy == "none" else "entity_group"
        assert [[(e[key], e["start"], e["end"]) for e in row] for row in a] == [
            [(e[key], e["start"], e["end"]) for e in row] for row in b
        ]
        assert sum(len(row) for row in b) > 0
        for ra, rb in zip(a, b, strict=True):
            np.testing.assert_allclose([e["score"] for e in ra], [e["score"] for e in rb], atol=1e-4)
    ov = ClinicalBert.load(assertion_bundle, variant="fp32", engine="openvino")
    ref = ClinicalBert.load(assertion_bundle, variant="fp32")
    got, want = ov.text_classification(texts, top_k=None), ref.text_classification(texts, top_k=None)
    assert [[r["label"] for r in row] for row in got] == [[r["label"] for r in row] for row in want]


@requires_static
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_streams_run_batches_at_once_with_the_same_results(static_bundle: Path, engine: str) -> None:
    """``SessionConfig(streams=2)``: two batches in flight on one engine, the threads shared; same vectors."""
    from clinbert_onnx import SessionConfig

    texts = [f"Day {i}: " + " ".join(["afebrile, tolerating diet"] * (1 + i % 9)) for i in range(40)]
    one = ClinicalBert.load(static_bundle, engine=engine, variant="int8-static", token_budget=64)
    two = ClinicalBert.load(
        static_bundle,
        engine=engine,
        variant="int8-static",
        token_budget=64,
        session_config=SessionConfig(intra_op_threads=2, streams=2),
    )
    assert two.streams == 2
    if engine == "openvino":
        assert int(two.engine.compiled.get_property("NUM_STREAMS")) == 2
    else:
        assert two.engine.threads == 1  # each run gets threads / streams
    np.testing.assert_allclose(two.embed(texts), one.embed(texts), atol=1e-6)
    with pytest.raises(InputError, match="streams must be an integer >= 1"):
        SessionConfig(streams=0)
