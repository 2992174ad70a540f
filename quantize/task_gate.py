"""The accuracy gate's figures for fine-tuned derivatives: the task's own outputs, INT8 against FP32.

- token classification: strict entity F1 (same start, end and label; word-level "first" aggregation) of the
  candidate's entities against FP32's, and the recall of FP32's entities (a missed PHI span is worse than a
  spurious one, so recall has its own, higher, threshold);
- text classification: top-1 label agreement and the mean absolute change of the scores;
- reranking (one-logit text classifiers): per-query Spearman rank correlation and top-1 agreement (near-ties
  within ``TIE`` agree), over queries made from the probe texts, each ranking a handful of them.

The figures only mean something when the probe text gives FP32 enough to agree with: fewer than
``min_entities`` FP32 entities (or ``min_texts`` texts) is itself a miss, telling the user to pass their own
text with ``--probe FILE`` (one text per line) — what a de-identification user does. For a classifier of text
pairs (MedNLI-style premise / hypothesis) a probe line with one tab is a pair, ``premise<TAB>hypothesis``, so
the gate judges INT8 on what the model reads (second segment included); rerankers take the first member.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from clinbert_onnx.errors import InputError
from clinbert_onnx.schema import TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION

#: Queries and candidates per query of the reranking figures.
RERANK_QUERIES = 12
RERANK_CANDIDATES = 8
#: Reranking top-1: INT8's best text agrees when FP32 scores it within this of FP32's best (a near-tie).
TIE = 0.005


@dataclass(frozen=True)
class TaskThresholds:
    entity_f1: float = 0.90
    entity_recall: float = 0.95
    min_entities: int = 20
    label_top1_agreement: float = 0.95
    probability_change_mean: float = 0.02  # at most
    rank_correlation_mean: float = 0.95
    rerank_top1_agreement: float = 0.90
    min_texts: int = 20

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def read_probe(path: Path) -> list[str]:
    """A probe file: one text per line, blank lines skipped (UTF-8)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the probe file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"the probe file {path} has no text")
    return lines


#: Separates the two texts of a pair on a probe line (text classification).
PAIR_SEPARATOR = "\t"


def probe_items(texts: list[str]) -> list[str | dict[str, str]]:
    """Probe lines as a text classifier reads them: a line with exactly one tab between two non-empty texts is a
    pair ``{"text", "text_pair"}``; any other line is a single text."""
    items: list[str | dict[str, str]] = []
    for line in texts:
        parts = [p.strip() for p in line.split(PAIR_SEPARATOR)]
        items.append({"text": parts[0], "text_pair": parts[1]} if len(parts) == 2 and all(parts) else line)
    return items


def probe_hash(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def _entity_set(results: list[list[dict[str, Any]]]) -> set[tuple[int, int, int, str]]:
    return {(i, e["start"], e["end"], e["entity_group"]) for i, found in enumerate(results) for e in found}


def token_figures(ref: Any, cand: Any, texts: list[str]) -> dict[str, Any]:
    a = _entity_set(ref.token_classification(texts, aggregation_strategy="first"))
    b = _entity_set(cand.token_classification(texts, aggregation_strategy="first"))
    both = len(a & b)
    recall = both / len(a) if a else 0.0
    precision = both / len(b) if b else (1.0 if not a else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"reference_entities": len(a), "entity_f1": round(f1, 4), "entity_recall": round(recall, 4)}


def _scores(model: Any, texts: list[str | dict[str, str]]) -> np.ndarray:
    from clinbert_onnx.classify import ClassifyOptions

    result = model.process(texts, TEXT_CLASSIFICATION, ClassifyOptions())
    return np.asarray(result.scores, dtype=np.float64)


def classification_figures(ref: Any, cand: Any, texts: list[str]) -> dict[str, Any]:
    items = probe_items(texts)
    a, b = _scores(ref, items), _scores(cand, items)
    if a.shape[1] == 1:
        return rerank_figures(ref, cand, [t if isinstance(t, str) else t["text"] for t in items])
    agree = float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))
    change = float(np.abs(a - b).mean())
    pairs = sum(1 for t in items if not isinstance(t, str))
    return {
        "label_top1_agreement": round(agree, 4),
        "probability_change_mean": float(f"{change:.3g}"),
        "probe_pairs": pairs,
    }


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(-x, kind="stable"), kind="stable").astype(np.float64)


def rerank_figures(ref: Any, cand: Any, texts: list[str]) -> dict[str, Any]:
    n = len(texts)
    width = min(RERANK_CANDIDATES, n)
    correlations, top1 = [], []
    for q in range(min(RERANK_QUERIES, n)):
        query = " ".join(texts[q].split()[:6])
        candidates = [texts[(q + j) % n] for j in range(width)]
        a = np.asarray([r["score"] for r in sorted(ref.rerank(query, candidates), key=lambda r: r["index"])])
        b = np.asarray([r["score"] for r in sorted(cand.rerank(query, candidates), key=lambda r: r["index"])])
        ra, rb = _ranks(a), _ranks(b)
        ra, rb = ra - ra.mean(), rb - rb.mean()
        denom = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
        correlations.append(float((ra * rb).sum() / denom) if denom else 1.0)
        # near-ties count as agreement: INT8 may pick a text FP32 scores within TIE of its best
        top1.append(float(a[int(b.argmax())]) >= float(a.max()) - TIE)
    return {
        "rank_correlation_mean": round(float(np.mean(correlations)), 4),
        "rerank_top1_agreement": round(float(np.mean(top1)), 4),
    }


def measure_task(ref: Any, cand: Any, texts: list[str]) -> dict[str, Any]:
    """The task's figures of ``cand`` against ``ref`` (both ``ClinicalBert``) on ``texts``."""
    task = ref.bundle.task
    report: dict[str, Any] = {"probe_sha256": probe_hash(texts), "probe_texts": len(texts)}
    if task == TOKEN_CLASSIFICATION:
        report.update(token_figures(ref, cand, texts))
    elif task == TEXT_CLASSIFICATION:
        report.update(classification_figures(ref, cand, texts))
    return report


def judge_task(report: dict[str, Any], t: TaskThresholds) -> list[str]:
    """The task figures that missed, as readable strings."""
    missed = []
    if report.get("probe_texts", t.min_texts) < t.min_texts:
        missed.append(f"probe_texts {report['probe_texts']} < {t.min_texts} (pass --probe FILE with more text)")
    if "reference_entities" in report and report["reference_entities"] < t.min_entities:
        missed.append(
            f"reference_entities {report['reference_entities']} < {t.min_entities}: the probe text gives FP32 too "
            "few entities to judge INT8 (pass --probe FILE with text like the model's)"
        )
    lower = {
        "entity_f1": t.entity_f1,
        "entity_recall": t.entity_recall,
        "label_top1_agreement": t.label_top1_agreement,
        "rank_correlation_mean": t.rank_correlation_mean,
        "rerank_top1_agreement": t.rerank_top1_agreement,
    }
    missed += [f"{k} {report[k]:.4f} < {v}" for k, v in lower.items() if k in report and report[k] < v]
    change = report.get("probability_change_mean")
    if change is not None and change > t.probability_change_mean:
        missed.append(f"probability_change_mean {change:.3g} > {t.probability_change_mean}")
    return missed
