"""Levers on our INT8 variant, measured against each other in one process (interleaved, medians).

    python benchmarks/levers.py [--models bert-base,minilm] [--out bench_out] [--quick]

Session options (graph optimization level, spinning, arena, memory pattern, threads), quantization recipes
(per-channel / per-tensor / FP32 attention / FP32 embeddings), FastGelu instead of exact BiasGelu, and the
gathered MLM head against full logits through the same graph. Quality (MiniLM): cosine to PyTorch FP32.
Writes levers.json and levers.md into --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import specs  # noqa: E402
from clinbert_onnx import ClinicalBert, SessionConfig  # noqa: E402
from clinbert_onnx.bench import bert_gops, token_rows  # noqa: E402
from clinbert_onnx.bundle import open_bundle  # noqa: E402
from clinbert_onnx.bundle import open_bundle as bundle_of  # noqa: E402
from clinbert_onnx.quantize.int8 import drop_dead_nodes  # noqa: E402
from clinbert_onnx.schema import (  # noqa: E402
    ATTENTION_MASK,
    INPUT_IDS,
    LAST_HIDDEN_STATE,
    MASK_LOGITS,
    MASK_POSITIONS,
    TOKEN_TYPE_IDS,
)
from clinbert_onnx.session import create_session  # noqa: E402
from engines.base import Tokens  # noqa: E402
from measure import interleave, masked_batches, sentences  # noqa: E402

RECIPES = ("int8-dynamic-tensor", "int8-per-tensor", "int8-per-token-fp32-embeddings")
SESSIONS = {
    "default (extended, spin, arena)": SessionConfig(),
    "graph optimization all": SessionConfig(graph_optimization="all"),
    "no spinning": SessionConfig(spin=False),
    "no CPU arena": SessionConfig(cpu_arena=False),
    "memory pattern on": SessionConfig(memory_pattern=True),
    "1 thread": SessionConfig(intra_op_threads=1),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_files(spec: specs.ModelSpec, cache: Path) -> dict[str, Path]:
    """Our int8 file, the recipe alternatives and a FastGelu copy, built once under ``cache``."""
    import onnx
    from clinbert_onnx.quantize import build_variant, get_recipe
    from clinbert_onnx.quantize.onnx_io import save_model

    bundle = open_bundle(spec.bundle)
    folder = cache / spec.name / "levers"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"int8-per-token (ours)": spec.bundle / bundle.variants["int8"].file}
    for name in RECIPES:
        path = folder / f"{name}.onnx"
        if not path.is_file():
            log(f"building {name} for {spec.name}")
            build_variant(spec.bundle / bundle.variants["fp32"].file, folder / "tmp.onnx", get_recipe(name))
            shutil.move(folder / "tmp.onnx", path)
        files[name] = path
    fast = folder / "int8-fastgelu.onnx"
    if not fast.is_file():
        model = onnx.load(str(files["int8-per-token (ours)"]))
        for node in model.graph.node:
            if node.op_type == "BiasGelu":
                node.op_type = "FastGelu"  # same inputs (X, bias); tanh approximation of GELU
        save_model(model, fast)
    files["int8 + FastGelu"] = fast
    pruned = folder / "int8-pruned.onnx"
    if not pruned.is_file():
        model = onnx.load(str(files["int8-per-token (ours)"]))
        drop_dead_nodes(model)
        save_model(model, pruned)
    files["int8, dead nodes dropped"] = pruned
    return files


def speed(
    sessions: dict[str, Any], spec: specs.ModelSpec, tokens: Tokens, cls: int, sep: int, rounds: int
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {n: {} for n in sessions}
    for batch, reps in ((1, 6), (32, 1)):
        ids = token_rows(tokens.tok, sentences(), 128, batch, cls, sep)
        names = {i.name for i in next(iter(sessions.values())).get_inputs()}
        feed = {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids), TOKEN_TYPE_IDS: np.zeros_like(ids)}
        if MASK_POSITIONS in names:
            feed[MASK_POSITIONS] = np.zeros(0, dtype=np.int64)
        calls: dict[str, Callable[[], object]] = {
            n: partial(s.run, [LAST_HIDDEN_STATE], feed) for n, s in sessions.items()
        }
        gop = bert_gops(spec.layers, spec.hidden, spec.intermediate, 128, batch)
        for n, samples in interleave(calls, rounds, reps).items():
            med = statistics.median(samples)
            key = "b1_128_p50_ms" if batch == 1 else "b32_128_seq_per_s"
            out[n][key] = round(med * 1e3, 2) if batch == 1 else round(batch / med, 2)
            out[n][f"gops_b{batch}"] = round(gop / med, 1)
    return out


def gathered_head(session: Any, tokens: Tokens, mask_id: int, rounds: int) -> dict[str, float]:
    """The same graph, logits for the [MASK]s only vs for every position (what a full-logits pipeline pays)."""
    batches = masked_batches(tokens, mask_id)

    def run(all_positions: bool) -> None:
        for ids, mask, rows, cols in batches:
            flat = np.arange(ids.size) if all_positions else rows * ids.shape[1] + cols
            session.run(
                [MASK_LOGITS],
                {
                    INPUT_IDS: ids,
                    ATTENTION_MASK: mask,
                    TOKEN_TYPE_IDS: np.zeros_like(ids),
                    MASK_POSITIONS: flat.astype(np.int64),
                },
            )

    count = sum(len(b[2]) for b in batches)
    samples = interleave({"gathered": lambda: run(False), "all positions": lambda: run(True)}, rounds, 1)
    return {f"{k} sent/s": round(count / statistics.median(v), 2) for k, v in samples.items()}


def quality(files: dict[str, Path], spec: specs.ModelSpec, cache: Path) -> dict[str, dict[str, float]]:
    from engines import module

    texts = sentences()[:200]
    ref = module("torch-fp32").load("torch-fp32", spec, cache, 2).embed(texts)
    bundle = open_bundle(spec.bundle)
    out = {}
    for name, path in files.items():
        session, _ = create_session(path, "cpu", SessionConfig())
        vecs = ClinicalBert(bundle, session, "cpu", "int8").embed(texts)
        cos = (vecs * ref).sum(axis=1)
        out[name] = {"cosine_mean": round(float(cos.mean()), 4), "cosine_min": round(float(cos.min()), 4)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="bert-base,minilm")
    p.add_argument("--out", type=Path, default=Path("bench_out"))
    p.add_argument("--reuse", type=Path)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    rounds = 2 if args.quick else 4
    cache = (args.out / "cache").resolve()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "models": {}}
    for name in [m for m in args.models.split(",") if m]:
        spec = specs.spec(name, cache, args.reuse, log)
        tok = bundle_of(spec.bundle).tokenizer
        tokens = Tokens(spec.bundle)
        files = build_files(spec, cache)
        sessions = {n: create_session(path, "cpu", SessionConfig())[0] for n, path in files.items()}
        base = files["int8-per-token (ours)"]
        for label, config in SESSIONS.items():
            if label.startswith("default"):
                continue
            sessions[f"ours, {label}"] = create_session(base, "cpu", config)[0]
        log(f"{name}: speed of {len(sessions)} variants")
        entry: dict[str, Any] = {"speed": speed(sessions, spec, tokens, tok.cls_token_id, tok.sep_token_id, rounds)}
        if spec.has_mlm:
            log(f"{name}: gathered vs full MLM head")
            entry["mlm_head"] = gathered_head(sessions["int8-per-token (ours)"], tokens, tok.mask_token_id, rounds)
        del sessions
        if name == "minilm":
            log(f"{name}: quality of the recipes")
            entry["quality"] = quality(files, spec, cache)
        results["models"][name] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "levers.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = []
    for name, entry in results["models"].items():
        lines += [
            f"### Levers on {name} ({results['date']})",
            "",
            "| variant | b1x128 p50 ms | b32x128 seq/s | GOP/s b32 | cosine mean / min (MiniLM) |",
            "|---|---|---|---|---|",
        ]
        for v, s in entry["speed"].items():
            q = entry.get("quality", {}).get(v)
            qs = f"{q['cosine_mean']:.4f} / {q['cosine_min']:.4f}" if q else ""
            lines.append(
                f"| {v} | {s['b1_128_p50_ms']:.1f} | {s['b32_128_seq_per_s']:.1f} | {s['gops_b32']:.0f} | {qs} |"
            )
        if "mlm_head" in entry:
            lines += ["", "Fill-mask, same INT8 graph: " + ", ".join(f"{k} {v}" for k, v in entry["mlm_head"].items())]
        lines.append("")
    (args.out / "levers.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
