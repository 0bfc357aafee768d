"""Type-inference rules of the IR ops: each takes the operand types and the attributes
(completed with their defaults) and returns the result types, or raises InferError. The op
table (tritium.ir.ops) names one rule per op."""

from __future__ import annotations

import math
from collections.abc import Callable

from .. import vocab
from .core import Attr
from .types import (
    FLOAT_DTYPES,
    Dim,
    ScalarType,
    TensorType,
    Type,
    broadcast_shapes,
    dim_str,
    dims_compatible,
    is_float,
    join_dim,
    promote,
)

INDEX_DTYPES = ("u8", "i8", "i16", "i32", "i64")   # integer dtypes that index (embedding)


class InferError(ValueError):
    """An op's operands or attributes do not fit its definition."""



Infer = Callable[[list[Type], dict[str, Attr]], list[Type]]


# ----------------------------------------------------------------------------------- helpers


def _t(t: Type, what: str = "operand") -> TensorType:
    if not isinstance(t, TensorType):
        raise InferError(f"{what} must be a tensor, got {t}")
    return t


def _shape(t: Type) -> tuple[Dim, ...]:
    return t.shape if isinstance(t, TensorType) else ()


def _axis(d: int, rank: int) -> int:
    if not -rank <= d < max(rank, 1):
        raise InferError(f"dim {d} out of range for rank {rank}")
    return d % rank if rank else 0


def _float_dtype(dtype: str) -> str:
    return dtype if dtype in FLOAT_DTYPES else "f32"


def _same(a: Dim, b: Dim, what: str) -> Dim:
    if not dims_compatible(a, b):
        raise InferError(f"{what}: {dim_str(a)} != {dim_str(b)}")
    return join_dim(a, b)


def _result(shape: tuple[Dim, ...], dtype: str, scalar: bool) -> Type:
    if scalar:
        if dtype in ("trit", "i8", "i16", "u8"):
            dtype = "i64"
        if dtype == "bf16":
            dtype = "f32"
        return ScalarType(dtype)
    return TensorType(tuple(shape), dtype)


def _kind(dtype: str) -> int:
    return 0 if dtype == "bool" else 2 if dtype in FLOAT_DTYPES else 1


def _arith_dtype(x: Type, y: Type) -> str:
    if isinstance(x, ScalarType) and isinstance(y, TensorType):
        x, y = y, x
    if isinstance(y, ScalarType) and isinstance(x, TensorType):  # scalars are "weak"
        if _kind(y.dtype) > _kind(x.dtype):   # torch: the scalar kind's default dtype
            return "f32" if is_float(y) else "i64"   # `(x > 0) * 2` is i64
        return x.dtype
    if isinstance(x, TensorType) and isinstance(y, TensorType) and (x.rank == 0) != (y.rank == 0):
        # torch: a 0-d tensor (`sum(x)`) decides the dtype only when it is of a higher kind
        # (bool < integer < float) than the tensor with dims: int32 [n] + i64 [] is i32
        d, z = (y, x) if x.rank == 0 else (x, y)
        if _kind(d.dtype) < _kind(z.dtype):
            return z.dtype
        return "i8" if d.dtype == "trit" and z.dtype != "trit" else d.dtype
    return promote(x.dtype, y.dtype)


def _broadcast(*ts: Type) -> tuple[Dim, ...]:
    shape: tuple[Dim, ...] = ()
    for t in ts:
        try:
            shape = broadcast_shapes(shape, _shape(t))
        except ValueError as e:
            raise InferError(str(e)) from None
    return shape


def _all_scalar(ts: list[Type]) -> bool:
    return all(isinstance(t, ScalarType) for t in ts)


def _no_str(ts: list[Type]) -> None:
    if any(t.dtype == "str" for t in ts):
        raise InferError("str values have no arithmetic")


