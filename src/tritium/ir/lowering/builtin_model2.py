"""The lowerings of the builtins in tritium.check.builtins.model2: `zeros_like` /
`ones_like` / `full_like`, `argmax` / `argmin`, `one_hot`, `repeat` (`concatenate` is
`concat`); `gumbel_softmax` draws random noise and has no IR op."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...frontend.diagnostics import Span
from ..builder import Builder
from ..types import TensorType
from .builtin_core import _BUILTIN_FNS, _builtin, _dtype_arg, _int_attr, _tensor
from .builtin_seed import _f32, one_hot_f32
from .values import LoweringError

if TYPE_CHECKING:
    from .lowerer import Lowerer


def _like(value: float | None):
    def fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        x = _tensor(lw, b, a["x"], span)
        v = value if value is not None else a["value"]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise LoweringError("`full_like` needs a fill value known when lowering", span)
        dt = _dtype_arg(a.get("dtype"), span) or x.type.dtype
        t = x.type
        if isinstance(t, TensorType) and all(isinstance(d, int) for d in t.shape):
            return b.constant(lw.py_cast(v, dt), TensorType(tuple(t.shape), dt))
        # a dim known only when running: `v` selected at every element of x (whatever x is)
        fill = b.constant(lw.py_cast(v, dt), TensorType((), dt))
        return b.select(b.eq(x, x), fill, fill)
    return fn


_BUILTIN_FNS["zeros_like"] = _like(0.0)
_BUILTIN_FNS["ones_like"] = _like(1.0)
_BUILTIN_FNS["full_like"] = _like(None)
_BUILTIN_FNS["concatenate"] = _BUILTIN_FNS["concat"]


def _arg_fn(negate: bool):
    def fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        x = _f32(lw, b, a["x"], span)
        if negate:
            x = b.neg(x)
        keep = a["keepdim"]
        if not isinstance(keep, bool):
            raise LoweringError("`keepdim` must be true or false", span)
        if a["dim"] is None:
            if keep:
                raise LoweringError("`keepdim` without a `dim` has no IR form", span)
            return b.argmax(b.flatten(x, start_dim=0, end_dim=-1), dim=0, keepdim=False)
        return b.argmax(x, dim=_int_attr(a["dim"], "dim", span), keepdim=keep)
    return fn


_BUILTIN_FNS["argmax"] = _arg_fn(False)
_BUILTIN_FNS["argmin"] = _arg_fn(True)


@_builtin("one_hot")
def _one_hot(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return one_hot_f32(b, _tensor(lw, b, a["idx"], span),
                       _int_attr(a["num_classes"], "num_classes", span))


@_builtin("gumbel_softmax")
def _gumbel(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    raise LoweringError("gumbel_softmax draws random noise: it has no IR op (it runs in the "
                        "PyTorch backend)", span)


@_builtin("repeat")
def _repeat(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _tensor(lw, b, a["x"], span)
    reps = a["repeats"]
    rank = x.type.rank if isinstance(x.type, TensorType) else 0
    if isinstance(reps, list):
        counts = [_int_attr(c, "a count of repeat", span) for c in reps]
        for _ in range(len(counts) - rank):
            x = b.unsqueeze(x, dim=0)
        for d, c in enumerate(counts):
            if c > 1:
                x = b.concat(*([x] * c), dim=d)
        return x
    n = _int_attr(reps, "the count of repeat", span)
    return x if n == 1 else b.concat(*([x] * n), dim=_int_attr(a["dim"], "dim", span))
