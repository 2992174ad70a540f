"""Before/after: ``ClinicalBert.encode`` on the mixed-length note set, this checkout against an earlier one.

    python benchmarks/ab_encode.py BUNDLE --baseline-code /path/to/old/checkout [--rows 256] [--rounds 4]

Each round runs one fresh process per side (order alternating), each loading the same bundle variant and
timing ``encode`` over the same texts (``notes_mix.make_mix``, fixed seed) after one warm-up call; the ratio
is taken per round (current / baseline) and the median reported, so a shared machine's changing load hits
both sides alike. The baseline's ``clinbert_onnx`` is its ``runtime/`` folder, put first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
from notes_mix import make_mix
from clinbert_onnx import ClinicalBert
model = ClinicalBert.load({bundle!r}, device="cpu", variant={variant!r}, verify=False)
_, texts, _ = make_mix(Path({bundle!r}), {rows})
model.encode(texts[:32])
started = time.perf_counter()
result = model.encode(texts)
elapsed = time.perf_counter() - started
import clinbert_onnx
print(json.dumps({{"texts_per_s": len(texts) / elapsed, "tokens": sum(result.tokens), "code": clinbert_onnx.__file__}}))
"""


def run_side(code: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    if code is not None:
        shim = Path(tempfile.mkdtemp(prefix="clinbert-baseline-"))
        (shim / "clinbert_onnx").symlink_to((code / "runtime").resolve(), target_is_directory=True)
        env["PYTHONPATH"] = str(shim)
    script = CHILD.format(here=str(HERE), bundle=str(args.bundle), variant=args.variant, rows=args.rows)
    # cwd: the benchmarks folder, so that no checkout's package shadows the chosen one through sys.path[0]
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, cwd=HERE)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--baseline-code", type=Path, required=True, help="an earlier checkout (a folder with runtime/)")
    p.add_argument("--variant", default="int8")
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    current: list[float] = []
    baseline: list[float] = []
    for r in range(args.rounds):
        sides = [("current", None), ("baseline", args.baseline_code)]
        for name, code in sides if r % 2 == 0 else sides[::-1]:
            side = run_side(code, args)
            rate = side["texts_per_s"]
            (current if name == "current" else baseline).append(rate)
            print(f"round {r + 1}: {name} {rate:.1f} texts/s ({side['code']})", file=sys.stderr)
    ratios = [c / b for c, b in zip(current, baseline, strict=True)]
    print(
        json.dumps(
            {
                "variant": args.variant,
                "rows": args.rows,
                "current_texts_per_s": statistics.median(current),
                "baseline_texts_per_s": statistics.median(baseline),
                "current_vs_baseline": round(statistics.median(ratios), 3),
                "ratios": [round(x, 3) for x in ratios],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
