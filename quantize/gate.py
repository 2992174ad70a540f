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


def measure(bundle_dir: Path, variant: str, reference: str = "fp32", device: str = "cpu") -> dict[str, Any]:
    """Agreement figures of ``variant`` with ``reference`` (both loaded from ``bundle_dir``)."""
    from clinbert_onnx.model import ClinicalBert

    ref = ClinicalBert.load(bundle_dir, device="cpu", variant=reference, verify=False)
    cand = ClinicalBert.load(bundle_dir, device=device, variant=variant, verify=False)
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
    return report


def judge(report: dict[str, Any], thresholds: GateThresholds) -> list[str]:
    """The figures that missed their threshold, as readable strings (empty when the gate passes)."""
    checks = [
        ("embedding_cosine_mean", thresholds.cosine_mean),
        ("embedding_cosine_min", thresholds.cosine_min),
        ("fill_mask_top1_agreement", thresholds.top1_agreement),
        ("fill_mask_top5_overlap", thresholds.top5_overlap),
    ]
    return [f"{name} {report[name]:.4f} < {limit}" for name, limit in checks if name in report and report[name] < limit]


def gate_device(recipe: QuantRecipe) -> str:
    """Where to gate a variant: fp16 on CUDA when a CUDA provider is present, else on CPU (ONNX Runtime has CPU
    kernels for the fp16 graph, so the numerics are checked anywhere; GPU figures come from a GPU run)."""
    import onnxruntime as ort

    if recipe.precision == "fp16" and "CUDAExecutionProvider" in ort.get_available_providers():
        return "cuda"
    return "cpu"


def run_gate(
    bundle_dir: Path, variant: str, thresholds: GateThresholds, allow_degraded: bool, device: str = "cpu"
) -> dict[str, Any]:
    report = measure(bundle_dir, variant, device=device)
    missed = judge(report, thresholds)
    report["thresholds"] = asdict(thresholds)
    report["passed"] = not missed
    report["missed"] = missed
    if missed and not allow_degraded:
        raise QualityGateError(
            f"variant {variant} failed the accuracy gate against fp32: {'; '.join(missed)} "
            "(use another --recipe, or --allow-degraded to keep it anyway)"
        )
    return report
