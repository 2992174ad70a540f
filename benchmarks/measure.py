"""The figures, measured with every engine loaded in one process and taking turns (rotating order each round).

Each function returns plain dicts keyed by engine name. Times are wall-clock seconds per call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from clinbert_onnx.bench import bert_gops, masked_texts, mixed_lengths, probe_texts, texts_of_lengths, token_rows
from engines import Engine, ModelSpec
from engines.base import Tokens, embed_in_order

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Plan:
    rounds: int = 5
    latency_reps: int = 4
    lengths: tuple[int, ...] = (16, 64, 128, 512)
    throughput_rounds: int = 4
    mixed_texts: int = 32
    mixed_rounds: int = 2
    quality_texts: int = 200
    threads: int = 2

    @classmethod
    def quick(cls, threads: int) -> Plan:
        return cls(
            rounds=2,
            latency_reps=2,
            lengths=(16, 128),
            throughput_rounds=1,
            mixed_texts=16,
            mixed_rounds=1,
            quality_texts=200,
            threads=threads,
        )


def interleave(
    calls: dict[str, Callable[[], object]], rounds: int, reps: int, warm: bool = True
) -> dict[str, list[float]]:
    names = list(calls)
    if warm:
        for fn in calls.values():
            fn()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            for _ in range(reps):
                t0 = time.perf_counter()
                calls[n]()
                samples[n].append(time.perf_counter() - t0)
    return samples


def _pct(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e3
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "n": len(samples),
    }


def _dims(spec: ModelSpec) -> dict[str, int]:
    return {"layers": spec.layers, "hidden": spec.hidden, "intermediate": spec.intermediate}


def sentences() -> list[str]:
    """The probe sentences, then corpus lines: the clinical text used for inputs and quality."""
    extra = (REPO / "tests" / "data" / "clinical_corpus.txt").read_text(encoding="utf-8").splitlines()
    seen, out = set(), []
    for s in probe_texts() + [x.strip() for x in extra]:
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


def latency(
    engines: dict[str, Engine],
    spec: ModelSpec,
    tokens: Tokens,
    plan: Plan,
    cls: int,
    sep: int,
    log: Callable[[str], None],
) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {n: {} for n in engines}
    for length in plan.lengths:
        log(f"  batch-1 latency, {length} tokens")
        ids = token_rows(tokens.tok, sentences(), length, 1, cls, sep)
        mask = np.ones_like(ids)
        reps = plan.latency_reps * 2 if length < 128 else max(1, plan.latency_reps * 128 // length)
        calls: dict[str, Callable[[], object]] = {n: partial(e.hidden, ids, mask) for n, e in engines.items()}
        gop = bert_gops(**_dims(spec), seq=length)
        for n, s in interleave(calls, plan.rounds, reps).items():
            fig = _pct(s)
            fig["gops"] = round(gop / (fig["p50_ms"] / 1e3), 1)
            out[n][str(length)] = fig
    return out


def throughput(
    engines: dict[str, Engine],
    spec: ModelSpec,
    tokens: Tokens,
    plan: Plan,
    cls: int,
    sep: int,
    batch: int = 32,
    length: int = 128,
) -> dict[str, dict[str, Any]]:
    ids = token_rows(tokens.tok, sentences(), length, batch, cls, sep)
    mask = np.ones_like(ids)
    calls: dict[str, Callable[[], object]] = {n: partial(e.hidden, ids, mask) for n, e in engines.items()}
    gop = bert_gops(**_dims(spec), seq=length, batch=batch)
    out = {}
    for n, s in interleave(calls, plan.throughput_rounds, 1).items():
        med = statistics.median(s)
        out[n] = {
            "seq_per_s": round(batch / med, 2),
            "best_seq_per_s": round(batch / min(s), 2),
            "gops": round(gop / med, 1),
            "n": len(s),
            "batch": batch,
            "length": length,
            "round_s": [round(x, 4) for x in s],
        }
    return out


def mixed(engines: dict[str, Engine], spec: ModelSpec, tokens: Tokens, plan: Plan) -> dict[str, dict[str, float]]:
    """End to end from text: the usual recipe (batches of 32 in input order) for the others; ours sorts by length
    under a token budget. ``ours-int8/in-order`` is ours with the usual recipe (the padding-free batching lever)."""
    lengths = mixed_lengths(plan.mixed_texts, tokens.max_length)
    texts = texts_of_lengths(tokens.tok, lengths, sentences())
    real = sum(len(e.ids) for e in tokens.tok.encode_batch(texts))
    calls: dict[str, Callable[[], object]] = {n: partial(e.embed, texts) for n, e in engines.items()}
    if "ours-int8" in engines:
        calls["ours-int8/in-order"] = lambda: embed_in_order(engines["ours-int8"], tokens, texts)
    out = {}
    for n, s in interleave(calls, plan.mixed_rounds, 1).items():
        med = statistics.median(s)
        out[n] = {
            "texts": len(texts),
            "tokens": real,
            "texts_per_s": round(len(texts) / med, 2),
            "tokens_per_s": round(real / med, 1),
            "n": len(s),
        }
    return out


def masked_batches(
    tokens: Tokens, mask_id: int, batch: int = 32
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    texts = masked_texts(probe_texts(), "[MASK]")
    out = []
    for start in range(0, len(texts), batch):
        ids, mask = tokens.batch(texts[start : start + batch])
        rows, cols = np.nonzero(ids == mask_id)
        out.append((ids, mask, rows, cols))
    return out


def fill_mask(
    engines: dict[str, Engine], spec: ModelSpec, tokens: Tokens, plan: Plan, mask_id: int
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Batch-1 latency on one masked sentence, and throughput over the masked probe set in batches of 32.
    Also returns each engine's top-5 ids over the set (for agreement)."""
    batches = masked_batches(tokens, mask_id)
    one = batches[0][0][:1], batches[0][1][:1]
    one = one[0][:, : int(one[1].sum())], one[1][:, : int(one[1].sum())]
    r1, c1 = np.nonzero(one[0] == mask_id)
    out: dict[str, dict[str, Any]] = {}
    calls: dict[str, Callable[[], object]] = {
        n: partial(e.mask_top, one[0], one[1], r1, c1, 5) for n, e in engines.items()
    }
    for n, s in interleave(calls, plan.rounds, plan.latency_reps).items():
        out[n] = {"b1_" + k: v for k, v in _pct(s).items()} | {"b1_tokens": int(one[1].sum())}
    tops: dict[str, np.ndarray] = {}
    count = sum(len(b[2]) for b in batches)

    def whole_set(name: str, engine: Engine) -> None:
        tops[name] = np.concatenate([engine.mask_top(*b, 5) for b in batches])

    calls = {n: partial(whole_set, n, e) for n, e in engines.items()}
    for n, s in interleave(calls, plan.throughput_rounds, 1, warm=False).items():
        out[n]["sentences"] = count
        out[n]["sent_per_s"] = round(count / statistics.median(s), 2)
        out[n]["round_s"] = [round(x, 4) for x in s]
    return out, tops


