"""FP16 variant for CUDA: the fused FP32 graph converted with ONNX Runtime's float16 converter.

Graph inputs and outputs stay FP32 (``keep_io_types``), so callers feed and read the same arrays as with the
fp32 variant; the in-graph mean pooling (``pool/*`` nodes) stays FP32 too. Ops that are numerically sensitive in half precision stay FP32: the MLM head's
LayerNormalization and the Softmax/ReduceMean family if present. The fused encoder ops (Attention,
SkipLayerNormalization, EmbedLayerNormalization, BiasGelu) run in FP16 with FP32 accumulation in their CUDA
kernels.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

#: Op types forced to stay FP32 (on top of ONNX Runtime's default block list).
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Erf")


def convert_fp16(fp32_path: Path) -> tuple[Any, dict[str, int]]:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(fp32_path)))
    pooling = [n.name for n in model.model.graph.node if n.name.startswith("pool/")]
    model.convert_float_to_float16(
        keep_io_types=True,
        op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS)),
        node_block_list=pooling,
    )
    proto = model.model
    counts = Counter(n.op_type for n in proto.graph.node)
    facts = {
        k: v
        for k, v in counts.items()
        if k
        in (
            "EmbedLayerNormalization",
            "Attention",
            "SkipLayerNormalization",
            "BiasGelu",
            "MatMul",
            "Cast",
            "LayerNormalization",
        )
    }
    return proto, facts


def fp32_islands(model: Any) -> dict[str, list[str]]:
    """Which ops compute in FP32 in a converted graph: op type → node names whose float inputs are FP32."""
    from onnx import TensorProto

    types: dict[str, int] = {}
    for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    islands: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type == "Cast":
            continue
        dtypes = {types.get(i) for i in node.input if i}
        if TensorProto.FLOAT in dtypes and TensorProto.FLOAT16 not in dtypes:
            islands.setdefault(node.op_type, []).append(node.name)
    return islands
