"""The op-definition table: for every op its operand count, attributes (kind, default),
result count and type-inference rule. `infer_type(name, operand_types, attrs)` is the one
entry point the lowering, the verifier and the passes share.

Ops whose results cannot be inferred from operands alone (constant, param, call, if) carry
their result types; the verifier checks them against their context instead. The rules live in tritium.ir.infer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import vocab
from .core import Attr, Dense
from .infer import (  # noqa: F401  (also re-exported: the names other modules import from ops)
    INDEX_DTYPES,
    Infer,
    InferError,
    _adaptive_pool,
    _argmax,
    _batch_norm,
    _binary,
    _cast,
    _clamp,
    _compare,
    _concat,
    _conv2d,
    _dequantize,
    _dim,
    _embedding,
    _flatten,
    _fused_conv2d,
    _fused_linear,
    _index,
    _linear,
    _logical,
    _matmul,
    _mha,
    _norm,
    _pack,
    _permute,
    _pool,
    _quantize_int,
    _quantize_ternary,
    _reduce,
    _reshape,
    _sdpa,
    _select,
    _slice,
    _softmax,
    _squeeze,
    _stack,
    _transpose,
    _unary,
    _unpack,
    _unsqueeze,
    fused_operands,
    packed_bytes,
    pair,
    pool_out,
    pool_params,
    window_out,
)
from .types import Type


@dataclass(frozen=True)
class AttrSpec:
    kind: str  # int | float | bool | str | ints | dense | any | optint | optfloat | optints
    default: Attr = None
    required: bool = False
    choices: tuple[str, ...] = ()




@dataclass(frozen=True)
class OpDef:
    name: str
    operands: tuple[int, int | None]  # (min, max); max None = variadic
    infer: Infer | None  # None: the op carries its result types
    attrs: dict[str, AttrSpec] = field(default_factory=dict)
    pure: bool = True
    commutative: bool = False
    regions: int = 0
    terminator: bool = False
    summary: str = ""


OPS: dict[str, OpDef] = {}


def _def(name: str, operands: tuple[int, int | None], infer: Infer | None,
         summary: str, **kw: object) -> None:
    OPS[name] = OpDef(name, operands, infer, summary=summary, **kw)  # type: ignore[arg-type]


def with_defaults(name: str, attrs: dict[str, Attr]) -> dict[str, Attr]:
    """`attrs` completed with the defaults of op `name`'s optional attributes."""
    full = {k: s.default for k, s in OPS[name].attrs.items() if not s.required}
    full.update(attrs)
    return full


def _ints(v: Attr) -> bool:
    return isinstance(v, list) and all(type(x) is int for x in v)


ATTR_KINDS: dict[str, Callable[[Attr], bool]] = {
    "int": lambda v: type(v) is int,
    "optint": lambda v: v is None or type(v) is int,
    "float": lambda v: type(v) in (int, float),
    "optfloat": lambda v: v is None or type(v) in (int, float),
    "bool": lambda v: type(v) is bool,
    "str": lambda v: type(v) is str,
    "ints": _ints,
    "optints": lambda v: v is None or _ints(v),
    "dense": lambda v: isinstance(v, Dense) or type(v) in (int, float, bool),
    "any": lambda v: True,
}


def check_attrs(name: str, attrs: dict[str, Attr]) -> None:
    """Raise InferError unless `attrs` has op `name`'s required attributes, no unknown ones,
    and values of the right kinds and choices."""
    spec = OPS[name].attrs
    for k, s in spec.items():
        if s.required and k not in attrs:
            raise InferError(f"missing required attribute '{k}'")
    for k, v in attrs.items():
        s = spec.get(k)
        if s is None:
            raise InferError(f"unknown attribute '{k}'")
        if not ATTR_KINDS[s.kind](v):
            raise InferError(f"attribute '{k}' must be of kind {s.kind}, got {v!r}")
        if s.choices and v not in s.choices:
            raise InferError(f"attribute '{k}' must be one of {', '.join(s.choices)}; got {v!r}")


def infer_type(name: str, operand_types: list[Type], attrs: dict[str, Attr] | None = None) -> list[Type]:
    """The result types of op `name` applied to operands of `operand_types` with `attrs`.
    Raises InferError (a ValueError) with a message when they do not fit."""
    d = OPS.get(name)
    if d is None:
        raise InferError(f"unknown op '{name}'")
    attrs = dict(attrs or {})
    lo, hi = d.operands
    n = len(operand_types)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else ''}"
        raise InferError(f"'{name}' takes {want} operands, got {n}")
    check_attrs(name, attrs)
    if d.infer is None:
        raise InferError(f"'{name}' carries its result types; they cannot be inferred")
    try:
        return d.infer(list(operand_types), with_defaults(name, attrs))
    except InferError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError) as e:
        raise InferError(f"'{name}': invalid operands or attributes ({e})") from None


# ----------------------------------------------------------------------------------- fused ops

