"""Static INT8 (variant ``int8-static``): a QDQ graph made by NNCF's ONNX backend, for OpenVINO's INT8 kernels.

From the bundle's fused FP32 graph, keeping its outputs (``last_hidden_state``, ``mean_pooled``, the gathered
``mask_logits``):

1. the fused ``Attention`` nodes are unfused into MatMuls (``unfuse.py``), so that the Q/K/V projections and
   both attention products are quantized too;
2. ONNX Runtime's symbolic shape inference types every tensor (NNCF cannot connect the contrib ops' edges
   without it);
3. ``nncf.quantize`` with ``ModelType.TRANSFORMER`` (SmoothQuant at the recipe's alpha, weights int8 symmetric
   per channel, activations with one fixed scale per tensor) calibrated on the shipped calibration sentences
   one at a time (no padding in the statistics), disjoint from the gate's probe set. Embedding activations are not
   quantized (EmbedLayerNormalization is not a quantizable op) and the MLM decoder (vocabulary projection) is
   left FP32 via the recipe's ``nodes_to_exclude``;
4. then (``build_variant``) the word-embedding table is stored int8 per row, weight-only (``embed_table.py``),
   where no tied MLM decoder reads it: 176 → 109 MB and 489 → 405 MB peak RSS on a BERT-base token classifier.

Fixed scales make every text's result independent of its batch-mates. NNCF is an export-side dependency
(``pip install "clinbert-onnx[static]"``); the runtime reads the result as an ordinary ONNX file.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from clinbert_onnx.errors import ExportError, require
from clinbert_onnx.schema import CONFIG_FILE

from .recipes import QuantRecipe

#: Calibration sentences are cut at this many tokens (or the model's positions, if fewer).
CALIBRATION_TOKENS = 128
#: The ops counted in the manifest's ``fused_ops`` for a static variant.
COUNTED = (
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMul",
    "SkipLayerNormalization",
    "BiasGelu",
    "Attention",
    "EmbedLayerNormalization",
    "LayerNormalization",
)


def quantizer_version() -> str:
    from importlib import metadata

    try:
        return f"nncf {metadata.version('nncf')}"
    except metadata.PackageNotFoundError:
        return "nncf (not installed)"


def quantize_static(fp32_path: Path, recipe: QuantRecipe) -> Any:
    """The static INT8 ModelProto of the fused FP32 graph at ``fp32_path`` (its weights loaded)."""
    require("nncf", "static")
    import contextlib
    import io
    import logging

    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from .calibrate import calibration_feeds, calibration_sentences
    from .unfuse import unfuse_attention

    model = onnx.load(str(fp32_path))
    if recipe.quantize_attention:
        unfuse_attention(model)
    model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    inputs = {i.name for i in model.graph.input}
    config = json.loads((fp32_path.parent / CONFIG_FILE).read_text(encoding="utf-8"))
    positions = int(config.get("max_position_embeddings", CALIBRATION_TOKENS))
    feeds = calibration_feeds(
        fp32_path.parent, inputs, calibration_sentences(), batch=1, max_length=min(CALIBRATION_TOKENS, positions)
    )
    present = {n.name for n in model.graph.node}
    ignored = nncf.IgnoredScope(names=[n for n in recipe.nodes_to_exclude if n in present])
    advanced = AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=recipe.smoothing if recipe.smoothing > 0 else -1),
    )
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)  # its notes; its progress bars (on stdout) go to the scratch buffer
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(
                model,
                nncf.Dataset(feeds),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(feeds),
                ignored_scope=ignored,
                advanced_parameters=advanced,
            )
    finally:
        nncf_log.setLevel(level)
    del quantized.graph.value_info[:]  # shape inference's symbolic dims: not part of the bundle's contract
    return quantized


def check_static(model: Any, recipe: QuantRecipe) -> dict[str, int]:
    """Facts of the static graph; raises if NNCF quantized nothing (the graph was not recognised)."""
    counts = Counter(n.op_type for n in model.graph.node)
    if counts.get("QuantizeLinear", 0) == 0:
        raise ExportError(f"recipe {recipe.name}: NNCF inserted no quantizer: the graph was not recognised")
    return {k: counts[k] for k in COUNTED if counts.get(k)}
