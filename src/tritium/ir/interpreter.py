"""The reference interpreter: numpy semantics of every op, the oracle for all backends.

Numerics follow torch: batch_norm uses the running stats, gelu is the exact erf form (or the
tanh approximation), pooling and convolution are NCHW, softmax is max-shifted. Matmul,
linear and convolution accumulate in float64 and every result is cast to its declared
dtype (bf16 is computed and stored as f32). Parameters are passed as a dict of arrays keyed
by their dotted path from the root layer (`fc1.weight`, `blk.conv.weight`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .core import Attr, Block, Dense, Function, LayerDef, Module, Op
from .ops import fused_operands, packed_bytes, pair, pool_out, pool_params, with_defaults
from .types import INT_DTYPES, NUMPY_DTYPES, TensorType, Type
from .verifier import resolve_call


class InterpretError(RuntimeError):
    pass


Array = np.ndarray
Kernel = Callable[[list[Array], dict[str, Attr]], Any]
KERNELS: dict[str, Kernel] = {}


def kernel(*names: str) -> Callable[[Kernel], Kernel]:
    def deco(fn: Kernel) -> Kernel:
        for n in names:
            KERNELS[n] = fn
        return fn
    return deco


_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x: Array) -> Array:
    return _erf(np.asarray(x, dtype=np.float64)).astype(np.float64)


def to_type(v: Any, t: Type) -> Array:
    """`v` as an array of type `t`'s dtype (0-d for scalars)."""
    return np.asarray(v).astype(NUMPY_DTYPES[t.dtype], copy=False)


def _f(x: Array) -> Array:
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------- elementwise

def int_power(x: Array, y: Array) -> Array:
    """``x ** y`` of integers as torch computes it: a negative exponent gives 1 for the base 1,
    1 or -1 for the base -1 (by the exponent's parity) and 0 for any other base (numpy
    refuses negative integer powers)."""
    if x.dtype.kind == "f":
        return np.power(x, y)
    neg = y < 0
    out = np.power(x, np.where(neg, 0, y))
    if not np.any(neg):
        return out
    inverse = np.where(x == 1, 1, np.where(x == -1, np.where(y % 2 == 0, 1, -1), 0))
    return np.where(neg, inverse, out)


_BIN = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
        "floordiv": np.floor_divide,
        "pow": int_power, "maximum": np.maximum, "minimum": np.minimum, "eq": np.equal,
        "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
        "ge": np.greater_equal, "logical_and": np.logical_and, "logical_or": np.logical_or}

for _n, _fn in _BIN.items():
    def _binary(xs: list[Array], a: dict[str, Attr], fn: Any = _fn, name: str = _n) -> Array:
        x, y = xs
        if name in ("add", "sub", "mul", "div", "floordiv", "pow") and (x.dtype.kind == "f" or y.dtype.kind == "f"):
            x, y = _f(x), _f(y)  # float arithmetic in float64; integers stay exact
        elif name in ("add", "sub", "mul", "pow", "floordiv"):
            x, y = x.astype(np.int64), y.astype(np.int64)  # no int8 overflow before the cast
            if name == "floordiv" and not np.all(y):   # numpy gives 0; torch raises
                raise ValueError("integer division by zero (`//` or `%` of integers; PyTorch "
                                 "raises ZeroDivisionError)")
        with np.errstate(all="ignore"):
            return fn(x, y)
    KERNELS[_n] = _binary


def sigmoid(x: Array) -> Array:
    x = _f(x)
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


def gelu(x: Array, approximate: str = "none") -> Array:
    x = _f(x)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def activation(x: Array, name: str) -> Array:
    return {"none": lambda v: v, "relu": lambda v: np.maximum(v, 0),
            "relu6": lambda v: np.clip(v, 0, 6), "gelu": gelu, "silu": lambda v: _f(v) * sigmoid(v),
            "sigmoid": sigmoid, "tanh": np.tanh}[name](x)


