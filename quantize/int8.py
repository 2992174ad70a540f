"""INT8 dynamic quantization of a fused bundle graph with ONNX Runtime (onnx + onnxruntime; no torch)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from clinbert_onnx.errors import ExportError

from .recipes import QuantRecipe

DECODER_NODE = "mlm/decoder/MatMul"


def quantize_int8(fp32_path: Path, out_path: Path, recipe: QuantRecipe) -> Any:
    """Quantize ``fp32_path`` into ``out_path`` following ``recipe``; returns the quantized ModelProto."""
    import onnx

    if recipe.activations == "per-token":
        from .per_token import quantize_per_token

        absmax = _calibrate(fp32_path, recipe) if recipe.smoothing > 0 else {}
        if recipe.quantize_embeddings:
            model = _dynamic(fp32_path, out_path, recipe, ["EmbedLayerNormalization"])
        else:
            model = onnx.load(str(fp32_path))
        quantize_per_token(model, recipe.nodes_to_exclude, recipe.quantize_attention, absmax, recipe.smoothing)
    else:
        op_types = ["MatMul"]
        if recipe.quantize_attention:
            op_types.append("Attention")
        if recipe.quantize_embeddings:
            op_types.append("EmbedLayerNormalization")
        model = _dynamic(fp32_path, out_path, recipe, op_types)
        share_quantized_decoder(model, recipe.decoder)
    drop_dead_nodes(model)
    drop_unused_initializers(model)
    return model


def _calibrate(fp32_path: Path, recipe: QuantRecipe) -> dict[str, Any]:
    """Per-channel activation maxima of the FP32 graph on the shipped calibration sentences."""
    import onnx

    from .calibrate import activation_absmax, calibration_sentences
    from .per_token import smoothing_targets

    fp32 = onnx.load(str(fp32_path))
    targets = smoothing_targets(fp32, recipe.nodes_to_exclude)
    return activation_absmax(fp32, fp32_path.parent, targets, calibration_sentences())


def _dynamic(fp32_path: Path, out_path: Path, recipe: QuantRecipe, op_types: list[str]) -> Any:
    """ONNX Runtime's ``quantize_dynamic`` of ``op_types`` (activations: one uint8 scale per batch tensor)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=out_path.parent) as scratch:
        tmp = Path(scratch) / "q.onnx"
        quantize_dynamic(
            str(fp32_path),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=recipe.per_channel,
            op_types_to_quantize=op_types,
            nodes_to_exclude=list(recipe.nodes_to_exclude),
            # ORT 1.31 cannot infer the dtype of fused contrib-op weights without this default.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
        )
        return onnx.load(str(tmp))


def _producer(model: Any, name: str) -> Any:
    for node in model.graph.node:
        if name in node.output:
            return node
    return None


