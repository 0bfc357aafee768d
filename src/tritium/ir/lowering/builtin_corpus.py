"""The lowerings of the builtins in tritium.check.builtins.corpus: stop_gradient (its value:
gradients are a training-time matter), linear / ternary_linear, depthwise_conv2d, log2;
`all` / `any` have no IR op (they decide asserts in the PyTorch backend)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ...frontend.diagnostics import Span
from ..builder import Builder
from ..types import TensorType
from .builtin_core import _BUILTIN_FNS, _builtin
from .builtin_seed import _conv, _f32, _scalar
from .values import LoweringError

if TYPE_CHECKING:
    from .lowerer import Lowerer


@_builtin("stop_gradient", "detach")
def _stop_gradient(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return a["x"]


@_builtin("linear", "ternary_linear")
def _linear(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    w = _f32(lw, b, a["w"], span)
    if lw.result.call_forms.get(span) == "w_in_out":   # the seed's [in, out] weight
        w = b.transpose(w, dim0=0, dim1=1)
    ops = [_f32(lw, b, a["x"], span), w]
    if a["bias"] is not None:
        ops.append(_f32(lw, b, a["bias"], span))
    return b.linear(*ops)


@_builtin("depthwise_conv2d")
def _depthwise(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    w = _f32(lw, b, a["w"], span)
    t = w.type
    if not isinstance(t, TensorType) or t.rank != 4 or not isinstance(t.shape[0], int):
        raise LoweringError("depthwise_conv2d needs a 4-d kernel with a known channel count",
                            span)
    return _conv(lw, b, _f32(lw, b, a["x"], span), w, {**a, "groups": t.shape[0]}, span)


@_builtin("log2")
def _log2(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if isinstance(a["x"], int | float) and not isinstance(a["x"], bool):
        return math.log2(a["x"])
    return b.mul(b.log(_f32(lw, b, a["x"], span)), _scalar(b, 1.0 / math.log(2.0)))


@_builtin("max_abs")
def _max_abs(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    return _BUILTIN_FNS["amax"](lw, b, {**a, "x": b.abs(x)}, span)


@_builtin("diagonal")
def _diagonal(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    t = x.type
    if not isinstance(t, TensorType) or t.rank != 2 or not all(isinstance(d, int)
                                                                for d in t.shape):
        raise LoweringError("diagonal needs a matrix of known size when lowering", span)
    n, m = t.shape
    eye = b.constant(np.eye(n, m).tolist(), TensorType((n, m), "f32"))
    return b.op("sum", b.mul(x, eye), dims=[1], keepdim=False) if n <= m else \
        b.op("sum", b.mul(x, eye), dims=[0], keepdim=False)


@_builtin("all", "any")
def _truth(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    raise LoweringError("all() / any() have no IR op: they run in the PyTorch backend", span)
