"""The seed's integer division: `/` of two ints in a value stored into an int
(`head_dim: int = embed_dim / num_heads`, `let n: int = (a * b) / (c * c)`) is exact integer
arithmetic. Only the divisions on the arithmetic spine of the stored expression count (through
`+ - * / % **`, unary signs and parentheses; never inside a call's arguments, an index or a
list): `round(a / b)` keeps its float. A division of known values that leaves a remainder is an
error (E0990, with the remainder, suggesting `floordiv`); one of values known only later is
taken as floor division with a warning (W0990). Every other `/` of ints is a float, as before.
The checker records each such division as the form `int_div` of its span in
`CheckResult.call_forms`, and the lowering and the code generator divide with `//` there."""

from __future__ import annotations

from ...frontend import ast as A
from .. import bounds
from ..types import INT, INT_TYPES, SymInt, Value
from .model import _paren

INT_DIV = "int_div"
_INTEGRAL = INT_TYPES | {"trit", "bool"}
_SPINE_OPS = ("+", "-", "*", "/", "%", "**")


def mark_int_divisions(ck, te: A.TypeExpr | None, value: A.Expr | None) -> None:
    """Before `value` is evaluated for a variable declared `te`: when `te` is an int type, the
    `/` on the arithmetic spine of `value` become integer-division candidates."""
    if te is None or value is None or te.name not in INT_TYPES or te.args or te.shape:
        return
    spans = ck.__dict__.setdefault("int_div_spans", set())
    powers = ck.__dict__.setdefault("int_pow_spans", set())   # checker.powers
    todo: list[A.Expr] = [value]
    while todo:
        e = todo.pop()
        if isinstance(e, A.Binary) and e.op in _SPINE_OPS:
            if e.op == "/":
                spans.add(e.span)
            elif e.op == "**":
                powers.add(e.span)
            todo += [e.left, e.right]
        elif isinstance(e, A.Unary) and e.op in ("-", "+"):
            todo.append(e.operand)


def is_int_division(ck, op: str, a: Value, b: Value, e) -> bool:
    """`a / b` at `e` is a candidate and both operands are integers."""
    return (op == "/" and e.span in ck.__dict__.get("int_div_spans", ())
            and getattr(a.ty, "name", None) in _INTEGRAL
            and getattr(b.ty, "name", None) in _INTEGRAL)


def int_division(ck, a: Value, b: Value, e: A.Binary) -> Value:
    """The value of an integer `a / b` stored into an int."""
    ca, cb = a.const, b.const
    known = a.known and b.known and isinstance(ca, int) and isinstance(cb, int)
    if known:
        if cb == 0:
            ck.report("E0309", "division by zero", e.span)
            return Value(INT)
        q, r = divmod(int(ca), int(cb))
        if r:
            ck.report("E0990", f"{ca} / {cb} is not a whole number (remainder {r}), so it "
                               f"cannot be stored in an int", e.span,
                      label=f"{ca} / {cb} = {ca / cb:g}",
                      help=f"write `floordiv({_src(e.left)}, {_src(e.right)})` for the "
                           f"rounded-down quotient {q}, or declare a float")
            return Value(INT)
        ck.call_forms[e.span] = INT_DIV
        return Value(INT, q, True)
    ck.call_forms[e.span] = INT_DIV
    ck.warn("W0990", "`/` of ints whose values are not known yet is taken as integer "
                     "division for the int it is stored in", e.span,
            label="rounds down when not exact",
            help=f"write `floordiv({_src(e.left)}, {_src(e.right)})` to say so, or make the "
                 f"values constants")
    if _symbolic(a) and _symbolic(b):   # a dimension the shapes can still name
        text = f"{_paren(ca)}//{_paren(cb)}"
        return Value(INT, SymInt(text) if len(text) <= bounds.MAX_SYMBOLIC else None)
    return Value(INT)


def _symbolic(v: Value) -> bool:
    return isinstance(v.const, SymInt) or (v.known and isinstance(v.const, int)
                                           and not isinstance(v.const, bool))


def _src(e: A.Expr) -> str:
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Num) and not isinstance(e.value, bool):
        return str(e.value)
    return "…"
