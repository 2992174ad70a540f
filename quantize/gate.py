"""The accuracy gate: a quantized variant against FP32 on the probe set of clinical sentences that ships with
the package. Runs with the torch-free runtime, so it works on a bundle anywhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from clinbert_onnx.errors import QualityGateError
from clinbert_onnx.schema import ONNXRUNTIME, OPENVINO, Quality

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


@dataclass(frozen=True)
class Drift:
    """How far a text's result moves with its batch-mates (see ``batch_drift``)."""

    embedding_max: float
    cosine_min: float
    fill_mask_score_max: float | None


def batch_drift(model: Any, sentences: list[str], seed: int = 0) -> Drift:
    """Each of the first ``DRIFT_TEXTS`` probe texts run alone, then at a random place among
    ``DRIFT_COMPANIONS`` random other probe texts (one padded batch: the model is loaded with a budget that
    holds it). Embeddings: worst element difference and lowest cosine; fill-mask (when the bundle has the
    head): worst difference of the top-5 scores."""
    rng = np.random.default_rng(seed)
    worst, cosine, fill = 0.0, 1.0, 0.0
    probes = masked_probes(sentences, model.bundle.tokenizer.mask_token) if model.has_mlm_head else []
    for i, text in enumerate(sentences[:DRIFT_TEXTS]):
        others = [j for j in range(len(sentences)) if j != i]
        companions = [sentences[j] for j in rng.choice(others, DRIFT_COMPANIONS, replace=False)]
        place = int(rng.integers(0, DRIFT_COMPANIONS + 1))
        alone = model.embed([text])[0]
        among = model.embed([*companions[:place], text, *companions[place:]])[place]
        worst = max(worst, float(np.abs(alone - among).max()))
        cosine = min(cosine, float(alone @ among))
        if i < len(probes):
            mates = [probes[j] for j in rng.choice(len(probes), DRIFT_COMPANIONS, replace=False)]
            a = model.fill_mask([probes[i]], top_k=5)[0]
            b = model.fill_mask([*mates[:place], probes[i], *mates[place:]], top_k=5)[place]
            by_token = {p["token"]: p["score"] for p in b}
            fill = max(fill, max(abs(p["score"] - by_token.get(p["token"], 0.0)) for p in a))
    return Drift(float(f"{worst:.3g}"), round(cosine, 9), float(f"{fill:.3g}") if probes else None)


def measure(
    bundle_dir: Path,
    variant: str,
    reference: str = "fp32",
    device: str = "cpu",
    engine: str = ONNXRUNTIME,
    probe: Path | None = None,
) -> Quality:
    """Agreement figures of ``variant`` on ``engine`` with ``reference`` on ONNX Runtime (both loaded from
    ``bundle_dir``), its batch drift, and the CPU it was measured on; for a classifier bundle also its task's
    figures (``task_gate``) on ``probe``'s texts (None: the probe set). ``passed`` is None until ``run_gate``
    judges them."""
    from clinbert_onnx.cpu import cpu_model, isa
    from clinbert_onnx.model import ClinicalBert

    ref = ClinicalBert.load(bundle_dir, device="cpu", variant=reference, verify=False)
    # The budget holds one probe text and its companions in a single padded batch.
    budget = (DRIFT_COMPANIONS + 1) * ref.max_length
    cand = ClinicalBert.load(
        bundle_dir,
        device=device,
        variant=variant,
        verify=False,
        token_budget=budget,
        max_batch=DRIFT_COMPANIONS + 1,
        engine=engine,
    )
    sentences = probe_sentences()
    cos = (ref.embed(sentences) * cand.embed(sentences)).sum(axis=1)
    drift = batch_drift(cand, sentences)
    quality = Quality(
        passed=None,
        reference=reference,
        device=cand.device,
        probe_sentences=len(sentences),
        embedding_cosine_mean=round(float(cos.mean()), 5),
        embedding_cosine_min=round(float(cos.min()), 5),
        batch_drift_max=drift.embedding_max,
        batch_cosine_min=drift.cosine_min,
        batch_drift_fill_mask_score_max=drift.fill_mask_score_max,
    )
    if ref.has_mlm_head:
        probes = masked_probes(sentences, ref.bundle.tokenizer.mask_token)
        ra = ref.fill_mask(probes, top_k=5)
        rb = cand.fill_mask(probes, top_k=5)
        top1 = [x[0]["token"] == y[0]["token"] for x, y in zip(ra, rb, strict=True)]
        top5 = [len({p["token"] for p in x} & {p["token"] for p in y}) / 5 for x, y in zip(ra, rb, strict=True)]
        quality = replace(
            quality,
            fill_mask_probes=len(probes),
            fill_mask_top1_agreement=round(float(np.mean(top1)), 4),
            fill_mask_top5_overlap=round(float(np.mean(top5)), 4),
        )
    if ref.bundle.manifest.head is not None:
        from .task_gate import measure_task, read_probe

        quality = replace(quality, **measure_task(ref, cand, read_probe(probe) if probe is not None else sentences))
    return replace(quality, engine=engine, cpu=cpu_model(), cpu_flags=tuple(isa()))


