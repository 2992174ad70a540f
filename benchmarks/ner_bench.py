"""Token classification (NER / de-identification) on a mixed-length note set: clinbert-onnx INT8 against
transformers' ``pipeline("token-classification")`` on PyTorch FP32 and against Optimum's
``ORTModelForTokenClassification`` with its default dynamic INT8 recipe, in one run.

    python benchmarks/ner_bench.py                 # BERT-base-shaped token classifier, 400 notes (~15 min, 2 cores)
    python benchmarks/ner_bench.py --quick         # tiny model, 24 notes: checks that everything starts

The model is a ``BertForTokenClassification`` with Bio_ClinicalBERT's config and random weights (9 BIO labels,
``O`` at id 6): speed is real, entities are not. Notes come from ``notes_mix.make_mix`` (5 to 600 tokens).
Every engine gets the same texts, ``aggregation_strategy="simple"`` and the same thread count; the pipelines
use ``stride`` so long notes are windowed rather than truncated, as clinbert-onnx windows them. The report
(stdout and ``--out`` JSON): seconds and notes/s per engine, the speedups (targets: >= 3x the PyTorch
pipeline, >= 1.5x Optimum INT8), and the share of clinbert-onnx's time spent in the aggregation stage
(``finish``: softmax, window merge, grouping; target < 10 %).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LABELS = ["B-DRUG", "I-DRUG", "B-DOSE", "I-DOSE", "B-ROUTE", "I-ROUTE", "O", "B-PROBLEM", "I-PROBLEM"]
STRIDE = 64


def make_checkpoint(folder: Path, quick: bool) -> Path:
    """A random-weight BertForTokenClassification (BERT-base shaped, or tiny with ``quick``)."""
    if (folder / "config.json").is_file():
        return folder
    import builders
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    cfg = dict(builders.BIO_CLINICALBERT_CONFIG)
    cfg.pop("model_type")
    if quick:
        cfg.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=1200)
    config = BertConfig(
        **cfg,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={x: i for i, x in enumerate(LABELS)},
        architectures=["BertForTokenClassification"],
    )
    torch.manual_seed(0)
    model = BertForTokenClassification(config).eval()
    scratch = folder.with_name(folder.name + ".partial")
    scratch.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(scratch)
    words = builders.train_vocab(int(cfg["vocab_size"]))
    (scratch / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizerFast(str(scratch / "vocab.txt"), do_lower_case=False, model_max_length=512).save_pretrained(scratch)
    scratch.rename(folder)
    return folder


def export_ours(checkpoint: Path, out: Path) -> Path:
    from clinbert_onnx.export import ExportOptions, export_bundle
    from clinbert_onnx.schema import MANIFEST

    if not (out / MANIFEST).is_file():
        # random weights find few entities on the probe set: the gate cannot judge, keep the variant anyway
        export_bundle(ExportOptions(model=str(checkpoint), out=out, allow_degraded=True, force=True))
    return out


def export_optimum(checkpoint: Path, out: Path) -> Path:
    """Optimum's default recipe: export, ORTOptimizer O2, ORTQuantizer avx512_vnni dynamic INT8."""
    from engines.optimum_engine import QUANTIZED, _patch_quantizer

    if (out / QUANTIZED).is_file():
        return out
    from optimum.onnxruntime import ORTModelForTokenClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    scratch = out.with_name(out.name + ".partial")
    model = ORTModelForTokenClassification.from_pretrained(str(checkpoint), export=True)
    ORTOptimizer.from_pretrained(model).optimize(
        save_dir=scratch / "o2", optimization_config=AutoOptimizationConfig.O2()
    )
    _patch_quantizer()
    quantizer = ORTQuantizer.from_pretrained(scratch / "o2", file_name="model_optimized.onnx")
    quantizer.quantize(save_dir=scratch / "q", quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False))
    (scratch / "q").rename(out)
    return out


def add_variant(bundle: Path, variant: str) -> None:
    """Quantize ``variant`` into the bundle when it is missing (random weights: the gate cannot judge entities)."""
    from clinbert_onnx.bundle import open_bundle

    if variant in open_bundle(bundle).variants:
        return
    from clinbert_onnx.quantize import GateThresholds, get_recipe, requantize

    requantize(bundle, get_recipe(variant), GateThresholds(), allow_degraded=True)


