"""The core builtins: elementwise math, shapes, reductions, creation, attention, norms,
pooling, `quantize_ternary`, casts and the Python builtins (`range`, `len`, `print`…):
their templates and records, registered first."""

from __future__ import annotations

import math

from ... import vocab
from ..types import INT, TensorT, Value
from .records import IR, PY_CALL, Template, _alias, _fn, _opt, _p
from .rules import (
    INT_BOUNDS,
    ON_FLOATS,
    adaptive_pool_rule,
    attention_rule,
    cast_rule,
    clamp_rule,
    concat_rule,
    conversion_rule,
    creation_rule,
    elementwise2_rule,
    elementwise_rule,
    enumerate_rule,
    flatten_rule,
    floordiv_rule,
    layer_norm_rule,
    len_rule,
    matmul_rule,
    none_rule,
    permute_rule,
    pool_rule,
    range_rule,
    reduce_rule,
    reshape_rule,
    rope_rule,
    squeeze_rule,
    ternary_matmul_rule,
    transpose_rule,
    unsqueeze_rule,
    where_rule,
    zip_rule,
)

# ----------------------------------------------------------------------------- templates

def float_x(a: dict[str, str], given: set[str]) -> dict[str, str]:
    """A builtin's arguments with `x` cast to float32 where the checker found it holds
    integers, trits or bools and the result is a float (`mean(int32(x))`, `gelu(trit(x))`:
    torch refuses them)."""
    return {**a, "x": f"trt.cast({a['x']}, 'float32')"} if f"@{ON_FLOATS}" in given else a


def _clamp_torch(a: dict[str, str], given: set[str]) -> str:
    if f"@{INT_BOUNDS}" in given:   # `clip(int32(x), -2.5, 2.5)`: int32, as typed
        a = {**a, **{k: f"trt.cast({a[k]}, 'int64')" for k in ("min", "max") if k in given}}
    a = float_x(a, given)           # `clip(trit(x), -1, 1)`: float32, as typed
    return "torch.clamp({x}, min={min}, max={max})".format(**a)


def _reduce_torch(fn: str) -> Template:
    def render(a: dict[str, str], given: set[str]) -> str:
        a = float_x(a, given)
        if "dim" not in given:
            return f"torch.{fn}({a['x']})" if a["keepdim"] == "False" else \
                f"torch.{fn}({a['x']}, dim=tuple(range({a['x']}.dim())), keepdim=True)"
        return f"torch.{fn}({a['x']}, dim={a['dim']}, keepdim={a['keepdim']})"
    return render


def _new_torch(base: str, random: str | None = None) -> Template:
    """A creation template: `dtype=` and `requires_grad=` (when given) through
    trt.with_dtype, a `seed=` through trt.random_tensor, else the plain torch call."""
    def render(a: dict[str, str], given: set[str]) -> str:
        if random is not None and "seed" in given:
            return (f"trt.random_tensor({random!r}, {a['shape']}, {a['seed']}, {a['dtype']}, "
                    f"{a['requires_grad']})")
        call = base.format(**a)
        if "dtype" not in given and "requires_grad" not in given:
            return call
        return f"trt.with_dtype({call}, {a['dtype']}, {a['requires_grad']})"
    return render


def _layer_norm_torch(a: dict[str, str], given: set[str]) -> str:
    a = float_x(a, given)
    if {g for g in given if not g.startswith("@")} <= {"x", "eps"}:
        return f"F.layer_norm({a['x']}, {a['x']}.shape[-1:], eps={a['eps']})"
    return (f"trt.layer_norm({a['x']}, {a['normalized_shape']}, {a['weight']}, {a['bias']}, "
            f"eps={a['eps']})")


def _quantize_ternary_torch(a: dict[str, str], given: set[str]) -> str:
    extra = ""
    q = a["quantizer"]
    if "threshold" in given:
        extra += f", threshold={a['threshold']}"
        q = q if "quantizer" in given else "'threshold'"
    if "per_channel" in given:
        extra += f", per_channel={a['per_channel']}"
    return f"trt.ternary_weight({a['x']}, quantizer={q}{extra}, training=self.training)"


def _squeeze_torch(a: dict[str, str], given: set[str]) -> str:
    return f"torch.squeeze({a['x']}, {a['dim']})" if "dim" in given else \
        f"torch.squeeze({a['x']})"


