"""The forms of a builtin call the checker decides from its arguments' types and records in
`CheckResult.call_forms` (by the call's span), so that the lowering and the code generator
write the same computation: `max(a, b)` / `min(a, b)` of two numbers (`scalar`) or of a
tensor and a number or tensor (`pair`, elementwise), as opposed to a reduction over `dim`."""

from __future__ import annotations

from ..types import FLOAT, FLOAT_TYPES, INT, INT_TYPES, ScalarT, TensorT, Value


def _number(v: Value) -> bool:
    return isinstance(v.ty, ScalarT) and v.ty.name in INT_TYPES | FLOAT_TYPES | {"trit"}


def pair_form(a: Value, b: Value) -> str | None:
    """`scalar` for two numbers, `pair` for an elementwise max/min (two tensors, a tensor and a
    float, a number and a tensor), None for a reduction (`max(x, 1)`: over dim 1)."""
    if _number(a) and _number(b):
        return "scalar"
    if _number(a) and isinstance(b.ty, TensorT):
        return "pair"
    if isinstance(a.ty, TensorT) and (isinstance(b.ty, TensorT) or (
            _number(b) and b.ty.name in FLOAT_TYPES)):
        return "pair"
    return None


def scalar_pair(op: str, a: Value, b: Value) -> Value:
    """max/min of two numbers: a float when either is, its value when both are known."""
    ty = FLOAT if FLOAT_TYPES & {a.ty.name, b.ty.name} else INT
    if a.known and b.known and isinstance(a.const, int | float) and isinstance(b.const, int | float):
        v = max(a.const, b.const) if op == "maximum" else min(a.const, b.const)
        return Value(ty, float(v) if ty is FLOAT else v, True)
    return Value(ty)


def dtype_constant(e) -> float | None:
    """`float32.inf`, `float16.nan` (a float dtype's infinity or NaN, the seed's special
    values), or None for any other expression."""
    from ...frontend import ast as A
    if isinstance(e, A.Attr) and isinstance(e.value, A.Name) and e.attr in ("inf", "nan") \
            and e.value.id in FLOAT_TYPES:
        return float(e.attr)
    return None
