"""`bn-fold`: fold an inference batch_norm into the linear/conv2d that feeds it.

    y = bn(conv(x, W) + b)  with  k = gamma / sqrt(var + eps),  shift = beta - mean * k
      = conv(x, W * k[:, None, None, None]) + (b * k + shift)

The folded weights and bias are computed by new IR ops over the parameters (constant
folding evaluates them when the parameters are constants; a backend computes them once at
load time otherwise). Ternary weights must stay ternary, so k is never multiplied into
trits: for `dequantize(trits, scale)` weights the scale becomes `scale * k` (a per-channel
scale), for fused ops the `scale` operand is multiplied (or added, with has_scale), and a
plain linear/conv on trits becomes a fused op with scale k. Float weights are scaled.

Folding needs: the producer's result used only by the batch_norm, in the same block; for
linear a rank-2 result (channels last = dim 1); for fused ops no activation and no
residual. Anything else is left unchanged.
"""

from __future__ import annotations

from ..ir.builder import Builder
from ..ir.core import Function, Module, Op, Value, erase_op, use_counts
from ..ir.ops import fused_operands, with_defaults
from ..ir.types import ScalarType, is_float
from .base import Pass, apply_patterns, register

PRODUCERS = ("linear", "conv2d", "fused_linear", "fused_conv2d")


def _axis0(deq: Op) -> bool:
    """Whether a dequantize scales along dim 0 (the output channels of a weight)."""
    rank = deq.operands[0].type.rank  # type: ignore[union-attr]
    return with_defaults("dequantize", deq.attrs)["axis"] % rank == 0


@register
class BatchNormFold(Pass):
    name = "bn-fold"

    def run_on_function(self, f: Function, module: Module) -> bool:
        def pattern(op: Op, b: Builder) -> list[Value] | None:
            return self.fold(f, op, b)
        return apply_patterns(f, [pattern])

    def fold(self, f: Function, bn: Op, b: Builder) -> list[Value] | None:
        if bn.name != "batch_norm":
            return None
        y, mean, var, gamma, beta = bn.operands
        p = y.op
        if p is None or p.name not in PRODUCERS or p.parent is not bn.parent:
            return None
        if use_counts(f.body).get(id(y), 0) != 1:
            return None
        a = with_defaults(p.name, p.attrs)
        fused = p.name.startswith("fused_")
        if fused and (a["activation"] != "none" or a["has_residual"] or a.get("format", "none") != "none"):
            return None
        if p.name.endswith("linear") and y.type.rank != 2:  # type: ignore[union-attr]
            return None
        conv = p.name.endswith("conv2d")
        eps = b.constant(float(with_defaults("batch_norm", bn.attrs)["eps"]), ScalarType("f32"))
        k = b.div(gamma, b.sqrt(b.add(var, eps)))
        shift = b.sub(beta, b.mul(mean, k))

        def scale_rows(w: Value) -> Value:  # float weights: W * k[:, None, ...]
            return b.mul(w, b.reshape(k, shape=[-1, 1, 1, 1] if conv else [-1, 1]))

        if fused:
            roles = dict(zip(fused_operands(a), p.operands))
            x, w = roles["input"], roles["weight"]
            scale = b.mul(roles["scale"], k) if "scale" in roles else None
            bias = roles.get("bias")
        else:
            x, w = p.operands[0], p.operands[1]
            scale, bias = None, (p.operands[2] if len(p.operands) > 2 else None)
            deq = w.op
            if deq is not None and deq.name == "dequantize" and _axis0(deq):
                w = b.dequantize(deq.operands[0], b.mul(deq.operands[1], k))
            elif is_float(w.type):
                w = scale_rows(w)
            else:
                scale, fused = k, True  # trits stay trits: k becomes the scale of a fused op
        if fused and scale is None:
            if is_float(w.type):
                w = scale_rows(w)
            else:
                scale = k
        new_bias = shift if bias is None else b.add(b.mul(bias, k), shift)

        if fused:
            name = "fused_conv2d" if conv else "fused_linear"
            attrs = {key: v for key, v in p.attrs.items() if key not in ("has_scale", "has_bias")}
            operands = [x, w] + ([scale] if scale is not None else []) + [new_bias]
            attrs.update(has_scale=scale is not None, has_bias=True)
            out = b.create(name, operands, attrs, bn.result_types).results
        else:
            out = b.create(p.name, [x, w, new_bias], p.attrs, bn.result_types).results
        erase_op(p)  # its one use, the batch_norm, is replaced by `out`
        return out
