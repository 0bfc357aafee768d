"""Builtin functions: the method that binds a call's arguments and lowers it by its record
(tritium.check.builtins: one IR op, or a lowering here by name), the lowerings of the
builtins that need more than one op, and reshape."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import vocab
from ...check.builtins import FUNCTIONS, BindError, Builtin, bind
from ...frontend.diagnostics import Span
from ..builder import Builder
from ..core import Value
from ..ops import InferError
from ..types import FLOAT_DTYPES, ScalarType, TensorType, promote
from .values import (
    _SCALAR_DTYPES,
    _TENSOR_DTYPES,
    MAX_SPLIT_SLICES,
    FnCtx,
    FnRef,
    LoweringError,
    RangeV,
    SymDim,
    _Dyn,
    _is_int,
    _is_num,
    _pair,
    _py_binary,
)

if TYPE_CHECKING:
    from .lowerer import Lowerer



class BuiltinsMixin:
    # ------------------------------------------------------------------ builtin functions
    def builtin(self, name: str, args: list[tuple[str | None, Any]], b: Builder,
                span: Span | None, ctx: FnCtx) -> Any:
        spec = FUNCTIONS[name]
        if name == "print":
            return None
        positional = [v for n, v in args if n is None]
        if spec.pair_op and len(positional) == 2 and isinstance(positional[1], Value) \
                and isinstance(positional[1].type, TensorType):
            xv, yv = self.operands(b, positional[0], positional[1], span)
            return b.op(spec.pair_op, xv, yv)
        try:
            bound, _where = bind(spec, args)   # the checker's binding (aliases: axis= is dim=)
        except BindError as exc:
            raise LoweringError(f"the arguments of `{name}` do not fit its signature "
                                f"({exc.kind} {exc.name or ''})", span) from None
        for p in spec.params:
            bound.setdefault(p.name, p.default)
        if spec.ir is not None:
            return _lower_record(self, spec, b, bound, span)
        fn = _BUILTIN_FNS.get(name) or _BUILTIN_FNS.get(spec.of or "")
        if fn is None:
            raise LoweringError(f"the function `{name}` cannot be lowered", span)
        return fn(self, b, bound, span)

    def reshape(self, b: Builder, x: Value, target: Any, span: Span | None) -> Value:
        t = x.type
        if not isinstance(t, TensorType):
            raise LoweringError("reshape needs a tensor", span)
        tgt = target if isinstance(target, list) else [target]
        items: list[Any] = []
        for v in tgt:
            if isinstance(v, bool):
                raise LoweringError("reshape dims must be integers", span)
            if _is_int(v) or isinstance(v, SymDim):
                items.append(v)
            elif isinstance(v, Value) and isinstance(v.type, ScalarType) and v.type.dtype in (
                    "i64", "i32"):
                items.append(_Dyn(v))
            else:
                raise LoweringError(f"reshape dim {v!r} is not an integer", span)
        dyn = [i for i, d in enumerate(items) if not _is_int(d) or d == -1]
        if len(dyn) <= 1:
            shape = [d if _is_int(d) else -1 for d in items]
            out = b.reshape(x, shape=shape)
            if dyn and isinstance(items[dyn[0]], SymDim) and out.type.shape[dyn[0]] is None:
                name = items[dyn[0]].name
                sym_in = [d for d in t.shape if not _is_int(d)]
                st_in = math.prod(d for d in t.shape if _is_int(d))
                st_out = math.prod(d for d in shape if d != -1)
                if name is not None and sym_in == [name] and st_in == st_out:
                    op = out.op
                    assert op is not None
                    op.results[0].type = out.type.with_shape(
                        tuple(name if i == dyn[0] else d for i, d in enumerate(out.type.shape)))
            return out
        copied = self.copy_reshape(b, x, items)
        if copied is not None:
            return copied
        return self.structural_reshape(b, x, items, span)

    @staticmethod
    def copy_reshape(b: Builder, x: Value, items: list[Any]) -> Value | None:
        """A reshape that keeps leading dynamic dims in place with `0` (copy the input dim):
        `[b, s, 128] -> [b, s, 4, 32]` is `reshape {shape = [0, 0, 4, 32]}`."""
        t = x.type
        assert isinstance(t, TensorType)
        shape: list[int] = []
        for i, d in enumerate(items):
            if i < t.rank and isinstance(d, SymDim) and (
                    (d.src is x and d.dim == i) or (d.name is not None and d.name == t.shape[i])):
                shape.append(0)
            elif _is_int(d) and d != 0:
                shape.append(d)
            else:
                shape.append(-2)
        if shape.count(-2) + shape.count(-1) > 1:
            return None
        shape = [-1 if d == -2 else d for d in shape]
        try:
            return b.reshape(x, shape=shape)
        except InferError:
            return None

    def structural_reshape(self, b: Builder, x: Value, items: list[Any],
                           span: Span | None) -> Value:
        """A reshape whose unchanged dims (same symbol or size) are not all leading: the dims
        that change must be static; they are merged with `flatten` and split again with
        static `slice`s and `stack`."""
        t = x.type
        assert isinstance(t, TensorType)
        dims = list(t.shape)

        def same(d: Any, tg: Any, pos: int) -> bool:
            if _is_int(tg):
                return tg != -1 and tg == d
            if isinstance(tg, SymDim):
                return (tg.name is not None and tg.name == d) or (tg.src is x and tg.dim == pos)
            return False

        i = 0
        while i < len(dims) and i < len(items) and same(dims[i], items[i], i):
            i += 1
        j = 0
        while (j < len(dims) - i and j < len(items) - i
               and same(dims[len(dims) - 1 - j], items[len(items) - 1 - j], len(dims) - 1 - j)):
            j += 1
        mid_in = dims[i:len(dims) - j]
        mid_out = items[i:len(items) - j]
        if not all(_is_int(d) for d in mid_in) or not all(_is_int(d) for d in mid_out):
            raise LoweringError("this reshape changes dims whose sizes are not known when "
                                "lowering (only one dynamic dim can be inferred)", span,
                                help="keep the dynamic dims (e.g. batch) in place and reshape "
                                     "only static dims")
        size = math.prod(mid_in)
        if -1 in mid_out:
            known = math.prod(d for d in mid_out if d != -1)
            if known == 0 or size % known:
                raise LoweringError(f"cannot reshape {t} to the requested shape", span)
            mid_out = [size // known if d == -1 else d for d in mid_out]
        if math.prod(mid_out) != size:
            raise LoweringError(f"cannot reshape {t}: {mid_in} has {size} elements, "
                                f"{mid_out} has {math.prod(mid_out)}", span)
        cur = x
        if not mid_in:
            cur = b.unsqueeze(cur, dim=i)
        elif len(mid_in) > 1:
            cur = b.flatten(cur, start_dim=i, end_dim=i + len(mid_in) - 1)
        if not mid_out:
            return b.squeeze(cur, dim=i)
        if sum(mid_out[:-1]) > MAX_SPLIT_SLICES:
            raise LoweringError("this reshape is too large to express with static slices", span)
        pos = i
        rest = size
        for f in mid_out[:-1]:
            rest //= f
            if f == 1:
                cur = b.unsqueeze(cur, dim=pos)
            else:
                parts = [b.slice(cur, dim=pos, start=k * rest, end=(k + 1) * rest)
                         for k in range(f)]
                cur = b.stack(*parts, dim=pos)
            pos += 1
        return cur

    def shape_of(self, v: Any, span: Span | None) -> list[int]:
        shape = v if isinstance(v, list) else [v]
        if not all(_is_int(d) and d >= 0 for d in shape):
            raise LoweringError(f"a new tensor needs a static shape, got {shape}", span)
        return list(shape)



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
    return b.clamp(_tensor(lw, b, x, span), **attrs)


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


for _n in vocab.CONVERSIONS:
    _BUILTIN_FNS[_n] = (lambda lang: lambda lw, b, a, span: _cast_to(lw, b, a["x"], lang, span))(_n)


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


@_builtin("len")
def _len(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = a["x"]
    if isinstance(x, list | str | dict):
        return len(x)
    if isinstance(x, Value) and isinstance(x.type, TensorType) and x.type.rank:
        d = x.type.shape[0]
        return d if _is_int(d) else SymDim(x, 0, d)
    raise LoweringError("`len` needs a list or a tensor of rank >= 1", span)


# ----------------------------------------------------------------------------- the seed's builtins

F32 = ScalarType("f32")


def _dtype_arg(v: Any, span: Span | None) -> str | None:
    """The IR dtype of a `dtype=` argument (a string, or a dtype written as a name)."""
    if v is None:
        return None
    name = v.name if isinstance(v, FnRef) else v
    if not isinstance(name, str) or name not in _TENSOR_DTYPES:
        raise LoweringError(f"unknown dtype `{name}`", span)
    return _TENSOR_DTYPES[name]


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
    return b.constant(np.eye(n, m).tolist(), TensorType((n, m), "f32"))


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


@_builtin("mse_loss")
def _mse_loss(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x, y = lw.operands(b, a["x"], a["target"], span)
    d = b.sub(x, y)
    sq = b.mul(d, d)
    r = a["reduction"]
    if r == "none":
        return sq
    if r not in ("mean", "sum"):
        raise LoweringError(f"unknown reduction `{r}`", span)
    return b.op(r, sq, dims=[], keepdim=False)


# quantization primitives (docs/language.md: their values and gradients)

def _ternarize_fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return b.ternarize(_f32(lw, b, a["x"], span),
                       threshold=_num_attr(a["threshold"], "threshold", span))


for _n in ("threshold_quantize", "ste_quantize", "clipped_ste_quantize"):
    _BUILTIN_FNS[_n] = _ternarize_fn   # forward values; the STE is a training-time gradient


@_builtin("adaptive_threshold_quantize")
def _adaptive_threshold(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    mag = b.abs(x)
    r = _rank(x)
    dims = list(range(1, r)) if a["per_channel"] and r > 1 else []
    delta = b.mul(b.mean(mag, dims=dims, keepdim=bool(dims)),
                  _scalar(b, _num_attr(a["factor"], "factor", span)))
    keep = b.cast(b.gt(mag, delta), dtype="f32")
    return b.mul(b.sign(x), keep)


@_builtin("learned_quantize")
def _learned(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    x, s = lw.operands(b, x, a["scale"], span)
    t = b.ternarize(b.div(x, s), threshold=_num_attr(a["threshold"], "threshold", span))
    return b.mul(s, t)


@_builtin("soft_quantize")
def _soft(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    temp = _num_attr(a["temperature"], "temperature", span)
    half, inv = _scalar(b, 0.5), _scalar(b, 1.0 / temp)
    lo = b.tanh(b.mul(b.sub(x, half), inv))
    hi = b.tanh(b.mul(b.add(x, half), inv))
    return b.mul(b.add(lo, hi), half)


@_builtin("xnor_quantize")
def _xnor(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    alpha = b.mean(b.abs(x), dims=[], keepdim=False)
    pos = b.cast(b.ge(x, _scalar(b, 0.0)), dtype="f32")
    sign = b.sub(b.mul(pos, _scalar(b, 2.0)), _scalar(b, 1.0))
    return b.mul(sign, alpha)


@_builtin("stochastic_quantize", "gumbel_softmax_quantize")
def _random_quant(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    raise LoweringError("stochastic quantizers draw random numbers: they run in the PyTorch "
                        "backend (reproducibly with `seed=`) and have no IR lowering", span)


def _dequant_fn(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    q = _f32(lw, b, a["q"], span)
    axis = _int_attr(a["axis"], "axis", span)
    r = _rank(q)

    def along(v: Any) -> Value:
        if _is_num(v):
            return _scalar(b, v)
        vv = _f32(lw, b, v, span)
        if _rank(vv) == 1 and r >= 1:
            t = vv.type
            assert isinstance(t, TensorType)
            if t.shape[0] == 1:
                return b.reshape(vv, shape=[])
            return _per_channel(b, vv, r, axis)
        return vv
    if a.get("zero_point") is not None:
        q = b.sub(q, along(a["zero_point"]))
    return b.mul(q, along(a["scale"]))


for _n in ("dequantize", "ternary_dequantize", "affine_dequantize"):
    _BUILTIN_FNS[_n] = _dequant_fn


def _qcfg(lw: Lowerer, a: dict[str, Any], span: Span | None) -> Any:
    return lw.quant_cfg({"quantizer": a["quantizer"]}, "twn", span)


@_builtin("ternary_weights")
def _ternary_weights(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if not isinstance(a["w"], Value):
        raise LoweringError("random trits can only initialize weights (a layer-level `let` or "
                            "`param`), not appear in a function", span)
    q = _qcfg(lw, a, span)
    if q.quantizer == "stochastic":
        raise LoweringError("the stochastic quantizer draws random numbers: no IR lowering",
                            span)
    return lw.quantize(b, _f32(lw, b, a["w"], span), q)[0]


@_builtin("quantized_linear")
def _quantized_linear(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    w = lw.ternary(b, _f32(lw, b, a["w"], span), _qcfg(lw, a, span))
    ops = [_f32(lw, b, a["x"], span), w]
    if a["bias"] is not None:
        ops.append(_f32(lw, b, a["bias"], span))
    return b.linear(*ops)


@_builtin("quantized_conv2d")
def _quantized_conv2d(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    w = lw.ternary(b, _f32(lw, b, a["w"], span), _qcfg(lw, a, span))
    return _conv(lw, b, _f32(lw, b, a["x"], span), w, a, span)


@_builtin("quantized_matmul")
def _quantized_matmul(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    w = lw.ternary(b, _f32(lw, b, a["w"], span), _qcfg(lw, a, span))
    return b.matmul(_f32(lw, b, a["x"], span), w)
