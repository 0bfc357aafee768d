"""The seed's list forms (issue 13, `decl`): lists used as tensors, lists repeated by a
float count. (Spread `...xs` and rest patterns `let [first, ...rest] = xs` have no meaning in
.tri: the parser reports them, E0900.)

* a tensor method on a list (`shuffle(values).reshape(shape)`) converts the list to a
  float32 tensor first, as `tensor(values)` does; the form `list_tensor` of the method's span
  tells the lowering and the code generator.
* `[x] * n` where n is a float (`total / 3` of ints is a float) that is whole when known
  repeats the list `floor(n)` times, with the warning W1034 (a known fractional count, `2.5`,
  stays E0405) (without it when n's type is known only at run
  time); the form `repeat_floor` of the `*`'s span.
"""

from __future__ import annotations

from ...frontend import ast as A
from ..types import (
    FLOAT_TYPES,
    AnyT,
    ListT,
    ScalarT,
    TensorT,
    Value,
)
from .model import _is_int

REPEAT_FLOAT = "W1034"
LIST_TENSOR = "list_tensor"
REPEAT_FLOOR = "repeat_floor"


def list_as_tensor(ck, base: Value, f: A.Attr) -> Value:
    """The list `base` converted to a tensor for the tensor method `f` (`xs.reshape(s)`)."""
    ck.call_forms[f.span] = LIST_TENSOR
    n = None
    if isinstance(base.const, list) and all(_is_int(c) or isinstance(c, float)
                                            for c in base.const) and base.known:
        n = len(base.const)
    return Value(TensorT("float32", (n,)))


def repeat_count(ck, n: Value, e) -> Value | None:
    """The int count of `[x] * n` when n is a float (W1034); None for any other n."""
    if not (isinstance(n.ty, ScalarT) and n.ty.name in FLOAT_TYPES) or e is None:
        return None
    if n.known and isinstance(n.const, float) and not float(n.const).is_integer():
        return None   # `[0] * 2.5`: E0405 (a count known to be fractional is a mistake)
    ck.call_forms[e.span] = REPEAT_FLOOR
    ck.warn(REPEAT_FLOAT, "a list repeated by a float count: repeated floor(count) times",
            e.span, label="a float count",
            help="`/` of ints is a float; write `floordiv(a, b)` or `int(n)` for the count")
    if n.known and isinstance(n.const, int | float) and not isinstance(n.const, bool):
        try:
            return Value(ScalarT("int"), int(n.const // 1), True)
        except (OverflowError, ValueError):
            return Value(ScalarT("int"))
    return Value(ScalarT("int"))


def repeat_by_unknown(ck, ta, tb, e) -> bool:
    """`[x] * n` with n of a type not known (a `/` of values known only at run time is a
    float there): repeated floor(n) times at run time (the form `repeat_floor`)."""
    if not (isinstance(ta, ListT) and isinstance(tb, AnyT)
            or isinstance(tb, ListT) and isinstance(ta, AnyT)) or e is None:
        return False
    ck.call_forms[e.span] = REPEAT_FLOOR
    return True