ACTIVATIONS = vocab.ACTIVATIONS
FUSED_ATTRS = {
    "activation": AttrSpec("str", "none", choices=ACTIVATIONS),
    "has_scale": AttrSpec("bool", False),
    "has_bias": AttrSpec("bool", False),
    "has_residual": AttrSpec("bool", False),
    "act_quant": AttrSpec("str", "none", choices=vocab.ACT_QUANTS),
}



# ------------------------------------------------------------------------------------ table

CONV_ATTRS = {
    "stride": AttrSpec("ints", [1, 1]),
    "padding": AttrSpec("ints", [0, 0]),
    "dilation": AttrSpec("ints", [1, 1]),
    "groups": AttrSpec("int", 1),
}
POOL_ATTRS = {
    "kernel_size": AttrSpec("ints", required=True),
    "stride": AttrSpec("optints", None),
    "padding": AttrSpec("ints", [0, 0]),
    "ceil_mode": AttrSpec("bool", False),
}
QUANT = vocab.DETERMINISTIC_QUANTIZERS

_def("constant", (0, 0), None, "a scalar or tensor literal", attrs={"value": AttrSpec("dense", required=True)})
_def("param", (0, 0), None, "load a parameter of the enclosing layer", attrs={"name": AttrSpec("str", required=True)})
_def("call", (0, None), None, "call a function, a layer method or a sub-layer instance",
     attrs={"callee": AttrSpec("str", required=True), "instance": AttrSpec("str", None)})
_def("if", (1, 1), None, "structured conditional: two regions ending in yield", regions=2)
_def("yield", (0, None), None, "terminator of an if region", pure=False, terminator=True)
_def("return", (0, None), None, "terminator of a function body", pure=False, terminator=True)

for _n in ("add", "sub", "mul", "div", "floordiv", "pow", "maximum", "minimum"):
    _def(_n, (2, 2), _binary(_n), "elementwise with numpy broadcasting",
         commutative=_n in ("add", "mul", "maximum", "minimum"))
for _n in ("eq", "ne", "lt", "le", "gt", "ge"):
    _def(_n, (2, 2), _compare, "elementwise comparison → bool", commutative=_n in ("eq", "ne"))
for _n in ("logical_and", "logical_or"):
    _def(_n, (2, 2), _logical, "elementwise logic on bool", commutative=True)
_def("logical_not", (1, 1), _logical, "elementwise logical not")
_def("select", (3, 3), _select, "select(cond, a, b): a where cond else b (torch.where)")
for _n in ("neg", "abs", "sign", "relu", "relu6"):
    _def(_n, (1, 1), _unary(False), "elementwise, same dtype")
_def("clamp", (1, 1), _clamp, "clip to [min, max] (either bound may be none)",
     attrs={"min": AttrSpec("optfloat", None), "max": AttrSpec("optfloat", None)})
_def("ternarize", (1, 1), _unary(True), "sign(x) where |x| > threshold, else 0 (ternary activation)",
     attrs={"threshold": AttrSpec("float", 0.5)})
for _n in ("exp", "log", "sqrt", "sigmoid", "tanh", "silu"):
    _def(_n, (1, 1), _unary(True), "elementwise, float result")
for _n in ("sin", "cos", "tan", "log10"):
    _def(_n, (1, 1), _unary(True), "elementwise, float result")
for _n in ("floor", "ceil", "round"):
    _def(_n, (1, 1), _unary(False), "elementwise rounding (round: ties to even), same dtype")
_def("gelu", (1, 1), _unary(True), "GELU, exact erf form or tanh approximation",
     attrs={"approximate": AttrSpec("str", "none", choices=("none", "tanh"))})
_def("softmax", (1, 1), _softmax, "softmax along dim", attrs={"dim": AttrSpec("int", -1)})
_def("log_softmax", (1, 1), _softmax, "log-softmax along dim", attrs={"dim": AttrSpec("int", -1)})
_def("cast", (1, 1), _cast, "convert dtype", attrs={"dtype": AttrSpec("str", required=True)})

_RED = {"dims": AttrSpec("ints", []), "keepdim": AttrSpec("bool", False)}
for _n in ("sum", "mean", "max", "min"):
    _def(_n, (1, 1), _reduce(_n), "reduction over dims ([] = all)", attrs=_RED)
_def("argmax", (1, 1), _argmax, "index of the maximum along dim",
     attrs={"dim": AttrSpec("int", required=True), "keepdim": AttrSpec("bool", False)})

_def("matmul", (2, 2), _matmul, "numpy/torch matmul with batch broadcasting")
_def("linear", (2, 3), _linear, "y = x @ W^T (+ b); W [out, in]")
_def("conv2d", (2, 3), _conv2d, "2-d convolution, NCHW, weight [O, C/groups, kh, kw]", attrs=CONV_ATTRS)
_def("batch_norm", (5, 5), _batch_norm, "inference batch norm with running stats",
     attrs={"eps": AttrSpec("float", 1e-5)})
_def("layer_norm", (1, 3), _norm, "layer norm over the last normalized_ndim dims",
     attrs={"normalized_ndim": AttrSpec("int", 1), "eps": AttrSpec("float", 1e-5)})
