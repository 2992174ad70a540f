"""Issue 3's runtime targets on a quiet machine: cold start, RSS, fill-mask vs embed batch-1 latency.

    python benchmarks/runtime_targets.py models/bio-clinicalbert-shaped default
    python benchmarks/runtime_targets.py models/bio-clinicalbert-shaped noprepack   # lever: no weight prepacking

Cold start = interpreter up → imports → load (checksums verified) → first embedding; run each in a fresh process.
"""

import resource
import sys
import time

t0 = time.perf_counter()
import numpy as np
from clinbert_onnx import ClinicalBert

mode = sys.argv[2]
m = ClinicalBert.load(sys.argv[1], device="cpu")
if mode == "noprepack":
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.add_session_config_entry("session.disable_prepacking", "1")
    so.enable_mem_pattern = False
    m.session = ort.InferenceSession(str(m.bundle.path / "model.int8.onnx"), so, providers=["CPUExecutionProvider"])
m.embed("The patient was admitted with chest pain.")
t1 = time.perf_counter()
rss_cold = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
words = ("patient admitted with chest pain and shortness of breath " * 20).split()[:120]
text = " ".join(words)
mtext = " ".join(words[:60] + ["[MASK]"] + words[61:])
for _ in range(3):
    m.embed(text)
    m.fill_mask(mtext)
te = []
tf = []
for _ in range(15):
    a = time.perf_counter()
    m.embed(text)
    te.append(time.perf_counter() - a)
    a = time.perf_counter()
    m.fill_mask(mtext)
    tf.append(time.perf_counter() - a)
ids = m.tokenize([text])[0]
b32 = [text] * 32
a = time.perf_counter()
m.embed(b32)
m.embed(b32)
b32s = 64 / (time.perf_counter() - a)
print(
    f"{mode}: cold {t1 - t0:.2f}s rss_cold {rss_cold:.0f}MB | b1 embed {np.median(te) * 1e3:.1f}ms fill-mask {np.median(tf) * 1e3:.1f}ms (x{np.median(tf) / np.median(te):.2f}) tokens {len(ids) + 2} | b32 {b32s:.1f} seq/s | peak rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MB"
)
