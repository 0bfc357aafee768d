"""`quant-dequant-elim`: remove quantize/dequantize round trips.

    quantize_X(dequantize(quantize_X(x)))  →  the first quantize_X's (values, scale)
        for int8/int4 (absmax) and ternary TWN, whose re-quantization reproduces the values
        exactly and the scale up to float32 rounding; absmean and fixed-threshold ternary
        quantizers are not idempotent and are left alone.
    unpack(pack(t)) → t          pack(unpack(p)) → p           (same format and shape)
    dequantize(quantize_X(x)) → x    only with the option `lossy=true` (changes numerics).
"""

from __future__ import annotations

from ..ir.builder import Builder
from ..ir.core import Function, Module, Op, Value
from ..ir.ops import with_defaults
from .base import Pass, apply_patterns, register

IDEMPOTENT = ("quantize_int8", "quantize_int4", "quantize_ternary")


def _axis(q: Op) -> int | None:
    """The channel axis of a quantize op's scale (None when per tensor)."""
    a = with_defaults(q.name, q.attrs)
    if not a["per_channel"]:
        return None
    return (a.get("axis", 0)) % q.operands[0].type.rank  # type: ignore[union-attr]


def _dequantize_of(deq: Op) -> Op | None:
    """The quantize op whose (values, scale) a dequantize reads with a matching axis."""
    q, s = deq.operands
    p = q.op
    if p is None or p.name not in IDEMPOTENT or s.op is not p or q.index != 0 or s.index != 1:
        return None
    ax = _axis(p)
    if ax is not None and ax != with_defaults("dequantize", deq.attrs)["axis"] % q.type.rank:  # type: ignore[union-attr]
        return None
    return p


def requantize(op: Op, b: Builder) -> list[Value] | None:
    if op.name not in IDEMPOTENT:
        return None
    deq = op.operands[0].op
    if deq is None or deq.name != "dequantize":
        return None
    first = _dequantize_of(deq)
    if first is None or first.name != op.name:
        return None
    a, f = with_defaults(op.name, op.attrs), with_defaults(first.name, first.attrs)
    if a != f or (op.name == "quantize_ternary" and a["quantizer"] != "twn"):
        return None
    if [r.type for r in first.results] != op.result_types:
        return None
    return list(first.results)


def pack_pairs(op: Op, b: Builder) -> list[Value] | None:
    p = op.operands[0].op if op.operands else None
    if p is None or op.attrs.get("format") != p.attrs.get("format"):
        return None
    if op.name == "unpack" and p.name == "pack" and p.operands[0].type == op.results[0].type:
        return [p.operands[0]]
    if op.name == "pack" and p.name == "unpack" and p.operands[0].type == op.results[0].type:
        return [p.operands[0]]
    return None


def lossy_roundtrip(op: Op, b: Builder) -> list[Value] | None:
    if op.name != "dequantize":
        return None
    p = _dequantize_of(op)
    if p is None or p.operands[0].type != op.results[0].type:
        return None
    return [p.operands[0]]


@register
class QuantDequantElim(Pass):
    name = "quant-dequant-elim"
    options = {"lossy": False}

    def run_on_function(self, f: Function, module: Module) -> bool:
        pats = [requantize, pack_pairs] + ([lossy_roundtrip] if self.opts["lossy"] else [])
        return apply_patterns(f, pats)