def judge(quality: Quality, thresholds: GateThresholds, batch_invariant: bool = True) -> list[str]:
    """The figures that missed their threshold, as readable strings (empty when the gate passes).

    Batch drift is judged only for recipes that claim batch invariance; the batch-dependent opt-ins
    (``int8-dynamic-tensor`` and its kin) report it, and their manifest says so."""
    floors = {
        "embedding_cosine_mean": thresholds.cosine_mean,
        "embedding_cosine_min": thresholds.cosine_min,
        "fill_mask_top1_agreement": thresholds.top1_agreement,
        "fill_mask_top5_overlap": thresholds.top5_overlap,
    }
    figures = quality.figures()
    missed = [f"{name} {figures[name]:.4f} < {floor}" for name, floor in floors.items() if figures.get(name, 1) < floor]
    if batch_invariant:
        drift, cosine = quality.batch_drift_max, quality.batch_cosine_min
        if drift is not None and drift > thresholds.batch_drift_max:
            missed.append(f"batch_drift_max {drift:.3g} > {thresholds.batch_drift_max}")
        if cosine is not None and cosine < thresholds.batch_cosine_min:
            missed.append(f"batch_cosine_min {cosine:.9f} < {thresholds.batch_cosine_min}")
    return missed


def gate_device(recipe: QuantRecipe) -> str:
    """Where to gate a variant: fp16 on CUDA when a CUDA provider is present, else on CPU (ONNX Runtime has CPU
    kernels for the fp16 graph, so the numerics are checked anywhere; GPU figures come from a GPU run)."""
    import onnxruntime as ort

    if recipe.precision == "fp16" and "CUDAExecutionProvider" in ort.get_available_providers():
        return "cuda"
    return "cpu"


def gate_engine(recipe: QuantRecipe) -> str:
    """The engine a variant ships for, and so is gated on: static INT8 on OpenVINO where ``openvino`` is
    installed (else on ONNX Runtime, which also runs it, and the manifest says which); the rest on ONNX Runtime."""
    from clinbert_onnx.engine_select import openvino_installed

    return OPENVINO if recipe.static and openvino_installed() else ONNXRUNTIME


def run_gate(
    bundle_dir: Path,
    variant: str,
    thresholds: GateThresholds,
    allow_degraded: bool,
    device: str = "cpu",
    batch_invariant: bool = True,
    engine: str = ONNXRUNTIME,
    probe: Path | None = None,
) -> Quality:
    """Measure and judge ``variant`` on ``engine``; raises QualityGateError on a miss unless ``allow_degraded``."""
    from .task_gate import TaskThresholds, judge_task

    quality = measure(bundle_dir, variant, device=device, engine=engine, probe=probe)
    missed = judge(quality, thresholds, batch_invariant)
    limits: dict[str, float] = asdict(thresholds)
    if quality.probe_texts is not None:  # a classifier bundle: its task's figures are judged too
        task_thresholds = TaskThresholds()
        missed += judge_task(quality.to_dict(), task_thresholds)
        limits.update(task_thresholds.as_dict())
    quality = replace(
        quality, batch_invariant=batch_invariant, thresholds=limits, passed=not missed, missed=tuple(missed)
    )
    if missed and not allow_degraded:
        raise QualityGateError(
            f"variant {variant} failed the accuracy gate against fp32: {'; '.join(missed)} "
            "(use another --recipe, or --allow-degraded to keep it anyway)"
        )
    return quality
