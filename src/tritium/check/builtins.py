"""The builtin functions: one record per function, the single home of everything a stage
needs to know about it.

A `Builtin` holds
  * the signature (`params`, `variadic`) and the doc line docs/language.md is written from;
  * `rule`: the checker's result rule, `rule(checker, name, bound_args, call) -> Value`;
  * `torch`: the PyTorch template the code generator fills, `"torch.clamp({x}, min={min},
    max={max})"` (each `{param}` is the argument's source, or its default), or a function of
    (arguments, names given) -> source for the few whose form depends on what is given;
  * `ir`: the IR op it lowers to (`IR(op, operands, attrs)`) and `py`, its value on Python
    numbers (compile-time constants); with `ir=None`, `tritium.ir.lowering.builtins` has a
    lowering of that name (for the builtins that build several ops or need checks);
  * `pair_op`: the elementwise op a two-tensor call means (`max(a, b)` is `maximum`).

The checker, the IR lowering and the PyTorch code generator read this table; adding a
builtin is a record here (and, for a new IR op, its definition in ir/ops.py and its kernel
in ir/interpreter.py): docs/architecture.md, "Adding a builtin function".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from .. import vocab
from ..frontend.diagnostics import did_you_mean
from . import bounds
from . import library as L
from .types import (
    ANY,
    FLOAT,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    ListT,
    NoneT,
    RangeT,
    ScalarT,
    SymInt,
    TensorT,
    Value,
    dims_conflict,
)


@dataclass(frozen=True, slots=True)
class FnParam:
    name: str
    kind: str          # tensor, int, float, bool, str, ints (int or list), shape (list), any, tensors
    default: object = None
    required: bool = True


@dataclass(frozen=True, slots=True)
class IR:
    """How a builtin lowers to one IR op: the tensor operands (param names; an optional one
    that is None is left out) and the attributes (param, attribute, kind: int | ints | float),
    each a constant when lowering."""
    op: str
    operands: tuple[str, ...] = ("x",)
    attrs: tuple[tuple[str, str, str], ...] = ()


Rule = Callable[..., Value]
Template = str | Callable[[dict[str, str], set[str]], str]

PY_CALL = "<python>"
"""A `torch` template meaning: the Python builtin of the same name, with the arguments."""


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    params: tuple[FnParam, ...]
    doc: str
    rule: Rule
    torch: Template
    ir: IR | None = None
    py: Callable | None = None
    variadic: bool = False     # extra positional args allowed (e.g. print(a, b))
    pair_op: str | None = None
    literal_tensor: bool = False   # a number argument becomes `torch.as_tensor(x)` first
    creates: bool = False          # makes a new tensor: may initialize a layer's state (`let`)


FnSpec = Builtin     # the name the signature users knew


def _p(name: str, kind: str = "tensor", default=None, required: bool | None = None) -> FnParam:
    return FnParam(name, kind, default, default is None if required is None else required)


def _opt(name: str, kind: str, default) -> FnParam:
    return FnParam(name, kind, default, False)


FUNCTIONS: dict[str, Builtin] = {}


def _fn(name: str, params: tuple, doc: str, rule: Rule, torch: Template, **kw) -> None:
    FUNCTIONS[name] = Builtin(name, params, doc, rule, torch, **kw)


def _alias(name: str, of: str) -> None:
    """`name` means builtin `of` (its own name in messages)."""
    FUNCTIONS[name] = replace(FUNCTIONS[of], name=name, doc=f"alias of {of}")


# ----------------------------------------------------------------------------- rule helpers

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _xt(b: dict[str, Value]) -> TensorT | None:
    x = b.get("x")
    return x.ty if x is not None and isinstance(x.ty, TensorT) else None


def _const(b: dict[str, Value], key: str, default=None):
    v = b.get(key)
    if v is None:
        return default
    return v.const if v.known or isinstance(v.const, SymInt) else None


# ----------------------------------------------------------------------------- rules

def elementwise_rule(ck, name: str, b: dict[str, Value], e) -> Value:
    """Elementwise functions of one tensor: same shape, floating dtype (a scalar gives a
    float); `softmax` checks its dim; `quantize_ternary` marks the result ternary."""
    x, xt = b.get("x"), _xt(b)
    if xt is None:
        if x is not None and isinstance(x.ty, ScalarT):
            return Value(FLOAT)
        return Value(TensorT("float32", None))
    if name in ("softmax", "log_softmax"):
        ck.check_dim(xt, _const(b, "dim", -1), e)
    out = TensorT("float32" if xt.dtype in (None, "trit") or xt.ternary else xt.dtype,
                  xt.shape, name == "quantize_ternary")
    return Value(out)


def flatten_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is None:
        return Value(TensorT("float32", None))
    return Value(L.flatten_shape(xt, _const(b, "start_dim", 0), _const(b, "end_dim", -1)))


def reshape_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    dims = ck.shape_list(b["shape"])
    if dims is None:
        return Value(TensorT(xt.dtype if xt else None, None))
    return Value(TensorT(xt.dtype if xt else "float32", ck.reshape(xt, dims, e),
                         xt.ternary if xt else False))


def transpose_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is None or xt.shape is None:
        return Value(TensorT(None, None))
    d0, d1 = _const(b, "dim0"), _const(b, "dim1")
    s = list(xt.shape)
    if _is_int(d0) and _is_int(d1):
        i, j = ck.norm_dim(xt, d0, e), ck.norm_dim(xt, d1, e)
        if i is None or j is None:
            return Value(ANY)
        s[i], s[j] = s[j], s[i]
        return Value(TensorT(xt.dtype, tuple(s), xt.ternary))
    return Value(TensorT(xt.dtype, tuple(None for _ in s)))


def permute_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    dims = ck.shape_list(b["dims"])
    if xt is None or xt.shape is None or dims is None:
        return Value(TensorT(None, None))
    if len(dims) != len(xt.shape) or not all(_is_int(d) for d in dims) or sorted(
            d % len(dims) for d in dims) != list(range(len(dims))):
        ck.report("E0508", f"permute needs a permutation of 0..{len(xt.shape) - 1}, got "
                           f"{dims}", e.span)
        return Value(ANY)
    return Value(TensorT(xt.dtype, tuple(xt.shape[d] for d in dims), xt.ternary))


def unsqueeze_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is None or xt.shape is None:
        return Value(TensorT(None, None))
    d = _const(b, "dim")
    s = list(xt.shape)
    if not _is_int(d):
        return Value(TensorT(xt.dtype, None))
    r = len(s) + 1
    if not -r <= d < r:
        ck.report("E0508", f"dim {d} is out of range for unsqueeze of rank {len(s)}", e.span)
        return Value(ANY)
    s.insert(d % r, 1)
    return Value(TensorT(xt.dtype, tuple(s), xt.ternary))


def squeeze_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is None or xt.shape is None:
        return Value(TensorT(None, None))
    d = _const(b, "dim")
    s = list(xt.shape)
    if d is None:
        return Value(TensorT(xt.dtype, tuple(x for x in s if x != 1) if all(
            _is_int(x) for x in s) else None))
    i = ck.norm_dim(xt, d, e) if _is_int(d) else None
    if i is not None and s[i] == 1:
        s.pop(i)
    return Value(TensorT(xt.dtype, tuple(s), xt.ternary))


def concat_rule(ck, name, b, e) -> Value:
    return Value(ck.concat(name, b["tensors"], _const(b, "dim", 0), e))


def matmul_rule(ck, name, b, e) -> Value:
    a, bb = b["a"].ty, b["b"].ty
    if isinstance(a, TensorT) and isinstance(bb, TensorT):
        return Value(ck.matmul(a, bb, e.span, e.args[0].span, e.args[1].span))
    return Value(TensorT("float32", None))


def ternary_matmul_rule(ck, name, b, e) -> Value:
    xa, w = b["x"].ty, b["w"].ty
    if isinstance(xa, TensorT) and isinstance(w, TensorT):
        if w.shape is not None and len(w.shape) != 2:
            ck.report("E0507", f"ternary_matmul needs a 2-d weight [out, in], got rank "
                               f"{len(w.shape)}", e.args[1].span)
            return Value(ANY)
        return Value(ck.matmul(xa, w, e.span, e.args[0].span, e.args[1].span, transpose_b=True))
    return Value(TensorT("float32", None))


def reduce_rule(ck, name, b, e) -> Value:
    x, xt = b.get("x"), _xt(b)
    if xt is None or xt.shape is None:
        return Value(TensorT(xt.dtype if xt else None, None) if xt or not x
                     else FLOAT if isinstance(x.ty, ScalarT) else ANY)
    dim = _const(b, "dim")
    keep = bool(_const(b, "keepdim", False))
    if dim is None:
        return Value(TensorT(xt.dtype, tuple(1 for _ in xt.shape) if keep else ()))
    dims = dim if isinstance(dim, list) else [dim]
    idx = set()
    for d in dims:
        i = ck.norm_dim(xt, d, e) if _is_int(d) else None
        if i is None:
            return Value(ANY)
        idx.add(i)
    s = tuple((1 if i in idx else d) for i, d in enumerate(xt.shape) if keep or i not in idx)
    return Value(TensorT(xt.dtype if name != "mean" else "float32", s))


def elementwise2_rule(ck, name, b, e) -> Value:
    return ck.elementwise2(b["a"], b["b"], e)


def floordiv_rule(ck, name, b, e) -> Value:
    return ck.binary("//", b["a"], b["b"], e)


def where_rule(ck, name, b, e) -> Value:
    return ck.tensor_binary("+", b["a"].ty, b["b"].ty, e)


def creation_rule(ck, name, b, e) -> Value:
    dims = ck.shape_list(b["shape"])
    ternary = name == "random_ternary"
    if dims is not None:
        for d in dims:
            if _is_int(d) and d < 0:
                ck.report("E0508", f"a dimension cannot be negative ({d})", e.span)
        if not ck.shape_ok(dims, e.span):
            dims = None
    return Value(TensorT("trit" if ternary else "float32",
                         tuple(dims) if dims is not None else None, ternary))


def attention_rule(ck, name, b, e) -> Value:
    q, k, v = (b[n].ty for n in ("q", "k", "v"))
    if all(isinstance(t, TensorT) and t.shape is not None for t in (q, k, v)):
        if dims_conflict(q.shape[-1], k.shape[-1]):
            ck.report("E0502", f"attention: q and k have different head sizes "
                               f"({q.shape[-1]} vs {k.shape[-1]})", e.span)
            return Value(ANY)
        if len(k.shape) >= 2 and len(v.shape) >= 2 and dims_conflict(k.shape[-2], v.shape[-2]):
            ck.report("E0502", f"attention: k and v have different lengths "
                               f"({k.shape[-2]} vs {v.shape[-2]})", e.span)
            return Value(ANY)
        return Value(TensorT("float32", q.shape[:-1] + (v.shape[-1],)))
    return Value(TensorT("float32", None))


def pool_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is None:
        return Value(TensorT("float32", None))
    cfg = {"kernel_size": _const(b, "kernel_size"), "stride": _const(b, "stride"),
           "padding": _const(b, "padding", 0)}
    return Value(L.LAYERS["MaxPool2d"].rule(xt, cfg))


def adaptive_pool_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is None:
        return Value(TensorT("float32", None))
    return Value(L._adaptive_pool(xt, {"output_size": _const(b, "output_size")}))


def cast_rule(ck, name, b, e) -> Value:
    x = b["x"]
    dt = _const(b, "dtype")
    if isinstance(dt, str) and dt not in vocab.DTYPES:
        ck.report("E0309", f"unknown dtype \"{dt}\"", e.span, help=did_you_mean(dt, vocab.DTYPES))
        return Value(ANY)
    if isinstance(x.ty, TensorT):
        return Value(TensorT(dt, x.ty.shape))
    return Value(ScalarT(dt) if dt else ANY)


def conversion_rule(ck, name, b, e) -> Value:
    """`int8(x)`, `float32(x)`, `trit(x)`: a tensor converts; a known number is computed
    (a trit must be -1, 0 or 1; an int must fit the compile-time bounds)."""
    x = b["x"]
    if isinstance(x.ty, TensorT):
        return Value(TensorT(name, x.ty.shape, name == "trit"))
    c = x.const if x.known else None
    try:
        if name == "trit" and _num(c):
            val = int(round(c))
            if val not in (-1, 0, 1):
                ck.report("E0403", f"{c} is not a trit", e.span)
                return Value(ScalarT("trit"))
            return Value(ScalarT("trit"), val, True)
        if name in INT_TYPES and _num(c):
            return Value(ScalarT(name), bounds.check_int(int(c), f"`{name}({c})`"), True)
        if name in FLOAT_TYPES and _num(c):
            return Value(ScalarT(name), float(c), True)
    except bounds.TooLarge as exc:
        ck.report("E0312", f"cannot compute at compile time: {exc}", e.span)
    except (OverflowError, ValueError):
        ck.report("E0312", f"`{name}({c})` has no value", e.span,
                  help="an infinity or NaN cannot become an integer")
    return Value(ScalarT(name))


def range_rule(ck, name, b, e) -> Value:
    """`range(n)` is 0..n; `range(start, stop[, step])` as in Python."""
    n, stop, step = b["n"], b.get("stop"), b.get("step")
    given = [v for v in (n, stop, step) if v is not None and not (v.known and v.const is None)]
    if not all(v.known and isinstance(v.const, int) for v in given):
        return Value(RangeT())
    c = [v.const for v in given]
    lo, hi = (0, c[0]) if len(c) == 1 else (c[0], c[1])
    seq = ck.make_range(lo, hi, False, c[2] if len(c) == 3 else 1, e.span)
    return Value(RangeT(), len(seq), True) if seq is not None else Value(RangeT())


def len_rule(ck, name, b, e) -> Value:
    x, xt = b["x"], _xt(b)
    if x.known and isinstance(x.const, list):
        return Value(INT, len(x.const), True)
    if xt is not None and xt.shape:
        d = xt.shape[0]
        return Value(INT, d, True) if _is_int(d) else Value(INT)
    return Value(INT)


def _items(v: Value) -> list[Value] | None:
    if not isinstance(v.ty, ListT) or not isinstance(v.const, list):
        return None
    if v.known:
        return [Value(INT, c) if isinstance(c, SymInt) else Value.of(c) for c in v.const]
    return [c if isinstance(c, Value) else Value(ANY) for c in v.const]


def _pairs(rows: list[list[Value]]) -> Value:
    """A list of tuples (lists) of the values in `rows`; a constant when all are known."""
    if all(x.known for r in rows for x in r):
        return Value(ListT(), [[x.const for x in r] for r in rows], True)
    return Value(ListT(), [Value(ListT(), list(r), False) for r in rows], False)


def enumerate_rule(ck, name, b, e) -> Value:
    """`enumerate(xs)`: the pairs (index, item) of a list."""
    items = _items(b["x"])
    if items is None:
        return Value(ListT())
    return _pairs([[Value.of(i), x] for i, x in enumerate(items)])


def zip_rule(ck, name, b, e) -> Value:
    """`zip(a, b[, c])`: the tuples of the items at each position, as long as the shortest."""
    lists = [_items(b[k]) for k in ("a", "b", "c") if k in b]
    if any(x is None for x in lists):
        return Value(ListT())
    return _pairs([list(row) for row in zip(*lists)])


def none_rule(ck, name, b, e) -> Value:
    return Value(NoneT())


# ----------------------------------------------------------------------------- templates

def _reduce_torch(fn: str) -> Template:
    def render(a: dict[str, str], given: set[str]) -> str:
        if "dim" not in given:
            return f"torch.{fn}({a['x']})" if a["keepdim"] == "False" else \
                f"torch.{fn}({a['x']}, dim=tuple(range({a['x']}.dim())), keepdim=True)"
        return f"torch.{fn}({a['x']}, dim={a['dim']}, keepdim={a['keepdim']})"
    return render


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
for _n, _d, _t, _py in _UNARY:
    _fn(_n, _X, _d, elementwise_rule, f"{_t}({{x}})", ir=IR(_n), py=_py,
        literal_tensor=_n in ("exp", "log", "sqrt"))

for _n, _d in (("softmax", "softmax along `dim`"), ("log_softmax", "log-softmax along `dim`")):
    _fn(_n, (_p("x"), _opt("dim", "int", -1)), _d, elementwise_rule,
        f"torch.{_n}({{x}}, dim={{dim}})", ir=IR(_n, attrs=(("dim", "dim", "int"),)))
_fn("flatten", (_p("x"), _opt("start_dim", "int", 0), _opt("end_dim", "int", -1)),
    "flatten dims start_dim..end_dim (torch.flatten semantics)", flatten_rule,
    "torch.flatten({x}, {start_dim}, {end_dim})",
    ir=IR("flatten", attrs=(("start_dim", "start_dim", "int"), ("end_dim", "end_dim", "int"))))
_fn("reshape", (_p("x"), _p("shape", "shape")), "reshape; one dim may be -1", reshape_rule,
    "torch.reshape({x}, {shape})")
_alias("view", "reshape")
_fn("transpose", (_p("x"), _p("dim0", "int"), _p("dim1", "int")), "swap two dims",
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
_fn("matmul", (_p("a"), _p("b")), "matrix product (same as `a @ b`)", matmul_rule,
    "torch.matmul({a}, {b})", ir=IR("matmul", ("a", "b")))
_fn("ternary_matmul", (_p("x"), _p("w")), "x @ wᵀ with ternary w of shape [out, in]",
    ternary_matmul_rule, "F.linear({x}, {w})", ir=IR("linear", ("x", "w")))
_RED = (_p("x"), _opt("dim", "ints", None), _opt("keepdim", "bool", False))
for _n in ("sum", "mean", "amax", "amin"):
    _fn(_n, _RED, f"{_n} over `dim` (all dims when omitted)", reduce_rule, _reduce_torch(_n))
_fn("max", _RED, "max over `dim`, or elementwise max of two tensors", reduce_rule,
    _reduce_torch("amax"), pair_op="maximum")
_fn("min", _RED, "min over `dim`, or elementwise min of two tensors", reduce_rule,
    _reduce_torch("amin"), pair_op="minimum")
_fn("floordiv", (_p("a", "any"), _p("b", "any")),
    "integer (floor) division; `//` starts a comment in .tri", floordiv_rule, "({a} // {b})")
_fn("maximum", (_p("a"), _p("b")), "elementwise maximum", elementwise2_rule,
    "torch.maximum({a}, {b})", ir=IR("maximum", ("a", "b")), py=max)
_fn("minimum", (_p("a"), _p("b")), "elementwise minimum", elementwise2_rule,
    "torch.minimum({a}, {b})", ir=IR("minimum", ("a", "b")), py=min)
_fn("clamp", (_p("x"), _opt("min", "float", None), _opt("max", "float", None)),
    "clip to [min, max]", elementwise_rule, "torch.clamp({x}, min={min}, max={max})")
_fn("where", (_p("cond"), _p("a"), _p("b")), "elementwise select", where_rule,
    "torch.where({cond}, {a}, {b})")
for _n in ("zeros", "ones", "randn", "rand", "random_ternary", "empty"):
    _fn(_n, (_p("shape", "shape"),), f"a new tensor of the given shape ({_n})", creation_rule,
        f"{'trt' if _n == 'random_ternary' else 'torch'}.{_n}({{shape}})", creates=True)
_fn("full", (_p("shape", "shape"), _p("value", "float")), "a new tensor filled with `value`",
    creation_rule, "torch.full({shape}, {value})", creates=True)
_ATTN = (_p("q"), _p("k"), _p("v"), _opt("mask", "tensor", None), _opt("causal", "bool", False))
_ATTN_TORCH = "F.scaled_dot_product_attention({q}, {k}, {v}, attn_mask={mask}, is_causal={causal})"
_fn("attention", _ATTN, "scaled dot-product attention softmax(q kᵀ / √d) v", attention_rule,
    _ATTN_TORCH)
_alias("scaled_dot_product_attention", "attention")
_fn("layer_norm", (_p("x"), _opt("eps", "float", 1e-5)), "layer norm over the last dim",
    elementwise_rule, "F.layer_norm({x}, {x}.shape[-1:], eps={eps})",
    ir=IR("layer_norm", attrs=(("eps", "eps", "float"),)))
_fn("rms_norm", (_p("x"), _opt("eps", "float", 1e-6)), "RMS norm over the last dim",
    elementwise_rule, "F.rms_norm({x}, {x}.shape[-1:], eps={eps})",
    ir=IR("rms_norm", attrs=(("eps", "eps", "float"),)))
_fn("dropout", (_p("x"), _opt("p", "float", 0.5)), "dropout (identity at inference)",
    elementwise_rule, "F.dropout({x}, p={p}, training=self.training)",
    ir=IR("dropout", attrs=(("p", "p", "float"),)))
_POOL = (_p("x"), _p("kernel_size", "ints"), _opt("stride", "ints", None), _opt("padding", "ints", 0))
for _n, _d in (("max_pool2d", "2-d max pooling"), ("avg_pool2d", "2-d average pooling")):
    _fn(_n, _POOL, _d, pool_rule,
        f"F.{_n}({{x}}, {{kernel_size}}, stride={{stride}}, padding={{padding}})")
_fn("adaptive_avg_pool2d", (_p("x"), _p("output_size", "ints")), "adaptive average pooling",
    adaptive_pool_rule, "F.adaptive_avg_pool2d({x}, {output_size})")
_fn("quantize_ternary", (_p("x"), _opt("quantizer", "str", "twn")),
    "ternarize (straight-through gradient)", elementwise_rule,
    "trt.ternary_weight({x}, quantizer={quantizer}, training=self.training)")
_fn("cast", (_p("x", "any"), _p("dtype", "str")), "convert to a dtype, e.g. cast(x, \"int8\")",
    cast_rule, "trt.cast({x}, {dtype})")
for _n in vocab.CONVERSIONS:
    _fn(_n, (_p("x", "any"),), f"convert to {_n}", conversion_rule, f"trt.cast({{x}}, {_n!r})")
_fn("range", (_p("n", "int"), _opt("stop", "int", None), _opt("step", "int", None)),
    "0, 1, …, n-1 (for loops); range(start, stop, step) as in Python", range_rule, PY_CALL)
_fn("enumerate", (_p("x", "any"),), "the pairs (index, item) of a list: "
    "for (i, v) in enumerate(xs)", enumerate_rule, PY_CALL)
_fn("zip", (_p("a", "any"), _p("b", "any"), _opt("c", "any", None)),
    "the tuples of items at the same position: for (a, b) in zip(xs, ys)", zip_rule, PY_CALL)
_fn("len", (_p("x", "any"),), "length of a list or of a tensor's first dim", len_rule, PY_CALL)
_fn("print", (_p("x", "any"),), "print a value (debugging)", none_rule, PY_CALL, variadic=True)
