"""Faithful INT8: the default variant gives a text the same answer whatever it is batched with, at every edge
(Python API, `clinbert score`, `clinbert serve`), and stays close to PyTorch FP32 on real MiniLM weights."""

from __future__ import annotations

import concurrent.futures as cf
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from clinbert_onnx import ClinicalBert
from clinbert_onnx.cli import main
from clinbert_onnx.quantize.calibrate import calibration_sentences
from clinbert_onnx.quantize.gate import judge, probe_sentences
from clinbert_onnx.quantize.recipes import RECIPES, GateThresholds, get_recipe
from clinbert_onnx.schema import Quality
from conftest import requires_export

pytestmark = requires_export

CORPUS = Path(__file__).parent / "data" / "clinical_corpus.txt"
#: The acceptance line for the default CPU variant: a text alone vs among companions.
DRIFT = 1e-5
TEXT = "Admitted with community-acquired pneumonia, started on ceftriaxone and azithromycin."


def companions(n: int, seed: int, max_words: int = 1000) -> list[str]:
    lines = [s for s in CORPUS.read_text(encoding="utf-8").splitlines() if s.strip() and len(s.split()) <= max_words]
    rng = np.random.default_rng(seed)
    return [lines[i] for i in rng.choice(len(lines), n, replace=False)]


def held_out_sentences() -> list[str]:
    cal = set(calibration_sentences())
    return [s for s in CORPUS.read_text(encoding="utf-8").splitlines() if s.strip() and s not in cal]


def test_calibration_and_probe_sets_are_disjoint_and_span_lengths() -> None:
    cal, probe = calibration_sentences(), probe_sentences()
    assert len(cal) >= 100 and not set(cal) & set(probe)
    words = sorted(len(s.split()) for s in cal)
    assert words[0] <= 3 and words[-1] >= 40, "stratified by length: short and long sentences"


def test_recipes_say_whether_they_are_batch_invariant() -> None:
    assert get_recipe("int8").name == "int8-per-token" and get_recipe("int8").batch_invariant
    assert get_recipe("int8-per-channel").name == "int8-dynamic-tensor"  # the 0.1 default keeps its meaning
    dependent = [r.name for r in RECIPES.values() if not r.batch_invariant]
    assert "int8-dynamic-tensor" in dependent
    for name in dependent:
        assert "batch-dependent" in RECIPES[name].description
        assert RECIPES[name].info().batch_invariant is False


def test_gate_judges_drift_only_for_batch_invariant_recipes() -> None:
    report = Quality(
        passed=None,
        embedding_cosine_mean=0.999,
        embedding_cosine_min=0.99,
        batch_drift_max=2e-3,
        batch_cosine_min=0.9999,
    )
    missed = judge(report, GateThresholds(), batch_invariant=True)
    assert [m.split()[0] for m in missed] == ["batch_drift_max", "batch_cosine_min"]
    assert judge(report, GateThresholds(), batch_invariant=False) == []


def test_api_same_vector_alone_and_in_any_batch(tiny_bundle: Path) -> None:
    model = ClinicalBert.load(tiny_bundle)  # default CPU variant: int8 per token
    assert model.variant == "int8"
    alone = model.embed([TEXT])[0]
    for seed in range(4):
        others = companions(16, seed)
        batch = model.embed([*others[:seed], TEXT, *others[seed:]])
        assert np.abs(batch[seed] - alone).max() <= DRIFT
    # fill-mask: the head is per-token too
    masked = "The patient was started on [MASK] for pneumonia."
    one = model.fill_mask(masked, top_k=5)
    many = model.fill_mask([*[s + " [MASK]." for s in companions(7, 9)], masked], top_k=5)[-1]
    assert [p["token"] for p in many] == [p["token"] for p in one]
    np.testing.assert_allclose([p["score"] for p in many], [p["score"] for p in one], atol=DRIFT)


def test_dynamic_opt_in_drifts_and_its_manifest_says_so(tiny_bundle: Path, tmp_path: Path) -> None:
    """The gate measures what users get: the per-tensor opt-in really moves with its batch-mates."""
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    before = json.loads((copy / "manifest.json").read_text())["variants"]["int8"]["quality"]
    assert before["batch_invariant"] is True and before["batch_drift_max"] <= DRIFT
    assert before["batch_cosine_min"] >= 0.999999
    assert main(["quantize", str(copy), "--recipe", "int8-dynamic-tensor", "--variant", "dyn"]) == 0
    quality = json.loads((copy / "manifest.json").read_text())["variants"]["dyn"]["quality"]
    assert quality["batch_invariant"] is False and quality["passed"] is True
    assert quality["batch_drift_max"] > DRIFT
    model = ClinicalBert.load(copy, variant="dyn")
    alone = model.embed([TEXT])[0]
    drift = max(np.abs(model.embed([TEXT, *companions(16, s)])[0] - alone).max() for s in range(4))
    assert drift > DRIFT


def test_score_same_vector_in_two_different_files(tiny_bundle: Path, tmp_path: Path) -> None:
    files = []
    for seed in (1, 2):
        lines = companions(40, seed)
        lines.insert(seed * 7, TEXT)
        inp = tmp_path / f"notes{seed}.txt"
        inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = tmp_path / f"emb{seed}.jsonl"
        assert main(["score", str(tiny_bundle), str(inp), "--out", str(out), "--quiet"]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        files.append(np.asarray(rows[seed * 7]["embedding"], dtype=np.float32))
    alone = ClinicalBert.load(tiny_bundle).embed([TEXT])[0]
    assert np.abs(files[0] - files[1]).max() <= DRIFT
    assert np.abs(files[0] - alone).max() <= DRIFT


def test_server_same_vector_alone_and_amid_concurrent_requests(tiny_bundle: Path) -> None:
    pytest.importorskip("fastapi")
    import httpx
    from serve_support import serve_process

    with serve_process(tiny_bundle, "--max-wait-ms", "200") as (url, _proc):
        alone = np.asarray(httpx.post(f"{url}/embed", json={"inputs": TEXT}, timeout=30).json()[0])
        others = companions(24, 5, max_words=40)  # TEI's /embed refuses texts past the window
        with cf.ThreadPoolExecutor(12) as pool:
            noise = [pool.submit(httpx.post, f"{url}/embed", json={"inputs": t}, timeout=30) for t in others[:12]]
            mine = pool.submit(httpx.post, f"{url}/embed", json={"inputs": [others[12], TEXT, others[13]]}, timeout=30)
            more = [pool.submit(httpx.post, f"{url}/embed", json={"inputs": t}, timeout=30) for t in others[14:]]
            assert all(f.result().status_code == 200 for f in [*noise, *more])
            response = mine.result()
            assert response.status_code == 200, response.text
            amid = np.asarray(response.json()[1])
    assert np.abs(amid - alone).max() <= DRIFT


def test_minilm_real_weights_per_token_int8_close_to_torch(minilm_bundle: Path) -> None:
    """Real pretrained weights, sentences the calibration never saw: mean cosine >= 0.997, min >= 0.993."""
    from builders import minilm_dir
    from reference import torch_embeddings

    texts = held_out_sentences()
    assert len(texts) >= 200
    ref = torch_embeddings(minilm_dir(), minilm_bundle, texts)
    int8 = ClinicalBert.load(minilm_bundle).embed(texts)
    cos = (int8 * ref).sum(axis=1)
    assert cos.mean() >= 0.997 and cos.min() >= 0.993, (cos.mean(), cos.min())
    quality = json.loads((minilm_bundle / "manifest.json").read_text())["variants"]["int8"]["quality"]
    assert quality["batch_drift_max"] <= DRIFT