def time_ours(bundle: Path, texts: list[str], threads: int, run: str) -> dict[str, float]:
    """clinbert-onnx through its three stages, timed apart (``finish`` is the aggregation). ``run`` is
    ``VARIANT[@ENGINE]``: ``int8`` (ONNX Runtime, the default recipe) or ``int8-static@openvino``."""
    from clinbert_onnx import ClinicalBert
    from clinbert_onnx.classify import TokenOptions
    from clinbert_onnx.session import SessionConfig

    variant, _, engine = run.partition("@")
    add_variant(bundle, variant)
    model = ClinicalBert.load(
        bundle, device="cpu", variant=variant, session_config=SessionConfig(threads), engine=engine or "onnxruntime"
    )
    options = TokenOptions("simple", None, STRIDE)
    model.token_classification(texts[:4], aggregation_strategy="simple")  # warm-up
    t0 = time.perf_counter()
    prepared = model.prepare(texts, "token-classification", options)
    t1 = time.perf_counter()
    outputs = model.run(prepared.windows)
    t2 = time.perf_counter()
    model.finish(prepared, outputs)
    t3 = time.perf_counter()
    return {"seconds": t3 - t0, "prepare": t1 - t0, "run": t2 - t1, "aggregation": t3 - t2}


def time_pipeline(pipe: Any, texts: list[str]) -> float:
    pipe(texts[:4], aggregation_strategy="simple", stride=STRIDE)  # warm-up
    start = time.perf_counter()
    for text in texts:
        pipe(text, aggregation_strategy="simple", stride=STRIDE)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, few notes: a start-up check")
    parser.add_argument("--rows", type=int, help="notes in the set (default 400; 24 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench_out" / "ner")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument(
        "--ours",
        default="int8,int8-static@openvino",
        help="comma-separated VARIANT[@ENGINE] runs of clinbert-onnx (default: int8,int8-static@openvino)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=("torch", "optimum"), help="leave out")
    args = parser.parse_args(argv)
    import torch
    from notes_mix import make_mix
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    torch.set_num_threads(args.threads)
    cache = args.cache / ("quick" if args.quick else "bert-base")
    checkpoint = make_checkpoint(cache / "checkpoint", args.quick)
    bundle = export_ours(checkpoint, cache / "bundle")
    rows = args.rows or (24 if args.quick else 400)
    _, texts, tokens = make_mix(bundle, rows)
    report: dict[str, Any] = {"rows": rows, "tokens": sum(tokens), "threads": args.threads, "quick": args.quick}
    runs = [r.strip() for r in args.ours.split(",") if r.strip()]
    if "openvino" in args.ours and importlib.util.find_spec("openvino") is None:
        runs = [r for r in runs if not r.endswith("@openvino")]
    ours: dict[str, dict[str, float]] = {}
    for run in runs:
        ours[run] = time_ours(bundle, texts, args.threads, run)
        report[f"clinbert-onnx {run}"] = {**ours[run], "notes_per_s": rows / ours[run]["seconds"]}
        report[f"aggregation_share {run}"] = ours[run]["aggregation"] / ours[run]["seconds"]
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    if "torch" not in args.skip:
        model = AutoModelForTokenClassification.from_pretrained(str(checkpoint)).eval()
        seconds = time_pipeline(pipeline("token-classification", model=model, tokenizer=tokenizer), texts)
        report["transformers fp32"] = {"seconds": seconds, "notes_per_s": rows / seconds}
        for run, fig in ours.items():
            report[f"speedup_vs_transformers {run}"] = seconds / fig["seconds"]
    if "optimum" not in args.skip:
        import onnxruntime as ort
        from engines.optimum_engine import QUANTIZED
        from optimum.onnxruntime import ORTModelForTokenClassification

        folder = export_optimum(checkpoint, cache / "optimum")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        onnx_model = ORTModelForTokenClassification.from_pretrained(folder, file_name=QUANTIZED, session_options=opts)
        seconds = time_pipeline(pipeline("token-classification", model=onnx_model, tokenizer=tokenizer), texts)
        report["optimum int8"] = {"seconds": seconds, "notes_per_s": rows / seconds}
        for run, fig in ours.items():
            report[f"speedup_vs_optimum {run}"] = seconds / fig["seconds"]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
