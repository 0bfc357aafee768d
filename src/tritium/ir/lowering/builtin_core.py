"""The lowerings of builtin functions by name (`_BUILTIN_FNS`, filled with `@_builtin`),
their argument helpers, the lowering of a record that names one IR op, and the lowerings
of the core builtins that need more than one op (reshape, concat, reductions, creation,
pooling, casts, the Python builtins)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import vocab
from ...check.builtins import Builtin
from ...check.builtins.core import TENSOR_DTYPE_METHODS
from ...frontend.diagnostics import Span
from ..builder import Builder
from ..core import Value
from ..types import FLOAT_DTYPES, ScalarType, TensorType, promote
from .values import (
    _SCALAR_DTYPES,
    _TENSOR_DTYPES,
    FnRef,
    LoweringError,
    RangeV,
    SymDim,
    _is_int,
    _is_num,
    _pair,
    _py_binary,
)

if TYPE_CHECKING:
    from .lowerer import Lowerer


# ----------------------------------------------------------------------------- builtin functions

BuiltinFn = Callable[["Lowerer", Builder, dict[str, Any], Span | None], Any]
_BUILTIN_FNS: dict[str, BuiltinFn] = {}


def _builtin(*names: str) -> Callable[[BuiltinFn], BuiltinFn]:
    def deco(fn: BuiltinFn) -> BuiltinFn:
        for n in names:
            _BUILTIN_FNS[n] = fn
        return fn
    return deco


def _tensor(lw: Lowerer, b: Builder, v: Any, span: Span | None) -> Value:
    x = lw.to_value(b, v, None, span)
    return x


def _int_attr(v: Any, what: str, span: Span | None) -> int:
    if not _is_int(v):
        raise LoweringError(f"`{what}` must be an integer known when lowering, got {v!r}", span)
    return v


def _ints_attr(v: Any, what: str, span: Span | None) -> list[int]:
    vals = v if isinstance(v, list) else [v]
    return [_int_attr(x, what, span) for x in vals]


def _attr(v: Any, kind: str, what: str, span: Span | None) -> Any:
    if kind == "int":
        return _int_attr(v, what, span)
    if kind == "ints":
        return _ints_attr(v, what, span)
    if not _is_num(v):
        raise LoweringError(f"`{what}` must be a number known when lowering", span)
    return float(v)


def _dtype_arg(v: Any, span: Span | None) -> str | None:
    """The IR dtype of a `dtype=` argument (a string, or a dtype written as a name)."""
    if v is None:
        return None
    name = v.name if isinstance(v, FnRef) else v
    if not isinstance(name, str) or name not in _TENSOR_DTYPES:
        raise LoweringError(f"unknown dtype `{name}`", span)
    return _TENSOR_DTYPES[name]


def _lower_record(lw: Lowerer, spec: Builtin, b: Builder, a: dict[str, Any],
                  span: Span | None) -> Any:
    """A builtin whose record names one IR op (tritium.check.builtins `IR`): its value on
    Python numbers when every operand is one (and the record says how), else the op on its
    operands with its attributes, each a constant known when lowering. Two operands of an
    elementwise op with a Python value meet as `operands` (dtypes promoted)."""
    ir = spec.ir
    assert ir is not None
    vals = [a[n] for n in ir.operands if a[n] is not None]   # an optional operand left out
    if spec.py is not None and all(_is_num(v) for v in vals):
        return spec.py(*vals)
    if spec.py is not None and len(vals) == 2:
        operands = list(lw.operands(b, vals[0], vals[1], span))
    else:
        operands = [_tensor(lw, b, v, span) for v in vals]
    attrs = {attr: _attr(a[p], kind, p, span) for p, attr, kind in ir.attrs}
    return b.op(ir.op, *operands, **attrs)


@_builtin("dropout")
def _dropout_fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if a["training"] is not None and a["training"] is not False:
        raise LoweringError("dropout(training=true) draws random numbers: it runs in the "
                            "PyTorch backend and has no IR lowering", span)
    return b.dropout(_tensor(lw, b, a["x"], span), p=float(a["p"]))


@_builtin("reshape", "view")
def _reshape(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return lw.reshape(b, _tensor(lw, b, a["x"], span), a["shape"], span)


@_builtin("squeeze")
def _squeeze(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _tensor(lw, b, a["x"], span)
    if a["dim"] is not None:
        d = _int_attr(a["dim"], "dim", span)
        t = x.type
        if isinstance(t, TensorType) and t.shape[d] != 1:
            if _is_int(t.shape[d]):
                return x   # torch.squeeze(dim) of a non-1 dim is a no-op
            raise LoweringError("squeeze of a dim whose size is not known when lowering", span)
        return b.squeeze(x, dim=d)
    t = x.type
    assert isinstance(t, TensorType)
    if not all(_is_int(d) for d in t.shape):
        raise LoweringError("squeeze without a dim needs a static shape", span)
    return b.squeeze(x)


def _concat_fn(op: str) -> BuiltinFn:
    def fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        items = a["tensors"]
        if not isinstance(items, list) or not items:
            raise LoweringError(f"`{op}` takes a non-empty list of tensors", span)
        vals = [_tensor(lw, b, v, span) for v in items]
        dts = {v.type.dtype for v in vals}
        if len(dts) > 1:
            dt = "bool"
            for d in dts:
                dt = promote(dt, d)
            vals = [v if v.type.dtype == dt else b.cast(v, dtype=dt) for v in vals]
        return b.op(op, *vals, dim=_int_attr(a["dim"], "dim", span))
    return fn


_BUILTIN_FNS["concat"] = _BUILTIN_FNS["cat"] = _concat_fn("concat")
_BUILTIN_FNS["stack"] = _concat_fn("stack")


def _reduce_fn(op: str) -> BuiltinFn:
    def fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        x = _tensor(lw, b, a["x"], span)
        dims = [] if a["dim"] is None else _ints_attr(a["dim"], "dim", span)
        keep = a["keepdim"]
        if not isinstance(keep, bool):
            raise LoweringError("`keepdim` must be true or false", span)
        if not isinstance(x.type, TensorType):
            return x
        return b.op(op, x, dims=dims, keepdim=keep)
    return fn


for _n, _op in (("sum", "sum"), ("mean", "mean"), ("amax", "max"), ("amin", "min"),
                ("max", "max"), ("min", "min")):   # reductions (two-tensor max/min: `pair_op`)
    _BUILTIN_FNS[_n] = _reduce_fn(_op)


@_builtin("clamp")
def _clamp(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = a["x"]
    if _is_num(x):
        lo, hi = a["min"], a["max"]
        x = x if lo is None else max(x, lo)
        return x if hi is None else min(x, hi)
    attrs: dict[str, Any] = {}
    for k in ("min", "max"):
        v = a[k]
        if v is not None:
            if not _is_num(v):
                raise LoweringError(f"`{k}` of clamp must be a number known when lowering", span)
            attrs[k] = float(v)
    t = _tensor(lw, b, x, span)
    if t.type.dtype == "trit":   # clipped as floats, as the checker types it (rules.clamp_rule)
        t = b.cast(t, dtype="f32")
    return b.clamp(t, **attrs)


@_builtin("where")
def _where(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    c = _tensor(lw, b, a["cond"], span)
    if c.type.dtype != "bool":
        c = b.ne(c, lw.to_value(b, 0, c, span))
    xv, yv = lw.operands(b, a["a"], a["b"], span)
    return b.select(c, xv, yv)


def _fill_fn(value: float | None) -> BuiltinFn:
    def fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        shape = lw.shape_of(a["shape"], span)
        v = value if value is not None else a["value"]
        if not _is_num(v):
            raise LoweringError("`full` needs a fill value known when lowering", span)
        dt = _dtype_arg(a.get("dtype"), span) or "f32"
        return b.constant(lw.py_cast(v, dt), TensorType(tuple(shape), dt))
    return fn


_BUILTIN_FNS["zeros"] = _fill_fn(0.0)
_BUILTIN_FNS["ones"] = _fill_fn(1.0)
_BUILTIN_FNS["full"] = _fill_fn(None)


@_builtin("randn", "rand", "random_ternary", "empty")
def _random(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    raise LoweringError("random or uninitialized tensors can only initialize weights (a "
                        "layer-level `let` or `param`), not appear in a function", span)


@_builtin("attention", "scaled_dot_product_attention")
def _attention(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    causal = a["causal"]
    if not isinstance(causal, bool):
        raise LoweringError("`causal` must be true or false known when lowering", span)
    ops = [_tensor(lw, b, a[n], span) for n in ("q", "k", "v")]
    if a["mask"] is not None:
        ops.append(_tensor(lw, b, a["mask"], span))
    return b.scaled_dot_product_attention(*ops, causal=causal)


@_builtin("floordiv")
def _floordiv(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x, y = a["a"], a["b"]
    if (_is_num(x) or isinstance(x, bool)) and (_is_num(y) or isinstance(y, bool)):
        return _py_binary("//", x, y, span)
    xv, yv = lw.operands(b, x, y, span)
    return b.floordiv(xv, yv)


def _pool_fn(op: str) -> BuiltinFn:
    def fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        cfg = {"kernel_size": a["kernel_size"], "stride": a["stride"], "padding": a["padding"]}
        return lw.pool(b, _tensor(lw, b, a["x"], span), op, cfg, span)
    return fn


_BUILTIN_FNS["max_pool2d"] = _pool_fn("max_pool2d")
_BUILTIN_FNS["avg_pool2d"] = _pool_fn("avg_pool2d")


@_builtin("adaptive_avg_pool2d")
def _adaptive(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return b.adaptive_avg_pool2d(_tensor(lw, b, a["x"], span),
                                 output_size=_pair(a["output_size"], "output_size", span))


@_builtin("quantize_ternary")
def _quantize_ternary(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _tensor(lw, b, a["x"], span)
    cfg = {"quantizer": a["quantizer"], "per_channel": bool(a.get("per_channel"))}
    if a.get("threshold") is not None:
        cfg["threshold"] = a["threshold"]
        if a["quantizer"] == "twn":
            cfg["quantizer"] = "threshold"
    q = lw.quant_cfg(cfg, "twn", span)
    if not isinstance(x.type, TensorType) or x.type.dtype not in FLOAT_DTYPES:
        x = b.cast(x, dtype="f32")
    return lw.ternary(b, x, q)


def _cast_to(lw: Lowerer, b: Builder, x: Any, lang: str, span: Span | None) -> Any:
    if lang not in _TENSOR_DTYPES:
        raise LoweringError(f"unknown dtype `{lang}`", span)
    if _is_num(x) or isinstance(x, bool):
        if lang == "bool":
            return bool(x)
        if lang in vocab.FLOAT_DTYPES:
            return float(x)
        if lang == "trit":
            return max(-1, min(1, round(x)))
        return int(x)
    xv = _tensor(lw, b, x, span)
    if isinstance(xv.type, ScalarType):
        return b.cast(xv, dtype=_SCALAR_DTYPES[lang])
    return b.cast(xv, dtype=_TENSOR_DTYPES[lang])


@_builtin("cast")
def _cast(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if isinstance(a["dtype"], FnRef):   # `cast(x, float32)`: a dtype written as a name
        a = {**a, "dtype": a["dtype"].name}
    if not isinstance(a["dtype"], str):
        raise LoweringError("`cast` needs a dtype string known when lowering", span)
    return _cast_to(lw, b, a["x"], a["dtype"], span)


for _n, _lang in [(n, n) for n in vocab.CONVERSIONS] + list(TENSOR_DTYPE_METHODS.items()):
    _BUILTIN_FNS[_n] = (lambda lang: lambda lw, b, a, span: _cast_to(lw, b, a["x"], lang, span)
                        )(_lang)


@_builtin("range")
def _range(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    n = _int_attr(a["n"], "n", span)
    if a.get("stop") is None:
        return RangeV(0, n)
    step = 1 if a.get("step") is None else _int_attr(a["step"], "step", span)
    if step == 0:
        raise LoweringError("a range step cannot be zero", span)
    return RangeV(n, _int_attr(a["stop"], "stop", span), step)


@_builtin("enumerate")
def _enumerate(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if not isinstance(a["x"], list | tuple):
        raise LoweringError("`enumerate` needs a list known when lowering", span)
    return [[i, x] for i, x in enumerate(a["x"])]


@_builtin("zip")
def _zip(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    lists = [a[k] for k in ("a", "b", "c") if a.get(k) is not None]
    if not all(isinstance(x, list | tuple) for x in lists):
        raise LoweringError("`zip` needs lists known when lowering", span)
    return [list(row) for row in zip(*lists)]


@_builtin("numel")
def _numel(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = a["x"]
    if isinstance(x, Value) and isinstance(x.type, TensorType) and all(
            _is_int(d) for d in x.type.shape):
        n = 1
        for d in x.type.shape:
            n *= d
        return n
    raise LoweringError("`numel` needs a tensor whose shape is known when lowering", span)


@_builtin("len")
def _len(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = a["x"]
    if isinstance(x, list | str | dict):
        return len(x)
    if isinstance(x, Value) and isinstance(x.type, TensorType) and x.type.rank:
        d = x.type.shape[0]
        return d if _is_int(d) else SymDim(x, 0, d)
    raise LoweringError("`len` needs a list or a tensor of rank >= 1", span)
