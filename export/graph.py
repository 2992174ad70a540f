"""ONNX graph work after Optimum's export: fusion, the gathered masked-LM head, fused-op counts.

The masked-LM head is appended to the fused encoder so that it runs on the [MASK] positions only:

    last_hidden_state [B,S,H] -> Reshape [B*S,H] -> Gather(mask_positions [M]) -> dense -> gelu -> LayerNorm
        -> MatMul(word-embedding matrix [V,H], x^T) (tied decoder, no transposed copy) -> ^T + bias -> mask_logits [M,V]

``mask_positions`` are flat indices ``row * padded_length + position``. Embedding calls pass an empty
``mask_positions`` and the head costs nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from clinbert_onnx.errors import ExportError
from clinbert_onnx.schema import ATTENTION_MASK
from clinbert_onnx.schema import LAST_HIDDEN_STATE as HIDDEN
from clinbert_onnx.schema import MASK_LOGITS as LOGITS
from clinbert_onnx.schema import MASK_POSITIONS as MASK_INPUT
from clinbert_onnx.schema import MEAN_POOLED as POOLED

DECODER_NODE = "mlm/decoder/MatMul"
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu")


@dataclass(frozen=True)
class MlmHead:
    dense_weight: np.ndarray  # [H, H] as torch stores it (out, in)
    dense_bias: np.ndarray
    activation: str
    ln_weight: np.ndarray
    ln_bias: np.ndarray
    ln_eps: float
    decoder_weight: np.ndarray  # [V, H]
    decoder_bias: np.ndarray  # [V]


def head_from_torch(model: Any) -> MlmHead:
    pred = model.cls.predictions
    act = model.config.hidden_act
    if not isinstance(act, str):
        raise ExportError("the checkpoint's hidden_act is not a named activation")
    return MlmHead(
        dense_weight=pred.transform.dense.weight.detach().numpy().astype(np.float32),
        dense_bias=pred.transform.dense.bias.detach().numpy().astype(np.float32),
        activation=act,
        ln_weight=pred.transform.LayerNorm.weight.detach().numpy().astype(np.float32),
        ln_bias=pred.transform.LayerNorm.bias.detach().numpy().astype(np.float32),
        ln_eps=float(pred.transform.LayerNorm.eps),
        decoder_weight=pred.decoder.weight.detach().numpy().astype(np.float32),
        decoder_bias=pred.decoder.bias.detach().numpy().astype(np.float32)
        if pred.decoder.bias is not None
        else pred.bias.detach().numpy().astype(np.float32),
    )


def fuse(raw_path: Path, num_heads: int, hidden_size: int) -> Any:
    """Run ONNX Runtime's transformer optimizer (offline, hardware-independent, opt_level 0)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_gelu_approximation = False  # keep exact erf GELU (BiasGelu), as the checkpoint computes
    optimized = optimize_model(
        str(raw_path),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
        opt_level=0,
        use_gpu=False,
    )
    return optimized.model


def op_counts(model: Any) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node))


def fused_counts(model: Any) -> dict[str, int]:
    counts = op_counts(model)
    return {
        op: counts.get(op, 0)
        for op in (
            *FUSED_OPS,
            "MatMul",
            "QAttention",
            "MatMulInteger",
            "DynamicQuantizeMatMul",
            "QEmbedLayerNormalization",
        )
        if counts.get(op)
    }


def expected_encoder_counts(num_layers: int) -> dict[str, int]:
    return {"EmbedLayerNormalization": 1, "Attention": num_layers, "SkipLayerNormalization": 2 * num_layers}


def word_embedding_name(model: Any) -> str:
    for node in model.graph.node:
        if node.op_type == "EmbedLayerNormalization":
            return str(node.input[2])
    raise ExportError("the fused graph has no EmbedLayerNormalization: fusion failed")


