"""The lowerings of the builtins in tritium.check.builtins.masking: `masked_fill` (a select:
`where(mask, value, x)`) and `sum`, which over a list is Python's sum (its elements added,
the checker's call form `sum_list`) and over a tensor the reduction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...check.builtins.masking import SUM_LIST
from ...frontend.diagnostics import Span
from ..builder import Builder
from ..types import TensorType
from .builtin_core import _BUILTIN_FNS, _builtin
from .values import LoweringError

if TYPE_CHECKING:
    from .lowerer import Lowerer


@_builtin("masked_fill")
def _masked_fill(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = lw.to_value(b, a["x"], None, span)
    out = _BUILTIN_FNS["where"](lw, b, {"cond": a["mask"], "a": a["value"], "b": x}, span)
    if isinstance(x.type, TensorType) and isinstance(out.type, TensorType) \
            and out.type.dtype != x.type.dtype:
        out = b.cast(out, dtype=x.type.dtype)   # the result keeps x's dtype, as torch's does
    return out


@_builtin("unbind")
def _unbind(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = lw.to_value(b, a["x"], None, span)
    t = x.type
    d = a["dim"]
    if not isinstance(t, TensorType) or t.shape is None or not isinstance(d, int):
        raise LoweringError("unbind needs a tensor of known rank and a known `dim`", span)
    if not -len(t.shape) <= d < len(t.shape):
        raise LoweringError(f"dim {d} is out of range for a tensor of rank {len(t.shape)}",
                            span)
    n = t.shape[d]
    if not isinstance(n, int):
        raise LoweringError("unbind of a dim whose size is not known when lowering", span)
    return [b.index(x, dim=d % len(t.shape), index=k) for k in range(n)]


_REDUCE_SUM = _BUILTIN_FNS["sum"]


@_builtin("sum")
def _sum(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if lw.result.call_forms.get(span) != SUM_LIST:
        return _REDUCE_SUM(lw, b, a, span)
    items = a["x"]
    if not isinstance(items, list | tuple):
        raise LoweringError("`sum` of a list needs a list whose length is known when lowering",
                            span)
    acc: Any = 0
    for i, v in enumerate(items):
        acc = v if i == 0 else lw.binary("+", acc, v, b, span)
    return acc
