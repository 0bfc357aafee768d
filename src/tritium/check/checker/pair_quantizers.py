"""Quantizers that return a pair when destructured: the seed's XNOR-Net binarization
`let (values, scale) = xnor_quantize(w)` gives the sign values (±1, with the clipped
straight-through gradient) and the per-tensor scale mean|w| (a 0-d tensor), so that
`values * scale` is what the single-value `let q = xnor_quantize(w)` gives (that form keeps
its meaning). The checker records the pair form as `values_scale` of the call's span in
`CheckResult.call_forms`; the lowering and the code generator read it there."""

from __future__ import annotations

from ...frontend import ast as A
from ..builtins import FUNCTIONS
from ..types import ListT, TensorT, Value

VALUES_SCALE = "values_scale"
PAIR_QUANTIZERS = frozenset({"xnor_quantize"})
"""The builtins whose destructuring into two names is (values, scale)."""


def pair_quantizer_value(ck, s: A.Unpack, scope) -> Value | None:
    """The (values, scale) pair of `let (v, s) = xnor_quantize(w)`, or None when `s` is not
    such a destructuring (then it is evaluated as any other)."""
    call = s.value
    if len(s.targets) != 2 or not isinstance(call, A.Call) or not isinstance(call.func, A.Name):
        return None
    name = call.func.id
    spec = FUNCTIONS.get(name)
    if spec is None or (spec.of or name) not in PAIR_QUANTIZERS or name in ck.defs \
            or name in scope.vars:
        return None
    single = ck.eval_expr(call, scope)
    if not isinstance(single.ty, TensorT):
        return Value(ListT(), [single, single])
    ck.call_forms[call.span] = VALUES_SCALE
    values = Value(TensorT(single.ty.dtype or "float32", single.ty.shape, True))
    scale = Value(TensorT(single.ty.dtype or "float32", ()))
    return Value(ListT(), [values, scale])
