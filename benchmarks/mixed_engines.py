"""End to end on the mixed-length note set: ``ClinicalBert.encode`` with each engine, variant and stream count.

    python benchmarks/mixed_engines.py BUNDLE [--rows 256] [--rounds 3]
        [--runs int8-dynamic@onnxruntime:1,int8@onnxruntime:1,int8@onnxruntime:2,int8-static@openvino:1,...]

A run is ``VARIANT@ENGINE:STREAMS``. Each round starts one fresh process per run (order rotating), which loads
the bundle, warms up on 32 texts and times ``encode`` over the same texts (``notes_mix.make_mix``, fixed seed:
5 to 600 tokens, a clinical length mix) — tokenizing, length-sorted batching, the engine and pooling, as
``clinbert score`` runs them, with the shapes a fresh process meets for the first time. Reported: texts/s per
run (median over rounds) and each run's median per-round ratio against the first run, with the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_RUNS = (
    "int8-dynamic@onnxruntime:1,int8@onnxruntime:1,int8@onnxruntime:2,int8-static@openvino:1,int8-static@openvino:2"
)

CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
from notes_mix import make_mix
from clinbert_onnx import ClinicalBert, SessionConfig
model = ClinicalBert.load({bundle!r}, device="cpu", variant={variant!r}, engine={engine!r}, verify=False,
                          session_config=SessionConfig(streams={streams}))
_, texts, _ = make_mix(Path({bundle!r}), {rows})
model.encode(texts[:32])
started = time.perf_counter()
result = model.encode(texts)
elapsed = time.perf_counter() - started
print(json.dumps({{"texts_per_s": len(texts) / elapsed, "tokens": sum(result.tokens)}}))
"""


def run_child(bundle: Path, run: str, rows: int) -> dict[str, Any]:
    spec, _, streams = run.partition(":")
    variant, _, engine = spec.partition("@")
    script = CHILD.format(
        here=str(HERE),
        bundle=str(bundle),
        variant=variant,
        engine=engine or "onnxruntime",
        streams=int(streams or 1),
        rows=rows,
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=HERE)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated VARIANT@ENGINE:STREAMS")
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from clinbert_onnx.cpu import machine_info

    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    rates: dict[str, list[float]] = {r: [] for r in runs}
    tokens = 0
    for i in range(args.rounds):
        for run in runs[i % len(runs) :] + runs[: i % len(runs)]:
            fig = run_child(args.bundle.resolve(), run, args.rows)
            rates[run].append(fig["texts_per_s"])
            tokens = fig["tokens"]
            print(f"round {i + 1}: {run} {fig['texts_per_s']:.1f} texts/s", file=sys.stderr)
    first = runs[0]
    report = {
        "machine": machine_info(),
        "rows": args.rows,
        "tokens": tokens,
        "texts_per_s": {r: round(statistics.median(v), 2) for r, v in rates.items()},
        f"vs {first}": {
            r: round(statistics.median(a / b for a, b in zip(v, rates[first], strict=True)), 3)
            for r, v in rates.items()
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