def embedding_quality(
    engines: dict[str, Engine], plan: Plan, reference: str = "torch-fp32"
) -> dict[str, dict[str, float]]:
    """Cosine to the reference's mean-pooled embeddings, and nearest-neighbour agreement among the texts."""
    texts = sentences()[: plan.quality_texts]
    vecs = {n: e.embed(texts) for n, e in engines.items()}
    ref = vecs[reference]
    ref_nn = _nearest(ref)
    out = {}
    for n, v in vecs.items():
        cos = (v * ref).sum(axis=1)
        out[n] = {
            "texts": len(texts),
            "cosine_mean": round(float(cos.mean()), 4),
            "cosine_min": round(float(cos.min()), 4),
            "nn_agreement": round(float((_nearest(v) == ref_nn).mean()), 4),
        }
    return out


#: Texts checked alone and among random companions, and how many companions (as the gate's batch drift).
DRIFT_TEXTS = 8
DRIFT_COMPANIONS = 16


def batch_invariance(engines: dict[str, Engine], seed: int = 0) -> dict[str, dict[str, float]]:
    """How far a text's embedding moves with its batch-mates: each of ``DRIFT_TEXTS`` texts alone, then at a
    random place among ``DRIFT_COMPANIONS`` random others, end to end through each engine's ``embed``."""
    texts = sentences()
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(DRIFT_TEXTS):
        others = [texts[j] for j in rng.choice(len(texts), DRIFT_COMPANIONS + 1, replace=False) if j != i]
        place = int(rng.integers(0, DRIFT_COMPANIONS + 1))
        cases.append((texts[i], others[:DRIFT_COMPANIONS], place))
    out = {}
    for name, engine in engines.items():
        worst, cosine = 0.0, 1.0
        for text, others, place in cases:
            alone = engine.embed([text])[0]
            among = engine.embed([*others[:place], text, *others[place:]])[place]
            worst = max(worst, float(np.abs(alone - among).max()))
            cosine = min(cosine, float(alone @ among))
        out[name] = {"max_element_diff": float(f"{worst:.3g}"), "cosine_min": round(cosine, 9)}
    return out


def paired(fast: list[float], slow: list[float]) -> float | None:
    """Median over rounds of ``slow / fast`` times taken in the same round: the speed-up of ``fast``, robust to
    load that drifts between rounds (a shared machine)."""
    if not fast or len(fast) != len(slow):
        return None
    return round(statistics.median(b / a for a, b in zip(fast, slow, strict=True)), 3)


def _nearest(v: np.ndarray) -> np.ndarray:
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    return np.asarray(sim.argmax(axis=1))


def mask_agreement(tops: dict[str, np.ndarray], reference: str = "torch-fp32") -> dict[str, dict[str, float]]:
    ref = tops[reference]
    out = {}
    for n, t in tops.items():
        overlap = [len(set(a) & set(b)) / t.shape[1] for a, b in zip(t, ref, strict=True)]
        out[n] = {
            "masks": len(t),
            "top1_agreement": round(float((t[:, 0] == ref[:, 0]).mean()), 4),
            "top5_overlap": round(float(np.mean(overlap)), 4),
        }
    return out
