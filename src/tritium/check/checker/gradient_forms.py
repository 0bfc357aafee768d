"""`a with_gradient_from b` (the seed's straight-through estimator): the value is `a`, the
gradient flows to `b` as if through the identity (`b + (a - b).detach()` in PyTorch). `b`
must be a tensor (the value the gradient reaches), `a` a tensor or a number, and their
shapes must broadcast (E0505); the result has the broadcast shape, `a`'s values (ternary
when `a` is) and a float dtype (a trit or int `a` becomes float32, as the gradient needs)."""

from __future__ import annotations

from ...frontend import ast as A
from ..types import ANY, FLOAT_TYPES, AnyT, ScalarT, TensorT, Value


def with_gradient_value(ck, e: A.WithGradient, scope) -> Value:
    a = ck.eval_expr(e.value, scope)
    b = ck.eval_expr(e.source, scope)
    if isinstance(a.ty, AnyT) or isinstance(b.ty, AnyT):
        return Value(a.ty if isinstance(a.ty, TensorT) else ANY)
    if not isinstance(b.ty, TensorT):
        ck.report("E0992", f"`with_gradient_from` needs a tensor on its right, got {b.ty}",
                  e.source.span, label="the gradient flows to this value",
                  help="write `quantized with_gradient_from x` where `x` is the tensor "
                       "the straight-through gradient reaches")
        return Value(a.ty if isinstance(a.ty, TensorT) else ANY)
    if not isinstance(a.ty, TensorT) and not (
            isinstance(a.ty, ScalarT) and a.ty.name not in ("str", "bool")):
        ck.report("E0992", f"`with_gradient_from` needs a tensor or a number on its left, "
                           f"got {a.ty}", e.value.span, label="the forward value")
        return Value(b.ty)
    sa = a.ty.shape if isinstance(a.ty, TensorT) else ()
    shape = ck.broadcast(sa, b.ty.shape, e.span)
    da = a.ty.dtype if isinstance(a.ty, TensorT) else None
    if da in FLOAT_TYPES:
        dtype = da
    else:
        dtype = b.ty.dtype if b.ty.dtype in FLOAT_TYPES else "float32"
    ternary = isinstance(a.ty, TensorT) and (a.ty.ternary or da == "trit")
    return Value(TensorT(dtype, shape, ternary))
