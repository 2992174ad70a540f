"""Lever: ONNX Runtime's OpenVINO execution provider, to reach AMX while keeping the ONNX Runtime API.

onnxruntime-openvino replaces the onnxruntime wheel (same module, older version), so it lives in its own
virtual environment:

    python -m venv /tmp/ovep && /tmp/ovep/bin/pip install onnxruntime-openvino==1.24.1 numpy
    python benchmarks/ovep.py build --bundle BUNDLE --out bench_out/cache/ovep   # project venv: QDQ INT8 model
    /tmp/ovep/bin/python benchmarks/ovep.py time --bundle BUNDLE --out bench_out/cache/ovep

``build`` exports the plain (unfused) FP32 graph and quantizes it statically to QDQ INT8 (per-channel weights,
calibrated on the probe sentences): the form OpenVINO turns into INT8 kernels. ``time`` compares, at batch 1
and batch 32 × 128 tokens: our INT8 and FP32 files on the CPU and OpenVINO providers, and the QDQ model on both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from clinbert_onnx.schema import ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, MASK_POSITIONS, TOKEN_TYPE_IDS


def build(bundle: Path, out: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from clinbert_onnx.bundle import open_bundle
    from engines.base import Tokens
    from measure import sentences
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from optimum.exporters.onnx import main_export

    src = open_bundle(bundle).manifest.source
    source = src.local_path or src.model_id
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "raw"
    if not (raw / "model.onnx").is_file():
        main_export(source, output=raw, task="feature-extraction", opset=18, do_validation=False)
    tokens = Tokens(bundle)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(tokens.batch([s]) for s in sentences()[:64])

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            if item is None:
                return None
            ids, mask = item
            return {INPUT_IDS: ids, ATTENTION_MASK: mask, TOKEN_TYPE_IDS: np.zeros_like(ids)}

    quantize_static(
        str(raw / "model.onnx"),
        str(out / "qdq.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"ActivationSymmetric": False},
    )


def time_all(bundle: Path, out: Path, rounds: int) -> None:
    import onnxruntime as ort

    files = {
        "ours-int8": bundle / "model.int8.onnx",
        "ours-fp32": bundle / "model.fp32.onnx",
        "qdq-int8": out / "qdq.onnx",
    }
    providers = {
        "CPU": ["CPUExecutionProvider"],
        "OpenVINO": [
            ("OpenVINOExecutionProvider", {"device_type": "CPU", "precision": "FP32", "num_of_threads": "2"}),
            "CPUExecutionProvider",
        ],
    }
    sessions = {}
    for fname, path in files.items():
        for pname, prov in providers.items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 2
            opts.log_severity_level = 3
            try:
                sessions[f"{fname} on {pname}"] = ort.InferenceSession(str(path), opts, providers=prov)
            except Exception as exc:  # report and go on: this is an experiment
                print(f"{fname} on {pname}: cannot load ({str(exc).splitlines()[0][:150]})")
    results: dict[str, dict[str, float]] = {n: {} for n in sessions}
    for batch, reps in ((1, 5), (32, 1)):
        ids = np.full((batch, 128), 2000, dtype=np.int64)
        ids[:, 0], ids[:, -1] = 2, 3
        feeds = {}
        for name, s in sessions.items():
            names = {i.name for i in s.get_inputs()}
            f: dict[str, np.ndarray] = {
                INPUT_IDS: ids,
                ATTENTION_MASK: np.ones_like(ids),
                TOKEN_TYPE_IDS: np.zeros_like(ids),
            }
            if MASK_POSITIONS in names:
                f[MASK_POSITIONS] = np.zeros(0, dtype=np.int64)
            feeds[name] = {k: v for k, v in f.items() if k in names}
            s.run(None, feeds[name])
        samples: dict[str, list[float]] = {n: [] for n in sessions}
        for _ in range(rounds):
            for name, s in sessions.items():
                for _ in range(reps):
                    t0 = time.perf_counter()
                    s.run([LAST_HIDDEN_STATE], feeds[name])
                    samples[name].append(time.perf_counter() - t0)
        for name, v in samples.items():
            med = statistics.median(v)
            results[name]["b1_128_ms" if batch == 1 else "b32_128_seq_per_s"] = round(
                med * 1e3 if batch == 1 else batch / med, 2
            )
    print(f"onnxruntime {ort.__version__}")
    for name, r in results.items():
        print(f"{name:28s} b1x128 {r['b1_128_ms']:8.1f} ms   b32x128 {r['b32_128_seq_per_s']:6.1f} seq/s")
    (out / "ovep.json").write_text(json.dumps({"onnxruntime": ort.__version__, "results": results}, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("build", "time"))
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("bench_out/cache/ovep"))
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if args.action == "build":
        build(args.bundle, args.out)
    else:
        time_all(args.bundle, args.out, args.rounds)


if __name__ == "__main__":
    main()
