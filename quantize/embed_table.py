"""Weight-only INT8 for the word-embedding table of the static variant.

The table is the largest tensor of a BERT (Bio_ClinicalBERT: 28,996 × 768 FP32 = 89 MB, more than all the
encoder's INT8 weights together). Activation quantization never touches it: only its storage becomes int8,
symmetric, one scale per row (per token id). Done after NNCF, on the QDQ graph: ``EmbedLayerNormalization``
(which needs an FP32 table) becomes ``LayerNormalization(Cast(Gather(int8 table, ids)) · Gather(scales, ids) +
positions[:S] + Gather(segments, types))``, so only the looked-up rows are ever expanded.

Only where no tied MLM decoder reads the table (token and sequence classifiers, rerankers, encoder-only
bundles). Measured with OpenVINO 2026.4 (AMD EPYC Zen 4): every spelling of a decompressed table feeding the
decoder (Cast·Mul, DequantizeLinear int8 or uint8 with zero point, a separate chain for the decoder, a
``Gemm(transB=1)`` decoder) was folded back to an FP32 constant at compile time, +82 MB over leaving the table
FP32. On a BERT-base token classifier: file 176 → 109 MB, compiled model 212 → 127 MB, peak RSS after a
32 × 128 batch 489 → 405 MB; outputs differ from the FP32-table graph by what separates OpenVINO from ONNX
Runtime on the same graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from clinbert_onnx.errors import ExportError

PREFIX = "static/embed/"
#: ``EmbedLayerNormalization``'s inputs, by position (ONNX Runtime contrib op spec).
ELN_INPUTS = ("ids", "segment_ids", "word", "position", "segment", "gamma", "beta", "mask", "position_ids")


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(int8 table, float32 [rows, 1] scales)``: symmetric, one scale per row; an all-zero row gets scale 1."""
    peak = np.abs(table).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(table / scale), -127, 127).astype(np.int8), scale


def _attribute(node: Any, name: str, default: float) -> float:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return float(helper.get_attribute_value(a))
    return default


def _embedding_nodes(eln: Any, table: str, scales: str) -> tuple[list[Any], list[Any]]:
    """Standard ops computing ``eln``'s first output from the int8 ``table`` and its ``[rows, 1]`` ``scales``."""
    from onnx import TensorProto, helper, numpy_helper

    get = dict(zip(ELN_INPUTS, list(eln.input) + [""] * len(ELN_INPUTS), strict=False))
    p = PREFIX
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), p + "seq_axis"),
        numpy_helper.from_array(np.array([0], np.int64), p + "zero"),
    ]
    ids = get["ids"]
    nodes = [  # look up int8 rows, then scale them: the table itself is never expanded to FP32
        helper.make_node("Gather", [table, ids], [p + "rows_int8"], name=p + "rows", axis=0),
        helper.make_node("Cast", [p + "rows_int8"], [p + "rows_f"], name=p + "rows_cast", to=TensorProto.FLOAT),
        helper.make_node("Gather", [scales, ids], [p + "row_scales"], name=p + "row_scales", axis=0),
        helper.make_node("Mul", [p + "rows_f", p + "row_scales"], [p + "words"], name=p + "words"),
    ]
    if get["position_ids"]:
        nodes.append(
            helper.make_node("Gather", [get["position"], get["position_ids"]], [p + "positions"], name=p + "positions")
        )
    else:  # positions 0 .. S-1: the first S rows of the position table, broadcast over the batch
        nodes += [
            helper.make_node("Shape", [ids], [p + "shape"], name=p + "shape"),
            helper.make_node("Gather", [p + "shape", p + "seq_axis"], [p + "seq"], name=p + "seq", axis=0),
            helper.make_node(
                "Slice", [get["position"], p + "zero", p + "seq", p + "zero"], [p + "positions"], name=p + "positions"
            ),
        ]
    nodes.append(helper.make_node("Add", [p + "words", p + "positions"], [p + "sum1"], name=p + "add_positions"))
    total = p + "sum1"
    if get["segment_ids"] and get["segment"]:
        nodes += [
            helper.make_node("Gather", [get["segment"], get["segment_ids"]], [p + "segments"], name=p + "segments"),
            helper.make_node("Add", [total, p + "segments"], [p + "sum2"], name=p + "add_segments"),
        ]
        total = p + "sum2"
    nodes.append(
        helper.make_node(
            "LayerNormalization",
            [total, get["gamma"], get["beta"]],
            [eln.output[0]],
            name=p + "LayerNorm",
            axis=-1,
            epsilon=_attribute(eln, "epsilon", 1e-12),
        )
    )
    return inits, nodes


def compress_embeddings(model: Any) -> int:
    """Store ``model``'s word-embedding table as int8 (in place); return the bytes saved (0: nothing to do)."""
    from onnx import numpy_helper

    graph = model.graph
    fused = [n for n in graph.node if n.op_type == "EmbedLayerNormalization"]
    if not fused:
        return 0
    if len(fused) != 1:
        raise ExportError(f"expected one EmbedLayerNormalization, found {len(fused)}")
    eln = fused[0]
    consumers = {i for n in graph.node for i in n.input}
    if len(eln.output) > 1 and eln.output[1] and eln.output[1] in consumers:
        raise ExportError("EmbedLayerNormalization's mask output is used: cannot unfuse it")
    initializers = {i.name: i for i in graph.initializer}
    word = eln.input[2]
    if word not in initializers:
        raise ExportError(f"the word-embedding table {word!r} is not an initializer")
    if any(word in n.input for n in graph.node if n is not eln):
        return 0  # a tied MLM decoder reads the table: OpenVINO would fold a decompressed copy to FP32 (+82 MB)
    table_fp32 = numpy_helper.to_array(initializers[word])
    q, scale = quantize_rows(table_fp32)
    inits = [numpy_helper.from_array(q, PREFIX + "table_int8"), numpy_helper.from_array(scale, PREFIX + "row_scale")]
    more_inits, nodes = _embedding_nodes(eln, PREFIX + "table_int8", PREFIX + "row_scale")
    at = list(graph.node).index(eln)
    graph.node.remove(eln)
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    graph.initializer.remove(initializers[word])
    graph.initializer.extend(inits + more_inits)
    return int(table_fp32.nbytes - q.nbytes - scale.nbytes)