def pair(v: Attr, what: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    if len(v) == 1:
        return v[0], v[0]
    if len(v) != 2:
        raise InferError(f"'{what}' must have 1 or 2 entries, got {v}")
    return v[0], v[1]


def window_out(n: Dim, k: int, s: int, p: int, d: int = 1) -> Dim:
    """Output size of a sliding window (conv, pooling) over an input dim of size n."""
    if isinstance(n, int):
        out = (n + 2 * p - d * (k - 1) - 1) // s + 1
        if out <= 0:
            raise InferError(f"window of size {k} does not fit input size {n}")
        return out
    return n if (s == 1 and 2 * p == d * (k - 1)) else None


# ------------------------------------------------------------------------------ elementwise


def _binary(name: str) -> Infer:
    def infer(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
        _no_str(ts)
        dt = _arith_dtype(ts[0], ts[1])
        if name == "div" and not dt.startswith(("f", "bf")):
            dt = "f32"
        elif name == "floordiv" and dt == "bool":
            dt = "i64"
        elif dt == "trit" and (name not in ("mul", "maximum", "minimum")
                               or ts[0].dtype != ts[1].dtype):
            dt = "i8"   # trits stay trits only multiplied by (or compared with) trits
        return [_result(_broadcast(*ts), dt, _all_scalar(ts))]
    return infer


def _unary(float_result: bool) -> Infer:
    def infer(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
        _no_str(ts)
        t = ts[0]
        dt = _float_dtype(t.dtype) if float_result else t.dtype
        return [_result(_shape(t), dt, isinstance(t, ScalarType))]
    return infer


def _clamp(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    """The input's dtype; trits are clipped as f32 (the lowering casts them first)."""
    _no_str(ts)
    t = ts[0]
    dt = "f32" if t.dtype == "trit" else t.dtype
    return [_result(_shape(t), dt, isinstance(t, ScalarType))]


def _softmax(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    t = _t(ts[0])
    _axis(a["dim"], t.rank)
    return [t.with_dtype(_float_dtype(t.dtype))]


def _compare(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    if (ts[0].dtype == "str") != (ts[1].dtype == "str"):
        raise InferError("cannot compare str with a number")
    return [_result(_broadcast(*ts), "bool", _all_scalar(ts))]


def _logical(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    for t in ts:
        if t.dtype != "bool":
            raise InferError(f"logical ops take bool operands, got {t}")
    return [_result(_broadcast(*ts), "bool", _all_scalar(ts))]


def _select(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    if ts[0].dtype != "bool":
        raise InferError(f"select condition must be bool, got {ts[0]}")
    return [_result(_broadcast(*ts), _arith_dtype(ts[1], ts[2]), _all_scalar(ts))]


def _cast(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    t = ts[0]
    if isinstance(t, ScalarType):
        return [ScalarType(a["dtype"])]
    return [t.with_dtype(a["dtype"])]


# ------------------------------------------------------------------------------- reductions


def _reduce(kind: str) -> Infer:
    def infer(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
        t = _t(ts[0])
        dims = {_axis(d, t.rank) for d in a["dims"]} or set(range(t.rank))
        shape = [1 if i in dims else d for i, d in enumerate(t.shape) if a["keepdim"] or i not in dims]
        if kind == "mean":
            dt = _float_dtype(t.dtype)
        elif kind == "sum" and not is_float(t):
            dt = "i64"  # integer, trit and bool sums accumulate in i64
        else:
            dt = t.dtype
        return [TensorType(tuple(shape), dt)]
    return infer


def _argmax(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    t = _t(ts[0])
    d = _axis(a["dim"], t.rank)
    shape = [1 if i == d else s for i, s in enumerate(t.shape) if a["keepdim"] or i != d]
    return [TensorType(tuple(shape), "i64")]


# ------------------------------------------------------------------------------ linear algebra


def _matmul(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x, y = _t(ts[0], "lhs"), _t(ts[1], "rhs")
    if x.rank == 0 or y.rank == 0:
        raise InferError("matmul operands must have rank >= 1")
    xs = list(x.shape) if x.rank > 1 else [1, x.shape[0]]
    ys = list(y.shape) if y.rank > 1 else [y.shape[0], 1]
    _same(xs[-1], ys[-2], "matmul contraction dims differ")
    batch = _broadcast(TensorType(tuple(xs[:-2]), "f32"), TensorType(tuple(ys[:-2]), "f32"))
    shape = list(batch) + ([xs[-2]] if x.rank > 1 else []) + ([ys[-1]] if y.rank > 1 else [])
    # integer, trit and bool operands are multiplied as floats (f32), as the PyTorch
    # backend's trt.float_matmul does; a float operand keeps its dtype
    dt = promote(x.dtype, y.dtype) if is_float(x) or is_float(y) else "f32"
    return [TensorType(tuple(shape), dt)]


def _linear(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x, w = _t(ts[0], "input"), _t(ts[1], "weight")
    if x.rank < 1 or w.rank != 2:
        raise InferError(f"linear expects input [..., in] and weight [out, in]; got {x}, {w}")
    _same(x.shape[-1], w.shape[1], "linear in_features")
    if len(ts) > 2:
        b = _t(ts[2], "bias")
        if b.rank != 1:
            raise InferError(f"linear bias must be 1-d, got {b}")
        _same(b.shape[0], w.shape[0], "linear bias size")
    return [TensorType(x.shape[:-1] + (w.shape[0],), _float_dtype(x.dtype))]


def _conv_out(x: TensorType, w: TensorType, a: dict[str, Attr]) -> TensorType:
    if x.rank != 4 or w.rank != 4:
        raise InferError(f"conv2d expects input [N, C, H, W] and weight [O, C/groups, kh, kw]; got {x}, {w}")
    g = a["groups"]
    if isinstance(x.shape[1], int) and isinstance(w.shape[1], int) and x.shape[1] != w.shape[1] * g:
        raise InferError(f"conv2d: input channels {x.shape[1]} != weight channels {w.shape[1]} * groups {g}")
    if isinstance(w.shape[0], int) and w.shape[0] % g:
        raise InferError(f"conv2d: out channels {w.shape[0]} not divisible by groups {g}")
    (sh, sw), (ph, pw), (dh, dw) = (pair(a[k], k) for k in ("stride", "padding", "dilation"))
    kh, kw = w.shape[2], w.shape[3]
    if not (isinstance(kh, int) and isinstance(kw, int)):
        raise InferError("conv2d kernel size must be static")
    h, wd = window_out(x.shape[2], kh, sh, ph, dh), window_out(x.shape[3], kw, sw, pw, dw)
    return TensorType((x.shape[0], w.shape[0], h, wd), _float_dtype(x.dtype))


def _conv2d(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    out = _conv_out(_t(ts[0], "input"), _t(ts[1], "weight"), a)
    if len(ts) > 2:
        b = _t(ts[2], "bias")
        if b.rank != 1:
            raise InferError("conv2d bias must be 1-d")
        _same(b.shape[0], out.shape[1], "conv2d bias size")
    return [out]


def _check_vec(t: Type, n: Dim, what: str) -> None:
    t = _t(t, what)
    if t.rank != 1:
        raise InferError(f"{what} must be 1-d, got {t}")
    _same(t.shape[0], n, f"{what} size")


def _batch_norm(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0], "input")
    if x.rank < 2:
        raise InferError("batch_norm input must have rank >= 2 (channels at dim 1)")
    for t, what in zip(ts[1:], ("running_mean", "running_var", "weight", "bias")):
        _check_vec(t, x.shape[1], what)
    return [x.with_dtype(_float_dtype(x.dtype))]


def _norm(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0], "input")
    k = a["normalized_ndim"]
    if not 1 <= k <= x.rank:
        raise InferError(f"normalized_ndim {k} out of range for {x}")
    for t, what in zip(ts[1:], ("weight", "bias")):
        t = _t(t, what)
        if t.rank != k or not all(dims_compatible(p, q) for p, q in zip(t.shape, x.shape[-k:])):
            raise InferError(f"{what} shape {t} does not match normalized shape of {x}")
    return [x.with_dtype(_float_dtype(x.dtype))]


def pool_out(n: Dim, k: int, s: int, p: int, d: int, ceil: bool) -> Dim:
    """Output size of torch pooling (floor or ceil mode; a window must start inside the
    input or its left padding)."""
    if not isinstance(n, int):
        return n if (s == 1 and 2 * p == d * (k - 1)) else None
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        raise InferError(f"pooling window of size {k} does not fit input size {n}")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def pool_params(a: dict[str, Attr]) -> tuple[tuple[int, int], ...]:
    """(kernel, stride, padding, dilation) pairs of a pooling op's attributes."""
    k = pair(a["kernel_size"], "kernel_size")
    s = pair(a["stride"] if a["stride"] is not None else a["kernel_size"], "stride")
    return k, s, pair(a["padding"], "padding"), pair(a.get("dilation", 1), "dilation")


def _pool(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0], "input")
    if x.rank not in (3, 4):
        raise InferError(f"pooling expects [N, C, H, W] or [C, H, W], got {x}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pool_params(a)
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise InferError("kernel_size, stride and dilation must be >= 1, padding >= 0")
    if ph * 2 > kh or pw * 2 > kw:
        raise InferError("padding must be at most half the kernel size")
    h = pool_out(x.shape[-2], kh, sh, ph, dh, a["ceil_mode"])
    w = pool_out(x.shape[-1], kw, sw, pw, dw, a["ceil_mode"])
    return [x.with_shape(x.shape[:-2] + (h, w))]


def _adaptive_pool(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0], "input")
    if x.rank not in (3, 4):
        raise InferError(f"adaptive_avg_pool2d expects [N, C, H, W] or [C, H, W], got {x}")
    return [x.with_shape(x.shape[:-2] + pair(a["output_size"], "output_size"))]


def _mha(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x, win, bin_, wout, bout = (_t(t) for t in ts)
    if x.rank != 3:
        raise InferError(f"multi_head_attention input must be [batch, seq, embed], got {x}")
    e = x.shape[2]
    if win.rank != 2 or wout.rank != 2:
        raise InferError("in_proj_weight and out_proj_weight must be 2-d")
    _same(win.shape[1], e, "in_proj_weight columns")
    if isinstance(win.shape[0], int) and isinstance(e, int) and win.shape[0] != 3 * e:
        raise InferError(f"in_proj_weight must have 3*embed = {3 * e} rows, has {win.shape[0]}")
    _check_vec(bin_, win.shape[0], "in_proj_bias")
    _same(wout.shape[0], e, "out_proj_weight rows")
    _same(wout.shape[1], e, "out_proj_weight columns")
    _check_vec(bout, e, "out_proj_bias")
    if isinstance(e, int) and e % a["num_heads"]:
        raise InferError(f"embed dim {e} not divisible by num_heads {a['num_heads']}")
    return [x.with_dtype(_float_dtype(x.dtype))]


def _sdpa(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    q, k, v = (_t(t) for t in ts[:3])
    if q.rank < 2 or k.rank != q.rank or v.rank != q.rank:
        raise InferError("q, k, v must have the same rank >= 2")
    _same(q.shape[-1], k.shape[-1], "q/k head dim")
    _same(k.shape[-2], v.shape[-2], "k/v sequence length")
    batch = _broadcast(*(TensorType(t.shape[:-2], "f32") for t in (q, k, v)))
    if len(ts) == 4:
        m = _t(ts[3], "mask")
        scores = TensorType(batch + (q.shape[-2], k.shape[-2]), "f32")
        try:
            if broadcast_shapes(scores.shape, m.shape) != scores.shape:
                raise ValueError
        except ValueError:
            raise InferError(f"mask {m} does not broadcast to the scores {scores}") from None
        if m.dtype != "bool" and not is_float(m):
            raise InferError(f"mask must be bool (True = attend) or float (added), got {m}")
    return [TensorType(batch + (q.shape[-2], v.shape[-1]), _float_dtype(q.dtype))]


def _embedding(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    idx, w = _t(ts[0], "indices"), _t(ts[1], "weight")
    if idx.dtype not in INDEX_DTYPES:
        raise InferError(f"embedding indices must be integers, got {idx}")
    if w.rank != 2:
        raise InferError(f"embedding weight must be [num, dim], got {w}")
    return [TensorType(idx.shape + (w.shape[1],), w.dtype)]


# ----------------------------------------------------------------------------------- shapes


def _reshape(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x, target = _t(ts[0]), list(a["shape"])
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise InferError(f"bad reshape target {target}")
    if any(d == 0 and i >= x.rank for i, d in enumerate(target)):
        raise InferError(f"reshape target {target}: 0 copies an input dim that does not exist")
    # Dims copied with 0 cancel against the same input dims; -1 is the quotient of the
    # remaining input dims by the remaining target dims.
    copied = {i for i, d in enumerate(target) if d == 0}
    shape: list[Dim] = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    in_rest = [d for i, d in enumerate(x.shape) if i not in copied]
    n_out = math.prod(d for i, d in enumerate(target) if i not in copied and d != -1)
    if all(isinstance(d, int) for d in in_rest):
        n_in = math.prod(in_rest)  # type: ignore[arg-type]
        if -1 in target:
            if n_out == 0 or n_in % n_out:
                raise InferError(f"cannot reshape {x} to {target}")
            shape[target.index(-1)] = n_in // n_out
        elif n_in != n_out:
            raise InferError(f"cannot reshape {x} to {target}: element counts differ")
    elif -1 in target:
        shape[target.index(-1)] = None
    return [x.with_shape(tuple(shape))]


def _flatten(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    if x.rank == 0:
        return [x.with_shape((1,))]
    s, e = _axis(a["start_dim"], x.rank), _axis(a["end_dim"], x.rank)
    if s > e:
        raise InferError(f"flatten start_dim {s} > end_dim {e}")
    mid = x.shape[s:e + 1]
    d: Dim = math.prod(mid) if all(isinstance(m, int) for m in mid) else (mid[0] if len(mid) == 1 else None)  # type: ignore[arg-type]
    return [x.with_shape(x.shape[:s] + (d,) + x.shape[e + 1:])]


def _transpose(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    i, j = _axis(a["dim0"], x.rank), _axis(a["dim1"], x.rank)
    s = list(x.shape)
    s[i], s[j] = s[j], s[i]
    return [x.with_shape(tuple(s))]


def _permute(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    dims = [_axis(d, x.rank) for d in a["dims"]]
    if sorted(dims) != list(range(x.rank)):
        raise InferError(f"permute dims {a['dims']} are not a permutation of rank {x.rank}")
    return [x.with_shape(tuple(x.shape[d] for d in dims))]


def _slice(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    d = _axis(a["dim"], x.rank)
    start, end, step = a["start"], a["end"], a["step"]
    if step <= 0:
        raise InferError("slice step must be positive")
    n = x.shape[d]
    if isinstance(n, int):
        out: Dim = len(range(*slice(start, end, step).indices(n)))
    else:
        out = n if (start == 0 and end is None and step == 1) else None
    s = list(x.shape)
    s[d] = out
    return [x.with_shape(tuple(s))]


def _index(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    d = _axis(a["dim"], x.rank)
    n, i = x.shape[d], a["index"]
    if isinstance(n, int) and not -n <= i < n:
        raise InferError(f"index {i} out of range for dim {d} of size {n}")
    return [x.with_shape(x.shape[:d] + x.shape[d + 1:])]


def _concat(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    xs = [_t(t) for t in ts]
    r, dt = xs[0].rank, xs[0].dtype
    if any(x.rank != r or x.dtype != dt for x in xs):
        raise InferError("concat operands must have the same rank and dtype")
    d = _axis(a["dim"], r)
    shape = list(xs[0].shape)
    for x in xs[1:]:
        for i in range(r):
            if i != d:
                shape[i] = _same(shape[i], x.shape[i], f"concat dim {i}")
    sizes = [x.shape[d] for x in xs]
    shape[d] = sum(sizes) if all(isinstance(s, int) for s in sizes) else None  # type: ignore[arg-type]
    return [TensorType(tuple(shape), dt)]


def _stack(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    xs = [_t(t) for t in ts]
    if any(x.rank != xs[0].rank or x.dtype != xs[0].dtype for x in xs):
        raise InferError("stack operands must have the same rank and dtype")
    shape = list(xs[0].shape)
    for x in xs[1:]:
        shape = [_same(p, q, "stack operand shapes") for p, q in zip(shape, x.shape)]
    d = _axis(a["dim"], len(shape) + 1)
    return [TensorType(tuple(shape[:d] + [len(xs)] + shape[d:]), xs[0].dtype)]


def _squeeze(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    if a["dim"] is None:
        if not x.is_static:
            raise InferError(f"squeeze without a dim needs a static shape, got {x}")
        return [x.with_shape(tuple(d for d in x.shape if d != 1))]
    d = _axis(a["dim"], x.rank)
    if isinstance(x.shape[d], int) and x.shape[d] != 1:
        raise InferError(f"cannot squeeze dim {d} of size {x.shape[d]}")
    return [x.with_shape(x.shape[:d] + x.shape[d + 1:])]


def _unsqueeze(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    d = _axis(a["dim"], x.rank + 1)
    return [x.with_shape(x.shape[:d] + (1,) + x.shape[d:])]


def _dim(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    _axis(a["dim"], _t(ts[0]).rank)
    return [ScalarType("i64")]


# ----------------------------------------------------------------------------- quantization


def _scale_type(x: TensorType, a: dict[str, Attr]) -> TensorType:
    if not a["per_channel"]:
        return TensorType((), "f32")
    return TensorType((x.shape[_axis(a["axis"], x.rank)],), "f32")


def _quantize_ternary(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    if not is_float(x):
        raise InferError(f"quantize_ternary takes a float tensor, got {x}")
    if a["quantizer"] == "threshold" and a["threshold"] is None:
        raise InferError("quantizer 'threshold' needs a 'threshold' attribute")
    if a["per_channel"] and x.rank == 0:
        raise InferError("per-channel quantization needs rank >= 1")
    return [x.with_dtype("trit"), _scale_type(x, {**a, "axis": 0})]


def _quantize_int(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x = _t(ts[0])
    if not is_float(x):
        raise InferError(f"integer quantization takes a float tensor, got {x}")
    if a["per_channel"] and x.rank == 0:
        raise InferError("per-channel quantization needs rank >= 1")
    return [x.with_dtype("i8"), _scale_type(x, a)]


def _dequantize(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    q, s = _t(ts[0], "quantized"), _t(ts[1], "scale")
    if q.dtype not in ("trit", "i8", "i32"):
        raise InferError(f"dequantize takes trit/i8/i32 values, got {q}")
    if s.rank == 1:
        _same(s.shape[0], q.shape[_axis(a["axis"], q.rank)], "dequantize scale size")
    elif s.rank != 0:
        raise InferError(f"dequantize scale must be 0-d or 1-d, got {s}")
    return [q.with_dtype("f32")]


packed_bytes = vocab.packed_row_bytes   # bytes of one packed row of k trits (format version 1)


def _pack(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    t = _t(ts[0])
    if t.dtype != "trit" or t.rank == 0 or not t.is_static:
        raise InferError(f"pack takes a static trit tensor of rank >= 1, got {t}")
    if t.rank == 1:
        return [TensorType((packed_bytes(t.shape[0], a["format"]),), "u8")]  # type: ignore[arg-type]
    k = math.prod(t.shape[1:])  # type: ignore[arg-type]
    return [TensorType((t.shape[0], packed_bytes(k, a["format"])), "u8")]


def _unpack(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    p = _t(ts[0])
    out = TensorType(tuple(a["shape"]), "trit")
    if p.dtype != "u8" or _pack([out], a)[0] != p:
        raise InferError(f"unpack: {p} is not the {a['format']} packing of {out}")
    return [out]



def fused_operands(a: dict[str, Attr]) -> list[str]:
    """Operand roles of a fused op, in order, from its has_* flags."""
    return ["input", "weight"] + [n for n in ("scale", "bias", "residual") if a.get(f"has_{n}")]


def _fused_tail(ts: list[Type], a: dict[str, Attr], out: TensorType, ch: Dim) -> list[Type]:
    roles = fused_operands(a)
    if len(ts) != len(roles):
        raise InferError(f"operands must be ({', '.join(roles)}) for these has_* flags, got {len(ts)}")
    for role, t in zip(roles[2:], ts[2:]):
        t = _t(t, role)
        if role == "residual":
            try:
                if broadcast_shapes(out.shape, t.shape) != out.shape:
                    raise ValueError
            except ValueError:
                raise InferError(f"residual {t} does not broadcast to the output {out}") from None
        elif t.rank == 1:
            _same(t.shape[0], ch, f"{role} size")
        elif not (role == "scale" and t.rank == 0):
            raise InferError(f"{role} must be 1-d (or a 0-d scale), got {t}")
    return [out]


def _fused_linear(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    x, w = _t(ts[0], "input"), _t(ts[1], "weight")
    if a["format"] != "none":
        if a["in_features"] is None:
            raise InferError("a packed weight needs the 'in_features' attribute")
        k = a["in_features"]
        if w.rank != 2 or w.dtype != "u8":
            raise InferError(f"packed weight must be u8 [out, bytes], got {w}")
        _same(w.shape[1], packed_bytes(k, a["format"]), "packed weight bytes per row")
        w = TensorType((w.shape[0], k), "trit")
    out = _linear([x, w], {})[0]
    return _fused_tail(ts, a, out, w.shape[0])  # type: ignore[arg-type]


def _fused_conv2d(ts: list[Type], a: dict[str, Attr]) -> list[Type]:
    out = _conv_out(_t(ts[0], "input"), _t(ts[1], "weight"), a)
    return _fused_tail(ts, a, out, out.shape[1])
