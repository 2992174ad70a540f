"""``clinbert bench``: speed, memory and size of a bundle's variants on this machine (onnxruntime only).

Figures, each a median over interleaved rounds (variant A, variant B, A, B...) so that a noisy machine
affects every variant alike: batch-1 latency p50/p95 at 16/64/128/512 tokens (capped at the bundle's
``max_length``), batch-32 throughput at 128 tokens, throughput on a mixed-length set of texts (end to end:
tokenize, length-sorted batches, pooling), fill-mask latency (end to end), cold start and peak RSS (each in
a fresh process), file sizes, and achieved GOP/s from the model's operation count.

Also the shared primitives of ``benchmarks/``: the operation count of BERT and this CPU's peak rates.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .cpu import cpu_flags as cpu_flags
from .cpu import cpu_ghz as cpu_ghz
from .cpu import cpu_peaks as cpu_peaks
from .cpu import machine_info as machine_info
from .schema import (
    ATTENTION_MASK,
    CONFIG_FILE,
    INPUT_IDS,
    LAST_HIDDEN_STATE,
    MASK_POSITIONS,
    ONNXRUNTIME,
    OPENVINO,
    TOKEN_TYPE_IDS,
)

LENGTHS = (16, 64, 128, 512)
THROUGHPUT_BATCH = 32
THROUGHPUT_LENGTH = 128


# ------------------------------------------------------------------------------------------- operation count
def bert_gops(
    layers: int, hidden: int, intermediate: int, seq: int, batch: int = 1, vocab: int = 0, head_rows: int = 0
) -> float:
    """Giga-operations (1 multiply-add = 2 operations) of a BERT encoder forward pass.

    Per layer and sequence: Q, K, V and output projections ``4·S·H²``, feed-forward ``2·S·H·I``, attention
    scores and weighted sum ``2·S²·H`` multiply-adds. ``head_rows`` positions through the masked-LM head add
    ``H² + H·V`` each (all ``S`` positions for a full-logits pipeline, only the [MASK]s for a gathered head).
    Embedding look-ups, LayerNorm, softmax and GELU are left out (under 1% at 128 tokens).
    """
    per_layer = 4 * seq * hidden * hidden + 2 * seq * hidden * intermediate + 2 * seq * seq * hidden
    head = head_rows * (hidden * hidden + hidden * vocab)
    return 2.0 * (batch * layers * per_layer + head) / 1e9


# ------------------------------------------------------------------------------------------- inputs
def probe_texts() -> list[str]:
    text = resources.files("clinbert_onnx").joinpath("data/probe.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def mixed_lengths(n: int, max_length: int, seed: int = 7) -> list[int]:
    """Token counts of a realistic mixed set: log-normal, median 48 tokens (sentences to short notes)."""
    rng = np.random.default_rng(seed)
    raw = rng.lognormal(mean=np.log(48), sigma=0.8, size=n)
    return [int(x) for x in np.clip(raw, 8, max_length - 2)]


def texts_of_lengths(tokenizer: Any, lengths: list[int], sentences: list[str]) -> list[str]:
    """Texts made of consecutive ``sentences`` (cycling), each cut to about the wanted number of content tokens."""
    encodings = tokenizer.encode_batch(sentences, add_special_tokens=False)
    out, i = [], 0
    for n in lengths:
        parts, need, tries = [], n, 0
        while need > 0 and tries < 10 * len(sentences) + n:
            enc, sentence = encodings[i % len(sentences)], sentences[i % len(sentences)]
            i, tries = i + 1, tries + 1
            if not enc.ids:
                continue
            if len(enc.ids) <= need:
                parts.append(sentence)
                need -= len(enc.ids)
            else:
                parts.append(sentence[: enc.offsets[need - 1][1]])
                need = 0
        out.append(" ".join(parts))
    return out


def masked_texts(sentences: list[str], mask_token: str) -> list[str]:
    """One mask per sentence, on the alphabetic word nearest the middle."""
    out = []
    for sentence in sentences:
        words = sentence.split()
        candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 2]
        if candidates:
            i = min(candidates, key=lambda j: (abs(j - len(words) // 2), j))
            out.append(" ".join([*words[:i], mask_token, *words[i + 1 :]]))
    return out


def token_rows(tokenizer: Any, sentences: list[str], length: int, rows: int, cls_id: int, sep_id: int) -> np.ndarray:
    """``rows`` × ``length`` int64 ids ([CLS] real tokens [SEP]), no padding."""
    ids = np.asarray(tokenizer.encode(" ".join(sentences), add_special_tokens=False).ids, dtype=np.int64)
    need = rows * (length - 2)
    ids = np.tile(ids, need // max(len(ids), 1) + 1)[:need].reshape(rows, length - 2)
    return np.concatenate(
        [np.full((rows, 1), cls_id, dtype=np.int64), ids, np.full((rows, 1), sep_id, dtype=np.int64)], axis=1
    )


def feed_for(ids: np.ndarray, input_names: set[str]) -> dict[str, np.ndarray]:
    feed = {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)}
    if TOKEN_TYPE_IDS in input_names:
        feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)
    if MASK_POSITIONS in input_names:
        feed[MASK_POSITIONS] = np.zeros(0, dtype=np.int64)
    return feed


# ------------------------------------------------------------------------------------------- timing
def summarize(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)) * 1e3, 2),
        "p95_ms": round(float(np.percentile(arr, 95)) * 1e3, 2),
        "n": len(samples),
    }


def interleave(calls: dict[str, Callable[[], object]], rounds: int, reps: int) -> dict[str, list[float]]:
    """Time each call ``reps`` times per round, variants taking turns each round, after one warm-up call each."""
    for fn in calls.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return samples


def vm_hwm_mb() -> float | None:
    """Peak resident set of this process (VmHWM), in MB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ------------------------------------------------------------------------------------------- cold start
