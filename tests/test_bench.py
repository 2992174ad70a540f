"""``clinbert bench`` on the tiny bundle (quick mode), and the benchmark primitives."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from clinbert_onnx.bench import bert_gops, cpu_peaks, mixed_lengths, texts_of_lengths
from clinbert_onnx.cli import main
from conftest import requires_export, requires_static


def test_bert_base_operation_count_matches_the_hand_count():
    # BERT-base at 128 tokens: 12 × (4·128·768² + 2·128·768·3072 + 2·128²·768) multiply-adds ≈ 22.35 GOP
    assert bert_gops(12, 768, 3072, 128) == pytest.approx(22.35, abs=0.01)
    assert bert_gops(12, 768, 3072, 128, batch=32) == pytest.approx(32 * 22.35, rel=1e-3)
    # a gathered head on one [MASK] costs 1/128 of a full-logits head
    full = bert_gops(12, 768, 3072, 128, vocab=28996, head_rows=128) - bert_gops(12, 768, 3072, 128)
    one = bert_gops(12, 768, 3072, 128, vocab=28996, head_rows=1) - bert_gops(12, 768, 3072, 128)
    assert full == pytest.approx(128 * one)


def test_cpu_peaks_follow_the_reported_instruction_sets():
    peaks = cpu_peaks(2, 2.1, {"avx512f", "avx512_vnni", "amx_int8"})
    assert peaks["int8_vnni"] == pytest.approx(1075.2)
    assert peaks["int8_amx"] == pytest.approx(8601.6)
    assert "bf16_amx" not in peaks
    assert cpu_peaks(2, 2.1, set()) == {}


def test_mixed_texts_have_about_the_wanted_lengths():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    lengths = mixed_lengths(50, 128)
    assert all(8 <= n <= 126 for n in lengths)
    texts = texts_of_lengths(tok, lengths, ["one two three", "four five", "six seven eight nine"])
    assert [len(t.split()) for t in texts] == lengths


@requires_export
def test_bench_quick_on_the_tiny_bundle_writes_the_figures(tiny_bundle, tmp_path, capsys):
    code = main(["bench", str(tiny_bundle), "--quick", "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "b1 latency 16 tok" in printed and "cold start" in printed
    results = json.loads((tmp_path / "bench.json").read_text())
    # every installed engine, on the variants it runs (OpenVINO: fp32 here; the tiny bundle has no int8-static)
    expected = {"fp32", "int8"} | ({"fp32@openvino"} if importlib.util.find_spec("openvino") else set())
    assert set(results["variants"]) == expected
    for fig in results["variants"].values():
        assert set(fig["latency"]) == {"16", "128"}  # quick mode; 512 is capped away (tiny max_length 128)
        assert (
            fig["latency"]["128"]["p50_ms"] > 0 and fig["latency"]["128"]["p95_ms"] >= fig["latency"]["128"]["p50_ms"]
        )
        assert fig["latency"]["128"]["gops"] > 0
        assert fig["throughput"]["seq_per_s"] > 0 and fig["throughput"]["batch"] == 32
        assert fig["mixed"]["texts_per_s"] > 0 and fig["mixed"]["tokens"] > 0
        assert fig["fill_mask"]["p50_ms"] > 0
        assert fig["cold_start"]["cold_start_s"] > 0 and fig["cold_start"]["rss_peak_mb"] > 0
        assert fig["size_mb"] > 0
    assert results["machine"]["cores"] >= 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in printed
    else:
        assert (tmp_path / "bench.png").stat().st_size > 0


@requires_export
def test_bench_one_variant_without_cold_start(tiny_bundle, tmp_path):
    assert (
        main(["bench", str(tiny_bundle), "--quick", "--variants", "int8", "--no-cold-start", "--out", str(tmp_path)])
        == 0
    )
    results = json.loads((tmp_path / "bench.json").read_text())
    assert list(results["variants"]) == ["int8"]
    assert "cold_start" not in results["variants"]["int8"]


@requires_export
def test_bench_rejects_an_unknown_variant(tiny_bundle, tmp_path, capsys):
    assert main(["bench", str(tiny_bundle), "--variants", "fp64", "--out", str(tmp_path)]) != 0
    assert "no variant 'fp64'" in capsys.readouterr().err


def test_bench_modules_import_no_heavy_module():
    probe = (
        "import sys, json; import clinbert_onnx.bench, clinbert_onnx.cli.bench_cmd; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'onnx'})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@requires_static
def test_bench_compares_the_engines(static_bundle, tmp_path, capsys):
    args = ["bench", str(static_bundle), "--quick", "--no-cold-start", "--out", str(tmp_path)]
    assert main([*args, "--variants", "int8,int8-static", "--engines", "onnxruntime,openvino"]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    assert set(results["variants"]) == {"int8", "int8-static", "int8-static@openvino"}
    assert results["variants"]["int8-static@openvino"]["engine"] == "openvino"
    assert "int8-static@openvino" in capsys.readouterr().out
    assert main([*args, "--engines", "tensorrt"]) == 2
