"""`fuse`: fold a linear/conv2d and what follows it into one `fused_linear`/`fused_conv2d`,
which a backend maps to one kernel (runtime ternary_linear: y = act(x @ W^T * scale + bias
+ residual)).

    w = dequantize(t, s)            → weight t, scale s (has_scale)
    t = unpack(p) {format}          → packed weight p with format and in_features (linear only)
    y = matmul(x, w)  (w [in, out]) → fused_linear over transpose(w) (float x, 2-d w)
    y = linear(x, w[, b])           → bias b (has_bias)
    y = add(y, bias)                → bias (linear only, bias [out], when b is absent)
    y = add(y, r)                   → residual r (same type as y; has_residual)
    y = relu|relu6|gelu|silu|sigmoid|tanh(y)  → activation

The chain is taken in this order, through values with exactly one use in the same block.
A plain float linear/conv with nothing to absorb is left alone. A fused op without an
activation (e.g. one the lowering emitted with act_quant) absorbs what follows it the same
way (a bias only when it has none and no residual; a residual only when it has none).
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir.builder import Builder
from ..ir.core import Function, Module, Op, Value, erase_op, use_counts
from ..ir.ops import ACTIVATIONS, fused_operands, with_defaults
from ..ir.types import TensorType, is_float
from .base import Pass, apply_patterns, register


def _single_user(f: Function, v: Value, counts: dict[int, int]) -> Op | None:
    if counts.get(id(v), 0) != 1:
        return None
    return next(op for op in f.walk() if any(o is v for o in op.operands))


@register
class Fuse(Pass):
    name = "fuse"

    def run_on_function(self, f: Function, module: Module) -> bool:
        def pattern(op: Op, b: Builder) -> list[Value] | None:
            return self.fuse(f, op)
        return apply_patterns(f, [pattern])

    def fuse(self, f: Function, p: Op) -> list[Value] | None:
        if p.name in ("fused_linear", "fused_conv2d"):
            return self.extend(f, p)
        if p.name == "matmul":
            return self.matmul(f, p)
        if p.name not in ("linear", "conv2d"):
            return None
        x, w = p.operands[0], p.operands[1]
        scale = None
        deq = w.op
        if deq is not None and deq.name == "dequantize" and \
                with_defaults("dequantize", deq.attrs)["axis"] % w.type.rank == 0:  # type: ignore[union-attr]
            w, scale = deq.operands
        packed: dict[str, object] = {}
        unp = w.op
        if p.name == "linear" and unp is not None and unp.name == "unpack" and len(unp.attrs["shape"]) == 2:
            packed = {"format": unp.attrs["format"], "in_features": unp.attrs["shape"][1]}
            w = unp.operands[0]
        bias = p.operands[2] if len(p.operands) > 2 else None
        return self.absorb(f, p, x, w, scale, bias, None, {**p.attrs, **packed},
                           lone_ok=scale is not None or not is_float(w.type))

    def matmul(self, f: Function, p: Op) -> list[Value] | None:
        """x @ W with W [in, out] is linear(x, Wᵀ): `x @ w + b` with a ternary w (the
        language's explicit layers) becomes a fused_linear over the transposed weight."""
        x, w = p.operands
        if not (isinstance(x.type, TensorType) and is_float(x.type) and x.type.rank >= 1):
            return None
        if not (isinstance(w.type, TensorType) and w.type.rank == 2):
            return None
        scale = None
        deq = w.op
        if deq is not None and deq.name == "dequantize":
            s = deq.operands[1].type
            axis = with_defaults("dequantize", deq.attrs)["axis"] % 2
            if isinstance(s, TensorType) and (s.rank == 0 or axis == 1):  # scale per output
                w, scale = deq.operands
        return self.absorb(f, p, x, w, scale, None, None, {},
                           lone_ok=scale is not None or not is_float(w.type),
                           weight=lambda b, w=w: b.transpose(w, dim0=0, dim1=1))

    def extend(self, f: Function, p: Op) -> list[Value] | None:
        """A fused op without an activation absorbs the bias/residual/activation after it."""
        a = with_defaults(p.name, p.attrs)
        if a["activation"] != "none":
            return None
        roles = dict(zip(fused_operands(a), p.operands))
        base = {k: v for k, v in p.attrs.items() if k not in ("activation", "has_scale", "has_bias", "has_residual")}
        return self.absorb(f, p, roles["input"], roles["weight"], roles.get("scale"), roles.get("bias"),
                           roles.get("residual"), base, lone_ok=False)

    def absorb(self, f: Function, p: Op, x: Value, w: Value, scale: Value | None, bias: Value | None,
               residual: Value | None, attrs: dict, lone_ok: bool,
               weight: Callable[[Builder], Value] | None = None) -> list[Value] | None:
        """Follow the single-use chain after `p` and build the fused op replacing it; with
        nothing absorbed, only when `lone_ok` (e.g. a dequantized weight was folded in).
        `weight`, when given, builds the fused op's weight from `w` (e.g. a transpose)."""
        act = "none"
        counts = use_counts(f.body)
        chain = [p]
        cur = p.results[0]
        while act == "none":
            u = _single_user(f, cur, counts)
            if u is None or u.parent is not p.parent:
                break
            if u.name == "add" and u.results[0].type == cur.type:
                other = u.operands[1] if u.operands[0] is cur else u.operands[0]
                if other is cur:
                    break
                t = other.type
                if bias is None and residual is None and p.name.endswith(("linear", "matmul")) and \
                        isinstance(t, TensorType) and t.rank == 1 and t.dtype == cur.type.dtype and \
                        t.shape[0] == cur.type.shape[-1]:  # type: ignore[union-attr]
                    bias = other
                elif residual is None and t == cur.type:
                    residual = other
                else:
                    break
            elif u.name in ACTIVATIONS and with_defaults(u.name, u.attrs).get("approximate", "none") == "none":
                act = u.name
            else:
                break
            chain.append(u)
            cur = u.results[0]
        if len(chain) == 1 and not lone_ok:
            return None
        last = chain[-1]
        if weight is not None:
            w = weight(Builder.before_op(last))
        attrs = dict(attrs)
        attrs.update(activation=act, has_scale=scale is not None, has_bias=bias is not None,
                     has_residual=residual is not None)
        operands = [x, w] + [v for v in (scale, bias, residual) if v is not None]
        name = "fused_conv2d" if p.name.endswith("conv2d") else "fused_linear"
        fused = Builder.before_op(last).create(name, operands, attrs, last.result_types)
        # The pattern driver replaces `p`; replace the end of the chain here.
        for op in reversed(chain[1:]):
            for old in op.results:
                for user in f.walk():
                    user.operands = [fused.results[0] if o is old else o for o in user.operands]
            erase_op(op)
        return list(fused.results) if len(chain) == 1 else [fused.results[0]]
