"""``clinbert score`` against the usual recipe, and its memory at a million rows.

Throughput (default): one run measures both, on the same int8 ONNX file and the same rows
(``benchmarks/notes_mix.py``: 5 to 600 tokens), both truncating at 512 tokens:

- baseline — the usual Optimum-style loop: rows in file order, batches of 32, the tokenizer pads to the
  longest row of the batch and truncates at 512, ``InferenceSession.run``, masked mean pooling, L2 norm.
  Timed from the first batch (session creation is not counted);
- ``clinbert score BUNDLE notes.parquet --long-text truncate --out x.npy`` as a subprocess, timed end to
  end (start-up, bundle verification, model load, reading, writing and checkpoints included).

Memory (``--memory-rows N``): peak RSS of ``clinbert score`` over N short rows, and over N/10, to show that
it does not grow with the input.

    python benchmarks/score_bench.py --bundle /tmp/fx/bert-base --rows 480
    python benchmarks/score_bench.py --memory-bundle /tmp/fx/tiny --memory-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from clinbert_onnx.bundle import open_bundle
from clinbert_onnx.schema import ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, MASK_POSITIONS, TOKEN_TYPE_IDS

sys.path.insert(0, str(Path(__file__).resolve().parent))

from notes_mix import describe, make_mix, write

BATCH = 32
MAX_LENGTH = 512


def baseline(bundle: Path, texts: list[str]) -> tuple[float, np.ndarray, int, int]:
    """(seconds, vectors, real tokens, padded tokens) for the plain padded-batches-of-32 loop."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    opened = open_bundle(bundle)
    tok_info = opened.tokenizer
    tok = Tokenizer.from_file(str(bundle / tok_info.file))
    tok.enable_truncation(MAX_LENGTH)
    tok.enable_padding(pad_id=tok_info.pad_token_id, pad_token="[PAD]")
    session = ort.InferenceSession(str(bundle / opened.variants["int8"].file), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    out = np.empty((len(texts), opened.hidden_size), dtype=np.float32)
    real = padded = 0
    start = time.perf_counter()
    for lo in range(0, len(texts), BATCH):
        enc = tok.encode_batch(texts[lo : lo + BATCH])
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        feed = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if TOKEN_TYPE_IDS in names:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)
        if MASK_POSITIONS in names:
            feed[MASK_POSITIONS] = np.zeros(0, dtype=np.int64)
        (hidden,) = session.run([LAST_HIDDEN_STATE], feed)
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        out[lo : lo + len(enc)] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        real += int(mask.sum())
        padded += mask.size
    return time.perf_counter() - start, out, real, padded


def score_padding(bundle: Path, texts: list[str], window_rows: int = 1024) -> tuple[int, int, int]:
    """(real tokens, padded tokens, model runs) of ``clinbert score``'s batching (CPU defaults, truncation at
    512), computed without running the model: windows of rows → token-budget batches over each whole window."""
    from clinbert_onnx.batching import plan_batches
    from clinbert_onnx.model import DEFAULT_BUDGETS
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / open_bundle(bundle).tokenizer.file))
    budget, max_batch = DEFAULT_BUDGETS["cpu"]
    lengths = [min(len(e.ids), MAX_LENGTH) for e in tok.encode_batch(texts)]
    real = padded = runs = 0
    for lo in range(0, len(texts), window_rows):
        sizes = lengths[lo : lo + window_rows]
        for batch in plan_batches(sizes, budget, max_batch):
            real += sum(sizes[i] for i in batch)
            padded += len(batch) * max(sizes[i] for i in batch)
            runs += 1
    return real, padded, runs


