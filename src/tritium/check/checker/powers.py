"""Powers of integers, typed as they run. A number `a ** b` of ints is, as in Python, an int
for an exponent known not to be negative (`n ** 2`, `2 ** depth` of a known depth) and a float
for a negative one (`n ** -1`). An exponent not known when checking (a size `x.shape[0] - 3`,
a function's int argument) may come out negative, so such a power is a float: it is recorded
as the form `float_pow` of its span in `CheckResult.call_forms`, and the lowering and the code
generator take its base as a float there (`float(d) ** k`), whatever the exponent's sign; a
later check of the same span that knows the exponent types it float too.

In a value stored into an int (`n: int = 2 ** k`, the arithmetic spine that the seed's
integer division follows, checker.int_division) and in a config constant (`hidden: 2 **
depth`) a power of ints stays an int: the form `int_pow`, whose value is truncated to an int
(`int(2 ** k)`; torch's integer power of a tensor: 0 for 2 ** -1).

An integer tensor to a negative integer power (`int32(x) ** -1`) has no value: torch refuses
it ('Integers to negative integer powers are not allowed'), and so does the checker (E0405).
A tensor exponent is computed as torch computes it (`2 ** int32(x)`: 0 where x < 0)."""

from __future__ import annotations

from ...frontend import ast as A
from ..types import INT_TYPES, ScalarT, SymInt, TensorT, Value

FLOAT_POW = "float_pow"
INT_POW = "int_pow"
_INTEGRAL = INT_TYPES | {"trit", "bool"}


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def power_is_float(ck, a: Value, b: Value, e) -> bool:
    """`a ** b` of two ints at `e` is a float (marked FLOAT_POW where computed at run time);
    False for an int (marked INT_POW where stored into an int or a config constant)."""
    cb = b.const
    marked = ck.call_forms.get(e.span) if isinstance(e, A.Binary) else None
    if b.known and _number(cb) and not isinstance(cb, SymInt):
        if cb >= 0:   # Python: an int (a float where another check could not tell)
            return marked == FLOAT_POW
        if isinstance(e, A.Binary) and not a.known and marked != INT_POW:
            ck.call_forms[e.span] = FLOAT_POW   # `x.shape[0] ** -1` of a run-time size
        return True
    if isinstance(e, A.Binary) and e.span in ck.__dict__.get("int_pow_spans", ()):
        ck.call_forms[e.span] = INT_POW
    # an exponent not known here (a layer's `bits`, a function's argument, a size): an int,
    # computed as Python does (`2 ** (bits - 1)` is the int 8 for bits = 4, a size torch
    # takes; a float only for a negative exponent, which a check cannot see coming)
    return False


def mark_int_powers(ck, value: A.Expr | None) -> None:
    """A config constant (`hidden: 2 ** depth`, a size or a count): the powers on its
    arithmetic spine stay ints (INT_POW), as in a value stored into an int."""
    powers = ck.__dict__.setdefault("int_pow_spans", set())
    todo = [value] if value is not None else []
    while todo:
        e = todo.pop()
        if isinstance(e, A.Binary) and e.op in ("+", "-", "*", "/", "%", "**"):
            if e.op == "**":
                powers.add(e.span)
            todo += [e.left, e.right]
        elif isinstance(e, A.Unary) and e.op in ("-", "+"):
            todo.append(e.operand)


def negative_power_of_int_tensor(ck, a: Value, b: Value, e) -> bool:
    """`int32(x) ** -1`: reported (E0405), as torch raises for it; True when reported."""
    ta, tb = a.ty, b.ty
    if not (isinstance(ta, TensorT) and ta.dtype in _INTEGRAL and isinstance(tb, ScalarT)
            and tb.name in _INTEGRAL and b.known and _number(b.const) and b.const < 0):
        return False
    ck.report("E0405", f"an integer tensor ({ta.dtype}) to a negative integer power "
                       f"({b.const}) has no value (PyTorch refuses it)", e.span,
              label=f"{ta.dtype} ** {b.const}",
              help=f"make the base a float (`float32(x) ** {b.const}`) or the exponent "
                   f"(`** {b.const}.0`)")
    return True