def add_mean_pooling(model: Any) -> None:
    """Add ``mean_pooled [B,H]``: the attention-masked mean of ``last_hidden_state``, computed in the graph so a
    GPU run copies back [B,H] instead of [B,S,H]. Nodes are named ``pool/*`` (kept FP32 in the fp16 variant)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([2], dtype=np.int64), "pool.axis2"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "pool.axis1"),
            numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "pool.eps"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Cast", [ATTENTION_MASK], ["pool.mask_f"], name="pool/cast", to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["pool.mask_f", "pool.axis2"], ["pool.mask3"], name="pool/unsqueeze"),
            helper.make_node("Mul", [HIDDEN, "pool.mask3"], ["pool.masked"], name="pool/mul"),
            helper.make_node("ReduceSum", ["pool.masked", "pool.axis1"], ["pool.sum"], name="pool/sum", keepdims=0),
            helper.make_node("ReduceSum", ["pool.mask3", "pool.axis1"], ["pool.count"], name="pool/count", keepdims=0),
            helper.make_node("Max", ["pool.count", "pool.eps"], ["pool.count_safe"], name="pool/clamp"),
            helper.make_node("Div", ["pool.sum", "pool.count_safe"], [POOLED], name="pool/div"),
        ]
    )
    hidden_size = next((o.type.tensor_type.shape.dim[2] for o in graph.output if o.name == HIDDEN), None)
    dims: list[Any] = [
        "batch_size",
        hidden_size.dim_value if hidden_size is not None and hidden_size.dim_value else "hidden",
    ]
    graph.output.append(helper.make_tensor_value_info(POOLED, TensorProto.FLOAT, dims))


def add_mlm_head(model: Any, head: MlmHead, hidden_size: int) -> bool:
    """Append the gathered MLM head. Returns True if the decoder shares the word-embedding initializer."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    emb_name = word_embedding_name(model)
    emb = numpy_helper.to_array(inits[emb_name])
    tied = emb.shape == head.decoder_weight.shape and np.array_equal(emb, head.decoder_weight)
    decoder_name = emb_name if tied else "mlm.decoder.weight"
    new_inits = [
        numpy_helper.from_array(np.array([-1, hidden_size], dtype=np.int64), "mlm.flat_shape"),
        numpy_helper.from_array(np.ascontiguousarray(head.dense_weight.T), "mlm.dense.weight"),
        numpy_helper.from_array(head.dense_bias, "mlm.dense.bias"),
        numpy_helper.from_array(head.ln_weight, "mlm.ln.weight"),
        numpy_helper.from_array(head.ln_bias, "mlm.ln.bias"),
        numpy_helper.from_array(head.decoder_bias, "mlm.decoder.bias"),
    ]
    if not tied:
        new_inits.append(numpy_helper.from_array(head.decoder_weight, decoder_name))
    nodes = [
        helper.make_node("Reshape", [HIDDEN, "mlm.flat_shape"], ["mlm.flat"], name="mlm/flatten"),
        helper.make_node("Gather", ["mlm.flat", MASK_INPUT], ["mlm.gathered"], name="mlm/gather", axis=0),
        helper.make_node("MatMul", ["mlm.gathered", "mlm.dense.weight"], ["mlm.dense"], name="mlm/dense/MatMul"),
    ]
    act = head.activation
    if act == "gelu":
        nodes.append(
            helper.make_node(
                "BiasGelu",
                ["mlm.dense", "mlm.dense.bias"],
                ["mlm.act"],
                name="mlm/BiasGelu",
                domain="com.microsoft",
            )
        )
    elif act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        nodes.append(
            helper.make_node(
                "FastGelu",
                ["mlm.dense", "mlm.dense.bias"],
                ["mlm.act"],
                name="mlm/FastGelu",
                domain="com.microsoft",
            )
        )
    elif act == "relu":
        nodes += [
            helper.make_node("Add", ["mlm.dense", "mlm.dense.bias"], ["mlm.biased"], name="mlm/dense/Add"),
            helper.make_node("Relu", ["mlm.biased"], ["mlm.act"], name="mlm/Relu"),
        ]
    else:
        raise ExportError(f"unsupported MLM head activation {act!r}")
    nodes += [
        helper.make_node(
            "LayerNormalization",
            ["mlm.act", "mlm.ln.weight", "mlm.ln.bias"],
            ["mlm.normed"],
            name="mlm/LayerNorm",
            axis=-1,
            epsilon=head.ln_eps,
        ),
        # Decoder as W [V,H] x normed^T [H,M]: the weight is the left operand, so the tied embedding matrix is
        # used as stored (no transposed 89 MB copy) and int8 can later point it at the uint8 embeddings.
        helper.make_node("Transpose", ["mlm.normed"], ["mlm.normedT"], name="mlm/decoder/transpose_in", perm=[1, 0]),
        helper.make_node("MatMul", [decoder_name, "mlm.normedT"], ["mlm.logitsT"], name=DECODER_NODE),
        helper.make_node("Transpose", ["mlm.logitsT"], ["mlm.logits"], name="mlm/decoder/transpose_out", perm=[1, 0]),
        helper.make_node("Add", ["mlm.logits", "mlm.decoder.bias"], [LOGITS], name="mlm/decoder/bias"),
    ]
    graph.initializer.extend(new_inits)
    graph.node.extend(nodes)
    graph.input.append(helper.make_tensor_value_info(MASK_INPUT, TensorProto.INT64, ["num_masks"]))
    graph.output.append(helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["num_masks", emb.shape[0]]))
    if not any(o.name == HIDDEN for o in graph.output):
        raise ExportError(f"the exported graph has no '{HIDDEN}' output")
    return tied
