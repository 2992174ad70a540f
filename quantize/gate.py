"""The accuracy gate: a quantized variant against FP32 on the probe set of clinical sentences that ships with
the package. Runs with the torch-free runtime, so it works on a bundle anywhere."""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from clinbert_onnx.errors import QualityGateError

from .recipes import GateThresholds, QuantRecipe


def probe_sentences() -> list[str]:
    text = resources.files("clinbert_onnx").joinpath("data/probe.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def masked_probes(sentences: list[str], mask_token: str) -> list[str]:
    """One [MASK] per sentence, on the alphabetic word nearest the middle (deterministic)."""
    out = []
    for sentence in sentences:
        words = sentence.split()
        candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 2]
        if not candidates:
            continue
        middle = len(words) // 2
        i = min(candidates, key=lambda j: (abs(j - middle), j))
        out.append(" ".join([*words[:i], mask_token, *words[i + 1 :]]))
    return out


#: Probe texts checked alone and among random companions, and how many companions each batch holds.
DRIFT_TEXTS = 16
DRIFT_COMPANIONS = 15


def batch_drift(model: Any, sentences: list[str], seed: int = 0) -> dict[str, float]:
    """How far a text's result moves with its batch-mates: each of the first ``DRIFT_TEXTS`` probe texts run
    alone, then at a random place among ``DRIFT_COMPANIONS`` random other probe texts (one padded batch: the
    model is loaded with a budget that holds it). Embeddings: worst element difference and lowest cosine;
    fill-mask (when the bundle has the head): worst difference of the top-5 scores."""
    rng = np.random.default_rng(seed)
    worst, cosine, fill = 0.0, 1.0, 0.0
    probes = masked_probes(sentences, model.bundle.tokenizer.mask_token) if model.has_mlm_head else []
    for i, text in enumerate(sentences[:DRIFT_TEXTS]):
        others = [j for j in range(len(sentences)) if j != i]
        companions = [sentences[j] for j in rng.choice(others, DRIFT_COMPANIONS, replace=False)]
        place = int(rng.integers(0, DRIFT_COMPANIONS + 1))
        batch = [*companions[:place], text, *companions[place:]]
        alone = model.embed([text])[0]
        among = model.embed(batch)[place]
        worst = max(worst, float(np.abs(alone - among).max()))
        cosine = min(cosine, float(alone @ among))
        if i < len(probes):
            mates = [probes[j] for j in rng.choice(len(probes), DRIFT_COMPANIONS, replace=False)]
            a = model.fill_mask([probes[i]], top_k=5)[0]
            b = model.fill_mask([*mates[:place], probes[i], *mates[place:]], top_k=5)[place]
            by_token = {p["token"]: p["score"] for p in b}
            fill = max(fill, max(abs(p["score"] - by_token.get(p["token"], 0.0)) for p in a))
    report = {"batch_drift_max": float(f"{worst:.3g}"), "batch_cosine_min": round(cosine, 9)}
    if probes:
        report["batch_drift_fill_mask_score_max"] = float(f"{fill:.3g}")
    return report