_def("rms_norm", (1, 2), _norm, "RMS norm over the last normalized_ndim dims",
     attrs={"normalized_ndim": AttrSpec("int", 1), "eps": AttrSpec("float", 1e-6)})
_def("max_pool2d", (1, 1), _pool, "max pooling (padding with -inf)",
     attrs={**POOL_ATTRS, "dilation": AttrSpec("ints", [1, 1])})
_def("avg_pool2d", (1, 1), _pool, "average pooling (zero padding counted)", attrs=POOL_ATTRS)
_def("adaptive_avg_pool2d", (1, 1), _adaptive_pool, "adaptive average pooling (torch bins)",
     attrs={"output_size": AttrSpec("ints", required=True)})
_def("multi_head_attention", (5, 5), _mha, "self-attention like torch nn.MultiheadAttention (batch_first)",
     attrs={"num_heads": AttrSpec("int", required=True), "causal": AttrSpec("bool", False)})
_def("scaled_dot_product_attention", (3, 4), _sdpa, "softmax(q k^T * scale [+ mask] [+ causal mask]) v",
     attrs={"causal": AttrSpec("bool", False), "scale": AttrSpec("optfloat", None)})
_def("embedding", (2, 2), _embedding, "rows of weight selected by integer indices")
_def("rope", (1, 1), _unary(True), "rotary position embedding over the last two dims "
     "[..., seq, head_dim]: the two halves of head_dim rotate by position * base^(-2i/head_dim)",
     attrs={"base": AttrSpec("float", 10000.0)})
_def("dropout", (1, 1), _unary(False), "identity at inference", attrs={"p": AttrSpec("float", 0.5)})

_def("reshape", (1, 1), _reshape, "reshape; a dim may be -1 (inferred) or 0 (copied from the input)",
     attrs={"shape": AttrSpec("ints", required=True)})
_def("flatten", (1, 1), _flatten, "merge dims start_dim..end_dim",
     attrs={"start_dim": AttrSpec("int", 0), "end_dim": AttrSpec("int", -1)})
_def("transpose", (1, 1), _transpose, "swap two dims",
     attrs={"dim0": AttrSpec("int", required=True), "dim1": AttrSpec("int", required=True)})
_def("permute", (1, 1), _permute, "reorder dims", attrs={"dims": AttrSpec("ints", required=True)})
_def("slice", (1, 1), _slice, "x[start:end:step] along dim (python semantics)",
     attrs={"dim": AttrSpec("int", required=True), "start": AttrSpec("int", 0),
            "end": AttrSpec("optint", None), "step": AttrSpec("int", 1)})
_def("index", (1, 1), _index, "x[index] along dim, removing it",
     attrs={"dim": AttrSpec("int", 0), "index": AttrSpec("int", required=True)})
_def("concat", (1, None), _concat, "concatenate along dim", attrs={"dim": AttrSpec("int", 0)})
_def("stack", (1, None), _stack, "stack along a new dim", attrs={"dim": AttrSpec("int", 0)})
_def("squeeze", (1, 1), _squeeze, "remove a size-1 dim (all of them when dim is none)",
     attrs={"dim": AttrSpec("optint", None)})
_def("unsqueeze", (1, 1), _unsqueeze, "insert a size-1 dim", attrs={"dim": AttrSpec("int", required=True)})
_def("dim", (1, 1), _dim, "the size of one dim as an i64 scalar", attrs={"dim": AttrSpec("int", required=True)})

_def("quantize_ternary", (1, 1), _quantize_ternary, "float → (trits, f32 scale)",
     attrs={"quantizer": AttrSpec("str", "twn", choices=QUANT), "per_channel": AttrSpec("bool", False),
            "threshold": AttrSpec("optfloat", None)})
for _n in ("quantize_int8", "quantize_int4"):
    _def(_n, (1, 1), _quantize_int, "symmetric absmax quantization → (i8 values, f32 scale)",
         attrs={"per_channel": AttrSpec("bool", False), "axis": AttrSpec("int", 0)})
_def("dequantize", (2, 2), _dequantize, "q * scale (scale 0-d or per channel along axis)",
     attrs={"axis": AttrSpec("int", 0)})
_def("pack", (1, 1), _pack, "pack trits row-wise into bytes",
     attrs={"format": AttrSpec("str", required=True, choices=vocab.FORMATS)})
_def("unpack", (1, 1), _unpack, "inverse of pack",
     attrs={"format": AttrSpec("str", required=True, choices=vocab.FORMATS),
            "shape": AttrSpec("ints", required=True)})
_def("fused_linear", (2, 5), _fused_linear, "act(x @ W^T * scale + bias + residual), one kernel",
     attrs={**FUSED_ATTRS, "format": AttrSpec("str", "none", choices=("none", *vocab.FORMATS)),
            "in_features": AttrSpec("optint", None)})
_def("fused_conv2d", (2, 5), _fused_conv2d, "act(conv2d(x, W) * scale + bias + residual), one kernel",
     attrs={**FUSED_ATTRS, **CONV_ATTRS})
