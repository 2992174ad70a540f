"""Issue 3's runtime targets: cold start, memory, fill-mask vs embed batch-1 latency, on one bundle.

    python benchmarks/runtime_targets.py models/bio-clinicalbert-shaped            # 7 fresh processes
    python benchmarks/runtime_targets.py models/bio-clinicalbert-shaped --runs 3

Cold start = the parent's clock from spawning ``python`` to the child's first embedding (interpreter start,
imports, load with checksums verified, tokenize, run). RSS = the child's peak resident memory at that point.
Each child then times batch-1 embed and fill-mask (122 tokens, one [MASK]) and two 32×128 batches.
Figures are medians over the children, with the range.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(bundle: str) -> None:
    from clinbert_onnx import ClinicalBert

    model = ClinicalBert.load(bundle, device="cpu")
    model.embed("The patient was admitted with chest pain.")
    first = time.time()
    rss_cold = _peak_mb()
    words = ("patient admitted with chest pain and shortness of breath " * 20).split()[:120]
    text = " ".join(words)
    masked = " ".join([*words[:60], "[MASK]", *words[61:]])
    for _ in range(3):
        model.embed(text)
        model.fill_mask(masked)
    embed_s, mask_s = [], []
    for _ in range(15):
        t = time.perf_counter()
        model.embed(text)
        embed_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.fill_mask(masked)
        mask_s.append(time.perf_counter() - t)
    batch = [text] * 32
    t = time.perf_counter()
    model.embed(batch)
    model.embed(batch)
    result = {
        "first_result_at": first,
        "rss_first_mb": rss_cold,
        "embed_ms": statistics.median(embed_s) * 1e3,
        "fill_mask_ms": statistics.median(mask_s) * 1e3,
        "tokens": len(model.tokenize([text])[0]) + 2,
        "b32_seq_s": 64 / (time.perf_counter() - t),
        "peak_rss_mb": _peak_mb(),
    }
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.bundle)
        return
    runs = []
    for _ in range(args.runs):
        spawned = time.time()
        out = subprocess.run(
            [sys.executable, __file__, args.bundle, "--child"], capture_output=True, text=True, check=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["cold_s"] = r["first_result_at"] - spawned
        r["ratio"] = r["fill_mask_ms"] / r["embed_ms"]
        runs.append(r)

    def fig(key: str, fmt: str) -> str:
        values = [r[key] for r in runs]
        return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"

    print(f"{args.bundle}, {args.runs} fresh processes, median (range):")
    print(f"  cold start, spawn → first embedding  {fig('cold_s', '.2f')} s   (target ≤ 0.5)")
    print(f"  peak RSS at first result             {fig('rss_first_mb', '.0f')} MB  (target ≤ 300)")
    print(f"  b1 embed, {runs[0]['tokens']} tokens                {fig('embed_ms', '.1f')} ms")
    print(f"  b1 fill-mask, one [MASK]             {fig('fill_mask_ms', '.1f')} ms")
    print(f"  fill-mask / embed                    {fig('ratio', '.3f')}   (target ≤ 1.10)")
    print(f"  32×128 throughput                    {fig('b32_seq_s', '.1f')} seq/s")
    print(f"  peak RSS after two 32×128 batches    {fig('peak_rss_mb', '.0f')} MB")


if __name__ == "__main__":
    main()