_UN: dict[str, Callable[[Array], Array]] = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "relu": lambda v: np.maximum(v, 0),
    "relu6": lambda v: np.clip(v, 0, 6), "exp": lambda v: np.exp(_f(v)),
    "log": lambda v: np.log(_f(v)), "sqrt": lambda v: np.sqrt(_f(v)), "sigmoid": sigmoid,
    "tanh": lambda v: np.tanh(_f(v)), "silu": lambda v: _f(v) * sigmoid(v),
    "logical_not": np.logical_not, "dropout": lambda v: v,
    "sin": lambda v: np.sin(_f(v)), "cos": lambda v: np.cos(_f(v)),
    "tan": lambda v: np.tan(_f(v)), "log10": lambda v: np.log10(_f(v)),
    "floor": np.floor, "ceil": np.ceil, "round": np.round,   # np.round: ties to even, as torch
}
for _n, _fn in _UN.items():
    def _unary(xs: list[Array], a: dict[str, Attr], fn: Any = _fn) -> Array:
        with np.errstate(all="ignore"):
            return fn(xs[0])
    KERNELS[_n] = _unary


@kernel("clamp")
def _clamp(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = xs[0]
    if a["min"] is not None:
        x = np.maximum(x, a["min"])
    return x if a["max"] is None else np.minimum(x, a["max"])


@kernel("ternarize")
def _ternarize(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = _f(xs[0])
    return np.sign(x) * (np.abs(x) > a["threshold"])


@kernel("gelu")
def _gelu(xs: list[Array], a: dict[str, Attr]) -> Array:
    return gelu(xs[0], a["approximate"])


def softmax(x: Array, dim: int) -> Array:
    x = _f(x)
    if x.size == 0:   # an empty tensor (a dim of size 0): empty, as torch gives it
        return x
    e = np.exp(x - np.max(x, axis=dim, keepdims=True))
    return e / np.sum(e, axis=dim, keepdims=True)


@kernel("softmax")
def _softmax(xs: list[Array], a: dict[str, Attr]) -> Array:
    return softmax(xs[0], a["dim"])


@kernel("log_softmax")
def _log_softmax(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = _f(xs[0])
    if x.size == 0:
        return x
    m = np.max(x, axis=a["dim"], keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=a["dim"], keepdims=True))


@kernel("select")
def _select(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.where(*xs)


@kernel("cast")
def _cast(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = xs[0]
    if a["dtype"] == "trit":
        return np.clip(np.round(x), -1, 1)
    if a["dtype"] in INT_DTYPES and np.issubdtype(x.dtype, np.floating):
        return np.trunc(x)
    return x


# ------------------------------------------------------------------------------ reductions


def _dims(x: Array, a: dict[str, Attr]) -> tuple[int, ...]:
    return tuple(d % x.ndim for d in a["dims"]) or tuple(range(x.ndim))


@kernel("sum")
def _sum(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = xs[0]
    return np.sum(_f(x) if x.dtype.kind == "f" else x.astype(np.int64), axis=_dims(x, a), keepdims=a["keepdim"])


@kernel("mean")
def _mean(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.mean(_f(xs[0]), axis=_dims(xs[0], a), keepdims=a["keepdim"])


def _reducer(fn: Any) -> Kernel:
    def k(xs: list[Array], a: dict[str, Attr]) -> Array:
        return fn(xs[0], axis=_dims(xs[0], a), keepdims=a["keepdim"])
    return k


KERNELS["max"], KERNELS["min"] = _reducer(np.max), _reducer(np.min)


@kernel("argmax")
def _argmax(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.argmax(xs[0], axis=a["dim"], keepdims=a["keepdim"])


# -------------------------------------------------------------------------- linear algebra


@kernel("matmul")
def _matmul(xs: list[Array], a: dict[str, Attr]) -> Array:
    x, y = xs
    return _f(x) @ _f(y)   # integers and trits too: the product is a float (ops: matmul)


def linear(x: Array, w: Array, b: Array | None = None) -> Array:
    y = _f(x) @ _f(w).T
    return y if b is None else y + _f(b)


@kernel("linear")
def _linear(xs: list[Array], a: dict[str, Attr]) -> Array:
    return linear(*xs)


def conv2d(x: Array, w: Array, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Array:
    """NCHW convolution by im2col (sliding windows) and one einsum per call, in float64."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    x, w = _f(x), _f(w)
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, Ho, Wo, kh, kw]
    ho, wo = win.shape[2], win.shape[3]
    win = win.reshape(n, groups, cg, ho, wo, kh, kw)
    wg = w.reshape(groups, o // groups, cg, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True)
    return out.reshape(n, o, ho, wo)


def _conv_attrs(a: dict[str, Attr]) -> dict[str, Any]:
    return {k: a[k] for k in ("stride", "padding", "dilation", "groups")}


@kernel("conv2d")
def _conv2d(xs: list[Array], a: dict[str, Attr]) -> Array:
    y = conv2d(xs[0], xs[1], **_conv_attrs(a))
    return y if len(xs) == 2 else y + _f(xs[2])[None, :, None, None]


def _channel(v: Array, rank: int, axis: int = 1) -> Array:
    shape = [1] * rank
    shape[axis] = -1
    return _f(v).reshape(shape)


@kernel("batch_norm")
def _batch_norm(xs: list[Array], a: dict[str, Attr]) -> Array:
    x, mean, var, w, b = xs
    r = x.ndim
    return (_f(x) - _channel(mean, r)) / np.sqrt(_channel(var, r) + a["eps"]) * _channel(w, r) + _channel(b, r)


@kernel("layer_norm")
def _layer_norm(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = _f(xs[0])
    axes = tuple(range(x.ndim - a["normalized_ndim"], x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + a["eps"])
    if len(xs) > 1:
        y = y * _f(xs[1])
    return y + _f(xs[2]) if len(xs) > 2 else y


@kernel("rope")
def _rope(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = _f(xs[0])
    seq, d = x.shape[-2], x.shape[-1]
    half = d // 2
    inv = np.float32(a["base"]) ** (-np.arange(half, dtype=np.float32) * 2 / np.float32(d))
    ang = np.arange(seq, dtype=np.float32)[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


@kernel("rms_norm")
def _rms_norm(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = _f(xs[0])
    axes = tuple(range(x.ndim - a["normalized_ndim"], x.ndim))
    y = x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + a["eps"])
    return y * _f(xs[1]) if len(xs) > 1 else y


def _pool(x: Array, a: dict[str, Attr], kind: str) -> Array:
    """torch pooling over the last two dims (ceil_mode, dilation; avg counts padding)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pool_params(a)
    h, w = x.shape[-2:]
    ho = pool_out(h, kh, sh, ph, dh, a["ceil_mode"])
    wo = pool_out(w, kw, sw, pw, dw, a["ceil_mode"])
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1  # window extents
    # left padding p; right padding p, or more when a ceil-mode window runs past it
    rh = max(ph, (ho - 1) * sh + eh - h - ph)  # type: ignore[operator]
    rw = max(pw, (wo - 1) * sw + ew - w - pw)  # type: ignore[operator]
    pads = [(0, 0)] * (x.ndim - 2) + [(ph, rh), (pw, rw)]
    xp = np.pad(_f(x), pads, constant_values=-np.inf if kind == "max" else 0.0)
    win = sliding_window_view(xp, (eh, ew), axis=(-2, -1))[..., ::sh, ::sw, ::dh, ::dw][..., :ho, :wo, :, :]
    if kind == "max":
        return win.max(axis=(-2, -1))
    # avg: divide by the window size clipped to the padded input (torch count_include_pad)
    size_h = np.minimum(np.arange(ho) * sh - ph + kh, h + ph) - (np.arange(ho) * sh - ph)
    size_w = np.minimum(np.arange(wo) * sw - pw + kw, w + pw) - (np.arange(wo) * sw - pw)
    return win.sum(axis=(-2, -1)) / (size_h[:, None] * size_w[None, :])


@kernel("max_pool2d")
def _max_pool(xs: list[Array], a: dict[str, Attr]) -> Array:
    return _pool(xs[0], a, "max")


@kernel("avg_pool2d")
def _avg_pool(xs: list[Array], a: dict[str, Attr]) -> Array:
    return _pool(xs[0], a, "avg")


@kernel("adaptive_avg_pool2d")
def _adaptive_pool(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = _f(xs[0])
    oh, ow = pair(a["output_size"], "output_size")
    h, w = x.shape[-2:]
    out = np.empty(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[..., i, j] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))
    return out


def attention(q: Array, k: Array, v: Array, mask: Array | None = None, causal: bool = False,
              scale: float | None = None) -> Array:
    """torch scaled_dot_product_attention: a bool mask keeps True entries, a float mask is
    added to the scores."""
    q, k, v = _f(q), _f(k), _f(v)
    s = (q @ np.swapaxes(k, -1, -2)) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == np.bool_ else s + _f(mask)
    if causal:
        lq, lk = s.shape[-2:]
        s = np.where(np.tril(np.ones((lq, lk), dtype=bool)), s, -np.inf)
    return softmax(s, -1) @ v


@kernel("scaled_dot_product_attention")
def _sdpa(xs: list[Array], a: dict[str, Attr]) -> Array:
    return attention(xs[0], xs[1], xs[2], xs[3] if len(xs) > 3 else None, a["causal"], a["scale"])


@kernel("multi_head_attention")
def _mha(xs: list[Array], a: dict[str, Attr]) -> Array:
    x, win, bin_, wout, bout = (_f(v) for v in xs)
    b, n, e = x.shape
    h = a["num_heads"]
    qkv = linear(x, win, bin_).reshape(b, n, 3, h, e // h).transpose(2, 0, 3, 1, 4)
    y = attention(qkv[0], qkv[1], qkv[2], causal=a["causal"])
    return linear(y.transpose(0, 2, 1, 3).reshape(b, n, e), wout, bout)


@kernel("embedding")
def _embedding(xs: list[Array], a: dict[str, Attr]) -> Array:
    idx, w = xs
    if idx.size and (idx.min() < 0 or idx.max() >= w.shape[0]):
        raise InterpretError(f"embedding index out of range [0, {w.shape[0]})")
    return w[idx]


# ---------------------------------------------------------------------------------- shapes


@kernel("reshape")
def _reshape(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = xs[0]
    return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(a["shape"])])


@kernel("flatten")
def _flatten(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = xs[0]
    if x.ndim == 0:
        return x.reshape(1)
    s, e = a["start_dim"] % x.ndim, a["end_dim"] % x.ndim
    return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])


@kernel("transpose")
def _transpose(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.swapaxes(xs[0], a["dim0"], a["dim1"])


@kernel("permute")
def _permute(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.transpose(xs[0], a["dims"])


@kernel("slice")
def _slice(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = xs[0]
    idx = [slice(None)] * x.ndim
    idx[a["dim"]] = slice(a["start"], a["end"], a["step"])
    return x[tuple(idx)]


@kernel("index")
def _index(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.take(xs[0], a["index"], axis=a["dim"])


@kernel("concat")
def _concat(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.concatenate(xs, axis=a["dim"])


@kernel("stack")
def _stack(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.stack(xs, axis=a["dim"])


@kernel("squeeze")
def _squeeze(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.squeeze(xs[0]) if a["dim"] is None else np.squeeze(xs[0], axis=a["dim"])


@kernel("unsqueeze")
def _unsqueeze(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.expand_dims(xs[0], a["dim"])


@kernel("dim")
def _dim(xs: list[Array], a: dict[str, Attr]) -> Array:
    return np.int64(xs[0].shape[a["dim"]])


# ---------------------------------------------------------------------------- quantization


def _per(x: Array, per_channel: bool, axis: int = 0) -> tuple[tuple[int, ...], bool]:
    """Reduction axes of a per-tensor or per-channel statistic."""
    if not per_channel:
        return tuple(range(x.ndim)), False
    axis %= x.ndim
    return tuple(i for i in range(x.ndim) if i != axis), True


def quantize_ternary(w: Array, quantizer: str = "twn", per_channel: bool = False,
                     threshold: float | None = None) -> tuple[Array, Array]:
    """twn: delta = 0.7 mean|w|, scale = mean of the kept |w|; absmean (BitNet b1.58):
    scale = mean|w|, trits = clip(round(w / (scale + 1e-5)), -1, 1); threshold: keep |w| > threshold,
    scale = mean of the kept |w|. Statistics per tensor or per output channel (axis 0)."""
    w = _f(w)
    axes, keep = _per(w, per_channel)
    mag = np.abs(w)
    if quantizer == "absmean":
        scale = mag.mean(axis=axes, keepdims=True)
        t = np.clip(np.round(w / (scale + 1e-5)), -1, 1)
    else:
        delta = 0.7 * mag.mean(axis=axes, keepdims=True) if quantizer == "twn" else threshold
        mask = mag > delta
        kept = mask.sum(axis=axes, keepdims=True)
        scale = np.where(kept > 0, (mag * mask).sum(axis=axes, keepdims=True) / np.maximum(kept, 1), 0.0)
        t = np.sign(w) * mask
    scale = scale.reshape(-1) if keep else scale.reshape(())
    return t.astype(np.int8), scale.astype(np.float32)


def quantize_int(x: Array, bits: int, per_channel: bool = False, axis: int = 0) -> tuple[Array, Array]:
    """Symmetric absmax: scale = max|x| / qmax (qmax 127 or 7), q = clip(round(x / scale))."""
    x = _f(x)
    qmax = 127 if bits == 8 else 7
    axes, keep = _per(x, per_channel, axis)
    scale = np.abs(x).max(axis=axes, keepdims=True, initial=0.0) / qmax
    scale = scale.astype(np.float32).astype(np.float64)
    q = np.clip(np.round(x / np.where(scale == 0, 1, scale)), -qmax, qmax)
    scale = scale.reshape(-1) if keep else scale.reshape(())
    return q.astype(np.int8), scale.astype(np.float32)


@kernel("quantize_ternary")
def _quantize_ternary(xs: list[Array], a: dict[str, Attr]) -> tuple[Array, Array]:
    return quantize_ternary(xs[0], a["quantizer"], a["per_channel"], a["threshold"])


@kernel("quantize_int8")
def _quantize_int8(xs: list[Array], a: dict[str, Attr]) -> tuple[Array, Array]:
    return quantize_int(xs[0], 8, a["per_channel"], a["axis"])


@kernel("quantize_int4")
def _quantize_int4(xs: list[Array], a: dict[str, Attr]) -> tuple[Array, Array]:
    return quantize_int(xs[0], 4, a["per_channel"], a["axis"])


def dequantize(q: Array, s: Array, axis: int = 0) -> Array:
    s = _f(s)
    if s.ndim == 1:
        s = _channel(s, q.ndim, axis % q.ndim)
    return _f(q) * s


@kernel("dequantize")
def _dequantize(xs: list[Array], a: dict[str, Attr]) -> Array:
    return dequantize(xs[0], xs[1], a["axis"])


def pack(t: Array, fmt: str) -> Array:
    """Pack trits row-wise (rows = dim 0 of a rank >= 2 tensor) in the runtime's format
    version 1. Codes are c = trit + 1; rows are zero-padded to whole 32-byte blocks.
    t2: 128-trit blocks; byte j holds trits j, j+32, j+64, j+96 in bits 0-1, 2-3, 4-5, 6-7.
    t1.6: 160-trit blocks; byte j = 81 c(j) + 27 c(j+32) + 9 c(j+64) + 3 c(j+96) + c(j+128)."""
    rows = t.reshape(1, -1) if t.ndim == 1 else t.reshape(t.shape[0], -1)
    n, k = rows.shape
    nb = packed_bytes(k, fmt)
    per_byte = 4 if fmt == "t2" else 5
    codes = np.pad(rows.astype(np.int64) + 1, ((0, 0), (0, nb * per_byte - k)), constant_values=1)
    blocks = codes.reshape(n, -1, per_byte, 32)  # [row, block, i, j] = trit 32 i + j
    if fmt == "t2":
        out = sum(blocks[:, :, i, :] << (2 * i) for i in range(4))
    else:
        out = sum(blocks[:, :, i, :] * 3 ** (4 - i) for i in range(5))
    out = np.asarray(out).reshape(n, nb).astype(np.uint8)
    return out.reshape(-1) if t.ndim == 1 else out


def unpack(p: Array, fmt: str, shape: Sequence[int]) -> Array:
    rows = p.reshape(1, -1) if len(shape) == 1 else p.reshape(shape[0], -1)
    k = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    b = rows.astype(np.int64).reshape(rows.shape[0], -1, 1, 32)  # [row, block, 1, j]
    if fmt == "t2":
        codes = np.concatenate([(b >> (2 * i)) & 3 for i in range(4)], axis=2)
    else:
        codes = np.concatenate([(b // 3 ** (4 - i)) % 3 for i in range(5)], axis=2)
    return (codes.reshape(rows.shape[0], -1)[:, :k] - 1).astype(np.int8).reshape(shape)


@kernel("pack")
def _pack(xs: list[Array], a: dict[str, Attr]) -> Array:
    return pack(xs[0], a["format"])


@kernel("unpack")
def _unpack(xs: list[Array], a: dict[str, Attr]) -> Array:
    return unpack(xs[0], a["format"], a["shape"])


def quantize_act_int8(x: Array) -> Array:
    """Fake-quantize activations: int8 absmax per token (last dim), returned dequantized."""
    s = np.abs(_f(x)).max(axis=-1, keepdims=True) / 127
    s = np.where(s == 0, 1, s)
    return np.clip(np.round(_f(x) / s), -127, 127) * s


def _fused_tail(y: Array, xs: list[Array], a: dict[str, Attr], channel_axis: int) -> Array:
    ops = dict(zip(fused_operands(a), xs))
    if "scale" in ops:
        s = _f(ops["scale"])
        y = y * (_channel(s, y.ndim, channel_axis) if s.ndim == 1 else s)
    if "bias" in ops:
        y = y + _channel(ops["bias"], y.ndim, channel_axis)
    if "residual" in ops:
        y = y + _f(ops["residual"])
    return activation(y, a["activation"])


@kernel("fused_linear")
def _fused_linear(xs: list[Array], a: dict[str, Attr]) -> Array:
    x, w = xs[0], xs[1]
    if a["format"] != "none":
        w = unpack(w, a["format"], [w.shape[0], a["in_features"]])
    if a["act_quant"] == "int8":
        x = quantize_act_int8(x)
    return _fused_tail(linear(x, w), xs, a, -1)


@kernel("fused_conv2d")
def _fused_conv2d(xs: list[Array], a: dict[str, Attr]) -> Array:
    x = quantize_act_int8(xs[0]) if a["act_quant"] == "int8" else xs[0]
    return _fused_tail(conv2d(x, xs[1], **_conv_attrs(a)), xs, a, 1)


def constant_value(value: Attr, t: Type) -> Array:
    if isinstance(value, Dense):
        return to_type(np.array(value.data).reshape(t.shape), t)  # type: ignore[union-attr]
    if isinstance(t, TensorType):
        return to_type(np.full(t.shape, value), t)
    return to_type(value, t)


def eval_op(name: str, attrs: dict[str, Attr], operands: list[Array], result_types: list[Type]) -> list[Array]:
    """Evaluate one region-free, context-free op (not param/call/if) on numpy operands."""
    a = with_defaults(name, attrs)
    if name == "constant":
        return [constant_value(a["value"], result_types[0])]
    fn = KERNELS.get(name)
    if fn is None:
        raise InterpretError(f"op '{name}' cannot be evaluated out of context")
    out = fn(operands, a)
    outs = list(out) if isinstance(out, tuple) else [out]
    return [to_type(v, t) for v, t in zip(outs, result_types)]


# ------------------------------------------------------------------------------ interpreter


class Interpreter:
    """Runs functions of a module. `params` maps dotted parameter paths to arrays.
    `trace(op, outputs, prefix)`, when given, sees every op's results as they are computed
    (prefix = the parameter path of the layer instance running), e.g. to compare a backend's
    intermediate values with the oracle's."""

    def __init__(self, module: Module, params: dict[str, Array] | None = None,
                 check_shapes: bool = True,
                 trace: Callable[[Op, list[Array], str], None] | None = None) -> None:
        self.module = module
        self.params = params or {}
        self.check_shapes = check_shapes
        self.trace = trace

    def run(self, func: str | Function, args: Sequence[Any], layer: LayerDef | None = None,
            prefix: str = "") -> list[Array]:
        if isinstance(func, str):
            f = self.module.function(func)
            if f is None:
                raise InterpretError(f"no function '{func}'")
            if "." in func:
                layer = self.module.layer(func.split(".", 1)[0])
        else:
            f = func
        if len(args) != len(f.args):
            raise InterpretError(f"@{f.name} takes {len(f.args)} arguments, got {len(args)}")
        env: dict[int, Array] = {}
        bind: dict[str, int] = {}
        for v, x in zip(f.args, args):
            env[id(v)] = self.check(to_type(x, v.type), v.type, bind, f"argument %{v.name}")
        return self.block(f.body, env, layer, prefix, bind)

    def check(self, x: Array, t: Type, bind: dict[str, int], what: str) -> Array:
        if not self.check_shapes:
            return x
        shape = t.shape if isinstance(t, TensorType) else ()
        ok = x.ndim == len(shape)
        for d, n in zip(shape, x.shape):
            if isinstance(d, int):
                ok = ok and d == n
            elif isinstance(d, str):
                ok = ok and bind.setdefault(d, n) == n
        if not ok:
            raise InterpretError(f"{what} has shape {list(x.shape)}, its type is {t}")
        return x

    def block(self, block: Block, env: dict[int, Array], layer: LayerDef | None, prefix: str,
              bind: dict[str, int]) -> list[Array]:
        for op in block.ops:
            if op.name in ("return", "yield"):
                return [env[id(v)] for v in op.operands]
            outs = self.op(op, [env[id(v)] for v in op.operands], env, layer, prefix, bind)
            for r, x in zip(op.results, outs):
                env[id(r)] = self.check(x, r.type, bind, f"result of '{op.name}'")
            if self.trace is not None:
                self.trace(op, outs, prefix)
        raise InterpretError("block without terminator")

    def op(self, op: Op, xs: list[Array], env: dict[int, Array], layer: LayerDef | None,
           prefix: str, bind: dict[str, int]) -> list[Array]:
        if op.name == "param":
            key = prefix + op.attrs["name"]
            if key not in self.params:
                raise InterpretError(f"no value for parameter '{key}'")
            return [to_type(self.params[key], op.results[0].type)]
        if op.name == "call":
            target, f, sub = resolve_call(self.module, layer, op)
            outs = self.run(f, xs, target, prefix + sub)
            return [to_type(x, r.type) for x, r in zip(outs, op.results)]
        if op.name == "if":
            region = op.regions[0] if bool(xs[0]) else op.regions[1]
            outs = self.block(region, env, layer, prefix, bind)
            return [to_type(x, r.type) for x, r in zip(outs, op.results)]
        try:
            return eval_op(op.name, op.attrs, xs, op.result_types)
        except (ValueError, IndexError) as e:
            raise InterpretError(f"op '{op.name}': {e}") from None


def interpret(module: Module, func: str, args: Sequence[Any],
              params: dict[str, Array] | None = None) -> list[Array]:
    """Run `func` (a module-level function or `Layer.method`) on numpy `args`."""
    return Interpreter(module, params).run(func, args)

