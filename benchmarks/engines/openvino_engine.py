"""OpenVINO INT8: the transformers model converted with ``ov.convert_model``, quantized with NNCF (static,
``ModelType.TRANSFORMER``, calibrated on the probe sentences), saved without FP16 compression, and compiled
with ``INFERENCE_PRECISION_HINT=f32`` (otherwise OpenVINO runs the non-quantized parts in BF16 on AMX CPUs).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .base import ModelSpec, Tokens, embed_in_order, folder_mb, top_k

CALIBRATION = 120


def folder(cache: Path, spec: ModelSpec, task: str) -> Path:
    return cache / spec.name / f"openvino-{task}"


def _calibration(spec: ModelSpec, mlm: bool) -> list[dict[str, np.ndarray]]:
    from clinbert_onnx.bench import masked_texts, probe_texts

    tokens = Tokens(spec.bundle)
    texts = probe_texts()[:CALIBRATION]
    if mlm:
        texts = masked_texts(texts, "[MASK]")
    items = []
    for text in texts:
        ids, mask = tokens.batch([text])
        items.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return items


def build(spec: ModelSpec, cache: Path) -> None:
    tasks = ["feature-extraction", "fill-mask"] if spec.has_mlm else ["feature-extraction"]
    if all((folder(cache, spec, t) / "model.xml").is_file() for t in tasks):
        return
    import nncf
    import openvino as ov
    import torch
    from transformers import BertForMaskedLM, BertModel

    for task in tasks:
        out = folder(cache, spec, task)
        if (out / "model.xml").is_file():
            continue
        mlm = task == "fill-mask"
        model = (
            BertForMaskedLM.from_pretrained(spec.checkpoint)
            if mlm
            else BertModel.from_pretrained(spec.checkpoint, add_pooling_layer=False)
        ).eval()
        calib = _calibration(spec, mlm)
        example = {k: torch.from_numpy(v) for k, v in calib[0].items()}
        with torch.inference_mode():
            ov_model = ov.convert_model(model, example_input=example)
        quantized = nncf.quantize(
            ov_model, nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib)
        )
        scratch = out.with_name(out.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        ov.save_model(quantized, scratch / "model.xml", compress_to_fp16=False)
        shutil.rmtree(out, ignore_errors=True)
        scratch.rename(out)


class OpenVinoEngine:
    def __init__(self, name: str, spec: ModelSpec, cache: Path, threads: int) -> None:
        import openvino as ov

        self.name = name
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        self.encoder = core.compile_model(folder(cache, spec, "feature-extraction") / "model.xml", "CPU", config)
        self.mlm: Any = None
        if spec.has_mlm:
            self.mlm = core.compile_model(folder(cache, spec, "fill-mask") / "model.xml", "CPU", config)
        self.tokens = Tokens(spec.bundle)
        self.spec = spec
        self.cache = cache

    @staticmethod
    def _inputs(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(self.encoder(self._inputs(ids, mask))[0])

    def mask_top(self, ids: np.ndarray, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
        if self.mlm is None:
            raise NotImplementedError("no masked-LM head")
        logits = np.asarray(self.mlm(self._inputs(ids, mask))[0])
        return top_k(logits[rows, cols], k)

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed_in_order(self, self.tokens, texts)

    def size_mb(self) -> float:
        return folder_mb(folder(self.cache, self.spec, "feature-extraction"))


def load(name: str, spec: ModelSpec, cache: Path, threads: int) -> OpenVinoEngine:
    return OpenVinoEngine(name, spec, cache, threads)