CHILD = (
    "import sys, time; t0 = time.monotonic(); "
    "from clinbert_onnx.bench import cold_start_child; cold_start_child(t0, sys.argv[1:])"
)


def cold_start_child(t_imported_start: float, argv: list[str]) -> None:
    """In a fresh process: import, load, first embedding; then one batch-32 × 128 run; print JSON timings."""
    bundle, variant, threads, engine = argv[0], argv[1], int(argv[2]), argv[3]
    from . import ClinicalBert, SessionConfig

    t_import = time.monotonic()
    config = SessionConfig(intra_op_threads=threads)
    model = ClinicalBert.load(bundle, device="cpu", variant=variant, verify=False, session_config=config, engine=engine)
    t_load = time.monotonic()
    model.embed(["Patient admitted with chest pain and shortness of breath."])
    t_first = time.monotonic()
    rss_first = vm_hwm_mb()
    tok = model.bundle.tokenizer
    length = min(THROUGHPUT_LENGTH, model.max_length)
    ids = token_rows(model.tokenizer, probe_texts(), length, THROUGHPUT_BATCH, tok.cls_token_id, tok.sep_token_id)
    model.engine.run([LAST_HIDDEN_STATE], feed_for(ids, set(model.engine.input_names)))
    print(
        json.dumps(
            {
                "t_start": t_imported_start,
                "t_import": t_import,
                "t_load": t_load,
                "t_first": t_first,
                "rss_first_mb": rss_first,
                "rss_peak_mb": vm_hwm_mb(),
            }
        )
    )