# ----------------------------------------------------------------------------- the table

_X = (_p("x"),)

_UNARY = (  # name, doc, torch, python value
    ("relu", "max(x, 0)", "torch.relu", lambda x: max(x, 0)),
    ("relu6", "min(max(x, 0), 6)", "F.relu6", lambda x: min(max(x, 0), 6)),
    ("gelu", "exact GELU", "F.gelu", lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))),
    ("silu", "x * sigmoid(x)", "F.silu", lambda x: x / (1.0 + math.exp(-x))),
    ("sigmoid", "logistic sigmoid", "torch.sigmoid", lambda x: 1.0 / (1.0 + math.exp(-x))),
    ("tanh", "tanh", "torch.tanh", math.tanh),
    ("exp", "e^x", "torch.exp", math.exp),
    ("log", "natural logarithm", "torch.log", math.log),
    ("sqrt", "square root", "torch.sqrt", math.sqrt),
    ("abs", "absolute value", "torch.abs", abs),
    ("neg", "negation", "torch.neg", lambda x: -x),
    ("sign", "sign in {-1, 0, 1}", "torch.sign", lambda x: (x > 0) - (x < 0)),
)


def on_floats(template: str) -> Template:
    """``template`` filled with `x` cast to float32 where the checker asks (`float_x`)."""
    return lambda a, given: template.format(**float_x(a, given))


for _n, _d, _t, _py in _UNARY:
    _fn(_n, _X, _d, elementwise_rule, on_floats(f"{_t}({{x}})"), ir=IR(_n), py=_py)

for _n, _d in (("softmax", "softmax along `dim`"), ("log_softmax", "log-softmax along `dim`")):
    _fn(_n, (_p("x"), _opt("dim", "int", -1)), _d, elementwise_rule,
        on_floats(f"torch.{_n}({{x}}, dim={{dim}})"),
        ir=IR(_n, attrs=(("dim", "dim", "int"),)))
_fn("flatten", (_p("x"), _opt("start_dim", "int", 0), _opt("end_dim", "int", -1)),
    "flatten dims start_dim..end_dim (torch.flatten semantics)", flatten_rule,
    "torch.flatten({x}, {start_dim}, {end_dim})",
    ir=IR("flatten", attrs=(("start_dim", "start_dim", "int"), ("end_dim", "end_dim", "int"))))
_fn("reshape", (_p("x"), _p("shape", "shape")), "reshape; one dim may be -1", reshape_rule,
    "torch.reshape({x}, {shape})")
_alias("view", "reshape")
_fn("transpose", (_p("x"), _opt("dim0", "int", -2), _opt("dim1", "int", -1)),
    "swap two dims (`transpose(x)`: the last two, as the seed's `dim0=-2, dim1=-1`)",
    transpose_rule, "torch.transpose({x}, {dim0}, {dim1})",
    ir=IR("transpose", attrs=(("dim0", "dim0", "int"), ("dim1", "dim1", "int"))))
_fn("permute", (_p("x"), _p("dims", "shape")), "reorder dims", permute_rule,
    "{x}.permute({dims})", ir=IR("permute", attrs=(("dims", "dims", "ints"),)))
_fn("unsqueeze", (_p("x"), _p("dim", "int")), "insert a dim of size 1", unsqueeze_rule,
    "torch.unsqueeze({x}, {dim})", ir=IR("unsqueeze", attrs=(("dim", "dim", "int"),)))
_fn("squeeze", (_p("x"), _opt("dim", "int", None)), "remove dims of size 1", squeeze_rule,
    _squeeze_torch)
_fn("concat", (_p("tensors", "tensors"), _opt("dim", "int", 0)), "concatenate along `dim`",
    concat_rule, "torch.cat({tensors}, dim={dim})")
_alias("cat", "concat")
_fn("stack", (_p("tensors", "tensors"), _opt("dim", "int", 0)), "stack along a new dim",
    concat_rule, "torch.stack({tensors}, dim={dim})")
# `trt.float_matmul`: as `a @ b` does with an integer or trit operand (the checker's
# FLOAT_MATMUL form), the product is a float, never int8 trits wrapped
_fn("matmul", (_p("a"), _p("b")),
    "matrix product (same as `a @ b`; integer or trit operands multiply as float32)", matmul_rule,
    "trt.float_matmul({a}, {b})", ir=IR("matmul", ("a", "b")))
