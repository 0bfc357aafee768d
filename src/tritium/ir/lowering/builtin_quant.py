"""The lowerings of the seed language's quantization primitives (docs/language.md: their
values and gradients), dequantization and the quantized linear, conv2d and matmul."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...frontend.diagnostics import Span
from ..builder import Builder
from ..core import Value
from ..types import TensorType
from .builtin_core import _BUILTIN_FNS, _builtin, _int_attr
from .builtin_seed import _conv, _f32, _num_attr, _per_channel, _rank, _scalar
from .values import (
    LoweringError,
    _is_num,
)

if TYPE_CHECKING:
    from .lowerer import Lowerer


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
