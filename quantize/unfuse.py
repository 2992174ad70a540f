"""Undo ONNX Runtime's ``Attention`` fusion in a copy of the fused FP32 graph, for static INT8.

The fused ``com.microsoft.Attention`` node hides its Q, K and V projections (one packed ``[H, 3H]`` weight) and
both attention products inside one op: NNCF does not quantize it and OpenVINO then runs them in FP32. Measured
on MiniLM (2 cores, interleaved, OpenVINO 2026.4): fused graph quantized by NNCF 30.7 seq/s at b32×128, this
unfused graph 52.1 seq/s (b1×128: 61.5 vs 25.3 ms). Each ``Attention`` becomes what the transformers export
spells (OpenVINO's attention fusion knows it):

    Q, K, V = x·Wq + bq, x·Wk + bk, x·Wv + bv          (three MatMuls: per-channel int8 weights)
    softmax(Q·Kᵀ / √d + mask_bias) · V                 (both products quantized by NNCF's transformer scheme)

``mask_bias`` is ``(1 - attention_mask) · mask_filter_value`` as ``[B, 1, 1, S]``, computed once from the graph
input (the fused op reads the same mask as per-row lengths; the runtime pads on the right, so they agree).
The other contrib ops (EmbedLayerNormalization, SkipLayerNormalization, BiasGelu) are read by OpenVINO and
ONNX Runtime as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from clinbert_onnx.errors import ExportError
from clinbert_onnx.schema import ATTENTION_MASK

#: ONNX Runtime's default for ``mask_filter_value`` when the node does not set it.
DEFAULT_MASK_FILL = -10000.0
PREFIX = "static/"


def _attribute(node: Any, name: str) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def _mask_bias(fill: float) -> tuple[list[Any], list[Any], str]:
    from onnx import TensorProto, helper, numpy_helper

    p = PREFIX + "mask/"
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), p + "one"),
        numpy_helper.from_array(np.array(fill, np.float32), p + "fill"),
        numpy_helper.from_array(np.array([1, 2], np.int64), p + "axes"),
    ]
    nodes = [
        helper.make_node("Cast", [ATTENTION_MASK], [p + "mask_f"], name=p + "cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", [p + "one", p + "mask_f"], [p + "inverted"], name=p + "invert"),
        helper.make_node("Mul", [p + "inverted", p + "fill"], [p + "bias2d"], name=p + "fill"),
        helper.make_node("Unsqueeze", [p + "bias2d", p + "axes"], [p + "bias"], name=p + "unsqueeze"),
    ]
    return inits, nodes, p + "bias"


def _attention(node: Any, index: int, weight: np.ndarray, bias: np.ndarray, mask_bias: str) -> tuple[list, list]:
    from onnx import helper, numpy_helper

    heads = int(_attribute(node, "num_heads"))
    sizes = _attribute(node, "qkv_hidden_sizes")
    hidden = weight.shape[1] // 3
    if sizes and len(set(sizes)) != 1:
        raise ExportError(f"Attention node {node.name} has unequal qkv_hidden_sizes {list(sizes)}")
    head_size = hidden // heads
    p = f"{PREFIX}attention{index}/"
    x, out = node.input[0], node.output[0]
    inits = [
        numpy_helper.from_array(np.array([0, 0, heads, head_size], np.int64), p + "split_heads"),
        numpy_helper.from_array(np.array([0, 0, hidden], np.int64), p + "merge_heads"),
        numpy_helper.from_array(np.array(np.sqrt(head_size), np.float32), p + "sqrt_head_size"),
    ]
    nodes = []
    for j, part in enumerate("qkv"):
        cols = slice(j * hidden, (j + 1) * hidden)
        inits += [
            numpy_helper.from_array(np.ascontiguousarray(weight[:, cols]), f"{p}{part}.weight"),
            numpy_helper.from_array(np.ascontiguousarray(bias[cols]), f"{p}{part}.bias"),
        ]
        perm = [0, 2, 3, 1] if part == "k" else [0, 2, 1, 3]  # K goes in transposed: Q·Kᵀ is one MatMul
        nodes += [
            helper.make_node("MatMul", [x, f"{p}{part}.weight"], [f"{p}{part}.mm"], name=f"{p}{part}/MatMul"),
            helper.make_node("Add", [f"{p}{part}.mm", f"{p}{part}.bias"], [f"{p}{part}.b"], name=f"{p}{part}/Add"),
            helper.make_node(
                "Reshape", [f"{p}{part}.b", p + "split_heads"], [f"{p}{part}.4d"], name=f"{p}{part}/Reshape"
            ),
            helper.make_node("Transpose", [f"{p}{part}.4d"], [f"{p}{part}.t"], name=f"{p}{part}/Transpose", perm=perm),
        ]
    nodes += [
        helper.make_node("MatMul", [p + "q.t", p + "k.t"], [p + "scores"], name=p + "qk/MatMul"),
        helper.make_node("Div", [p + "scores", p + "sqrt_head_size"], [p + "scaled"], name=p + "qk/Div"),
        helper.make_node("Add", [p + "scaled", mask_bias], [p + "masked"], name=p + "qk/Add"),
        helper.make_node("Softmax", [p + "masked"], [p + "probs"], name=p + "Softmax", axis=-1),
        helper.make_node("MatMul", [p + "probs", p + "v.t"], [p + "context"], name=p + "pv/MatMul"),
        helper.make_node(
            "Transpose", [p + "context"], [p + "context.t"], name=p + "context/Transpose", perm=[0, 2, 1, 3]
        ),
        helper.make_node("Reshape", [p + "context.t", p + "merge_heads"], [out], name=p + "context/Reshape"),
    ]
    return inits, nodes


def unfuse_attention(model: Any) -> int:
    """Replace every ``com.microsoft.Attention`` of ``model`` (in place) by standard ops; return how many."""
    from onnx import numpy_helper

    graph = model.graph
    fused = [n for n in graph.node if n.op_type == "Attention" and n.domain == "com.microsoft"]
    if not fused:
        return 0
    initializers = {i.name: i for i in graph.initializer}
    fill = _attribute(fused[0], "mask_filter_value")
    inits, mask_nodes, bias = _mask_bias(DEFAULT_MASK_FILL if fill is None else float(fill))
    first = list(graph.node).index(fused[0])
    for offset, node in enumerate(mask_nodes):
        graph.node.insert(first + offset, node)
    for index, node in enumerate(fused):
        weight = numpy_helper.to_array(initializers[node.input[1]])
        qkv_bias = numpy_helper.to_array(initializers[node.input[2]])
        new_inits, nodes = _attention(node, index, weight, qkv_bias, bias)
        inits += new_inits
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, new in enumerate(nodes):
            graph.node.insert(at + offset, new)
    graph.initializer.extend(inits)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return len(fused)
