"""The seed language's quantization primitives: quantizers onto the ternary levels
{-1, 0, 1}, dequantization, ternary weights and the quantized linear, conv2d and matmul:
their rules, templates and records, registered after `seed`."""

from __future__ import annotations

from collections.abc import Callable

from ..types import (
    ANY,
    FLOAT,
    ScalarT,
    TensorT,
    Value,
)
from .core import _X
from .records import Template, _fn, _opt, _p
from .rules import (
    _const,
    _quantizer_ok,
    _range_check,
    _xt,
    creation_rule,
    matmul_rule,
    ternary_matmul_rule,
)
from .seed import _CONV, conv2d_rule

# ----------------------------------------------------------------------------- rules

_QUANT_RANGES = {"threshold": (0.0, False), "temperature": (0.0, True), "factor": (0.0, True),
                 "clip": (0.0, True)}


def ternary_values_rule(ck, name, b, e) -> Value:
    """A quantizer onto the ternary levels (times a scale for some): a float tensor of the
    input's shape whose values are ternary (`TernaryTensor` in messages); `soft_quantize` and a
    soft Gumbel sample are relaxations, plain float tensors."""
    for k, (lo, strict) in _QUANT_RANGES.items():
        if k in b and not _range_check(ck, b, e, k, lo, strict):
            return Value(ANY)
    x, xt = b.get("x"), _xt(b)
    ternary = name != "soft_quantize" and not (name == "gumbel_softmax_quantize"
                                               and _const(b, "hard", True) is False)
    if xt is None:
        return Value(TensorT("float32", None, ternary)) if x is None or not isinstance(
            x.ty, ScalarT) else Value(FLOAT)
    return Value(TensorT("float32", xt.shape, ternary))


def dequantize_rule(ck, name, b, e) -> Value:
    """(q - zero_point) * scale: a float tensor of q's shape."""
    qt = b["q"].ty
    if not isinstance(qt, TensorT):
        return Value(TensorT("float32", None) if not isinstance(qt, ScalarT) else FLOAT)
    for k in ("scale", "zero_point"):
        t = b[k].ty if k in b else None
        if isinstance(t, TensorT) and t.shape is not None and len(t.shape) > 1:
            ck.report("E0823", f"{name}: `{k}` must be a number or one value per channel "
                               f"(a 1-d tensor), got {t}", e.span)
            return Value(ANY)
    return Value(TensorT("float32", qt.shape))


def ternary_weights_rule(ck, name, b, e) -> Value:
    """The trits of a weight (`TernaryTensor<trit>`), or random trits of a shape."""
    w = b["w"]
    if not _quantizer_ok(ck, b, e):
        return Value(ANY)
    if isinstance(w.ty, TensorT):
        return Value(TensorT("trit", w.ty.shape, True))
    return creation_rule(ck, "random_ternary", {"shape": w}, e)


def quantized_linear_rule(ck, name, b, e) -> Value:
    if not _quantizer_ok(ck, b, e):
        return Value(ANY)
    r = ternary_matmul_rule(ck, name, {"x": b["x"], "w": b["w"]}, e)
    bias = b.get("bias")
    if bias is not None and isinstance(bias.ty, TensorT) and isinstance(r.ty, TensorT):
        return ck.tensor_binary("+", r.ty, bias.ty, e)
    return r


def quantized_matmul_rule(ck, name, b, e) -> Value:
    if not _quantizer_ok(ck, b, e):
        return Value(ANY)
    return matmul_rule(ck, name, {"a": b["x"], "b": b["w"]}, e)


# ----------------------------------------------------------------------------- templates

_TRAIN = "self.training"   # the PyTorch code generator writes False outside a module method


def _opt_kw(*keys: str) -> Callable[[dict[str, str], set[str]], str]:
    """`, key=value` for each of `keys` the call gives (so a default stays the runtime's)."""
    def kw(a: dict[str, str], given: set[str]) -> str:
        return "".join(f", {k}={a[k]}" for k in keys if k in given)
    return kw


def _call_torch(fn: str, pos: tuple[str, ...], kws: tuple[str, ...] = (),
                training: bool = False) -> Template:
    """`fn(pos..., key=value for the keys given[, training=self.training])`."""
    opt = _opt_kw(*kws)

    def render(a: dict[str, str], given: set[str]) -> str:
        tr = f", training={a['training']}" if "training" in given else \
            f", training={_TRAIN}" if training else ""
        return f"{fn}({', '.join(a[p] for p in pos)}{opt(a, given)}{tr})"
    return render


# ----------------------------------------------------------------------------- the table

# quantization primitives: onto the ternary levels {-1, 0, 1} (times a scale for some)
_fn("threshold_quantize", (_p("x"), _opt("threshold", "float", 0.5)),
    "sign(x) where |x| > threshold, else 0 (identity STE)", ternary_values_rule,
    "trt.threshold_quantize({x}, {threshold})", aliases=(("delta", "threshold"),))
