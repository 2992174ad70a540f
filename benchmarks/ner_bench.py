"""Token classification (NER / de-identification) on a mixed-length note set: clinbert-onnx INT8 against
transformers' ``pipeline("token-classification")`` on PyTorch FP32 and against Optimum's
``ORTModelForTokenClassification`` with its default dynamic INT8 recipe, in one run.

    python benchmarks/ner_bench.py --rows 200      # BERT-base-shaped token classifier (~5 min a round, 2 cores)
    python benchmarks/ner_bench.py --quick         # tiny model, 24 notes: checks that everything starts

``--ours int8,int8:2,int8-static@openvino,int8-static@openvino:2`` (the default) times our default ONNX Runtime
recipe and the static variant on OpenVINO (added to the bench bundle when missing), each with one batch at a
time and with two in flight (``:2``, what ``clinbert score`` does by default); every engine runs once per round, the order rotating
(``--rounds``, default 3), and speed-ups are medians of per-round ratios.

The model is a ``BertForTokenClassification`` with Bio_ClinicalBERT's config and random weights (9 BIO labels,
``O`` at id 6): speed is real, entities are not. Notes come from ``notes_mix.make_mix`` (5 to 600 tokens).
Every engine gets the same texts, ``aggregation_strategy="simple"`` and the same thread count; the pipelines
use ``stride`` so long notes are windowed rather than truncated, as clinbert-onnx windows them. The report
(stdout and ``--out`` JSON): median seconds and notes/s per engine, the paired speed-ups (targets: >= 3x the PyTorch
pipeline, >= 1.5x Optimum INT8), and the share of clinbert-onnx's time spent in the aggregation stage
(``finish``: softmax, window merge, grouping; target < 10 %).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
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


def ours_call(bundle: Path, texts: list[str], threads: int, run: str) -> Callable[[], dict[str, float]]:
    """A timed pass of clinbert-onnx through its three stages (``finish`` is the aggregation). ``run`` is
    ``VARIANT[@ENGINE][:STREAMS]``: ``int8`` (ONNX Runtime, the default recipe), ``int8-static@openvino``;
    ``:2`` keeps two batches in flight, as ``clinbert score`` does by default."""
    from clinbert_onnx import ClinicalBert
    from clinbert_onnx.classify import TokenOptions
    from clinbert_onnx.session import SessionConfig

    spec, _, streams = run.partition(":")
    variant, _, engine = spec.partition("@")
    add_variant(bundle, variant)
    config = SessionConfig(intra_op_threads=threads, streams=int(streams or 1))
    model = ClinicalBert.load(
        bundle, device="cpu", variant=variant, session_config=config, engine=engine or "onnxruntime"
    )
    options = TokenOptions("simple", None, STRIDE)
    model.token_classification(texts[:4], aggregation_strategy="simple")  # warm-up

    def call() -> dict[str, float]:
        t0 = time.perf_counter()
        prepared = model.prepare(texts, "token-classification", options)
        t1 = time.perf_counter()
        outputs = model.run(prepared.windows)
        t2 = time.perf_counter()
        model.finish(prepared, outputs)
        t3 = time.perf_counter()
        return {"seconds": t3 - t0, "prepare": t1 - t0, "run": t2 - t1, "aggregation": t3 - t2}

    return call


def pipeline_call(pipe: Any, texts: list[str]) -> Callable[[], dict[str, float]]:
    pipe(texts[:4], aggregation_strategy="simple", stride=STRIDE)  # warm-up

    def call() -> dict[str, float]:
        start = time.perf_counter()
        for text in texts:
            pipe(text, aggregation_strategy="simple", stride=STRIDE)
        return {"seconds": time.perf_counter() - start}

    return call


def interleaved(calls: dict[str, Callable[[], dict[str, float]]], rounds: int) -> dict[str, list[dict[str, float]]]:
    """Each call once per round, the order rotating, so that load drifting between rounds hits all alike."""
    names = list(calls)
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(calls[name]())
            print(f"round {r + 1}: {name} {samples[name][-1]['seconds']:.2f} s", file=sys.stderr)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, few notes: a start-up check")
    parser.add_argument("--rows", type=int, help="notes in the set (default 400; 24 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench_out" / "ner")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument(
        "--ours",
        default="int8,int8:2,int8-static@openvino,int8-static@openvino:2",
        help="comma-separated VARIANT[@ENGINE][:STREAMS] runs of clinbert-onnx (default: both engines, 1 and 2 streams)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
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
        runs = [r for r in runs if "@openvino" not in r]
    calls = {f"clinbert-onnx {run}": ours_call(bundle, texts, args.threads, run) for run in runs}
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    if "torch" not in args.skip:
        model = AutoModelForTokenClassification.from_pretrained(str(checkpoint)).eval()
        calls["transformers fp32"] = pipeline_call(
            pipeline("token-classification", model=model, tokenizer=tokenizer), texts
        )
    if "optimum" not in args.skip:
        import onnxruntime as ort
        from engines.optimum_engine import QUANTIZED
        from optimum.onnxruntime import ORTModelForTokenClassification

        folder = export_optimum(checkpoint, cache / "optimum")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        onnx_model = ORTModelForTokenClassification.from_pretrained(folder, file_name=QUANTIZED, session_options=opts)
        calls["optimum int8"] = pipeline_call(
            pipeline("token-classification", model=onnx_model, tokenizer=tokenizer), texts
        )
    samples = interleaved(calls, args.rounds)
    for name, runs_of in samples.items():
        fig = {k: statistics.median(x[k] for x in runs_of) for k in runs_of[0]}
        report[name] = {
            **fig,
            "notes_per_s": rows / fig["seconds"],
            "rounds_s": [round(x["seconds"], 2) for x in runs_of],
        }
        if "aggregation" in fig:
            report[f"aggregation_share {name}"] = fig["aggregation"] / fig["seconds"]
    for name in [n for n in samples if n.startswith("clinbert-onnx")]:
        for other in ("transformers fp32", "optimum int8"):
            if other in samples:
                ratios = [b["seconds"] / a["seconds"] for a, b in zip(samples[name], samples[other], strict=True)]
                report[f"{name} vs {other} (paired median)"] = round(statistics.median(ratios), 3)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
