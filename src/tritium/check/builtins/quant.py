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
    dims_conflict,
)
from .core import _X
from .records import Template, _fn, _opt, _p
from .rules import (
    _const,
    _dtype_ok,
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
    for k, what in (("percentile", "0.9 for the 90th percentile"),   # a quantile of |x|
                    ("target_sparsity", "0.3 for 30% zeros")):
        if k in b and not _range_check(ck, b, e, k, 0.0, False, 1.0,
                                       help=f"`{k}` is a fraction: {what}"):
            return Value(ANY)
    x, xt = b.get("x"), _xt(b)
    ternary = name != "soft_quantize" and not (name == "gumbel_softmax_quantize"
                                               and _const(b, "hard", True) is False)
    if xt is None:
        return Value(TensorT("float32", None, ternary)) if x is None or not isinstance(
            x.ty, ScalarT) else Value(FLOAT)
    return Value(TensorT("float32", xt.shape, ternary))


def asymmetric_rule(ck, name, b, e) -> Value:
    """learned_threshold_quantize: a float tensor of x's shape, values in {-neg_scale, 0,
    pos_scale} (ternary when both scales are 1)."""
    xt = _xt(b)
    unit = all(_const(b, k, 1.0) in (1, 1.0) and (k not in b or b[k].known)
               for k in ("pos_scale", "neg_scale"))
    for k in ("pos_threshold", "neg_threshold", "pos_scale", "neg_scale"):
        t = b[k].ty if k in b else None
        if isinstance(t, TensorT) and t.shape is not None and xt is not None and \
                xt.shape is not None and len(t.shape) > len(xt.shape):
            ck.report("E0823", f"{name}: `{k}` has more dims than x ({t} vs {xt})", e.span)
            return Value(ANY)
    return Value(TensorT("float32", xt.shape if xt else None, unit))


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
    dt = _const(b, "dtype")
    if isinstance(dt, str) and not _dtype_ok(ck, dt, e):
        return Value(ANY)
    return Value(TensorT(dt if isinstance(dt, str) else "float32", qt.shape))


def ternary_weights_rule(ck, name, b, e) -> Value:
    """The trits of a weight (`TernaryTensor<trit>`), or random trits of a shape."""
    w = b["w"]
    if not _quantizer_ok(ck, b, e):
        return Value(ANY)
    dist = _const(b, "distribution", "uniform")
    if isinstance(dist, str) and dist not in ("uniform", "balanced"):
        ck.report("E0309", f"unknown distribution '{dist}' of ternary_weights", e.span,
                  help="\"uniform\" or \"balanced\" (each trit equally likely)")
        return Value(ANY)
    if "sparsity" in b and not _range_check(ck, b, e, "sparsity", 0.0, False):
        return Value(ANY)
    if "sparsity" in b and isinstance(w.ty, TensorT):
        ck.report("E0823", "ternary_weights: `sparsity` shapes random trits; give a shape, "
                           "not a weight", e.span)
        return Value(ANY)
    if isinstance(w.ty, TensorT):
        return Value(TensorT("trit", w.ty.shape, True))
    return creation_rule(ck, "random_ternary", {"shape": w}, e)


def quantized_linear_rule(ck, name, b, e) -> Value:
    if not _quantizer_ok(ck, b, e):
        return Value(ANY)
    xt, wt = b["x"].ty, b["w"].ty
    if isinstance(xt, TensorT) and isinstance(wt, TensorT) and xt.shape and wt.shape and \
            len(wt.shape) == 2 and dims_conflict(wt.shape[1], xt.shape[-1]) and \
            not dims_conflict(wt.shape[0], xt.shape[-1]):
        # the seed writes the weight [in_features, out_features]: only that layout fits x
        ck.call_forms[e.span] = "w_in_out"
        wt = TensorT(wt.dtype, (wt.shape[1], wt.shape[0]), wt.ternary)
        b = {**b, "w": Value(wt)}
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


def _threshold_torch(a: dict[str, str], given: set[str]) -> str:
    t = f"({a['threshold']}) * ({a['scale']})" if "scale" in given else a["threshold"]
    return f"trt.threshold_quantize({a['x']}, {t})"


def _adaptive_torch(a: dict[str, str], given: set[str]) -> str:
    for k in ("percentile", "target_sparsity"):   # the p-quantile of |x| as the threshold
        if k in given:
            return f"trt.quantile_threshold_quantize({a['x']}, {a[k]})"
    return f"trt.adaptive_threshold_quantize({a['x']}, {a['factor']}, {a['per_channel']})"


def _stochastic_torch(a: dict[str, str], given: set[str]) -> str:
    if not given & {"temperature", "training"}:
        return f"trt.stochastic_quantize({a['x']}, seed={a['seed']})"
    tr = a["training"] if "training" in given else "True"
    return (f"trt.tempered_stochastic_quantize({a['x']}, {a['temperature']}, seed={a['seed']}, "
            f"training={tr})")


def _soft_torch(a: dict[str, str], given: set[str]) -> str:
    if "hard" not in given or a["hard"] == "False":
        return f"trt.soft_quantize({a['x']}, {a['temperature']})"
    hard = f"trt.hard_soft_quantize({a['x']}, {a['temperature']})"
    return hard if a["hard"] == "True" else \
        f"({hard} if {a['hard']} else trt.soft_quantize({a['x']}, {a['temperature']}))"


def _asymmetric_torch(a: dict[str, str], given: set[str]) -> str:
    return (f"trt.learned_threshold_quantize({a['x']}, {a['pos_threshold']}, "
            f"{a['neg_threshold']}, {a['pos_scale']}, {a['neg_scale']})")


def _dequant_torch(base: str) -> Template:
    def render(a: dict[str, str], given: set[str]) -> str:
        call = base.format(**a)
        return f"trt.cast({call}, {a['dtype']})" if "dtype" in given else call
    return render


def _ternary_weights_torch(a: dict[str, str], given: set[str]) -> str:
    if "sparsity" in given:
        return f"trt.sparse_random_ternary({a['w']}, {a['sparsity']})"
    return f"trt.ternary_weights({a['w']}, {a['quantizer']})"


def _qflags(inner: Template, x: str, w: str,
            flags: tuple[str, str] = ("quantize_activations", "quantize_weights")) -> Template:
    """A quantized op whose flags say which operands are ternarized: the activation flag
    ternarizes `x` first (TWN, STE); a weight flag of false uses `w` as it is (the plain op)."""
    def render(a: dict[str, str], given: set[str]) -> str:
        fa, fw = flags
        b = dict(a)
        if a.get(fa, "False") != "False":
            q = f"trt.ternary_weight({a[x]}, quantizer={a['quantizer']}, training=self.training)"
            b[x] = q if a[fa] == "True" else f"({q} if {a[fa]} else {a[x]})"
        if a.get("use_ste", "True") == "False":
            b[w] = f"{a[w]}.detach()"
        if "@w_in_out" in given:    # the checker found w written [in, out] (the seed's layout)
            b[w] = f"{b[w]}.t()"
        out = inner(b, given)
        if a.get(fw, "True") == "True":
            return out
        plain = _PLAIN[out.split("(", 1)[0]]
        return plain.format(**b) if a[fw] == "False" else \
            f"({out} if {a[fw]} else {plain.format(**b)})"
    return render


_PLAIN = {"trt.quantized_linear": "F.linear({x}, {w}, {bias})",
          "trt.quantized_conv2d": "F.conv2d({x}, {w}, {bias}, stride={stride}, "
                                  "padding={padding}, dilation={dilation}, groups={groups})",
          "trt.quantized_matmul": "torch.matmul({x}, {w})"}


def _learned_overload(args: list[tuple[str | None, object]]) -> str | None:
    """learned_quantize(x, pos_threshold, neg_threshold[, pos_scale, neg_scale]): the
    seed's form, by three or more positional arguments or its parameter names."""
    names = {n for n, _ in args if n is not None}
    if sum(n is None for n, _ in args) >= 3 or names & {"pos_threshold", "neg_threshold",
                                                         "pos_scale", "neg_scale"}:
        return "learned_threshold_quantize"
    return None


# ----------------------------------------------------------------------------- the table

# quantization primitives: onto the ternary levels {-1, 0, 1} (times a scale for some)
_fn("threshold_quantize", (_p("x"), _opt("threshold", "tensor", 0.5), _opt("scale", "float", 1.0)),
    "sign(x) where |x| > threshold * scale, else 0 (identity STE); the threshold may be a "
    "0-d tensor", ternary_values_rule, _threshold_torch, aliases=(("delta", "threshold"),))
_fn("adaptive_threshold_quantize", (_p("x"), _opt("factor", "float", 0.7),
                                    _opt("per_channel", "bool", False),
                                    _opt("percentile", "float", None),
                                    _opt("target_sparsity", "float", None)),
    "TWN threshold: sign(x) where |x| > factor * mean|x|, else 0 (identity STE); "
    "`percentile=p` or `target_sparsity=p`: the threshold is the p-quantile of |x| "
    "(a fraction p of zeros)", ternary_values_rule, _adaptive_torch,
    aliases=(("delta_factor", "factor"), ("ratio", "factor"), ("sparsity", "target_sparsity")))
_fn("stochastic_quantize", (_p("x"), _opt("seed", "int", None),
                            _opt("temperature", "float", 1.0), _opt("training", "bool", None)),
    "stochastic rounding: sign(x) with probability min(|x| / temperature, 1), else 0; `seed` "
    "for a reproducible draw; training=false: the deterministic sign(x) where |x| > "
    "temperature / 2 (identity STE)", ternary_values_rule, _stochastic_torch,
    aliases=(("tau", "temperature"),))
_fn("learned_quantize", (_p("x"), _p("scale"), _opt("threshold", "float", 0.5)),
    "learned step (LSQ, three levels): scale * ternary(x / scale); gradients reach x and "
    "scale; with three or more arguments, or `pos_threshold=`, the seed's form "
    "(learned_threshold_quantize)", ternary_values_rule,
    "trt.learned_quantize({x}, {scale}, {threshold})",
    aliases=(("alpha", "scale"), ("step", "scale")), overload=_learned_overload)
_fn("learned_threshold_quantize", (_p("x"), _p("pos_threshold"), _p("neg_threshold"),
                                   _opt("pos_scale", "tensor", 1.0),
                                   _opt("neg_scale", "tensor", 1.0)),
    "pos_scale where x > pos_threshold, -neg_scale where x < neg_threshold, else 0; the "
    "gradient reaches x (identity STE) and the scales", asymmetric_rule, _asymmetric_torch)
_fn("soft_quantize", (_p("x"), _opt("temperature", "float", 1.0), _opt("hard", "bool", False)),
    "differentiable staircase (tanh((x-½)/T) + tanh((x+½)/T)) / 2 (float, not ternary); "
    "hard=true: the rounded levels forward, the staircase's gradient backward",
    ternary_values_rule, _soft_torch,
    aliases=(("tau", "temperature"), ("t", "temperature")))
_fn("gumbel_softmax_quantize", (_p("x"), _opt("temperature", "float", 1.0),
                                _opt("hard", "bool", True), _opt("seed", "int", None)),
    "Gumbel-softmax sample over {-1, 0, 1} with logits -(x - level)²; hard: the arg-max "
    "level, straight-through", ternary_values_rule,
    "trt.gumbel_softmax_quantize({x}, {temperature}, {hard}, seed={seed})",
    aliases=(("tau", "temperature"),))
_fn("xnor_quantize", _X, "XNOR-Net: mean|x| * sign(x), sign(0) = 1 (clipped STE); "
    "`let (values, scale) = xnor_quantize(x)`: sign(x) and the scale mean|x|",
    ternary_values_rule, lambda a, given: f"trt.xnor_quantize_pair({a['x']})"
    if "@values_scale" in given else f"trt.xnor_quantize({a['x']})")
_fn("ste_quantize", (_p("x"), _opt("threshold", "float", 0.5)),
    "sign(x) where |x| > threshold, else 0, identity straight-through gradient",
    ternary_values_rule, "trt.ste_quantize({x}, {threshold})")
_fn("clipped_ste_quantize", (_p("x"), _opt("threshold", "float", 0.5), _opt("clip", "float", 1.0)),
    "as ste_quantize, the gradient only where |x| <= clip", ternary_values_rule,
    "trt.clipped_ste_quantize({x}, {threshold}, {clip})", aliases=(("clip_value", "clip"),))
_DQ = (_p("q"), _opt("scale", "tensor", 1.0))
_DT = (_opt("dtype", "str", None),)
_fn("dequantize", (*_DQ, _opt("axis", "int", 0), *_DT), "q * scale (default 1) as float32, "
    "or as `dtype` (a 1-d scale is per channel along `axis`)", dequantize_rule,
    _dequant_torch("trt.dequantize({q}, {scale}, axis={axis})"),
    aliases=(("x", "q"), ("values", "q")))
_fn("ternary_dequantize", (*_DQ, _opt("axis", "int", 0), *_DT), "trits * scale (default 1) "
    "as float32", dequantize_rule, _dequant_torch("trt.dequantize({q}, {scale}, axis={axis})"),
    aliases=(("trits", "q"), ("x", "q")))
_fn("affine_dequantize", (*_DQ, _opt("zero_point", "tensor", 0.0), _opt("axis", "int", 0), *_DT),
    "(q - zero_point) * scale as float32 (zero_point default 0)", dequantize_rule,
    _dequant_torch("trt.dequantize({q}, {scale}, {zero_point}, axis={axis})"),
    aliases=(("x", "q"),))
_fn("ternary_weights", (_p("w", "any"), _opt("quantizer", "str", "twn"),
                        _opt("sparsity", "float", None), _opt("distribution", "str", "uniform")),
    "the trits of a weight (TernaryTensor, no scale), or random trits of a shape (each -1, "
    "0, 1 equally likely; `sparsity=p`: a zero with probability p, else ±1)",
    ternary_weights_rule, _ternary_weights_torch,
    aliases=(("x", "w"), ("shape", "w")))
_QW = (_opt("quantizer", "str", "twn"),)
_QA = (_opt("quantize_weights", "bool", True), _opt("quantize_activations", "bool", False))
_fn("quantized_linear", (_p("x"), _p("w"), _opt("bias", "tensor", None), *_QW, *_QA),
    "x @ ternary(w)ᵀ + bias, w [out, in] (or the seed's [in, out] when only that fits x; "
    "STE to the latent w); quantize_weights=false keeps w, quantize_activations=true "
    "ternarizes x too", quantized_linear_rule,
    _qflags(_call_torch("trt.quantized_linear", ("x", "w", "bias"), ("quantizer",),
                        training=True), "x", "w"),
    aliases=(("weight", "w"),))
_fn("quantized_conv2d", (_p("x"), _p("w"), _opt("bias", "tensor", None), *_CONV, *_QW, *_QA),
    "conv2d with the ternarized kernel (STE); quantize_weights / quantize_activations as "
    "for quantized_linear", lambda ck, n, b, e: conv2d_rule(
        ck, n, {**b, "weight": b["w"]}, e),
    _qflags(_call_torch("trt.quantized_conv2d", ("x", "w", "bias"),
                        ("stride", "padding", "dilation", "groups", "quantizer"),
                        training=True), "x", "w"),
    aliases=(("weight", "w"),))
_fn("quantized_matmul", (_p("x"), _p("w"), *_QW, _opt("quantize_a", "bool", False),
                         _opt("quantize_b", "bool", True), _opt("use_ste", "bool", True)),
    "x @ ternary(w) (w [in, out], STE); quantize_a / quantize_b choose the operands "
    "ternarized (use_ste=false: no gradient through them)", quantized_matmul_rule,
    _qflags(_call_torch("trt.quantized_matmul", ("x", "w"), ("quantizer",), training=True),
            "x", "w", ("quantize_a", "quantize_b")),
    aliases=(("a", "x"), ("b", "w"), ("weight", "w")))
