"""The Optimum default recipe: ORTModel export → ORTOptimizer O2 → ORTQuantizer avx512_vnni dynamic INT8.

Fill-mask uses ORTModelForMaskedLM (full logits [B, S, V], as ``pipeline("fill-mask")`` computes them).

Deviation, and the only one: with onnxruntime 1.31 the recipe fails as published ("Unable to find data type
for weight_name=…" on the O2-fused graph), because ORTQuantizer does not pass ONNX Runtime's
``DefaultTensorType`` option. ``_patch_quantizer`` adds ``DefaultTensorType=FLOAT``; nothing else changes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .base import ModelSpec, Tokens, embed_in_order, folder_mb, top_k

QUANTIZED = "model_optimized_quantized.onnx"
TASKS = {"feature-extraction": "ORTModelForFeatureExtraction", "fill-mask": "ORTModelForMaskedLM"}


def folder(cache: Path, spec: ModelSpec, task: str) -> Path:
    return cache / spec.name / f"optimum-{task}"


def _patch_quantizer() -> None:
    import onnx
    import optimum.onnxruntime.quantization as oq
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer

    class Quantizer(ONNXQuantizer):
        def __init__(self, *args: Any, **kw: Any) -> None:
            kw["extra_options"] = {**kw.get("extra_options", {}), "DefaultTensorType": onnx.TensorProto.FLOAT}
            super().__init__(*args, **kw)

    oq.ONNXQuantizer = Quantizer


def build(spec: ModelSpec, cache: Path) -> None:
    tasks = [t for t in TASKS if spec.has_mlm or t != "fill-mask"]
    if all((folder(cache, spec, t) / QUANTIZED).is_file() for t in tasks):
        return
    import optimum.onnxruntime as ort_models
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    for task, cls_name in TASKS.items():
        if task == "fill-mask" and not spec.has_mlm:
            continue
        out = folder(cache, spec, task)
        if (out / QUANTIZED).is_file():
            continue
        scratch = out.with_name(out.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        model = getattr(ort_models, cls_name).from_pretrained(spec.checkpoint, export=True)
        optimizer = ORTOptimizer.from_pretrained(model)
        optimizer.optimize(save_dir=scratch / "o2", optimization_config=AutoOptimizationConfig.O2())
        _patch_quantizer()
        quantizer = ORTQuantizer.from_pretrained(scratch / "o2", file_name="model_optimized.onnx")
        quantizer.quantize(
            save_dir=scratch / "q", quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False)
        )
        shutil.rmtree(out, ignore_errors=True)
        (scratch / "q").rename(out)
        shutil.rmtree(scratch, ignore_errors=True)


class OptimumEngine:
    def __init__(self, name: str, spec: ModelSpec, cache: Path, threads: int) -> None:
        import onnxruntime as ort
        import optimum.onnxruntime as ort_models

        self.name = name
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.encoder = ort_models.ORTModelForFeatureExtraction.from_pretrained(
            folder(cache, spec, "feature-extraction"), file_name=QUANTIZED, session_options=opts
        )
        self.mlm: Any = None
        if spec.has_mlm:
            self.mlm = ort_models.ORTModelForMaskedLM.from_pretrained(
                folder(cache, spec, "fill-mask"), file_name=QUANTIZED, session_options=opts
            )
        self.tokens = Tokens(spec.bundle)
        self.spec = spec
        self.cache = cache

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids))
        return np.asarray(out.last_hidden_state)

    def mask_top(self, ids: np.ndarray, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
        if self.mlm is None:
            raise NotImplementedError("no masked-LM head")
        logits = self.mlm(input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids)).logits
        return top_k(np.asarray(logits)[rows, cols], k)

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed_in_order(self, self.tokens, texts)

    def size_mb(self) -> float:
        return folder_mb(folder(self.cache, self.spec, "feature-extraction") / QUANTIZED)

    def mlm_size_mb(self) -> float | None:
        return folder_mb(folder(self.cache, self.spec, "fill-mask") / QUANTIZED) if self.spec.has_mlm else None


def load(name: str, spec: ModelSpec, cache: Path, threads: int) -> OptimumEngine:
    return OptimumEngine(name, spec, cache, threads)
