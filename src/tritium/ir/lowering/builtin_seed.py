"""The lowerings of the seed language's builtins: tensors from data, arange, linspace,
eye, std/var, dot, outer, split, conv2d, batch_norm, layer_norm, mse_loss, cross_entropy."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ...frontend.diagnostics import Span
from ...vocab import DTYPES
from ..builder import Builder
from ..core import Value
from ..types import FLOAT_DTYPES, ScalarType, TensorType
from .builtin_core import (
    _BUILTIN_FNS,
    BuiltinFn,
    _builtin,
    _dtype_arg,
    _int_attr,
    _ints_attr,
    _tensor,
)
from .values import (
    LoweringError,
    _is_int,
    _is_num,
    _pair,
)

if TYPE_CHECKING:
    from .lowerer import Lowerer


# ----------------------------------------------------------------------------- the seed's builtins

F32 = ScalarType("f32")


def _num_attr(v: Any, what: str, span: Span | None) -> float:
    if not _is_num(v):
        raise LoweringError(f"`{what}` must be a number known when lowering", span)
    return float(v)


def _f32(lw: Lowerer, b: Builder, v: Any, span: Span | None) -> Value:
    x = _tensor(lw, b, v, span)
    if x.type.dtype not in FLOAT_DTYPES:
        x = b.cast(x, dtype="f32")
    return x


def _scalar(b: Builder, v: float) -> Value:
    return b.constant(float(v), F32)


def _rank(x: Value) -> int:
    t = x.type
    return t.rank if isinstance(t, TensorType) else 0


@_builtin("tensor", "ternary_tensor")
def _tensor_data(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    dt = "trit" if "dtype" not in a else _dtype_arg(a["dtype"], span) or "f32"
    data = a["data"]
    flat: list[Any] = []

    def walk(x: Any) -> list[int]:
        if isinstance(x, list):
            subs = [walk(i) for i in x]
            if any(sub != subs[0] for sub in subs[1:]):
                raise LoweringError("tensor data is ragged", span)
            return [len(x)] + (subs[0] if subs else [])
        if not (_is_num(x) or isinstance(x, bool)):
            raise LoweringError("tensor data must be numbers known when lowering", span)
        flat.append(x)
        return []
    shape = walk(data)
    return b.constant([lw.py_cast(v, dt) for v in flat], TensorType(tuple(shape), dt))


@_builtin("arange")
def _arange(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    start, end, step = a["start"], a["end"], a["step"]
    if end is None:
        start, end = 0, start
    for v, what in ((start, "start"), (end, "end"), (step, "step")):
        _num_attr(v, what, span)
    dt = _dtype_arg(a["dtype"], span) or (
        "i64" if all(_is_int(v) for v in (start, end, step)) else "f32")
    vals = np.arange(start, end, step)
    return b.constant([lw.py_cast(v.item(), dt) for v in vals], TensorType((len(vals),), dt))


@_builtin("linspace")
def _linspace(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    n = _int_attr(a["steps"], "steps", span)
    vals = np.linspace(_num_attr(a["start"], "start", span), _num_attr(a["end"], "end", span), n)
    return b.constant([float(v) for v in vals], TensorType((n,), "f32"))


@_builtin("eye")
def _eye(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    n = _int_attr(a["n"], "n", span)
    m = n if a["m"] is None else _int_attr(a["m"], "m", span)
    out = b.constant(np.eye(n, m).tolist(), TensorType((n, m), "f32"))
    ir = DTYPES[a["dtype"]].ir if a.get("dtype") is not None else None
    return b.cast(out, dtype=ir) if ir is not None and ir != "f32" else out


def _std_fn(var: bool) -> BuiltinFn:
    def fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        x = _f32(lw, b, a["x"], span)
        t = x.type
        assert isinstance(t, TensorType)
        dims = list(range(t.rank)) if a["dim"] is None else [
            d % t.rank for d in _ints_attr(a["dim"], "dim", span)]
        sizes = [t.shape[d] for d in dims]
        if not all(_is_int(s) for s in sizes):
            raise LoweringError("std/var over a dim whose size is not known when lowering", span)
        n = math.prod(sizes)
        corr = 1 if a["unbiased"] else 0
        m = b.mean(x, dims=dims, keepdim=True)
        d = b.sub(x, m)
        ss = b.sum(b.mul(d, d), dims=dims, keepdim=bool(a["keepdim"]))
        v = b.div(ss, _scalar(b, max(n - corr, 0)))
        return v if var else b.sqrt(v)
    return fn


_BUILTIN_FNS["std"] = _std_fn(False)
_BUILTIN_FNS["var"] = _std_fn(True)


@_builtin("dot")
def _dot(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x, y = lw.operands(b, a["a"], a["b"], span)
    return b.sum(b.mul(x, y), dims=[], keepdim=False)


@_builtin("outer")
def _outer(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x, y = lw.operands(b, a["a"], a["b"], span)
    return b.mul(b.unsqueeze(x, dim=1), b.unsqueeze(y, dim=0))


@_builtin("split")
def _split(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _tensor(lw, b, a["x"], span)
    t = x.type
    assert isinstance(t, TensorType)
    d = _int_attr(a["dim"], "dim", span) % max(t.rank, 1)
    n = t.shape[d]
    if not _is_int(n):
        raise LoweringError("split of a dim whose size is not known when lowering", span)
    size = a["split_size"]
    sizes = _ints_attr(size, "split_size", span) if isinstance(size, list) else None
    if sizes is None:
        k = _int_attr(size, "split_size", span)
        if k <= 0:
            raise LoweringError("`split_size` must be positive", span)
        sizes = [min(k, n - s) for s in range(0, n, k)]
    if sum(sizes) != n:
        raise LoweringError(f"split sizes {sizes} do not add up to {n}", span)
    out, pos = [], 0
    for s in sizes:
        out.append(b.slice(x, dim=d, start=pos, end=pos + s))
        pos += s
    return out


def _conv(lw: Lowerer, b: Builder, x: Value, w: Value, a: dict[str, Any],
          span: Span | None) -> Value:
    ops = [x, w] + ([_f32(lw, b, a["bias"], span)] if a["bias"] is not None else [])
    return b.conv2d(*ops, stride=list(_pair(a["stride"], "stride", span)),
                    padding=list(_pair(a["padding"], "padding", span)),
                    dilation=list(_pair(a["dilation"], "dilation", span)),
                    groups=_int_attr(a["groups"], "groups", span))


@_builtin("conv2d")
def _conv2d(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return _conv(lw, b, _f32(lw, b, a["x"], span), _f32(lw, b, a["weight"], span), a, span)


def _per_channel(b: Builder, v: Value, rank: int, axis: int = 1) -> Value:
    """A [C] vector reshaped to broadcast along `axis` of a rank-`rank` tensor."""
    if _rank(v) != 1 or rank <= 1:
        return v
    shape = [1] * rank
    shape[axis % rank] = -1
    return b.reshape(v, shape=shape)


@_builtin("batch_norm")
def _batch_norm(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    t = x.type
    assert isinstance(t, TensorType)
    c = t.shape[1]
    eps = _num_attr(a["eps"], "eps", span)
    training = a["training"]
    if not isinstance(training, bool):
        raise LoweringError("`training` must be true or false known when lowering", span)
    if not training:
        if not _is_int(c):
            raise LoweringError("batch_norm needs a known channel count", span)
        w = _f32(lw, b, a["weight"], span) if a["weight"] is not None else \
            b.constant(1.0, TensorType((c,), "f32"))
        bias = _f32(lw, b, a["bias"], span) if a["bias"] is not None else \
            b.constant(0.0, TensorType((c,), "f32"))
        return b.batch_norm(x, _f32(lw, b, a["running_mean"], span),
                            _f32(lw, b, a["running_var"], span), w, bias, eps=eps)
    dims = [0] + list(range(2, t.rank))
    m = b.mean(x, dims=dims, keepdim=True)
    d = b.sub(x, m)
    v = b.mean(b.mul(d, d), dims=dims, keepdim=True)
    y = b.div(d, b.sqrt(b.add(v, _scalar(b, eps))))
    if a["weight"] is not None:
        y = b.mul(y, _per_channel(b, _f32(lw, b, a["weight"], span), t.rank))
    if a["bias"] is not None:
        y = b.add(y, _per_channel(b, _f32(lw, b, a["bias"], span), t.rank))
    return y


@_builtin("layer_norm")
def _layer_norm(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    ns = a["normalized_shape"]
    k = 1 if ns is None else len(_ints_attr(ns, "normalized_shape", span))
    ops = [x]
    if a["weight"] is not None or a["bias"] is not None:
        if a["weight"] is None:
            t = x.type
            assert isinstance(t, TensorType)
            shape = t.shape[t.rank - k:]
            if not all(_is_int(d) for d in shape):
                raise LoweringError("layer_norm with a bias needs a static normalized shape",
                                    span)
            ops.append(b.constant(1.0, TensorType(tuple(shape), "f32")))
        else:
            ops.append(_f32(lw, b, a["weight"], span))
        if a["bias"] is not None:
            ops.append(_f32(lw, b, a["bias"], span))
    return b.layer_norm(*ops, normalized_ndim=k, eps=_num_attr(a["eps"], "eps", span))


@_builtin("cross_entropy")
def _cross_entropy(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    """-sum(one_hot(t) * log_softmax(logits)) over the classes, then the reduction."""
    logits = _f32(lw, b, a["logits"], span)
    shape = logits.type.shape
    if not shape or not isinstance(shape[-1], int):
        raise LoweringError("cross_entropy needs the number of classes (the logits' last "
                            "dim) known when compiling", span)
    hit = one_hot_f32(b, _tensor(lw, b, a["targets"], span), shape[-1])
    nll = b.neg(b.op("sum", b.mul(hit, b.op("log_softmax", logits, dim=-1)), dims=[-1],
                     keepdim=False))
    return _reduced(b, nll, a["reduction"], span)


def one_hot_f32(b: Builder, idx: Value, n: int) -> Value:
    """float32 one-hot rows of the integer indices `idx` over `n` classes."""
    if idx.type.dtype != "i64":
        idx = b.cast(idx, dtype="i64")
    classes = b.constant(list(range(n)), TensorType((n,), "i64"))
    return b.cast(b.eq(b.unsqueeze(idx, dim=-1), classes), dtype="f32")


def _reduced(b: Builder, x: Value, r: Any, span: Span | None) -> Value:
    """A loss's `reduction`: "none" keeps every element, "mean" and "sum" reduce all dims."""
    if r == "none":
        return x
    if r not in ("mean", "sum"):
        raise LoweringError(f"unknown reduction `{r}`", span)
    return b.op(r, x, dims=[], keepdim=False)


@_builtin("mse_loss")
def _mse_loss(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x, y = lw.operands(b, a["x"], a["target"], span)
    d = b.sub(x, y)
    return _reduced(b, b.mul(d, d), a["reduction"], span)