def score(bundle: Path, data: Path, out: Path, extra: list[str]) -> float:
    cmd = [
        sys.executable,
        "-m",
        "clinbert_onnx",
        "score",
        str(bundle),
        str(data),
        "--out",
        str(out),
        "--text-column",
        "note_text",
        "--id-column",
        "note_id",
        "--long-text",
        "truncate",
        "--force",
        "--quiet",
        *extra,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    kinds, texts, counts = make_mix(args.bundle, args.rows)
    data = work / "notes.parquet"
    write(data, texts)
    result: dict[str, Any] = {"mix": describe(kinds, counts), "bundle": str(args.bundle), "runs": []}
    real, padded, runs = score_padding(args.bundle, texts)
    result["score_padding_efficiency"] = round(real / padded, 3)
    result["score_model_runs"] = runs
    result["baseline_model_runs"] = -(-len(texts) // BATCH)
    for _ in range(args.repeat):  # alternate, so a change in machine load hits both
        base_s, base_vecs, real, padded = baseline(args.bundle, texts)
        score_s = score(args.bundle, data, work / "scored.npy", args.score_args)
        vecs = np.load(work / "scored.npy")
        cos = (vecs * base_vecs).sum(1)
        result["runs"].append(
            {
                "baseline_s": round(base_s, 2),
                "baseline_rows_s": round(len(texts) / base_s, 2),
                "baseline_padding_efficiency": round(real / padded, 3),
                "score_s": round(score_s, 2),
                "score_rows_s": round(len(texts) / score_s, 2),
                "speedup": round(base_s / score_s, 2),
                "cosine_vs_baseline_mean_min": [round(float(cos.mean()), 5), round(float(cos.min()), 5)],
            }
        )
        print(json.dumps(result["runs"][-1]), file=sys.stderr)
    return result


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS of ``cmd`` (and its children), measured in a fresh helper process."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    corpus = [
        line
        for line in (Path(__file__).resolve().parent.parent / "tests" / "data" / "clinical_corpus.txt")
        .read_text(encoding="utf-8")
        .splitlines()
        if 0 < len(line) <= 80
    ]
    result: dict[str, Any] = {"bundle": str(args.memory_bundle), "format": args.memory_format, "runs": []}
    for rows in (args.memory_rows // 10, args.memory_rows):
        data = work / f"short-{rows}.txt"
        with data.open("w", encoding="utf-8") as fh:
            for i in range(rows):
                fh.write(corpus[(i * 7919) % len(corpus)] + "\n")
        out = work / f"short-{rows}.{args.memory_format}"
        cmd = [
            sys.executable,
            "-m",
            "clinbert_onnx",
            "score",
            str(args.memory_bundle),
            str(data),
            "--out",
            str(out),
            "--force",
            "--quiet",
            "--no-verify",
        ]
        start = time.perf_counter()
        rss = peak_rss_mb(cmd)
        seconds = time.perf_counter() - start
        run = {
            "rows": rows,
            "input_mb": round(data.stat().st_size / 2**20, 1),
            "output_mb": round(out.stat().st_size / 2**20, 1),
            "peak_rss_mb": round(rss, 1),
            "seconds": round(seconds, 1),
            "rows_s": round(rows / seconds, 1),
        }
        result["runs"].append(run)
        print(json.dumps(run), file=sys.stderr)
        data.unlink()
        out.unlink()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="bundle for the throughput comparison (BERT-base sized)")
    ap.add_argument("--rows", type=int, default=480, help="rows of the length mix (default 480)")
    ap.add_argument("--repeat", type=int, default=1, help="alternating baseline/score rounds (default 1)")
    ap.add_argument("--score-args", nargs=argparse.REMAINDER, default=[], help="extra clinbert score options")
    ap.add_argument("--memory-bundle", type=Path, help="bundle for the memory check (small is fine)")
    ap.add_argument("--memory-rows", type=int, default=1_000_000)
    ap.add_argument("--memory-format", default="npy", choices=("npy", "parquet", "jsonl"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.bundle is None and args.memory_bundle is None:
        ap.error("give --bundle (throughput) and/or --memory-bundle (memory)")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="score-bench-") as tmp:
        if args.bundle is not None:
            results["throughput"] = throughput(args, Path(tmp))
        if args.memory_bundle is not None:
            results["memory"] = memory(args, Path(tmp))
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