def measure(
    bundle_dir: Path, variant: str, reference: str = "fp32", device: str = "cpu", probe: Path | None = None
) -> dict[str, Any]:
    """Agreement figures of ``variant`` with ``reference`` (both loaded from ``bundle_dir``), and its batch drift;
    for a classifier bundle also its task's figures (``task_gate``) on ``probe``'s texts (None: the probe set)."""
    from clinbert_onnx.model import ClinicalBert

    ref = ClinicalBert.load(bundle_dir, device="cpu", variant=reference, verify=False)
    # The budget holds one probe text and its companions in a single padded batch.
    budget = (DRIFT_COMPANIONS + 1) * ref.max_length
    cand = ClinicalBert.load(
        bundle_dir, device=device, variant=variant, verify=False, token_budget=budget, max_batch=DRIFT_COMPANIONS + 1
    )
    sentences = probe_sentences()
    a = ref.embed(sentences)
    b = cand.embed(sentences)
    cos = (a * b).sum(axis=1)
    report: dict[str, Any] = {
        "reference": reference,
        "device": cand.device,
        "probe_sentences": len(sentences),
        "embedding_cosine_mean": round(float(cos.mean()), 5),
        "embedding_cosine_min": round(float(cos.min()), 5),
    }
    if ref.has_mlm_head:
        probes = masked_probes(sentences, ref.bundle.tokenizer.mask_token)
        ra = ref.fill_mask(probes, top_k=5)
        rb = cand.fill_mask(probes, top_k=5)
        top1 = [x[0]["token"] == y[0]["token"] for x, y in zip(ra, rb, strict=True)]
        top5 = [len({p["token"] for p in x} & {p["token"] for p in y}) / 5 for x, y in zip(ra, rb, strict=True)]
        report.update(
            fill_mask_probes=len(probes),
            fill_mask_top1_agreement=round(float(np.mean(top1)), 4),
            fill_mask_top5_overlap=round(float(np.mean(top5)), 4),
        )
    if ref.bundle.manifest.head is not None:
        from .task_gate import measure_task, read_probe

        report.update(measure_task(ref, cand, read_probe(probe) if probe is not None else sentences))
    report.update(batch_drift(cand, sentences))
    return report


def judge(report: dict[str, Any], thresholds: GateThresholds, batch_invariant: bool = True) -> list[str]:
    """The figures that missed their threshold, as readable strings (empty when the gate passes).

    Batch drift is judged only for recipes that claim batch invariance; the batch-dependent opt-ins
    (``int8-dynamic-tensor`` and its kin) report it, and their manifest says so."""
    checks = [
        ("embedding_cosine_mean", thresholds.cosine_mean),
        ("embedding_cosine_min", thresholds.cosine_min),
        ("fill_mask_top1_agreement", thresholds.top1_agreement),
        ("fill_mask_top5_overlap", thresholds.top5_overlap),
    ]
    missed = [
        f"{name} {report[name]:.4f} < {limit}" for name, limit in checks if name in report and report[name] < limit
    ]
    if batch_invariant:
        if report.get("batch_drift_max", 0.0) > thresholds.batch_drift_max:
            missed.append(f"batch_drift_max {report['batch_drift_max']:.3g} > {thresholds.batch_drift_max}")
        if report.get("batch_cosine_min", 1.0) < thresholds.batch_cosine_min:
            missed.append(f"batch_cosine_min {report['batch_cosine_min']:.9f} < {thresholds.batch_cosine_min}")
    return missed


def gate_device(recipe: QuantRecipe) -> str:
    """Where to gate a variant: fp16 on CUDA when a CUDA provider is present, else on CPU (ONNX Runtime has CPU
    kernels for the fp16 graph, so the numerics are checked anywhere; GPU figures come from a GPU run)."""
    import onnxruntime as ort

    if recipe.precision == "fp16" and "CUDAExecutionProvider" in ort.get_available_providers():
        return "cuda"
    return "cpu"


def run_gate(
    bundle_dir: Path,
    variant: str,
    thresholds: GateThresholds,
    allow_degraded: bool,
    device: str = "cpu",
    batch_invariant: bool = True,
    probe: Path | None = None,
) -> dict[str, Any]:
    from .task_gate import TaskThresholds, judge_task

    report = measure(bundle_dir, variant, device=device, probe=probe)
    report["batch_invariant"] = batch_invariant
    missed = judge(report, thresholds, batch_invariant)
    report["thresholds"] = asdict(thresholds)
    if "probe_texts" in report:  # a classifier bundle: its task's figures are judged too
        task_thresholds = TaskThresholds()
        missed += judge_task(report, task_thresholds)
        report["thresholds"].update(task_thresholds.as_dict())
    report["passed"] = not missed
    report["missed"] = missed
    if missed and not allow_degraded:
        raise QualityGateError(
            f"variant {variant} failed the accuracy gate against fp32: {'; '.join(missed)} "
            "(use another --recipe, or --allow-degraded to keep it anyway)"
        )
    return report