_fn("ternary_matmul", (_p("x"), _p("w")), "x @ wᵀ with ternary w of shape [out, in]",
    ternary_matmul_rule, "F.linear({x}, {w})", ir=IR("linear", ("x", "w")))
_RED = (_p("x"), _opt("dim", "ints", None), _opt("keepdim", "bool", False))
for _n in ("sum", "mean", "amax", "amin"):
    _fn(_n, _RED, f"{_n} over `dim` (all dims when omitted)" + (
        "; an integer, trit or bool tensor sums to int64" if _n == "sum" else ""),
        reduce_rule, _reduce_torch(_n))
_fn("max", _RED, "max over `dim`, or elementwise max of two tensors (or numbers)", reduce_rule,
    _reduce_torch("amax"), pair_op="maximum")
_fn("min", _RED, "min over `dim`, or elementwise min of two tensors (or numbers)", reduce_rule,
    _reduce_torch("amin"), pair_op="minimum")
_fn("floordiv", (_p("a", "any"), _p("b", "any")),
    "integer (floor) division; `//` starts a comment in .tri", floordiv_rule, "({a} // {b})")
_fn("maximum", (_p("a"), _p("b")), "elementwise maximum", elementwise2_rule,
    "torch.maximum({a}, {b})", ir=IR("maximum", ("a", "b")), py=max)
_fn("minimum", (_p("a"), _p("b")), "elementwise minimum", elementwise2_rule,
    "torch.minimum({a}, {b})", ir=IR("minimum", ("a", "b")), py=min)
_fn("clamp", (_p("x"), _opt("min", "float", None), _opt("max", "float", None)),
    "clip to [min, max] (an integer tensor keeps its dtype: the bounds are truncated; a trit "
    "tensor is clipped as float32)",
    clamp_rule, _clamp_torch,
    aliases=(("min_val", "min"), ("max_val", "max"), ("lo", "min"), ("hi", "max")))
_alias("clip", "clamp")
_fn("where", (_p("cond"), _p("a"), _p("b")), "elementwise select", where_rule,
    "torch.where({cond}, {a}, {b})")
_NEW = (_opt("dtype", "str", None), _opt("requires_grad", "bool", False))
for _n in ("zeros", "ones", "empty"):
    _fn(_n, (_p("shape", "shape"), *_NEW), f"a new tensor of the given shape ({_n})",
        creation_rule, _new_torch(f"torch.{_n}({{shape}})"), creates=True)
for _n in ("randn", "rand", "random_ternary"):
    _fn(_n, (_p("shape", "shape"), *_NEW, _opt("seed", "int", None)),
        f"a new random tensor of the given shape ({_n}; `seed=`: the same draw every run)",
        creation_rule, _new_torch(f"{'trt' if _n == 'random_ternary' else 'torch'}.{_n}({{shape}})",
                                  _n), creates=True)
_fn("full", (_p("shape", "shape"), _p("value", "float"), *_NEW),
    "a new tensor filled with `value`", creation_rule,
    _new_torch("torch.full({shape}, {value})"), creates=True)
_ATTN = (_p("q"), _p("k"), _p("v"), _opt("mask", "tensor", None), _opt("causal", "bool", False))
_ATTN_TORCH = "trt.attention({q}, {k}, {v}, attn_mask={mask}, is_causal={causal})"
_fn("attention", _ATTN, "scaled dot-product attention softmax(q kᵀ / √d) v", attention_rule,
    _ATTN_TORCH)
_alias("scaled_dot_product_attention", "attention")
_fn("layer_norm", (_p("x"), _opt("normalized_shape", "ints", None), _opt("weight", "tensor", None),
                   _opt("bias", "tensor", None), _opt("eps", "float", 1e-5)),
    "layer norm over the last dims (`normalized_shape`, default the last dim), then "
    "`* weight + bias`", layer_norm_rule, _layer_norm_torch,
    aliases=(("shape", "normalized_shape"), ("gamma", "weight"), ("beta", "bias")))
_fn("rms_norm", (_p("x"), _opt("eps", "float", 1e-6)), "RMS norm over the last dim",
    elementwise_rule, on_floats("F.rms_norm({x}, {x}.shape[-1:], eps={eps})"),
    ir=IR("rms_norm", attrs=(("eps", "eps", "float"),)))
