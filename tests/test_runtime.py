"""Runtime behaviour: variants, long notes, batching, integrity, devices and bad input."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from builders import DATA
from clinbert_onnx import (
    BundleError,
    ChecksumError,
    ClinicalBert,
    DeviceError,
    InputError,
    TextTooLongError,
)
from clinbert_onnx.batching import plan_batches
from clinbert_onnx.cli import main
from clinbert_onnx.session import CUDA_EP, resolve_device
from clinbert_onnx.windows import embed_windows, mask_windows

LONG_NOTE = (DATA / "long_note.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def model(tiny_bundle):
    return ClinicalBert.load(tiny_bundle, device="cpu")


def test_cpu_defaults_to_int8_and_variant_override(tiny_bundle, model):
    assert model.variant == "int8" and model.device == "cpu"
    assert ClinicalBert.load(tiny_bundle, device="cpu", variant="fp32").variant == "fp32"
    with pytest.raises(BundleError, match=r"no variant 'fp16' \(present: fp32, int8\)"):
        ClinicalBert.load(tiny_bundle, device="cpu", variant="fp16")


def test_embed_returns_float32_in_input_order(tiny_bundle, model):
    texts = [
        "Chest pain.",
        "Patient admitted with community acquired pneumonia and started on ceftriaxone.",
        "SOB",
    ]
    fp32 = ClinicalBert.load(tiny_bundle, device="cpu", variant="fp32")
    np.testing.assert_allclose(fp32.embed(texts), np.stack([fp32.embed(t)[0] for t in texts]), atol=1e-5)
    # int8 quantizes activations per batch, so batch-mates shift results slightly (never the order)
    one_by_one = np.stack([model.embed(t)[0] for t in texts])
    together = model.embed(texts)
    assert together.dtype == np.float32 and together.shape == (3, model.hidden_size)
    assert (together * one_by_one).sum(axis=1).min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    raw = model.embed(texts, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_plan_batches_respects_budget_and_covers_all():
    lengths = [5, 120, 7, 64, 64, 3, 128, 30]
    batches = plan_batches(lengths, token_budget=256, max_batch=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 256
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_embed_windows_cover_every_token_once_by_weight():
    ids = np.arange(1000, dtype=np.int64) + 10
    windows = embed_windows([ids], max_length=128, cls_id=1, sep_id=2, long_text="chunk", overlap=32)
    assert all(len(w.ids) <= 128 for w in windows)
    assert sum(w.weight for w in windows) == len(ids)
    seen = np.concatenate([w.ids[1:-1] for w in windows])
    assert set(seen.tolist()) == set(ids.tolist())
    assert windows[1].ids[1] == ids[126 - 32]  # step = capacity - overlap
    (trunc,) = embed_windows([ids], max_length=128, cls_id=1, sep_id=2, long_text="truncate", overlap=32)
    assert len(trunc.ids) == 128
    with pytest.raises(TextTooLongError, match="1000 tokens"):
        embed_windows([ids], max_length=128, cls_id=1, sep_id=2, long_text="error", overlap=32)


def test_mask_windows_centre_each_mask():
    ids = np.arange(1000, dtype=np.int64) + 10
    ids[[20, 500, 990]] = 4
    windows, positions = mask_windows([ids], max_length=128, cls_id=1, sep_id=2, mask_id=4, long_text="chunk")
    assert positions[0].tolist() == [20, 500, 990]
    assert len(windows) == 3
    for w, p in zip(windows, [20, 500, 990], strict=True):
        (local,) = w.masks
        assert w.ids[local] == 4 and len(w.ids) == 128
        start = p - (local - 1)
        assert start == min(max(p - 63, 0), 1000 - 126)


def test_long_note_is_chunked_and_reported(model):
    result = model.encode([LONG_NOTE, "Short note."])
    assert result.windows[0] > 1 and result.windows[1] == 1
    assert result.tokens[0] > model.max_length
    truncated = model.encode([LONG_NOTE], long_text="truncate")
    assert truncated.windows == [1]
    assert float(result.vectors[0] @ truncated.vectors[0]) < 0.99999
    with pytest.raises(TextTooLongError):
        model.embed(LONG_NOTE, long_text="error")


def test_fill_mask_far_into_a_long_note(model):
    words = LONG_NOTE.split()
    text = " ".join([*words[:1500], "[MASK]", *words[1500:1600], "[MASK]"])
    result = model.predict_masks(text, top_k=3)
    (preds,) = result.predictions
    assert len(preds) == 2 and all(len(row) == 3 for row in preds)
    assert result.windows[0] >= 1
    with pytest.raises(TextTooLongError, match="truncation point"):
        model.fill_mask(text, long_text="truncate")


def test_bad_input_raises_input_errors(model):
    cases = [
        ("", "empty"),
        ("   \n", "empty"),
        (["ok [MASK]", 3], "not a string"),
        ("no mask here", "no \\[MASK\\]"),
        ("bad \ud800 [MASK]", "Unicode"),
        (b"bytes [MASK]", "string"),
        (" ".join(["[MASK]"] * 200), "at most"),
    ]
    for text, message in cases:
        with pytest.raises(InputError, match=message):
            model.fill_mask(text)
    with pytest.raises(InputError, match="top_k"):
        model.fill_mask("a [MASK]", top_k=0)
    with pytest.raises(InputError, match="pooling"):
        model.embed("a", pooling="sum")
    with pytest.raises(InputError, match="long_text"):
        model.embed("a", long_text="drop")
    with pytest.raises(InputError, match="targets"):
        model.fill_mask("a [MASK]", targets=[])
    assert model.embed([]).shape == (0, model.hidden_size)


def test_cli_bad_input_is_one_line_and_exit_2(tiny_bundle, capsys):
    for argv in (["fill-mask", str(tiny_bundle), "no mask"], ["embed", str(tiny_bundle), "  "]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err
    assert main(["embed", str(tiny_bundle) + "-missing", "x"]) == 3


def test_cli_json_output(tiny_bundle, capsys):
    assert main(["fill-mask", str(tiny_bundle), "The patient has [MASK].", "--json", "--top-k", "2"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert len(row["predictions"]) == 2 and row["windows"] == 1
    assert main(["embed", str(tiny_bundle), "a", "b", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and len(json.loads(lines[0])["embedding"]) == 64


def test_input_text_never_logged(tiny_bundle, caplog):
    secret = "Zebediah-Quux-4471"
    caplog.set_level(logging.DEBUG)
    model = ClinicalBert.load(tiny_bundle, device="cpu")
    model.embed(f"{secret} has pneumonia")
    model.fill_mask(f"{secret} has [MASK]")
    with pytest.raises(InputError) as err:
        model.fill_mask(f"{secret} without mask")
    assert secret not in caplog.text and secret not in str(err.value)


def test_load_verifies_checksums(tmp_path, tiny_bundle):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "tokenizer.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(ChecksumError, match="tokenizer.json"):
        ClinicalBert.load(copy, device="cpu")
    ClinicalBert.load(copy, device="cpu", verify=False)  # trusted hot path


def test_external_data_outside_the_bundle_is_refused(tmp_path, tiny_bundle):
    from onnx import TensorProto, helper

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], np.ones(4, np.float32).tobytes(), raw=True)
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [weight],
    )
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    from onnx.external_data_helper import set_external_data

    set_external_data(model.graph.initializer[0], location="../../outside.bin")
    (copy / "model.int8.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(BundleError, match="outside the bundle"):
        ClinicalBert.load(copy, device="cpu", verify=False)


def test_not_a_bundle_and_corrupt_manifest(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        ClinicalBert.load(tmp_path / "missing")
    with pytest.raises(BundleError, match="no manifest.json"):
        ClinicalBert.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(BundleError, match="not valid JSON"):
        ClinicalBert.load(tmp_path)


def test_device_resolution_with_fake_provider_lists(monkeypatch):
    assert resolve_device("auto", ["CPUExecutionProvider"]) == "cpu"
    assert resolve_device("auto", [CUDA_EP, "CPUExecutionProvider"]) == "cuda"
    assert resolve_device("cuda", [CUDA_EP, "CPUExecutionProvider"]) == "cuda"
    with pytest.raises(DeviceError, match="CPU-only build"):
        resolve_device("cuda", ["CPUExecutionProvider"])
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("gpu", ["CPUExecutionProvider"])
    from clinbert_onnx import session

    monkeypatch.setattr(session, "_installed", lambda dist: True)
    with pytest.raises(DeviceError, match="shadows"):
        resolve_device("cuda", ["CPUExecutionProvider"])


def test_cuda_without_provider_is_a_clear_error(tiny_bundle):
    import onnxruntime as ort

    if CUDA_EP in ort.get_available_providers():
        pytest.skip("CUDA provider present")
    with pytest.raises(DeviceError, match="CUDA"):
        ClinicalBert.load(tiny_bundle, device="cuda")
    assert ClinicalBert.load(tiny_bundle, device="auto").device == "cpu"


def test_auto_falls_back_with_one_warning_when_cuda_cannot_start(tiny_bundle, monkeypatch):
    """CUDA provider compiled in but unusable: auto warns once and runs on CPU; cuda raises."""
    import onnxruntime as ort
    from clinbert_onnx import session

    real = ort.InferenceSession

    def fake_session(path, sess_options=None, providers=None):
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        return real(path, sess_options=sess_options, providers=[p for p in names if p != CUDA_EP])

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", fake_session)
    monkeypatch.setattr(session, "_installed", lambda dist: dist == "onnxruntime-gpu")
    with pytest.warns(RuntimeWarning, match="running on CPU") as record:
        m = ClinicalBert.load(tiny_bundle, device="auto")
    assert m.device == "cpu" and m.variant == "int8" and len(record) == 1
    with pytest.raises(DeviceError, match="fell back to CPU"):
        ClinicalBert.load(tiny_bundle, device="cuda")


@pytest.mark.cuda
def test_cuda_embed_matches_cpu(tiny_bundle):
    import onnxruntime as ort

    if CUDA_EP not in ort.get_available_providers():
        pytest.skip("no CUDA provider")
    gpu = ClinicalBert.load(tiny_bundle, device="cuda")
    cpu = ClinicalBert.load(tiny_bundle, device="cpu", variant="fp32")
    texts = ["Chest pain.", "Patient with pneumonia."]
    assert (gpu.embed(texts) * cpu.embed(texts)).sum(axis=1).min() > 0.999


def test_session_presets_differ_and_reach_onnxruntime():
    from clinbert_onnx.session import PRESETS, _session_options

    assert len(set(PRESETS.values())) == len(PRESETS)
    spinning = {
        name: _session_options(cfg).get_session_config_entry("session.intra_op.allow_spinning")
        for name, cfg in PRESETS.items()
    }
    assert spinning == {"latency": "1", "throughput": "0", "shared": "0"}
    assert _session_options(PRESETS["shared"]).intra_op_num_threads == 1


def test_engine_seam(model):
    """The run stage talks to an Engine; a stand-in engine that records calls gets the same feeds."""
    from clinbert_onnx.engine import OrtEngine

    engine = model.engine
    assert isinstance(engine, OrtEngine) and engine.providers and engine.threads >= 1
    calls = []

    class Recording:
        device, input_names, output_names = engine.device, engine.input_names, engine.output_names
        providers, threads = engine.providers, engine.threads

        def run(self, outputs, feed):
            calls.append((list(outputs), sorted(feed)))
            return engine.run(outputs, feed)

        def warm_up(self, feed, outputs):
            engine.warm_up(feed, outputs)

    other = ClinicalBert(model.bundle, Recording(), model.device, model.variant)
    np.testing.assert_allclose(other.embed(["chest pain"]), model.embed(["chest pain"]), atol=1e-6)
    assert calls and all("input_ids" in names for _, names in calls)


def test_small_window_model_end_to_end(tmp_path):
    """A 64-position BERT exports (the gate embeds long probes) and chunks long texts: the default window
    overlap follows the window instead of being 64 tokens."""
    import builders
    from clinbert_onnx.export import ExportOptions, export_bundle
    from clinbert_onnx.windows import default_overlap

    assert default_overlap(512) == 64 and default_overlap(64) == 15
    ckpt = builders.make_checkpoint(tmp_path / "ckpt64", max_positions=64)
    bundle = export_bundle(ExportOptions(model=str(ckpt), out=tmp_path / "b64", allow_degraded=True))
    small = ClinicalBert.load(bundle, variant="fp32")
    assert small.max_length == 64
    result = small.encode([" ".join(["fever"] * 200), "short"])
    assert result.windows[0] > 1 and result.vectors.shape[0] == 2


def test_plan_batches_keeps_a_long_row_from_padding_short_ones():
    lengths = [12] * 40 + [120]
    batches = plan_batches(lengths, token_budget=8192, max_batch=64, call_overhead=48)
    assert [40] in [[i] for b in batches for i in b if len(b) == 1]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded == 40 * 12 + 120
    # a huge per-call overhead (CUDA) keeps them together
    assert len(plan_batches(lengths, token_budget=8192, max_batch=64, call_overhead=8192)) == 1


def test_left_truncation_and_token_embeddings_task(model):
    from clinbert_onnx.errors import EmptyInputError
    from clinbert_onnx.tasks import EmbedOptions, TokenOptions, supported
    from clinbert_onnx.windows import embed_item

    ids = np.arange(10, 30, dtype=np.int64)
    (left,) = embed_item(0, ids, max_length=8, cls_id=1, sep_id=2, long_text="truncate", overlap=0, direction="left")
    (right,) = embed_item(0, ids, max_length=8, cls_id=1, sep_id=2, long_text="truncate", overlap=0)
    assert left.ids.tolist() == [1, *range(24, 30), 2] and right.ids.tolist() == [1, *range(10, 16), 2]
    options = EmbedOptions(long_text="truncate", truncation_direction="left")
    tail = model.process(LONG_NOTE, "embed", options).vectors[0]
    assert float(tail @ model.embed(LONG_NOTE, long_text="truncate")[0]) < 0.99999
    with pytest.raises(InputError, match="truncation_direction"):
        model.process("a", "embed", EmbedOptions(truncation_direction="up"))
    # token-level vectors: one [tokens, hidden] matrix per text whose mean is the mean-pooled embedding
    assert supported("token-embeddings", model) and not supported("no-such-task", model)
    result = model.process(["Short note.", LONG_NOTE], "token-embeddings", TokenOptions(long_text="truncate"))
    assert [v.shape for v in result.vectors] == [(model.count_tokens("Short note.")[0], model.hidden_size),
                                                 (model.max_length, model.hidden_size)]  # fmt: skip
    np.testing.assert_allclose(result.vectors[0].mean(axis=0), model.embed("Short note.", normalize=False)[0],
                               rtol=1e-3, atol=1e-4)  # fmt: skip
    with pytest.raises(TextTooLongError):
        model.process(LONG_NOTE, "token-embeddings", TokenOptions())
    with pytest.raises(InputError, match="long_text"):
        model.process("a", "token-embeddings", TokenOptions(long_text="chunk"))
    with pytest.raises(EmptyInputError):
        model.process(["ok", " "], "token-embeddings")
