"""Builtins the seed language's programs call that the other tables lack: `stop_gradient`
(the straight-through idiom `stop_gradient(q) + (x - stop_gradient(x))`), `linear`,
`ternary_linear`, `depthwise_conv2d`, `log2`, `all` / `any` and `length`: their rules,
templates and records, registered last."""

from __future__ import annotations

import math
import re

from ..types import ANY, BOOL, ScalarT, TensorT, Value, dims_conflict
from .core import _X
from .records import IR, _alias, _fn, _opt, _p
from .rules import _xt, elementwise_rule, reduce_rule, ternary_matmul_rule
from .seed import _CONV, conv2d_rule

_ATOM = re.compile(r"[\w.]+")   # a name or attribute: `.detach()` needs no parentheses

# ----------------------------------------------------------------------------- rules


def linear_rule(ck, name, b, e) -> Value:
    """x @ wᵀ (+ bias) with w [out, in]; `ternary_linear` also takes the seed's [in, out]
    weight when only that layout fits x (the call's form `w_in_out`)."""
    xt, wt = b["x"].ty, b["w"].ty
    if name == "ternary_linear" and isinstance(xt, TensorT) and isinstance(wt, TensorT) and \
            xt.shape and wt.shape and len(wt.shape) == 2 and \
            not dims_conflict(wt.shape[0], xt.shape[-1]) and \
            (dims_conflict(wt.shape[1], xt.shape[-1]) or wt.shape[0] != wt.shape[1]):
        ck.call_forms[e.span] = "w_in_out"
        b = {**b, "w": Value(TensorT(wt.dtype, (wt.shape[1], wt.shape[0]), wt.ternary))}
    r = ternary_matmul_rule(ck, name, {"x": b["x"], "w": b["w"]}, e)
    bias = b.get("bias")
    if bias is not None and isinstance(bias.ty, TensorT) and isinstance(r.ty, TensorT):
        return ck.tensor_binary("+", r.ty, bias.ty, e)
    return r


def truth_rule(ck, name, b, e) -> Value:
    """all(x) / any(x): one bool for a tensor of any dtype (nonzero is true)."""
    x = b["x"]
    if not isinstance(x.ty, TensorT | ScalarT) or (isinstance(x.ty, ScalarT)
                                                   and x.ty.name == "str"):
        ck.report("E0404", f"argument `x` of `{name}` must be a tensor, got {x.ty}", e.span)
        return Value(ANY)
    return Value(BOOL)


def depthwise_rule(ck, name, b, e) -> Value:
    """depthwise_conv2d(x [N, C, H, W], w [C, 1, kh, kw]): conv2d with groups = C."""
    wt = b["w"].ty
    groups = wt.shape[0] if isinstance(wt, TensorT) and wt.shape else None
    return conv2d_rule(ck, name, {**b, "weight": b["w"],
                                  "groups": Value.of(groups) if isinstance(groups, int)
                                  else Value(ScalarT("int"))}, e)


def stop_gradient_rule(ck, name, b, e) -> Value:
    """The value of x (a tensor keeps its dtype, shape and ternary mark)."""
    xt = _xt(b)
    return Value(xt) if xt is not None else elementwise_rule(ck, name, b, e)


def diagonal_rule(ck, name, b, e) -> Value:
    """diagonal(x): the main diagonal of a matrix [n, m] -> [min(n, m)]."""
    xt = _xt(b)
    if xt is None or xt.shape is None:
        return Value(TensorT(xt.dtype if xt else "float32", None))
    if len(xt.shape) != 2:
        ck.report("E0507", f"diagonal needs a matrix (rank 2), got rank {len(xt.shape)}",
                  e.span)
        return Value(ANY)
    n, m = xt.shape
    d = n if not dims_conflict(n, m) and n is not None else (
        min(n, m) if isinstance(n, int) and isinstance(m, int) else None)
    return Value(TensorT(xt.dtype, (d,), xt.ternary))


# ----------------------------------------------------------------------------- templates

def _linear_torch(a: dict[str, str], given: set[str]) -> str:
    w = f"{a['w']}.t()" if "@w_in_out" in given else a["w"]
    return f"F.linear({a['x']}, {w}, {a['bias']})"


# ----------------------------------------------------------------------------- the table

_fn("stop_gradient", _X, "the value of x with no gradient (x.detach()): "
    "stop_gradient(q) + (x - stop_gradient(x)) is q forward and x's gradient backward",
    stop_gradient_rule, lambda a, given: f"{a['x']}.detach()" if _ATOM.fullmatch(a["x"])
    else f"({a['x']}).detach()")   # `(a - b).detach()`, not `a - b.detach()`
_alias("detach", "stop_gradient")
_LIN = (_p("x"), _p("w"), _opt("bias", "tensor", None))
_fn("linear", _LIN, "x @ wᵀ + bias with w [out, in] (F.linear)", linear_rule,
    "F.linear({x}, {w}, {bias})", aliases=(("weight", "w"), ("input", "x")))
_fn("ternary_linear", _LIN, "x @ w + bias with ternary w: [out, in], or the seed's [in, out] "
    "when only that layout fits x", linear_rule, _linear_torch,
    aliases=(("weight", "w"), ("input", "x"), ("weights", "w")))
_fn("depthwise_conv2d", (_p("x"), _p("w"), _opt("bias", "tensor", None), *_CONV[:3]),
    "depthwise 2-d convolution: one [1, kh, kw] kernel per channel of x (conv2d with "
    "groups = channels)", depthwise_rule,
    "trt.depthwise_conv2d({x}, {w}, {bias}, stride={stride}, padding={padding}, "
    "dilation={dilation})", aliases=(("weight", "w"),))
_fn("log2", _X, "base-2 logarithm", elementwise_rule, "torch.log2({x})",
    py=math.log2)
for _n, _d in (("all", "true when every element is nonzero"),
               ("any", "true when some element is nonzero")):
    _fn(_n, _X, _d, truth_rule, f"bool(torch.{_n}(torch.as_tensor({{x}})))")
_alias("length", "len")
_alias("quantize", "quantize_ternary")
_fn("diagonal", _X, "the main diagonal of a matrix [n, m] (a vector of min(n, m))",
    diagonal_rule, "torch.diagonal({x})")
_fn("max_abs", (_p("x"), _opt("dim", "ints", None), _opt("keepdim", "bool", False)),
    "max |x| over `dim` (all dims when omitted)", reduce_rule,
    lambda a, given: f"torch.amax(torch.abs({a['x']}), dim={a['dim']}, keepdim={a['keepdim']})"
    if "dim" in given else f"torch.amax(torch.abs({a['x']}))")
del IR
