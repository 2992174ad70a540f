"""Quantization recipes: frozen, documented, with named presets."""

from __future__ import annotations

from dataclasses import dataclass

from clinbert_onnx.errors import InputError
from clinbert_onnx.schema import RecipeInfo

#: The tied MLM decoder (vocabulary projection) of the fused graph (``export/graph.py``).
DECODER_NODE = "mlm/decoder/MatMul"


@dataclass(frozen=True)
class GateThresholds:
    """Minimum agreement of a quantized variant with FP32 on the probe set."""

    cosine_mean: float = 0.99
    cosine_min: float = 0.95
    top1_agreement: float = 0.80
    top5_overlap: float = 0.70
    #: A probe text alone vs inside batches of random companions (batch-invariant recipes only).
    batch_drift_max: float = 1e-5
    batch_cosine_min: float = 0.999999


@dataclass(frozen=True)
class QuantRecipe:
    """How to quantize the fused FP32 graph.

    Attributes:
        name: preset name, recorded in the manifest.
        precision: "int8" (CPU) or "fp16" (float16 conversion, CUDA).
        activations: how int8 activations are scaled. "per-token" (default): one scale per token, computed
            in the graph (``quantize/per_token.py``); a text's result does not depend on its batch-mates.
            "per-tensor": ONNX Runtime's ``quantize_dynamic``, one scale per batch tensor: results move with the
            batch-mates (up to 2.7e-2 per element on real MiniLM weights), so such a recipe is an opt-in.
            "static": fixed scales measured on the shipped calibration set, a QDQ graph made by NNCF's ONNX
            backend (``quantize/static.py``) for OpenVINO's INT8 kernels; batch-invariant by construction.
        smoothing: per-token and static recipes: SmoothQuant's alpha (0 = off; static: NNCF's own SmoothQuant). Each linear layer's input channels are
            divided by ``absmax^alpha / max|W|^(1-alpha)`` (absmax measured on the shipped calibration
            sentences) and its weight rows multiplied by the same factor, so the outlier channels of BERT's
            residual stream no longer coarsen every token's grid. A fixed constant of the graph: results stay
            batch-invariant.
        per_channel: one scale per output column of each weight (int8). Measured on MiniLM here: per-tensor
            mean cosine 0.956, per-channel 0.992, at the same speed.
        quantize_attention: quantize the fused Attention's QKV projection (QAttention).
        quantize_embeddings: store the embedding tables as uint8 (QEmbedLayerNormalization); the tied MLM
            decoder then reads the same uint8 matrix, which keeps the int8 file near a quarter of FP32. For the
            static recipe: the word-embedding table stored int8 per row (weight-only, ``embed_table.py``) where no
            tied MLM decoder reads it.
        nodes_to_exclude: node names left in FP32.
        decoder: how the tied MLM decoder reads the uint8 embedding table. "dqmatmul" (default): a constant
            Transpose that ONNX Runtime folds and prepacks at load, then DynamicQuantizeMatMul; b1 fill-mask
            ~1.02x an embedding, ~20 MB more resident. "matmulinteger": the table as the left operand of
            MatMulInteger, packed on every call (b1 fill-mask ~1.15x an embedding), no extra memory.
        description: one line for `clinbert info`.
        variant: the variant name a bundle stores the recipe under by default ("" = the precision).
    """

    name: str
    precision: str = "int8"
    activations: str = "per-token"
    smoothing: float = 0.5
    per_channel: bool = True
    quantize_attention: bool = True
    quantize_embeddings: bool = True
    nodes_to_exclude: tuple[str, ...] = ()
    decoder: str = "dqmatmul"
    description: str = ""
    variant: str = ""

    @property
    def per_token(self) -> bool:
        return self.precision == "int8" and self.activations == "per-token"

    @property
    def static(self) -> bool:
        return self.precision == "int8" and self.activations == "static"

    @property
    def default_variant(self) -> str:
        return self.variant or self.precision

    @property
    def batch_invariant(self) -> bool:
        """A text's output does not depend on what it is batched with (FP16/FP32, per-token and static INT8)."""
        return self.precision != "int8" or self.activations in ("per-token", "static")

    def info(self) -> RecipeInfo:
        """The manifest's record of this recipe."""
        int8 = self.precision == "int8"
        return RecipeInfo(
            name=self.name,
            precision=self.precision,
            activations=self.activations if int8 else None,
            smoothing=self.smoothing if self.per_token or self.static else None,
            calibration_sha256=_calibration_hash() if self.static or (self.per_token and self.smoothing > 0) else None,
            batch_invariant=self.batch_invariant,
            per_channel=self.per_channel,
            quantize_attention=self.quantize_attention,
            quantize_embeddings=self.quantize_embeddings,
            nodes_to_exclude=self.nodes_to_exclude,
            decoder=self.decoder if self.activations == "per-tensor" else None,
            method=_METHODS[(self.precision, self.activations if int8 else "")],
            quantizer=_nncf_version() if self.static else None,
            calibration_sentences=_calibration_count() if self.static else None,
        )


