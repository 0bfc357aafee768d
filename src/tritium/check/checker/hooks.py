"""`x.register_hook(f)` (the seed's gradient hooks): `f` is called with the gradient of `x`
(a tensor of `x`'s type) during the backward pass and may return nothing or a replacement
gradient. The checker checks the call of `f` with that gradient; the value of
`register_hook` is nothing. The IR (inference, no backward) has nothing to do for it; the
generated module calls PyTorch's `Tensor.register_hook` when `x` requires a gradient (one
that does not has no gradient to hook: nothing happens). `f` is a function value: a named
`fn`, or an anonymous `fn(grad) { … }` (a closure when it reads names around it)."""

from __future__ import annotations

from ...frontend import ast as A
from ..types import ANY, AnyT, FnT, NoneT, TensorT, Value
from .model import Scope

_ABOUT_THE_GRADIENT = ("E0304", "E0305")   # an attribute or a method it does not have


def register_hook(ck, base: Value, e: A.Call, scope) -> Value:
    if len(e.args) != 1 or e.args[0].name is not None:
        ck.report("E0306", "`register_hook` takes one function, by position", e.span,
                  help="write `x.register_hook(fn(grad) { … })`")
        for a in e.args:
            ck.eval_expr(a.value, scope)
        return Value(ANY)
    hook = ck.eval_expr(e.args[0].value, scope)
    if isinstance(hook.ty, AnyT):
        return Value(NoneT())
    if not isinstance(hook.ty, FnT):
        ck.report("E0404", f"`register_hook` takes a function, got {hook.ty}",
                  e.args[0].span, help="write `x.register_hook(fn(grad) { … })`")
        return Value(NoneT())
    grad = Value(TensorT(base.ty.dtype, base.ty.shape)) if isinstance(base.ty, TensorT) \
        else Value(ANY)
    out = ck.fn_value_call(hook.ty, [grad], e)
    if isinstance(grad.ty, TensorT):
        untyped_gradient(ck, hook.ty, grad)
    if not isinstance(out.ty, NoneT | TensorT | AnyT):
        ck.report("E0404", f"a gradient hook returns nothing or a tensor, got {out.ty}",
                  e.args[0].span)
    return Value(NoneT())


def untyped_gradient(ck, ty: FnT, grad: Value) -> None:
    """`fn(grad) { … grad.mena … }`: a hook's parameter without a type is checked on its own
    as a value of unknown type, which has any attribute; here the body is checked with the
    gradient (a tensor), and what it reads of it that a tensor lacks is reported."""
    d = ck.defs.get(ty.name)
    if d is None or d.kind != "fn" or not d.node.params or d.node.params[0].type is not None:
        return
    inputs = [grad, *getattr(ty, "bound", ())]
    if len(inputs) != len(d.node.params):
        return
    saved = ck.inner
    ck.inner = []
    ck.quiet += 1
    ck.instance_depth += 1
    try:
        ck.check_function(d.node, Scope(), {}, inputs=inputs)
        problems = ck.inner
    finally:
        ck.quiet -= 1
        ck.instance_depth -= 1
        ck.inner = saved
    for p in problems:
        if p.code in _ABOUT_THE_GRADIENT:
            ck.report(p.code, p.message, p.span, p.label, p.help, p.secondary)
