"""Quantization recipes: frozen, documented, with named presets."""

from __future__ import annotations

from dataclasses import dataclass

from clinbert_onnx.errors import InputError


@dataclass(frozen=True)
class GateThresholds:
    """Minimum agreement of a quantized variant with FP32 on the probe set."""

    cosine_mean: float = 0.99
    cosine_min: float = 0.95
    top1_agreement: float = 0.80
    top5_overlap: float = 0.70


@dataclass(frozen=True)
class QuantRecipe:
    """How to quantize the fused FP32 graph.

    Attributes:
        name: preset name, recorded in the manifest.
        precision: "int8" (ONNX Runtime dynamic quantization, CPU) or "fp16" (float16 conversion, CUDA).
        per_channel: one scale per output column of each weight (int8). Measured on MiniLM here: per-tensor
            mean cosine 0.956, per-channel 0.992, at the same speed.
        quantize_attention: quantize the fused Attention's QKV projection (QAttention).
        quantize_embeddings: store the embedding tables as uint8 (QEmbedLayerNormalization); the tied MLM
            decoder then reads the same uint8 matrix, which keeps the int8 file near a quarter of FP32.
        nodes_to_exclude: node names left in FP32.
        decoder: how the tied MLM decoder reads the uint8 embedding table. "dqmatmul" (default): a constant
            Transpose that ONNX Runtime folds and prepacks at load, then DynamicQuantizeMatMul; b1 fill-mask
            ~1.02x an embedding, ~20 MB more resident. "matmulinteger": the table as the left operand of
            MatMulInteger, packed on every call (b1 fill-mask ~1.15x an embedding), no extra memory.
        description: one line for `clinbert info`.
    """

    name: str
    precision: str = "int8"
    per_channel: bool = True
    quantize_attention: bool = True
    quantize_embeddings: bool = True
    nodes_to_exclude: tuple[str, ...] = ()
    decoder: str = "dqmatmul"
    description: str = ""

    def to_manifest(self) -> dict[str, object]:
        return {
            "name": self.name,
            "precision": self.precision,
            "per_channel": self.per_channel,
            "quantize_attention": self.quantize_attention,
            "quantize_embeddings": self.quantize_embeddings,
            "nodes_to_exclude": list(self.nodes_to_exclude),
            "decoder": self.decoder,
            "method": "onnxruntime.quantization.quantize_dynamic (weights int8 symmetric, activations uint8)"
            if self.precision == "int8"
            else "onnxruntime.transformers float16 conversion",
        }


RECIPES: dict[str, QuantRecipe] = {
    r.name: r
    for r in (
        QuantRecipe("int8-per-channel", description="default: per-channel int8 weights, uint8 embeddings"),
        QuantRecipe("int8-per-tensor", per_channel=False, description="one scale per weight matrix (lower quality)"),
        QuantRecipe(
            "int8-fp32-attention",
            quantize_attention=False,
            description="per-channel int8, attention projections kept in FP32",
        ),
        QuantRecipe(
            "int8-fp32-embeddings",
            quantize_embeddings=False,
            description="per-channel int8, FP32 embedding tables (larger file)",
        ),
        QuantRecipe(
            "int8-low-memory",
            decoder="matmulinteger",
            description="per-channel int8, decoder table not prepacked: ~20 MB less memory, slower fill-mask",
        ),
        QuantRecipe("fp16", precision="fp16", description="float16 for CUDA; LayerNorm/Softmax I/O kept FP32"),
    )
}
DEFAULT_INT8 = "int8-per-channel"


def get_recipe(name: str) -> QuantRecipe:
    if name == "int8":
        name = DEFAULT_INT8
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]
