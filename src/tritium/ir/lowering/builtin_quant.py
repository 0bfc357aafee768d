"""The lowerings of the seed language's quantization primitives (docs/language.md: their
values and gradients), dequantization and the quantized linear, conv2d and matmul."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...frontend.diagnostics import Span
from ...vocab import DTYPES
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
    x = _f32(lw, b, a["x"], span)
    scale = _num_attr(a.get("scale", 1.0), "scale", span)
    if _is_num(a["threshold"]):
        return b.ternarize(x, threshold=_num_attr(a["threshold"], "threshold", span) * scale)
    # a threshold known only at run time (a 0-d tensor): sign(x) where |x| > t * scale
    t = b.mul(_f32(lw, b, a["threshold"], span), _scalar(b, scale))
    keep = b.cast(b.gt(b.abs(x), t), dtype="f32")
    return b.mul(b.sign(x), keep)


for _n in ("threshold_quantize", "ste_quantize", "clipped_ste_quantize"):
    _BUILTIN_FNS[_n] = _ternarize_fn   # forward values; the STE is a training-time gradient


@_builtin("adaptive_threshold_quantize")
def _adaptive_threshold(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if a["percentile"] is not None or a["target_sparsity"] is not None:
        raise LoweringError("a quantile of |x| as the threshold (`percentile=`, "
                            "`target_sparsity=`) has no IR op: it runs in the PyTorch backend",
                            span)
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


@_builtin("learned_threshold_quantize")
def _asymmetric(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)

    def f32(v: Any) -> Value:
        return _scalar(b, v) if _is_num(v) else _f32(lw, b, v, span)
    pos = b.mul(b.cast(b.gt(x, f32(a["pos_threshold"])), dtype="f32"), f32(a["pos_scale"]))
    neg = b.mul(b.cast(b.lt(x, f32(a["neg_threshold"])), dtype="f32"), f32(a["neg_scale"]))
    return b.sub(pos, neg)


@_builtin("soft_quantize")
def _soft(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _f32(lw, b, a["x"], span)
    if a["hard"] is True:   # the rounded levels forward (the staircase only shapes gradients)
        return b.ternarize(x, threshold=0.5)
    if a["hard"] is not False:
        raise LoweringError("`hard` must be true or false when lowering", span)
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
    if lw.result.call_forms.get(span) == "values_scale":   # `let (values, scale) = …`
        return [sign, alpha]
    return b.mul(sign, alpha)


@_builtin("stochastic_quantize", "gumbel_softmax_quantize")
def _random_quant(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if a.get("training") is False:   # stochastic_quantize(x, training=false): deterministic
        t = _num_attr(a["temperature"], "temperature", span)
        return b.ternarize(_f32(lw, b, a["x"], span), threshold=0.5 * t)
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
    out = b.mul(q, along(a["scale"]))
    if a.get("dtype") is not None:
        ir = DTYPES[a["dtype"]].ir
        if ir is not None and ir != "f32":
            out = b.cast(out, dtype=ir)
    return out


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


def _flag(a: dict[str, Any], key: str, span: Span | None) -> bool:
    v = a[key]
    if not isinstance(v, bool):
        raise LoweringError(f"`{key}` must be true or false when lowering", span)
    return v


def _operand(lw: Lowerer, b: Builder, a: dict[str, Any], key: str, flag: str,
             span: Span | None) -> Value:
    """`a[key]` as f32, ternarized (dequantized TWN levels) when `a[flag]` is true."""
    v = _f32(lw, b, a[key], span)
    return lw.ternary(b, v, _qcfg(lw, a, span)) if _flag(a, flag, span) else v


@_builtin("quantized_linear")
def _quantized_linear(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    w = _operand(lw, b, a, "w", "quantize_weights", span)
    if lw.result.call_forms.get(span) == "w_in_out":   # the seed's [in, out] weight
        w = b.transpose(w, dim0=0, dim1=1)
    ops = [_operand(lw, b, a, "x", "quantize_activations", span), w]
    if a["bias"] is not None:
        ops.append(_f32(lw, b, a["bias"], span))
    return b.linear(*ops)


@_builtin("quantized_conv2d")
def _quantized_conv2d(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    w = _operand(lw, b, a, "w", "quantize_weights", span)
    return _conv(lw, b, _operand(lw, b, a, "x", "quantize_activations", span), w, a, span)


@_builtin("quantized_matmul")
def _quantized_matmul(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    w = _operand(lw, b, a, "w", "quantize_b", span)
    return b.matmul(_operand(lw, b, a, "x", "quantize_a", span), w)