def _calibration_hash() -> str:
    from .calibrate import calibration_hash

    return calibration_hash()


def _nncf_version() -> str:
    from .static import quantizer_version

    return quantizer_version()


def _calibration_count() -> int:
    from .calibrate import calibration_sentences

    return len(calibration_sentences())


_METHODS = {
    ("int8", "per-token"): "clinbert_onnx.quantize.per_token (weights int8 symmetric per channel, smoothed; "
    "activations uint8 per token; QGemm)",
    ("int8", "per-tensor"): "onnxruntime.quantization.quantize_dynamic (weights int8 symmetric, activations uint8 "
    "per batch tensor)",
    ("int8", "static"): "nncf.quantize, ONNX backend, ModelType.TRANSFORMER (attention unfused into MatMuls; weights "
    "int8 symmetric per channel, activations static per tensor; QDQ; MLM decoder FP32)",
    ("fp16", ""): "onnxruntime.transformers float16 conversion",
}
_BATCH_DEPENDENT = "; batch-dependent: a text's result moves with its batch-mates"

RECIPES: dict[str, QuantRecipe] = {
    r.name: r
    for r in (
        QuantRecipe("int8-per-token", description="default: per-token int8 activations, per-channel weights"),
        QuantRecipe(
            "int8-per-token-fp32-embeddings",
            quantize_embeddings=False,
            description="per-token int8, FP32 embedding tables (larger file)",
        ),
        QuantRecipe(
            "int8-dynamic-tensor",
            activations="per-tensor",
            description="ONNX Runtime dynamic int8 (the 0.1 default), per-channel weights" + _BATCH_DEPENDENT,
        ),
        QuantRecipe(
            "int8-per-tensor",
            activations="per-tensor",
            per_channel=False,
            description="dynamic int8, one scale per weight matrix (lower quality)" + _BATCH_DEPENDENT,
        ),
        QuantRecipe(
            "int8-low-memory",
            activations="per-tensor",
            decoder="matmulinteger",
            description="dynamic int8, decoder table not prepacked: less memory, slower fill-mask" + _BATCH_DEPENDENT,
        ),
        QuantRecipe(
            "int8-static",
            activations="static",
            # SmoothQuant alpha measured on MiniLM vs PyTorch FP32 (450 held-out sentences, cosine mean / min):
            # 0.5 0.9908 / 0.9782, 0.7 0.9976 / 0.9952, 0.8 0.9981 / 0.9955, 0.9 0.9979 / 0.9940, 0.95 (NNCF's
            # default) 0.9974 / 0.9928; off 0.9920 / 0.9782
            smoothing=0.8,
            quantize_embeddings=True,  # weight-only, where no tied decoder reads the table (embed_table.py)
            nodes_to_exclude=(DECODER_NODE,),
            variant="int8-static",
            description="static int8 (NNCF, fixed calibrated scales, QDQ) for the OpenVINO engine; batch-invariant",
        ),
        QuantRecipe("fp16", precision="fp16", description="float16 for CUDA; LayerNorm/Softmax I/O kept FP32"),
    )
}
DEFAULT_INT8 = "int8-per-token"
#: Names of earlier releases: "int8-per-channel" was the dynamic default of 0.1.
ALIASES = {"int8": DEFAULT_INT8, "int8-per-channel": "int8-dynamic-tensor"}


def get_recipe(name: str) -> QuantRecipe:
    name = ALIASES.get(name, name)
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]
