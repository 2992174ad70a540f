"""The full comparison: PyTorch FP32 / torch.ao INT8 / Optimum default / OpenVINO INT8 / ours FP32 and INT8.

    python benchmarks/run.py                      # everything (≈15–20 min on 2 cores, builds included)
    python benchmarks/run.py --quick              # fewer shapes and repetitions (≈3 min once built)
    python benchmarks/run.py --models minilm --engines torch-fp32,ours-int8 --out /tmp/b

Writes into --out (default bench_out/): results.json, BENCHMARKS.generated.md (tables), bench_<model>.png.
Artifacts (checkpoints, bundles, Optimum and OpenVINO models) are cached under --out/cache.
Every engine of a model is loaded in this one process; figures are taken in rounds, engines taking turns.
Cold start and peak RSS come from a fresh process per engine (benchmarks/child.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import measure  # noqa: E402
import report  # noqa: E402
import specs  # noqa: E402
from clinbert_onnx.bundle import open_bundle  # noqa: E402
from engines import ENGINES, module  # noqa: E402

DESCRIPTIONS = {
    "bert-base": "BERT-base with Bio_ClinicalBERT's config (12×768, vocab 28996), random weights — speed and size",
    "minilm": "all-MiniLM-L6-v2, real weights (6×384) — quality against PyTorch FP32",
    "tiny": "2-layer random masked LM — harness smoke test",
}
DISTS = (
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "tokenizers",
    "numpy",
    "clinbert-onnx",
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    p.add_argument("--out", type=Path, default=Path("bench_out"))
    p.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, from: {', '.join(ENGINES)}")
    p.add_argument("--models", default="bert-base,minilm", help="comma-separated, from: bert-base, minilm, tiny")
    p.add_argument("--threads", type=int, default=0, help="threads per engine (default: the cores available)")
    p.add_argument("--reuse", type=Path, help="folder holding already-built <model>-ckpt/ and <model>/ bundles")
    p.add_argument("--no-cold-start", action="store_true", help="skip the fresh-process cold start / RSS runs")
    args = p.parse_args(argv)
    args.engine_list = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in args.engine_list if e not in ENGINES]
    if unknown:
        p.error(f"unknown engines {unknown}; choose from {', '.join(ENGINES)}")
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    return args


def cold_start(name: str, spec_text: str, cache: Path, threads: int) -> dict[str, Any]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(HERE / "child.py"), name, spec_text, str(cache), str(threads)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "cold_start_s": round(r["t_first"] - t0, 2),
        "interpreter_s": round(r["t_start"] - t0, 2),
        "load_s": round(r["t_load"] - r["t_start"], 2),
        "first_s": round(r["t_first"] - r["t_load"], 3),
        "rss_first_mb": round(r["rss_first_mb"]),
        "rss_peak_mb": round(r["rss_peak_mb"]),
    }


def bench_model(name: str, args: argparse.Namespace, plan: measure.Plan, cache: Path) -> dict[str, Any]:
    spec = specs.spec(name, cache, args.reuse, log)
    for engine in args.engine_list:
        if engine.startswith("ours-") and engine.split("-", 1)[1] in specs.EXTRA_VARIANTS:
            specs.ensure_variant(spec.bundle, engine.split("-", 1)[1], log)
    builds = {}
    for engine in args.engine_list:
        started = time.perf_counter()
        module(engine).build(spec, cache)
        if time.perf_counter() - started > 1:
            builds[engine] = round(time.perf_counter() - started, 1)
            log(f"built {engine} for {name} in {builds[engine]:.0f} s")
    tok = open_bundle(spec.bundle).tokenizer
    cls, sep, mask_id = tok.cls_token_id, tok.sep_token_id, tok.mask_token_id
    log(f"{name}: loading {', '.join(args.engine_list)}")
    engines = {e: module(e).load(e, spec, cache, plan.threads) for e in args.engine_list}
    result: dict[str, Any] = {
        "description": DESCRIPTIONS[name],
        "build_s": builds,
        "engines": {e: {"size_mb": round(engines[e].size_mb(), 1)} for e in engines},
    }
    per = result["engines"]
    tokens = measure.Tokens(spec.bundle)
    lengths = tuple(n for n in plan.lengths if n <= tok.max_length)
    log(f"{name}: batch-1 latency")
    lat = measure.latency(engines, spec, tokens, measure.Plan(**{**plan.__dict__, "lengths": lengths}), cls, sep, log)
    log(f"{name}: batch-32 throughput at 128 tokens")
    tp = measure.throughput(engines, spec, tokens, plan, cls, sep, length=min(128, tok.max_length))
    log(f"{name}: mixed-length set")
    mx = measure.mixed(engines, spec, tokens, plan)
    for e in engines:
        per[e].update(latency=lat[e], throughput=tp[e], mixed=mx[e])
    result["mixed_extra"] = {k: v for k, v in mx.items() if k not in engines}
    if spec.has_mlm:
        log(f"{name}: fill-mask")
        fm, tops = measure.fill_mask(engines, spec, tokens, plan, mask_id)
        for e in engines:
            per[e]["fill_mask"] = fm[e]
        if "torch-fp32" in tops:
            for e, a in measure.mask_agreement(tops).items():
                per[e]["mask_agreement"] = a
    if "ours-int8" in engines:
        result["paired_speedup_of_ours_int8"] = {
            e: {
                "throughput": measure.paired(tp["ours-int8"]["round_s"], tp[e]["round_s"]),
                "fill_mask": measure.paired(per["ours-int8"]["fill_mask"]["round_s"], per[e]["fill_mask"]["round_s"])
                if spec.has_mlm
                else None,
            }
            for e in engines
            if e != "ours-int8"
        }
    log(f"{name}: batch invariance (a text alone vs among {measure.DRIFT_COMPANIONS} companions)")
    for e, drift in measure.batch_invariance(engines).items():
        per[e]["batch_invariance"] = drift
    if "torch-fp32" in engines:
        log(f"{name}: embedding quality on {plan.quality_texts} sentences")
        for e, q in measure.embedding_quality(engines, plan).items():
            per[e]["quality"] = q
    del engines
    gc.collect()
    if not args.no_cold_start:
        text = specs.spec_json(spec)
        for e in args.engine_list:
            log(f"{name}: cold start of {e} (fresh process)")
            per[e]["cold_start"] = cold_start(e, text, cache, plan.threads)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from clinbert_onnx.bench import machine_info
    from clinbert_onnx.session import available_cpus

    threads = args.threads or available_cpus()
    plan = measure.Plan.quick(threads) if args.quick else measure.Plan(threads=threads)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = (args.out / "cache").resolve()
    started = time.perf_counter()
    versions: dict[str, str | None] = {}
    for dist in DISTS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": " ".join(["python benchmarks/run.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "versions": versions,
        "plan": plan.__dict__ | {"lengths": list(plan.lengths)},
        "models": {},
    }
    for name in args.model_list:
        results["models"][name] = bench_model(name, args, plan, cache)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    results["goals"] = report.goals(results)
    results["wall_s"] = round(time.perf_counter() - started)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report.markdown(results)
    (args.out / "BENCHMARKS.generated.md").write_text(text + "\n")
    pngs = report.plots(results, args.out)
    print(text)
    log(
        f"done in {results['wall_s']} s: {args.out / 'results.json'}, {args.out / 'BENCHMARKS.generated.md'}"
        + (f", {', '.join(pngs)}" if pngs else " (matplotlib missing: no plots)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
