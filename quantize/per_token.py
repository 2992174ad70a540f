"""Per-token INT8: each token's activations get their own scale, so a text's result never depends on its batch-mates.

ONNX Runtime's dynamic quantization (``DynamicQuantizeMatMul``, ``QAttention``) computes one activation scale over
the whole batch tensor: a text's vector then moves with whatever it is batched with (up to 2.7e-2 per element on
real MiniLM weights), and one outlier token coarsens every other token's grid. Here every linear layer becomes

    x [.., K] -> s = max(rowmax / (255 - Z), -rowmin / Z)   (one scale per row, i.e. per token)
              -> QuantizeLinear(x / s, 1, Z) uint8           (zero point Z, fixed per node)
              -> QGemm(x_q, 1, Z, W_q int8 per-channel, w_scale, 0) -> * s

The integer GEMM of a row reads that row alone (MLAS's u8s8 kernels, prepacked weights, the weight scales
applied in the GEMM's output stage), so the result is batch-invariant by construction. ONNX Runtime's integer
GEMMs take only a scalar activation zero point, which is why Z is a constant of the node: 128 (symmetric) in
general, smaller after GELU, whose outputs are bounded below by -0.17. (``MatMulInteger`` -> ``Cast`` -> two
``Mul`` measured 0.6-0.75x ``DynamicQuantizeMatMul`` at 1024 rows, QGemm 0.8x; ORT also fuses
``Mul(Cast(MatMulInteger), Mul(a_scale, b_scale))`` into ``MatMulIntegerToFloat``, which is wrong for a per-row
``a_scale``.)

The fused ``Attention`` (whose QKV projection ``quantize_dynamic`` turns into ``QAttention``, per-tensor) is
split into the per-token projection and ``MultiHeadAttention`` on Q, K, V (same mask and kernels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from clinbert_onnx.errors import ExportError

DECODER_NODE = "mlm/decoder/MatMul"
SYMMETRIC_ZP = 128
#: GELU's minimum is -0.17: a zero point of 32 leaves 223 of 255 levels for the positive side.
GELU_ZP = 32
GELU_OPS = ("BiasGelu", "Gelu", "FastGelu")


@dataclass(frozen=True)
class _Rows:
    """A per-token quantized activation: uint8 rows [M, K], their scales [M, 1], the zero point, and the
    leading dimensions of the original tensor (to give the output its shape back)."""

    x_q: str
    scale: str
    zero_point: str
    lead: str


@dataclass(frozen=True)
class _Weight:
    """An int8 weight [K, N] with its scales and zero points (per column, or scalars for a shared table)."""

    q: str
    scale: str
    zero_point: str
    n: int


@dataclass
class _Rewriter:
    """Builds the per-token nodes into a graph, sharing one quantized input between consumers."""

    model: Any
    nodes_to_exclude: tuple[str, ...] = ()
    absmax: dict[str, np.ndarray] = field(default_factory=dict)
    alpha: float = 0.0
    new_inits: list[Any] = field(default_factory=list)
    quantized: dict[tuple[str, int], _Rows] = field(default_factory=dict)
    counter: int = 0

    def __post_init__(self) -> None:
        graph = self.model.graph
        self.inits = {i.name: i for i in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self._const("pt.axis_last", np.array([-1], dtype=np.int64))
        self._const("pt.one", np.array(1.0, dtype=np.float32))
        self._const("pt.tiny", np.array(1e-12, dtype=np.float32))
        self._const("pt.zero", np.array([0], dtype=np.int64))
        self._const("pt.one_i", np.array([1], dtype=np.int64))
        self._const("pt.rows1", np.array([-1, 1], dtype=np.int64))

    def _const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        if name not in self.inits:
            tensor = numpy_helper.from_array(value, name)
            self.inits[name] = tensor
            self.new_inits.append(tensor)
        return name

    def zero_point_for(self, x: str) -> int:
        node = self.producer.get(x)
        return GELU_ZP if node is not None and node.op_type in GELU_OPS else SYMMETRIC_ZP

    def quantize_rows(self, x: str, zp: int, k: int, out: list[Any]) -> _Rows:
        """Nodes that quantize ``x [.., K]`` per row (last axis), shared by every consumer of ``x``."""
        from onnx import helper

        key = (x, zp)
        if key in self.quantized:
            return self.quantized[key]
        self.counter += 1
        p = f"pt/q{self.counter}/"
        zp_name = self._const(f"pt.zp{zp}", np.array(zp, dtype=np.uint8))
        hi = self._const(f"pt.inv_hi{zp}", np.array(1.0 / (255 - zp), dtype=np.float32))
        lo = self._const(f"pt.inv_lo{zp}", np.array(-1.0 / zp, dtype=np.float32))
        rows_k = self._const(f"pt.rows{k}", np.array([-1, k], dtype=np.int64))
        out += [
            helper.make_node("ReduceMax", [x, "pt.axis_last"], [p + "max"], name=p + "max", keepdims=1),
            helper.make_node("ReduceMin", [x, "pt.axis_last"], [p + "min"], name=p + "min", keepdims=1),
            helper.make_node("Mul", [p + "max", hi], [p + "s_hi"], name=p + "s_hi"),
            helper.make_node("Mul", [p + "min", lo], [p + "s_lo"], name=p + "s_lo"),
            helper.make_node("Max", [p + "s_hi", p + "s_lo", "pt.tiny"], [p + "s_any"], name=p + "s_max"),
            # ONNX Runtime 1.31 returns an empty input unreduced ([0, K], not [0, 1]): the MLM head of an
            # embedding call has no rows. Slicing the last axis to one column is a no-op otherwise.
            helper.make_node(
                "Slice", [p + "s_any", "pt.zero", "pt.one_i", "pt.axis_last"], [p + "scale"], name=p + "scale"
            ),
            helper.make_node("Div", [x, p + "scale"], [p + "scaled"], name=p + "div"),
            helper.make_node("QuantizeLinear", [p + "scaled", "pt.one", zp_name], [p + "x_q"], name=p + "quant"),
            # QGemm is 2-D: rows = tokens. The uint8 tensor and the scales are reshaped, never the float input.
            helper.make_node("Reshape", [p + "x_q", rows_k], [p + "x_q2"], name=p + "rows"),
            helper.make_node("Reshape", [p + "scale", "pt.rows1"], [p + "scale2"], name=p + "scale_rows"),
            helper.make_node("Shape", [x], [p + "shape"], name=p + "shape"),
            helper.make_node("Slice", [p + "shape", "pt.zero", "pt.axis_last"], [p + "lead"], name=p + "lead"),
        ]
        self.quantized[key] = _Rows(p + "x_q2", p + "scale2", zp_name, p + "lead")
        return self.quantized[key]

    def int8_weight(self, name: str, weight: np.ndarray) -> _Weight:
        """Symmetric int8 per output column of ``weight [K, N]``."""
        scale = np.abs(weight).max(axis=0) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        w_q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        zero = self._const(f"pt.w_zp{len(scale)}", np.zeros(len(scale), dtype=np.int8))
        return _Weight(self._const(name + "_pt_q", w_q), self._const(name + "_pt_scale", scale), zero, len(scale))

    def project(self, x: str, weight: np.ndarray, ys: list[str], prefix: str, out: list[Any]) -> None:
        """``concat(ys) = x @ weight`` as per-token int8 layers, smoothed where calibration saw ``x``.

        ``ys`` names equal column blocks of ``weight`` (Q, K and V as three GEMMs on one quantized input, which
        costs less than one GEMM and a Split). Smoothing (SmoothQuant, Xiao et al. 2023) divides each input
        channel k by ``s_k = absmax_k^alpha / max|W_k|^(1-alpha)`` and multiplies weight row k by it: the
        product is unchanged, but the outlier channels of BERT's residual stream no longer set every token's
        grid alone.
        """
        from onnx import helper

        zp = self.zero_point_for(x)
        peak = self.absmax.get(x)
        if peak is not None and self.alpha > 0 and peak.shape == (weight.shape[0],):
            w_peak = np.abs(weight).max(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = peak**self.alpha / w_peak ** (1 - self.alpha)
            factor = np.where(np.isfinite(factor) & (factor > 0), factor, 1.0)
            factor = np.clip(factor, 1e-3, 1e3).astype(np.float32)
            inverse = self._const(prefix + "smooth_inv", (1.0 / factor).astype(np.float32))
            out.append(helper.make_node("Mul", [x, inverse], [prefix + "smoothed"], name=prefix + "smooth"))
            x, weight = prefix + "smoothed", weight * factor[:, None]
        width = weight.shape[1] // len(ys)
        for i, y in enumerate(ys):
            part = prefix if len(ys) == 1 else f"{prefix}{i}/"
            block = np.ascontiguousarray(weight[:, i * width : (i + 1) * width])
            self.linear(x, weight.shape[0], self.int8_weight(part + "w", block), y, part, out, zp)

    def linear(self, x: str, k: int, w: _Weight, y: str, prefix: str, out: list[Any], zp: int | None = None) -> None:
        """``y = dequant(quant_rows(x) @ w)``: per-token activations, per-channel (or per-tensor) weights.

        ``QGemm`` applies the weight scales in its output stage (as ``DynamicQuantizeMatMul`` does); only the row
        scale costs a pass over the output.
        """
        from onnx import helper

        rows = self.quantize_rows(x, self.zero_point_for(x) if zp is None else zp, k, out)
        n = self._const(f"pt.n{w.n}", np.array([w.n], dtype=np.int64))
        out += [
            helper.make_node(
                "QGemm",
                [rows.x_q, "pt.one", rows.zero_point, w.q, w.scale, w.zero_point],
                [prefix + "gemm"],
                name=prefix + "QGemm",
                domain="com.microsoft",
            ),
            helper.make_node("Mul", [prefix + "gemm", rows.scale], [prefix + "row"], name=prefix + "row_scale"),
            helper.make_node("Concat", [rows.lead, n], [prefix + "shape"], name=prefix + "shape", axis=0),
            helper.make_node("Reshape", [prefix + "row", prefix + "shape"], [y], name=prefix + "unrows"),
        ]


def _float_initializer(rw: _Rewriter, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    init = rw.inits.get(name)
    if init is None:
        return None
    value = numpy_helper.to_array(init)
    return value if value.dtype == np.float32 else None


def _attention(rw: _Rewriter, node: Any, out: list[Any]) -> bool:
    """Attention(x, W_qkv, b, mask) -> per-token Q, K, V projections -> MultiHeadAttention(q, k, v, b, mask)."""
    from onnx import helper

    weight = _float_initializer(rw, node.input[1])
    if weight is None or weight.ndim != 2 or len(node.input) < 4 or not node.input[3]:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if set(attrs) - {"num_heads", "scale", "mask_filter_value"}:
        return False  # unidirectional, qkv_hidden_sizes, past...: leave the node to the caller
    p = f"pt/{node.name or node.output[0]}/"
    rw.project(node.input[0], weight, [p + "q", p + "k", p + "v"], p, out)
    out += [
        helper.make_node(
            "MultiHeadAttention",
            [p + "q", p + "k", p + "v", node.input[2], node.input[3]],
            list(node.output[:1]),
            name=p + "MultiHeadAttention",
            domain="com.microsoft",
            **attrs,
        ),
    ]
    return True


@dataclass(frozen=True)
class _Decoder:
    """The MLM decoder ``Transpose -> MatMul(W [V,H], xᵀ) -> Transpose -> Add(bias)`` as appended by export."""

    transpose_in: Any
    matmul: Any
    transpose_out: Any
    bias_add: Any

    def owns(self, node: Any) -> bool:
        return any(node is n for n in (self.transpose_in, self.matmul, self.transpose_out, self.bias_add))


def _find_decoder(rw: _Rewriter, nodes: list[Any]) -> _Decoder | None:
    matmul = next((n for n in nodes if n.name == DECODER_NODE), None)
    if matmul is None:
        return None
    transpose_in = rw.producer.get(matmul.input[1])
    consumers = [n for n in nodes if matmul.output[0] in n.input]
    if transpose_in is None or transpose_in.op_type != "Transpose" or len(consumers) != 1:
        return None
    transpose_out = consumers[0]
    adds = [n for n in nodes if transpose_out.output[0] in n.input]
    if transpose_out.op_type != "Transpose" or len(adds) != 1 or adds[0].op_type != "Add":
        return None
    return _Decoder(transpose_in, matmul, transpose_out, adds[0])


def _decoder(rw: _Rewriter, dec: _Decoder, nodes: list[Any], out: list[Any]) -> bool:
    """The decoder as one per-token linear layer ``x [M,H] @ Wᵀ [H,V] + bias``.

    A decoder tied to ``QEmbedLayerNormalization``'s uint8 table reads that table through a constant Transpose
    (folded and prepacked by ONNX Runtime at load), so the file keeps one copy of the vocabulary matrix.
    """
    from onnx import helper

    p = "pt/mlm/decoder/"
    x, y = dec.transpose_in.input[0], dec.bias_add.output[0]
    bias = next(i for i in dec.bias_add.input if i != dec.transpose_out.output[0])
    table = dec.matmul.input[0]
    qemb = next((n for n in nodes if n.op_type == "QEmbedLayerNormalization"), None)
    dequant = rw.producer.get(table)
    if qemb is not None and dequant is not None and dequant.op_type == "DequantizeLinear":
        # QEmbedLayerNormalization inputs: 2 word_embedding_quant, 8 its scale, 13 its zero point.
        table_q, scale, zero_point = qemb.input[2], qemb.input[8], qemb.input[13]
        if dequant.input[0] != table_q:
            return False
        vocab, hidden = (int(d) for d in rw.inits[table_q].dims)
        out.append(helper.make_node("Transpose", [table_q], [p + "w_qT"], name=p + "transpose_w", perm=[1, 0]))
        rw.linear(x, hidden, _Weight(p + "w_qT", scale, zero_point, vocab), p + "decoded", p, out)
    else:
        weight = _float_initializer(rw, table)
        if weight is None:
            return False
        rw.project(x, np.ascontiguousarray(weight.T), [p + "decoded"], p, out)
    out.append(helper.make_node("Add", [p + "decoded", bias], [y], name=p + "bias"))
    return True


def smoothing_targets(model: Any, nodes_to_exclude: tuple[str, ...] = ()) -> list[str]:
    """The activations ``quantize_per_token`` can smooth: inputs of constant-weight MatMuls and of Attention."""
    inits = {i.name for i in model.graph.initializer}
    names = [
        n.input[0]
        for n in model.graph.node
        if n.name not in nodes_to_exclude and n.op_type in ("MatMul", "Attention") and n.input[1] in inits
    ]
    return list(dict.fromkeys(names))


def quantize_per_token(
    model: Any,
    nodes_to_exclude: tuple[str, ...] = (),
    quantize_attention: bool = True,
    absmax: dict[str, np.ndarray] | None = None,
    alpha: float = 0.0,
) -> dict[str, int]:
    """Rewrite ``model`` in place: every MatMul with a constant 2-D weight, the fused Attention projections and
    the MLM decoder become per-token INT8, smoothed by ``alpha`` where ``absmax`` (from ``calibrate``) has the
    input. Returns counts of what was rewritten; raises if nothing was."""
    rw = _Rewriter(model, nodes_to_exclude, absmax or {}, alpha)
    old = list(model.graph.node)
    new: list[Any] = []
    counts = {"linear": 0, "attention": 0, "decoder": 0}
    dec = _find_decoder(rw, old)
    if dec is not None and DECODER_NODE in nodes_to_exclude:
        dec = None
    for node in old:
        if dec is not None and dec.owns(node):
            if node is dec.matmul:
                if _decoder(rw, dec, old, new):
                    counts["decoder"] += 1
                else:
                    new += [dec.transpose_in, dec.matmul, dec.transpose_out, dec.bias_add]
            continue
        if node.name in nodes_to_exclude:
            new.append(node)
            continue
        weight = _float_initializer(rw, node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and weight.ndim == 2:
            rw.project(node.input[0], weight, [node.output[0]], f"pt/{node.name or node.output[0]}/", new)
            counts["linear"] += 1
        elif node.op_type == "Attention" and quantize_attention and _attention(rw, node, new):
            counts["attention"] += 1
        else:
            new.append(node)
    if counts["linear"] + counts["attention"] == 0:
        raise ExportError("per-token quantization found no MatMul with a constant weight: the graph was not recognised")
    del model.graph.node[:]
    model.graph.node.extend(new)
    model.graph.initializer.extend(rw.new_inits)
    return counts