def share_quantized_decoder(model: Any, decoder: str = "dqmatmul") -> bool:
    """Point the tied MLM decoder at the uint8 word embeddings of QEmbedLayerNormalization.

    The FP32 decoder is ``Transpose(x) → MatMul(W [V,H], xᵀ) → Transpose`` (weight on the left, which
    ``quantize_dynamic`` leaves alone). Either way below, the file holds one 22 MB uint8 copy of the vocabulary
    matrix (read by the embedding layer and the decoder) instead of an extra 89 MB FP32 one:

    - ``"dqmatmul"``: ``DynamicQuantizeMatMul(x, Transpose(W_q))``. The Transpose of a constant is folded by
      ONNX Runtime at load, and the result prepacked and released: fill-mask at batch 1 costs ~1.02x an
      embedding, for one packed copy of the table in memory.
    - ``"matmulinteger"``: ``MatMulInteger(W_q, quant(xᵀ))``, rescaled; ONNX Runtime packs the left operand on
      every call (fill-mask ~1.15x an embedding at batch 1) and holds no extra memory.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    matmul = next((n for n in graph.node if n.name == DECODER_NODE), None)
    qemb = next((n for n in graph.node if n.op_type == "QEmbedLayerNormalization"), None)
    if matmul is None or qemb is None:
        return False
    if matmul.input[0] != qemb.input[2].removesuffix("_quantized"):
        return False  # decoder not tied to the embeddings: it stays FP32
    # QEmbedLayerNormalization inputs: 2 word_embedding_quant, 8 its scale, 13 its zero point.
    w_q, w_scale, w_zp = qemb.input[2], qemb.input[8], qemb.input[13]
    p = "mlm/decoder_q/"
    if decoder == "dqmatmul":
        transpose_in = next(n for n in graph.node if matmul.input[1] in n.output)
        transpose_out = next(n for n in graph.node if matmul.output[0] in n.input)
        bias_add = next(n for n in graph.node if transpose_out.output[0] in n.input)
        x = transpose_in.input[0]
        replaced = [transpose_in, matmul, transpose_out, bias_add]
        bias = next(i for i in bias_add.input if i != transpose_out.output[0])
        nodes = [
            # A constant Transpose: ONNX Runtime folds it at load, prepacks the result and frees it, so the
            # file keeps one uint8 table and the session one packed [H,V] copy.
            helper.make_node("Transpose", [w_q], [p + "w_qT"], name=p + "transpose_w", perm=[1, 0]),
            helper.make_node(
                "DynamicQuantizeMatMul",
                [x, p + "w_qT", w_scale, w_zp, bias],
                [bias_add.output[0]],
                name=p + "DynamicQuantizeMatMul",
                domain="com.microsoft",
            ),
        ]
    elif decoder == "matmulinteger":
        x, y = matmul.input[1], matmul.output[0]
        replaced = [matmul]
        nodes = [
            helper.make_node("DynamicQuantizeLinear", [x], [p + "x_q", p + "x_scale", p + "x_zp"], name=p + "quant"),
            helper.make_node(
                "MatMulInteger", [w_q, p + "x_q", w_zp, p + "x_zp"], [p + "acc"], name=p + "MatMulInteger"
            ),
            helper.make_node("Cast", [p + "acc"], [p + "acc_f"], name=p + "cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [w_scale, p + "x_scale"], [p + "scale"], name=p + "scale"),
            helper.make_node("Mul", [p + "acc_f", p + "scale"], [y], name=p + "rescale"),
        ]
    else:
        raise ExportError(f"unknown decoder kind {decoder!r}")
    index = list(graph.node).index(replaced[0])
    for node in replaced:
        graph.node.remove(node)
    for offset, node in enumerate(nodes):
        graph.node.insert(index + offset, node)
    return True


def drop_dead_nodes(model: Any) -> list[str]:
    """Remove nodes none of whose outputs is used: ONNX Runtime runs them anyway.

    After ``share_quantized_decoder``, ``quantize_dynamic``'s DequantizeLinear of the whole word-embedding table
    (made for the FP32 decoder) has no consumer left; left in, it costs ~30 ms per call on 2 cores.
    """
    graph = model.graph
    outputs = {o.name for o in graph.output}
    dropped: list[str] = []
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return dropped
        for node in dead:
            dropped.append(node.name)
            graph.node.remove(node)


def drop_unused_initializers(model: Any) -> None:
    graph = model.graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)


def check_quantized(model: Any, recipe: QuantRecipe) -> dict[str, int]:
    """Facts of the quantized graph; raises if quantization silently did nothing."""
    from collections import Counter

    counts = Counter(n.op_type for n in model.graph.node)
    quantized = sum(counts.get(op, 0) for op in ("DynamicQuantizeMatMul", "MatMulInteger", "QAttention", "QGemm"))
    if quantized == 0:
        raise ExportError(f"recipe {recipe.name} quantized no MatMul: the graph was not recognised")
    return {
        k: v
        for k, v in counts.items()
        if k
        in (
            "DynamicQuantizeMatMul",
            "MatMulInteger",
            "QGemm",
            "QAttention",
            "Attention",
            "MultiHeadAttention",
            "QEmbedLayerNormalization",
            "EmbedLayerNormalization",
            "MatMul",
            "SkipLayerNormalization",
            "BiasGelu",
            "FastGelu",
        )
    }
