"""The seed's list forms (issue 13, `decl`): spread in list literals, rest patterns, lists
used as tensors, lists repeated by a float count.

* `[...xs, ...([0t] * n), y]`: each `...v` puts the items of `v` (a list, a tuple, a range or
  a tensor's rows) in its place; the length is known when every spread list's is. A spread
  of a number or a string is E1033.
* `let [first, ...rest] = xs` (also `let (a, ...rest) = …`, the rest anywhere): the names
  before and after the rest take one item each, the rest takes the items between, as a list
  (possibly empty); fewer items than the other names is E0864.
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
from .. import bounds
from ..types import (
    ANY,
    FLOAT_TYPES,
    AnyT,
    ListT,
    RangeT,
    ScalarT,
    TensorT,
    TupleT,
    Value,
)
from .model import _is_int

BAD_SPREAD = "E1033"
REPEAT_FLOAT = "W1034"
LIST_TENSOR = "list_tensor"
REPEAT_FLOOR = "repeat_floor"


def list_literal(ck, e: A.ListLit, scope) -> Value:
    """A list literal with spread items."""
    vals: list[Value] | None = []
    for x in e.items:
        if not isinstance(x, A.Spread):
            v = ck.eval_expr(x, scope)
            if vals is not None:
                vals.append(v)
            continue
        if isinstance(x.value, A.Range):   # `...(0..n)`: its integers, when known
            seq = ck.range_values(x.value, scope)
            if seq is None or vals is None or bounds.range_len(seq) > bounds.MAX_SEQUENCE:
                vals = None
            else:
                vals.extend(Value.of(i) for i in seq)
            continue
        v = ck.eval_expr(x.value, scope)
        if isinstance(v.ty, ListT | TupleT):
            parts = ck.elements(v)
            if parts is None or vals is None:
                vals = None
            else:
                vals.extend(parts)
        elif isinstance(v.ty, TensorT | RangeT | AnyT):
            vals = None   # a tensor's rows: as many as its first dim, known at run time
        else:
            ck.report(BAD_SPREAD, f"cannot spread {v.ty} into a list", x.span,
                      label="not a list", help="spread a list, a tuple, a range or a tensor "
                                               "(`...xs`); write a single item without `...`")
        if vals is not None and len(vals) > bounds.MAX_SEQUENCE:
            ck.report("E0312", f"a list longer than {bounds.MAX_SEQUENCE} elements at compile "
                               f"time", e.span, label="too long")
            return Value(ListT())
    if vals is None:
        return Value(ListT())
    if all(v.known for v in vals):
        return Value(ListT(), [v.const for v in vals], True)
    return Value(ListT(), list(vals), False)


def unpack_rest(ck, s: A.Unpack, v: Value, span) -> list[Value]:
    """The values of `let [a, ...rest, b] = v`, one per target (the rest a list)."""
    n = len(s.targets)
    parts = ck.elements(v)
    if parts is None:
        if not isinstance(v.ty, ListT | TupleT | AnyT):
            ck.report("E0864", f"cannot unpack {v.ty} into {n} names", span,
                      help="the value must be a list or a tuple")
        return [Value(ListT()) if i == s.rest else Value(ANY) for i in range(n)]
    if len(parts) < n - 1:
        ck.report("E0864", f"cannot unpack {len(parts)} value(s) into {n - 1} names and a "
                           f"rest", span, label=f"{len(parts)} value(s)")
        return [Value(ListT()) if i == s.rest else Value(ANY) for i in range(n)]
    k = s.rest
    after = n - 1 - k
    middle = parts[k:len(parts) - after]
    rest = Value(ListT(), [p.const for p in middle], True) if all(p.known for p in middle) \
        else Value(ListT(), list(middle), False)
    return [*parts[:k], rest, *parts[len(parts) - after:]]


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