def cold_start(bundle: Path, variant: str, threads: int, engine: str = ONNXRUNTIME) -> dict[str, Any]:
    """Spawn a fresh interpreter; wall time from spawn to first embedding, and peak RSS."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(bundle), variant, str(threads), engine],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "failed"}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "cold_start_s": round(r["t_first"] - t0, 3),
        "interpreter_s": round(r["t_start"] - t0, 3),
        "import_s": round(r["t_import"] - r["t_start"], 3),
        "load_s": round(r["t_load"] - r["t_import"], 3),
        "first_result_s": round(r["t_first"] - r["t_load"], 3),
        "rss_first_mb": round(r["rss_first_mb"], 1) if r["rss_first_mb"] else None,
        "rss_peak_mb": round(r["rss_peak_mb"], 1) if r["rss_peak_mb"] else None,
    }


# ------------------------------------------------------------------------------------------- the benchmark
@dataclass(frozen=True)
class BenchPlan:
    """How much to repeat. ``quick`` is for smoke tests and CI (seconds, not minutes)."""

    rounds: int = 5
    latency_reps: int = 4
    throughput_rounds: int = 3
    mixed_texts: int = 96
    lengths: tuple[int, ...] = LENGTHS
    threads: int = 0
    cold_start: bool = True

    @classmethod
    def quick(cls, threads: int = 0, cold_start: bool = True) -> BenchPlan:
        return cls(
            rounds=2,
            latency_reps=2,
            throughput_rounds=1,
            mixed_texts=24,
            lengths=(16, 128),
            threads=threads,
            cold_start=cold_start,
        )


def _reps(base: int, length: int) -> int:
    return max(1, base * 128 // max(length, 128)) if length >= 128 else base * 2


def bench_runs(bundle: Any, variants: list[str] | None, engines: list[str] | None) -> dict[str, tuple[str, str]]:
    """What to measure: key → (variant, engine). Every CPU variant (or ``variants``) on every engine that runs it
    (``engines``, default: ONNX Runtime, and OpenVINO when installed); keys are variant names, ``NAME@openvino``
    on OpenVINO."""
    from .engine_select import openvino_installed

    engines = engines or [ONNXRUNTIME, *([OPENVINO] if openvino_installed() else [])]
    names = variants or [v.name for v in bundle.variants.values() if "cpu" in v.devices]
    return {
        n if e == ONNXRUNTIME else f"{n}@{e}": (n, e) for e in engines for n in names if bundle.variants[n].runs_on(e)
    }


def run_bench(
    bundle_path: Path,
    variants: list[str] | None,
    plan: BenchPlan,
    log: Callable[[str], None] = lambda _: None,
    engines: list[str] | None = None,
) -> dict[str, Any]:
    """Measure ``variants`` (default: all CPU variants of the bundle) on ``engines`` (default: every installed
    engine that runs them) and return the results as a dict."""
    from . import ClinicalBert, SessionConfig
    from .bundle import open_bundle

    bundle = open_bundle(bundle_path)
    runs = bench_runs(bundle, variants, engines)
    if not runs:
        from .errors import InputError

        raise InputError("none of the engines asked for runs the variants asked for")
    names = list(runs)
    config = SessionConfig(intra_op_threads=plan.threads)
    models = {
        k: ClinicalBert.load(bundle_path, device="cpu", variant=v, verify=False, session_config=config, engine=e)
        for k, (v, e) in runs.items()
    }
    first = next(iter(models.values()))
    cfg = json.loads((bundle.path / CONFIG_FILE).read_text(encoding="utf-8"))
    dims = {
        "layers": int(cfg["num_hidden_layers"]),
        "hidden": int(cfg["hidden_size"]),
        "intermediate": int(cfg["intermediate_size"]),
        "vocab": int(cfg["vocab_size"]),
    }
    tok = bundle.tokenizer
    sentences = probe_texts()
    lengths = sorted({min(n, first.max_length) for n in plan.lengths})
    results: dict[str, Any] = {
        "bundle": str(bundle.path),
        "model_id": bundle.model_id,
        "model": dims,
        "max_length": first.max_length,
        "machine": machine_info(),
        "plan": plan.__dict__ | {"lengths": list(plan.lengths)},
        "variants": {
            k: {
                "variant": v,
                "engine": e,
                "file": bundle.variants[v].file,
                "size_mb": round(bundle.variant_mb(bundle.variants[v]), 1),
                "latency": {},
            }
            for k, (v, e) in runs.items()
        },
    }

    def rows(length: int, batch: int) -> np.ndarray:
        return token_rows(first.tokenizer, sentences, length, batch, tok.cls_token_id, tok.sep_token_id)

    for length in lengths:
        log(f"batch-1 latency at {length} tokens")
        ids = rows(length, 1)
        calls = {n: _session_call(m, ids) for n, m in models.items()}
        for n, samples in interleave(calls, plan.rounds, _reps(plan.latency_reps, length)).items():
            fig = summarize(samples)
            fig["gops"] = round(bert_gops(**_linear(dims), seq=length) / (fig["p50_ms"] / 1e3), 1)
            results["variants"][n]["latency"][str(length)] = fig

    length = min(THROUGHPUT_LENGTH, first.max_length)
    log(f"batch-{THROUGHPUT_BATCH} throughput at {length} tokens")
    ids = rows(length, THROUGHPUT_BATCH)
    calls = {n: _session_call(m, ids) for n, m in models.items()}
    for n, samples in interleave(calls, plan.throughput_rounds, 1).items():
        median = statistics.median(samples)
        results["variants"][n]["throughput"] = {
            "batch": THROUGHPUT_BATCH,
            "length": length,
            "seq_per_s": round(THROUGHPUT_BATCH / median, 2),
            "gops": round(bert_gops(**_linear(dims), seq=length, batch=THROUGHPUT_BATCH) / median, 1),
            "n": len(samples),
        }

    log(f"mixed-length throughput ({plan.mixed_texts} texts)")
    texts = texts_of_lengths(first.tokenizer, mixed_lengths(plan.mixed_texts, first.max_length), sentences)
    tokens = sum(first.count_tokens(texts))
    calls = {n: _bound(m.embed, texts) for n, m in models.items()}
    for n, samples in interleave(calls, plan.throughput_rounds, 1).items():
        median = statistics.median(samples)
        results["variants"][n]["mixed"] = {
            "texts": len(texts),
            "tokens": tokens,
            "texts_per_s": round(len(texts) / median, 2),
            "tokens_per_s": round(tokens / median, 1),
        }

    if bundle.has_mlm_head:
        log("fill-mask latency")
        probe = masked_texts(sentences, tok.mask_token)[0]
        calls = {n: _bound(m.fill_mask, probe) for n, m in models.items()}
        for n, samples in interleave(calls, plan.rounds, plan.latency_reps).items():
            results["variants"][n]["fill_mask"] = summarize(samples) | {"tokens": first.count_tokens(probe)[0]}

    if plan.cold_start:
        del models, first, calls
        for n in names:
            log(f"cold start and peak RSS: {n} (fresh process)")
            variant, engine = runs[n]
            results["variants"][n]["cold_start"] = cold_start(bundle.path, variant, plan.threads, engine)
    return results


def _linear(dims: dict[str, int]) -> dict[str, int]:
    return {k: dims[k] for k in ("layers", "hidden", "intermediate")}


def _bound(fn: Callable[[Any], object], arg: Any) -> Callable[[], object]:
    return lambda: fn(arg)


def _session_call(model: Any, ids: np.ndarray) -> Callable[[], object]:
    feed = feed_for(ids, set(model.engine.input_names))
    return lambda: model.engine.run([LAST_HIDDEN_STATE], feed)
