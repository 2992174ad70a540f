"""Issue 3's runtime targets on a quiet machine: cold start, RSS, fill-mask vs embed batch-1 latency.

    python benchmarks/runtime_targets.py models/bio-clinicalbert-shaped default
    python benchmarks/runtime_targets.py models/bio-clinicalbert-shaped noprepack   # lever: no weight prepacking

Cold start = interpreter up → imports → load (checksums verified) → first embedding. Run each in a fresh process.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time

STARTED = time.perf_counter()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(bundle: str, mode: str) -> None:
    from clinbert_onnx import ClinicalBert

    model = ClinicalBert.load(bundle, device="cpu")
    if mode == "noprepack":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.add_session_config_entry("session.disable_prepacking", "1")
        opts.enable_mem_pattern = False
        path = str(model.bundle.path / model.bundle.variants[model.variant].file)
        model.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    model.embed("The patient was admitted with chest pain.")
    cold = time.perf_counter() - STARTED
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
    throughput = 64 / (time.perf_counter() - t)
    e, m = statistics.median(embed_s), statistics.median(mask_s)
    print(
        f"{mode}: cold start {cold:.2f} s, RSS at first result {rss_cold:.0f} MB | b1 embed {e * 1e3:.1f} ms, "
        f"fill-mask {m * 1e3:.1f} ms ({m / e:.2f}x) at {len(model.tokenize([text])[0]) + 2} tokens | "
        f"32x128: {throughput:.1f} seq/s | peak RSS {_peak_mb():.0f} MB"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "default")
