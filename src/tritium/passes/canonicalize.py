"""`canonicalize`: local simplifications that never change results.

    add(x, 0), sub(x, 0), mul(x, 1), div(x, 1), pow(x, 1) → x   (when the type is unchanged;
                               for floats x + -0.0 and x - 0.0 only: -0.0 + 0.0 is 0.0)
    add(c, x) → add(x, c)      constants go right in commutative ops
    neg(neg(x)) → x            relu(relu(x)) → relu(x)         dropout(x) → x (inference)
    transpose(transpose(x, a, b), a, b) → x     transpose(x, a, a) → x
    permute(permute(x, p), q) → permute(x, p∘q)   permute(x, identity) → x
    reshape(reshape(x)) → reshape(x) (a 0 keeps its meaning)   reshape/flatten/cast that changes nothing → x
    dim(x) of a static dim → constant             if(constant) → the taken region inlined
"""

from __future__ import annotations

from ..ir.builder import Builder
from ..ir.core import Function, Module, Op, Value
from ..ir.ops import OPS, with_defaults
from ..ir.types import ScalarType, TensorType, is_float
from .base import (
    Pass,
    Pattern,
    apply_patterns,
    const_array,
    is_constant,
    is_splat,
    register,
)


def _same_type(op: Op, x: Value) -> list[Value] | None:
    return [x] if op.results[0].type == x.type else None


def identity_operand(op: Op, b: Builder) -> list[Value] | None:
    # floats: -0.0 + 0.0 is 0.0 and -0.0 - -0.0 is 0.0, so only x + -0.0 and x - 0.0 are x
    signed = is_float(op.results[0].type) if op.results else False
    if op.name == "add" and is_splat(op.operands[1], 0, True if signed else None):
        return _same_type(op, op.operands[0])
    if op.name == "sub" and is_splat(op.operands[1], 0, False if signed else None):
        return _same_type(op, op.operands[0])
    if op.name == "add" and is_splat(op.operands[0], 0, True if signed else None):
        return _same_type(op, op.operands[1])
    if op.name in ("mul", "div", "pow") and is_splat(op.operands[1], 1):
        return _same_type(op, op.operands[0])
    if op.name == "mul" and is_splat(op.operands[0], 1):
        return _same_type(op, op.operands[1])
    return None


def constants_right(op: Op, b: Builder) -> list[Value] | None:
    if not OPS[op.name].commutative or len(op.operands) != 2:
        return None
    x, y = op.operands
    if not is_constant(x) or is_constant(y):
        return None
    return b.create(op.name, [y, x], op.attrs, op.result_types).results


def _producer(v: Value, name: str) -> Op | None:
    p = v.op
    return p if p is not None and p.name == name else None


def involutions(op: Op, b: Builder) -> list[Value] | None:
    if op.name == "neg" and (p := _producer(op.operands[0], "neg")):
        return [p.operands[0]]
    if op.name in ("relu", "logical_not") and (p := _producer(op.operands[0], op.name)):
        return [p.results[0]] if op.name == "relu" else [p.operands[0]]
    if op.name == "dropout":
        return [op.operands[0]]
    return None


def _norm(d: int, rank: int) -> int:
    return d % rank if rank else 0


def _tensor_operand(op: Op) -> TensorType | None:
    t = op.operands[0].type if op.operands else None
    return t if isinstance(t, TensorType) else None


def layout(op: Op, b: Builder) -> list[Value] | None:
    t = _tensor_operand(op)
    if t is None or op.name not in ("transpose", "permute", "reshape", "flatten", "cast"):
        return None
    x, r = op.operands[0], t.rank
    if op.name == "transpose":
        pair = {_norm(op.attrs["dim0"], r), _norm(op.attrs["dim1"], r)}
        if len(pair) == 1:
            return [x]
        p = _producer(x, "transpose")
        if p and {_norm(p.attrs["dim0"], r), _norm(p.attrs["dim1"], r)} == pair:
            return [p.operands[0]]
    elif op.name == "permute":
        q = [_norm(d, r) for d in op.attrs["dims"]]
        if q == list(range(r)):
            return [x]
        p = _producer(x, "permute")
        if p:
            inner = [_norm(d, r) for d in p.attrs["dims"]]
            return [b.permute(p.operands[0], dims=[inner[i] for i in q])]
    elif op.name == "reshape":
        p = _producer(x, "reshape") or _producer(x, "flatten")
        target = _composed_target(op.attrs["shape"], p, t) if p else None
        if p and target is not None:
            return b.create("reshape", [p.operands[0]], {**op.attrs, "shape": target},
                            op.result_types).results
        if t.is_static and op.results[0].type == t:
            return [x]
    elif op.name == "flatten":
        a = with_defaults("flatten", op.attrs)
        if r and _norm(a["start_dim"], r) == _norm(a["end_dim"], r):
            return [x]
    elif op.results[0].type == t:  # cast to the same dtype
        return [x]
    return None


def _composed_target(target: list[int], p: Op, mid: TensorType) -> list[int] | None:
    """The target of `reshape(p's input)` equal to `reshape(p(x), target)` where `p` is a
    reshape or flatten whose result has type `mid`, or None. A 0 in `target` copies a dim of
    `p`'s result: it still means that dim of `x` where `p` kept it in place (a 0 of p's own
    target, a dim before a flatten's start); a static size otherwise; no composition if
    neither (`reshape(reshape(x, [3, 4]), [0, -1])` of x [2, 6] is [3, 4], not [2, 6])."""
    if p.name == "reshape":
        kept = {i for i, d in enumerate(p.attrs["shape"]) if d == 0}
    else:
        rank = p.operands[0].type.rank  # type: ignore[union-attr]
        kept = set(range(_norm(with_defaults("flatten", p.attrs)["start_dim"], rank)))
    out = []
    for i, d in enumerate(target):
        if d == 0 and i not in kept:
            size = mid.shape[i] if i < mid.rank else None
            if not isinstance(size, int) or size == 0:
                return None
            d = size
        out.append(d)
    return out


def static_dim(op: Op, b: Builder) -> list[Value] | None:
    t = _tensor_operand(op)
    if op.name != "dim" or t is None:
        return None
    d = t.shape[_norm(op.attrs["dim"], t.rank)]
    if not isinstance(d, int):
        return None
    return [b.constant(d, ScalarType("i64"))]


def constant_if(op: Op, b: Builder) -> list[Value] | None:
    if op.name != "if":
        return None
    c = const_array(op.operands[0])
    if c is None:
        return None
    region = op.regions[0] if bool(c) else op.regions[1]
    *body, term = region.ops
    for inner in body:
        region.remove(inner)
        b.insert(inner)
    return list(term.operands)


PATTERNS: list[Pattern] = [identity_operand, constants_right, involutions, layout, static_dim, constant_if]


@register
class Canonicalize(Pass):
    name = "canonicalize"

    def run_on_function(self, f: Function, module: Module) -> bool:
        return apply_patterns(f, PATTERNS)
