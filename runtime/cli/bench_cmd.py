"""``clinbert bench BUNDLE``: how fast is this bundle here? A table, bench.json and (with matplotlib) bench.png.

The measuring is in ``clinbert_onnx.bench``; this module parses arguments and presents the results."""

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
    p.add_argument(
        "--engines",
        help="comma-separated engines to compare: onnxruntime, openvino (default: every installed engine; each "
        "runs the variants built for it, OpenVINO int8-static and fp32)",
    )
    p.add_argument("--out", type=Path, default=Path("."), help="folder for bench.json and bench.png (default: .)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: the cores available)")
    p.add_argument("--quick", action="store_true", help="few repetitions (a smoke test, not a measurement)")
    p.add_argument("--no-cold-start", action="store_true", help="skip the fresh-process cold start and RSS runs")
    p.add_argument("--json", action="store_true", help="print the results JSON instead of the table")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import BenchPlan, run_bench
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
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else None
    for engine in engines or []:
        if engine not in ("onnxruntime", "openvino"):
            raise InputError(f"unknown engine {engine!r}: use onnxruntime and/or openvino")
    if engines and "openvino" in engines:
        from ..errors import require

        require("openvino", "openvino")
    results = run_bench(args.bundle, variants, plan, log, engines)
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


def table(results: dict[str, Any]) -> str:
    """A plain-text table, one column per variant."""
    names = list(results["variants"])
    v = results["variants"]
    lines: list[tuple[str, list[str]]] = []
    for length in next(iter(v.values()))["latency"]:
        lines.append(
            (
                f"b1 latency {length} tok p50 / p95 (ms)",
                [f"{v[n]['latency'][length]['p50_ms']:.1f} / {v[n]['latency'][length]['p95_ms']:.1f}" for n in names],
            )
        )
    t = v[names[0]].get("throughput")
    if t:
        lines.append(
            (f"b{t['batch']} x {t['length']} tok (seq/s)", [f"{v[n]['throughput']['seq_per_s']:.1f}" for n in names])
        )
        lines.append(("  achieved GOP/s", [f"{v[n]['throughput']['gops']:.0f}" for n in names]))
    m = v[names[0]].get("mixed")
    if m:
        lines.append(
            (
                f"mixed {m['texts']} texts, {m['tokens']} tok (texts/s)",
                [f"{v[n]['mixed']['texts_per_s']:.1f}" for n in names],
            )
        )
    if "fill_mask" in v[names[0]]:
        lines.append(
            (
                "fill-mask b1 p50 / p95 (ms)",
                [f"{v[n]['fill_mask']['p50_ms']:.1f} / {v[n]['fill_mask']['p95_ms']:.1f}" for n in names],
            )
        )
    if "cold_start" in v[names[0]]:
        cs = {n: v[n]["cold_start"] for n in names}
        lines.append(
            (
                "cold start to first embedding (s)",
                [f"{cs[n]['cold_start_s']:.2f}" if "cold_start_s" in cs[n] else "error" for n in names],
            )
        )
        lines.append(
            ("peak RSS (MB)", [f"{cs[n]['rss_peak_mb']:.0f}" if cs[n].get("rss_peak_mb") else "-" for n in names])
        )
    lines.append(("file size (MB)", [f"{v[n]['size_mb']:.1f}" for n in names]))
    width = max(len(label) for label, _ in lines) + 2
    cols = [max(len(n), *(len(cells[i]) for _, cells in lines)) + 2 for i, n in enumerate(names)]
    out = ["".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, cols, strict=True))]
    out += [
        label.ljust(width) + "".join(x.rjust(c) for x, c in zip(cells, cols, strict=True)) for label, cells in lines
    ]
    return "\n".join(out)


def write_png(results: dict[str, Any], path: Path) -> str | None:
    """Plot latency by length and batch throughput per variant; returns a note instead when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: bench.png skipped (pip install matplotlib)"
    v = results["variants"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, r in v.items():
        xs = [int(k) for k in r["latency"]]
        ax1.plot(xs, [r["latency"][str(x)]["p50_ms"] for x in xs], marker="o", label=name)
    ax1.set(xscale="log", yscale="log", xlabel="tokens (batch 1)", ylabel="p50 latency (ms)", title="Latency")
    ticks = [int(k) for k in next(iter(v.values()))["latency"]]
    ax1.set_xticks(ticks, [str(t) for t in ticks])
    ax1.minorticks_off()
    ax1.legend()
    names = list(v)
    if all("throughput" in v[n] for n in names):
        ax2.bar(names, [v[n]["throughput"]["seq_per_s"] for n in names], color="tab:blue")
        t = v[names[0]]["throughput"]
        ax2.set(ylabel="sequences / s", title=f"Throughput, batch {t['batch']} x {t['length']} tokens")
    fig.suptitle(f"{Path(results['bundle']).name} on {results['machine']['cores']} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
