"""``clinbert bench BUNDLE``: how fast is this bundle here? A table, bench.json and (with matplotlib) bench.png."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure a bundle's variants on this machine (latency, throughput, memory)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--variants", help="comma-separated variants (default: every CPU variant)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for bench.json and bench.png (default: .)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: the cores available)")
    p.add_argument("--quick", action="store_true", help="few repetitions (a smoke test, not a measurement)")
    p.add_argument("--no-cold-start", action="store_true", help="skip the fresh-process cold start and RSS runs")
    p.add_argument("--json", action="store_true", help="print the results JSON instead of the table")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import BenchPlan, run_bench, table, write_png
    from ..errors import InputError

    if args.threads < 0:
        raise InputError("--threads must be 0 (all cores) or a positive number")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    cold = not args.no_cold_start
    plan = BenchPlan.quick(args.threads, cold) if args.quick else BenchPlan(threads=args.threads, cold_start=cold)

    def log(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    if variants:
        from ..bundle import open_bundle

        bundle = open_bundle(args.bundle)
        for name in variants:
            bundle.variant(name)
            if "cpu" not in bundle.variants[name].devices:
                raise InputError(f"variant {name} is not a CPU variant; clinbert bench measures CPU variants")
    results = run_bench(args.bundle, variants, plan, log)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    note = write_png(results, args.out / "bench.png")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    m = results["machine"]
    print(f"{results['model_id']}  ({m['cpu']}, {m['cores']} cores, {', '.join(m['isa']) or 'no AVX-512'})")
    print(table(results))
    peaks = m["peaks_gops"]
    if peaks:
        print("peak GOP/s here (estimated): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    print(f"wrote {args.out / 'bench.json'}" + ("" if note else f" and {args.out / 'bench.png'}"))
    if note:
        print(note)
    return 0
