"""Operation count of BERT and this CPU's peak rates: what the figures could be at best.

    python benchmarks/flops.py                     # BERT-base (Bio_ClinicalBERT config) at 16/64/128/512 tokens
    python benchmarks/flops.py --layers 6 --hidden 384 --intermediate 1536   # MiniLM-L6

The count itself lives in ``clinbert_onnx.bench.bert_gops`` (``clinbert bench`` reports achieved GOP/s too).
One multiply-add = 2 operations; embeddings, LayerNorm, softmax and GELU are left out (< 1% at 128 tokens).
"""

from __future__ import annotations

import argparse

from clinbert_onnx.bench import bert_gops, cpu_flags, cpu_ghz, cpu_peaks
from clinbert_onnx.session import available_cpus


def floors_ms(gop: float, peaks: dict[str, float]) -> dict[str, float]:
    """Milliseconds per sequence if every operation ran at each peak rate."""
    return {name: 1e3 * gop / rate for name, rate in peaks.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--intermediate", type=int, default=3072)
    p.add_argument("--vocab", type=int, default=28996)
    p.add_argument("--cores", type=int, default=available_cpus())
    p.add_argument("--ghz", type=float, default=cpu_ghz() or 2.1)
    args = p.parse_args()
    peaks = cpu_peaks(args.cores, args.ghz, cpu_flags())
    print(
        f"peaks on {args.cores} cores at {args.ghz} GHz: " + ", ".join(f"{k} {v:.0f} GOP/s" for k, v in peaks.items())
    )
    print(f"{'tokens':>6}  {'GOP/seq':>8}  {'+full MLM head':>14}  {'+1 [MASK] head':>14}  floors ms/seq")
    for seq in (16, 64, 128, 512):
        dims = {"layers": args.layers, "hidden": args.hidden, "intermediate": args.intermediate, "seq": seq}
        g = bert_gops(**dims)
        full = bert_gops(**dims, vocab=args.vocab, head_rows=seq)
        one = bert_gops(**dims, vocab=args.vocab, head_rows=1)
        floors = ", ".join(f"{k} {v:.1f}" for k, v in floors_ms(g, peaks).items())
        print(f"{seq:>6}  {g:>8.2f}  {full:>14.2f}  {one:>14.2f}  {floors}")


if __name__ == "__main__":
    main()