_fn("rope", (_p("x"), _opt("base", "float", 10000.0)),
    "rotary position embedding of `x` [..., seq, head_dim] (head_dim even; the halves "
    "rotate by position * base^(-2i/head_dim), Llama's and BitNet's convention); "
    "positions continue after the tokens a decode session has cached", rope_rule,
    "trt.rope({x}, base={base})", ir=IR("rope", attrs=(("base", "base", "float"),)))
_fn("dropout", (_p("x"), _opt("p", "float", 0.5), _opt("training", "bool", None)),
    "dropout (identity at inference; `training=` overrides the module's mode)",
    elementwise_rule, lambda a, given: f"F.dropout({a['x']}, p={a['p']}, training="
    f"{a['training'] if 'training' in given else 'self.training'})")
_POOL = (_p("x"), _p("kernel_size", "ints"), _opt("stride", "ints", None), _opt("padding", "ints", 0))
for _n, _d in (("max_pool2d", "2-d max pooling"), ("avg_pool2d", "2-d average pooling")):
    _fn(_n, _POOL, _d, pool_rule,
        f"F.{_n}({{x}}, {{kernel_size}}, stride={{stride}}, padding={{padding}})")
_fn("adaptive_avg_pool2d", (_p("x"), _p("output_size", "ints")), "adaptive average pooling",
    adaptive_pool_rule, "F.adaptive_avg_pool2d({x}, {output_size})")
_fn("quantize_ternary", (_p("x"), _opt("quantizer", "str", "twn"), _opt("threshold", "float", None),
                         _opt("per_channel", "bool", False)),
    "ternarize: trits * scale (TWN: delta = 0.7 mean|x|; `threshold=` fixes delta); "
    "straight-through gradient", elementwise_rule, _quantize_ternary_torch,
    aliases=(("method", "quantizer"),))
_alias("ternary_quantize", "quantize_ternary")
_fn("cast", (_p("x", "any"), _p("dtype", "str")), "convert to a dtype, e.g. cast(x, \"int8\")",
    cast_rule, "trt.cast({x}, {dtype})")
for _n in vocab.CONVERSIONS:
    _fn(_n, (_p("x", "any"),), f"convert to {_n}", conversion_rule, f"trt.cast({{x}}, {_n!r})")
#: PyTorch's dtype methods as the seed's models call them (`x = x.half()`): conversions
TENSOR_DTYPE_METHODS = {"half": "float16", "double": "float64", "long": "int64"}
for _m, _d in TENSOR_DTYPE_METHODS.items():
    _fn(_m, (_p("x", "any"),), f"convert to {_d} (PyTorch's `x.{_m}()`)",
        (lambda d: lambda ck, name, b, e: conversion_rule(ck, d, b, e))(_d),
        f"trt.cast({{x}}, {_d!r})")
_fn("range", (_p("n", "int"), _opt("stop", "int", None), _opt("step", "int", None)),
    "0, 1, …, n-1 (for loops); range(start, stop, step) as in Python", range_rule, PY_CALL)
_fn("enumerate", (_p("x", "any"),), "the pairs (index, item) of a list: "
    "for (i, v) in enumerate(xs)", enumerate_rule, PY_CALL)
_fn("zip", (_p("a", "any"), _p("b", "any"), _opt("c", "any", None)),
    "the tuples of items at the same position: for (a, b) in zip(xs, ys)", zip_rule, PY_CALL)
_fn("len", (_p("x", "any"),), "length of a list or of a tensor's first dim", len_rule, PY_CALL)


def _numel_rule(ck, name, b, e) -> Value:
    t = b["x"].ty
    if isinstance(t, TensorT) and t.shape is not None and all(
            isinstance(d, int) for d in t.shape):
        return Value(INT, math.prod(t.shape), True)
    return Value(INT)


_fn("numel", (_p("x"),), "the number of elements of a tensor (`x.numel()`)", _numel_rule,
    "{x}.numel()")
_fn("print", (_p("x", "any"), _opt("sep", "str", None), _opt("end", "str", None),
              _opt("label", "str", None)),
    "print values (any number; `sep=`, `end=` by name; `label=\"X\"` prints `X:` first)",
    none_rule, PY_CALL, variadic=True)
