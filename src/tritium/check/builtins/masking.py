"""Builtins of the seed language's example programs (issue 13): `masked_fill` (and the
method `x.masked_fill(mask, value)`), and Python's `sum` of a list (`sum([a, b, c])`: the
elements added, tensors elementwise, as Python's `sum` does), beside the reduction `sum(x)`
of a tensor. Imported after `core`, whose `sum` record it widens."""

from __future__ import annotations

from dataclasses import replace

from ..types import ANY, INT, AnyT, ListT, ScalarT, TensorT, TupleT, Value
from . import core  # noqa: F401  (`sum` is registered first)
from .records import FUNCTIONS, _fn, _p

SUM_LIST = "sum_list"
"""The call form (`CheckResult.call_forms`) of `sum` over a list or tuple: Python's sum."""


def masked_fill_rule(ck, name, b, e) -> Value:
    """masked_fill(x, mask, value): x where mask is false, value where it is true (nonzero);
    mask broadcasts to x's shape, the result keeps x's dtype and shape."""
    xt, mt, vt = b["x"].ty, b["mask"].ty, b["value"].ty
    if isinstance(vt, TensorT) and vt.shape not in (None, ()):
        ck.report("E0404", f"`value` of `{name}` must be a number or a 0-d tensor, got {vt}",
                  e.span, help="to take values from a tensor, use `where(mask, values, x)`")
        return Value(ANY)
    if not isinstance(xt, TensorT):
        return Value(ANY) if isinstance(xt, AnyT) else Value(TensorT("float32", ()))
    if isinstance(mt, TensorT):
        r = ck.tensor_binary("+", xt, mt, e)   # broadcasts (E0505 when it cannot)
        if isinstance(r.ty, TensorT) and xt.shape is not None and r.ty.shape is not None \
                and len(r.ty.shape) > len(xt.shape):
            ck.report("E0505", f"the mask of `{name}` has more dims than x ({mt} vs {xt})",
                      e.span, help="the mask must broadcast to x's shape")
            return Value(ANY)
    return Value(TensorT(xt.dtype, xt.shape, False))


def _masked_fill_torch(a: dict[str, str], given: set[str]) -> str:
    return f"({a['x']}).masked_fill(torch.as_tensor({a['mask']}) != 0, {a['value']})"


_fn("masked_fill", (_p("x"), _p("mask"), _p("value", "float")),
    "x with `value` where `mask` is true (nonzero); the mask broadcasts to x",
    masked_fill_rule, _masked_fill_torch)


def unbind_rule(ck, name, b, e) -> Value:
    """unbind(x, dim): the slices of x along `dim`, that dim removed (a list of as many
    tensors as the dim's size: `q, k, v = unbind(qkv, dim: 0)`)."""
    xt = b["x"].ty
    d = b["dim"].const if "dim" in b and b["dim"].known else 0 if "dim" not in b else None
    if not isinstance(xt, TensorT) or xt.shape is None or not isinstance(d, int) \
            or isinstance(d, bool):
        return Value(ListT(TensorT(xt.dtype if isinstance(xt, TensorT) else None, None)))
    i = ck.norm_dim(xt, d, e)
    if i is None:
        return Value(ANY)
    part = TensorT(xt.dtype, xt.shape[:i] + xt.shape[i + 1:], xt.ternary)
    n = xt.shape[i]
    if not isinstance(n, int):
        return Value(ListT(part))
    return Value(ListT(part), [Value(part) for _ in range(n)], True)


_fn("unbind", (_p("x"), _p("dim", "int", 0, required=False)),
    "the slices of x along `dim` (that dim removed), as a list", unbind_rule,
    "list(torch.unbind({x}, dim={dim}))")


# --------------------------------------------------------------------- sum of a list

def _list_items(v: Value) -> list[Value] | None:
    if isinstance(v.const, list):
        return [c if isinstance(c, Value) else Value.of(c) for c in v.const]
    if isinstance(v.ty, TupleT):
        return [Value(t) for t in v.ty.items]
    return None


def sum_list_value(ck, x: Value, e) -> Value:
    """Python's `sum(xs)`: 0 + xs[0] + xs[1] + ... (tensors added elementwise, broadcast)."""
    items = _list_items(x)
    elems = items if items is not None else (
        [Value(x.ty.elem)] if isinstance(x.ty, ListT) and x.ty.elem is not None else [])
    for it in elems:   # Python's sum starts from 0: numbers and tensors only
        if not (isinstance(it.ty, TensorT | AnyT) or isinstance(it.ty, ScalarT)
                and it.ty.name != "str"):
            ck.report("E0404", f"`sum` of a list adds numbers or tensors, not {it.ty}", e.span,
                      help="join lists with `a + b`" if isinstance(it.ty, ListT | TupleT)
                      else None)
            return Value(ANY)
    if items is None:
        elem = x.ty.elem if isinstance(x.ty, ListT) else None
        return Value(elem) if elem is not None else Value(ANY)
    if not items:
        return Value(INT, 0, True)
    acc = items[0]
    for it in items[1:]:
        acc = ck.binary("+", acc, it, e)
    if isinstance(acc.ty, ScalarT) and acc.ty.name in ("bool", "trit"):
        return Value(INT)
    return acc


_SUM = FUNCTIONS["sum"]


def sum_rule(ck, name, b, e) -> Value:
    x = b["x"]
    if isinstance(x.ty, ListT | TupleT):
        if "dim" in b or "keepdim" in b:
            ck.report("E0307", f"`{name}` of a list adds its elements: it takes no `dim`",
                      e.span, help="stack them first: `sum(stack(xs), dim: 0)`")
            return Value(ANY)
        ck.call_forms[e.span] = SUM_LIST
        return sum_list_value(ck, x, e)
    if isinstance(x.ty, ScalarT) and x.ty.name == "str" or not ck.arg_kind_ok("tensor", x):
        ck.report("E0404", f"argument `x` of `{name}` must be a tensor or a list, got {x.ty}",
                  e.span, label="expected a tensor or a list")
        return Value(ANY)
    if isinstance(x.ty, ScalarT):   # `sum(3)`: the reduction of a 0-d tensor
        for a in getattr(e, "args", []):
            if a.name in (None, "x"):
                ck.scalar_tensor_args.add(a.span)
                break
    return _SUM.rule(ck, name, b, e)


def _sum_torch(a: dict[str, str], given: set[str]) -> str:
    if f"@{SUM_LIST}" in given:
        return f"sum({a['x']})"
    return _SUM.torch(a, given) if callable(_SUM.torch) else _SUM.torch.format(**a)


# `sum`'s x: a tensor (the reduction) or a list (Python's sum); the rule tells them apart
FUNCTIONS["sum"] = replace(_SUM, params=(replace(_SUM.params[0], kind="any"),
                                         *_SUM.params[1:]),
                           rule=sum_rule, torch=_sum_torch,
                           doc=_SUM.doc + "; of a list: its elements added (Python's sum)")