_fn("adaptive_threshold_quantize", (_p("x"), _opt("factor", "float", 0.7),
                                    _opt("per_channel", "bool", False)),
    "TWN threshold: sign(x) where |x| > factor * mean|x|, else 0 (identity STE)",
    ternary_values_rule, "trt.adaptive_threshold_quantize({x}, {factor}, {per_channel})",
    aliases=(("delta_factor", "factor"), ("ratio", "factor")))
_fn("stochastic_quantize", (_p("x"), _opt("seed", "int", None)),
    "stochastic rounding: sign(x) with probability min(|x|, 1), else 0; `seed` for a "
    "reproducible draw (identity STE)", ternary_values_rule,
    "trt.stochastic_quantize({x}, seed={seed})")
_fn("learned_quantize", (_p("x"), _p("scale"), _opt("threshold", "float", 0.5)),
    "learned step (LSQ, three levels): scale * ternary(x / scale); gradients reach x and scale",
    ternary_values_rule, "trt.learned_quantize({x}, {scale}, {threshold})",
    aliases=(("alpha", "scale"), ("step", "scale")))
_fn("soft_quantize", (_p("x"), _opt("temperature", "float", 1.0)),
    "differentiable staircase (tanh((x-½)/T) + tanh((x+½)/T)) / 2 (float, not ternary)",
    ternary_values_rule, "trt.soft_quantize({x}, {temperature})",
    aliases=(("tau", "temperature"), ("t", "temperature")))
_fn("gumbel_softmax_quantize", (_p("x"), _opt("temperature", "float", 1.0),
                                _opt("hard", "bool", True), _opt("seed", "int", None)),
    "Gumbel-softmax sample over {-1, 0, 1} with logits -(x - level)²; hard: the arg-max "
    "level, straight-through", ternary_values_rule,
    "trt.gumbel_softmax_quantize({x}, {temperature}, {hard}, seed={seed})",
    aliases=(("tau", "temperature"),))
_fn("xnor_quantize", _X, "XNOR-Net: mean|x| * sign(x), sign(0) = 1 (clipped STE)",
    ternary_values_rule, "trt.xnor_quantize({x})")
_fn("ste_quantize", (_p("x"), _opt("threshold", "float", 0.5)),
    "sign(x) where |x| > threshold, else 0, identity straight-through gradient",
    ternary_values_rule, "trt.ste_quantize({x}, {threshold})")
_fn("clipped_ste_quantize", (_p("x"), _opt("threshold", "float", 0.5), _opt("clip", "float", 1.0)),
    "as ste_quantize, the gradient only where |x| <= clip", ternary_values_rule,
    "trt.clipped_ste_quantize({x}, {threshold}, {clip})", aliases=(("clip_value", "clip"),))
_DQ = (_p("q"), _p("scale", "tensor"))
_fn("dequantize", (*_DQ, _opt("axis", "int", 0)), "q * scale as float32 (a 1-d scale is per "
    "channel along `axis`)", dequantize_rule, "trt.dequantize({q}, {scale}, axis={axis})",
    aliases=(("x", "q"), ("values", "q")))
_fn("ternary_dequantize", (*_DQ, _opt("axis", "int", 0)), "trits * scale as float32",
    dequantize_rule, "trt.dequantize({q}, {scale}, axis={axis})",
    aliases=(("trits", "q"), ("x", "q")))
_fn("affine_dequantize", (*_DQ, _p("zero_point", "tensor"), _opt("axis", "int", 0)),
    "(q - zero_point) * scale as float32", dequantize_rule,
    "trt.dequantize({q}, {scale}, {zero_point}, axis={axis})", aliases=(("x", "q"),))
_fn("ternary_weights", (_p("w", "any"), _opt("quantizer", "str", "twn")),
    "the trits of a weight (TernaryTensor, no scale), or random trits of a shape",
    ternary_weights_rule, "trt.ternary_weights({w}, {quantizer})",
    aliases=(("x", "w"), ("shape", "w")))
_QW = (_opt("quantizer", "str", "twn"),)
_fn("quantized_linear", (_p("x"), _p("w"), _opt("bias", "tensor", None), *_QW),
    "x @ ternary(w)ᵀ + bias, w [out, in] (STE to the latent w)", quantized_linear_rule,
    _call_torch("trt.quantized_linear", ("x", "w", "bias"), ("quantizer",), training=True),
    aliases=(("weight", "w"),))
_fn("quantized_conv2d", (_p("x"), _p("w"), _opt("bias", "tensor", None), *_CONV, *_QW),
    "conv2d with the ternarized kernel (STE)", lambda ck, n, b, e: conv2d_rule(
        ck, n, {**b, "weight": b["w"]}, e),
    _call_torch("trt.quantized_conv2d", ("x", "w", "bias"),
                ("stride", "padding", "dilation", "groups", "quantizer"), training=True),
    aliases=(("weight", "w"),))
_fn("quantized_matmul", (_p("x"), _p("w"), *_QW), "x @ ternary(w) (w [in, out], STE)",
    quantized_matmul_rule,
    _call_torch("trt.quantized_matmul", ("x", "w"), ("quantizer",), training=True),
    aliases=(("a", "x"), ("b", "w"), ("weight", "w")))
