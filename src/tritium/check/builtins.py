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
    AnyT,
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
    creates: bool = False          # makes a new tensor: may initialize a layer's state (`let`)
    aliases: tuple[tuple[str, str], ...] = ()   # other names of parameters (`min_val` -> `min`)
    of: str | None = None          # an alias: the builtin this name means


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
    FUNCTIONS[name] = replace(FUNCTIONS[of], name=name, doc=f"alias of {of}", of=of)


# ----------------------------------------------------------------------------- argument binding

ARG_ALIASES = {"axis": "dim"}
"""Keyword names every builtin accepts for one of its parameters (`axis=` is `dim=` for
every builtin with a `dim`)."""


class BindError(Exception):
    """A call's arguments do not fit the signature: `kind` is `many` (too many positional
    arguments), `unknown` (no parameter of that name), `twice` or `missing`; `name` is the
    argument's name as written (the parameter's for `missing`), `index` its position in
    the call's argument list."""

    def __init__(self, kind: str, name: str | None = None, index: int | None = None):
        super().__init__(kind)
        self.kind, self.name, self.index = kind, name, index


def param_name(spec: Builtin, name: str) -> str | None:
    """The parameter a keyword `name` of a call to `spec` binds to (aliases resolved)."""
    names = {p.name for p in spec.params}
    if name in names:
        return name
    for alias, canonical in spec.aliases:
        if alias == name:
            return canonical
    canonical = ARG_ALIASES.get(name)
    return canonical if canonical in names else None


def bind(spec: Builtin, args: list[tuple[str | None, object]]) -> tuple[dict, dict[str, int]]:
    """The one argument binding of a builtin call, shared by the checker, the IR lowering
    and the PyTorch code generator: `args` are (keyword or None, value) in call order; the
    result maps each given parameter to its value (defaults are not filled in) and to its
    position in `args`. Raises BindError."""
    bound: dict[str, object] = {}
    where: dict[str, int] = {}
    positional = [(i, v) for i, (n, v) in enumerate(args) if n is None]
    if len(positional) > len(spec.params):
        raise BindError("many", None, positional[len(spec.params)][0])
    for p, (i, v) in zip(spec.params, positional):
        bound[p.name], where[p.name] = v, i
    for i, (n, v) in enumerate(args):
        if n is None:
            continue
        c = param_name(spec, n)
        if c is None:
            raise BindError("unknown", n, i)
        if c in bound:
            raise BindError("twice", n, i)
        bound[c], where[c] = v, i
    for p in spec.params:
        if p.required and p.name not in bound:
            raise BindError("missing", p.name)
    return bound, where


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

def _scalar_x(ck, name: str, b: dict[str, Value], e, what: str) -> bool:
    """Report a number given for `x` of a builtin that works over a tensor's dims (a norm,
    softmax, rope): a number has no dims to normalize or rotate."""
    x = b.get("x")
    if x is not None and isinstance(x.ty, ScalarT):
        ck.report("E0404", f"`{name}` works over the dims of a tensor{what}; got the number "
                           f"type {x.ty}", e.span, label="expected a tensor")
        return True
    return False


def rope_rule(ck, name: str, b: dict[str, Value], e) -> Value:
    """`rope(x)`: x has a sequence and an even head dim (its last two dims); same shape."""
    if _scalar_x(ck, name, b, e, " [..., seq, head_dim]"):
        return Value(ANY)
    xt = _xt(b)
    if xt is None:
        return Value(TensorT("float32", None))
    if xt.shape is not None:
        if len(xt.shape) < 2:
            ck.report("E0507", f"rope: `x` has rank {len(xt.shape)}; it needs at least 2 dims "
                      "[..., seq, head_dim]", e.span)
        elif isinstance(xt.shape[-1], int) and xt.shape[-1] % 2:
            ck.report("E0508", f"rope: the head dim {xt.shape[-1]} is odd; rotary embedding "
                      "rotates pairs of features, so it must be even", e.span)
    return Value(TensorT("float32" if xt.dtype in (None, "trit") or xt.ternary else xt.dtype,
                         xt.shape))


_OVER_DIMS = frozenset({"softmax", "log_softmax", "rms_norm", "layer_norm"})


def elementwise_rule(ck, name: str, b: dict[str, Value], e) -> Value:
    """Elementwise functions of one tensor: same shape, floating dtype (a scalar gives a
    float); `softmax` checks its dim; `quantize_ternary` marks the result ternary."""
    if "quantizer" in b and not _quantizer_ok(ck, b, e):
        return Value(ANY)
    if name in _OVER_DIMS and _scalar_x(ck, name, b, e, ""):
        return Value(ANY)
    x, xt = b.get("x"), _xt(b)
    if xt is None:
        if x is not None and isinstance(x.ty, ScalarT):
            return Value(FLOAT)
        return Value(TensorT("float32", None))
    if name in ("softmax", "log_softmax"):
        ck.check_dim(xt, _const(b, "dim", -1), e)
    out = TensorT("float32" if xt.dtype in (None, "trit") or xt.ternary else xt.dtype,
                  xt.shape, name in ("quantize_ternary", "ternary_quantize"))
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
    if "dim0" not in b and "dim1" not in b and len(xt.shape) != 2:
        ck.report("E0507", f"transpose(x) without dims swaps the two dims of a matrix; this "
                           f"tensor has rank {len(xt.shape)}", e.span,
                  help="name the dims to swap: transpose(x, dim0, dim1)")
        return Value(ANY)
    d0, d1 = _const(b, "dim0", 0), _const(b, "dim1", 1)
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
    n = len(xt.shape)
    if len(dims) != n or not all(_is_int(d) and -n <= d < n for d in dims) or sorted(
            d % n for d in dims) != list(range(n)):
        ck.report("E0508", f"permute needs a permutation of 0..{len(xt.shape) - 1}, got "
                           f"{dims}", e.span)
        return Value(ANY)
    return Value(TensorT(xt.dtype, tuple(xt.shape[d % n] for d in dims), xt.ternary))


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


def _scalar_operand(ck, name, b, e, keys) -> bool:
    """Report a scalar operand of a matrix product (torch refuses it), as `@` does."""
    for i, key in enumerate(keys):
        ty = b[key].ty
        if isinstance(ty, ScalarT):
            ck.report("E0507", f"{name} needs tensors, got {ty} for `{key}`",
                      e.args[i].span if i < len(e.args) else e.span,
                      help="multiply a scalar with `*`, or make it a tensor: `Tensor[1, n](…)`")
            return True
    return False


def matmul_rule(ck, name, b, e) -> Value:
    a, bb = b["a"].ty, b["b"].ty
    if _scalar_operand(ck, name, b, e, ("a", "b")):
        return Value(ANY)
    if isinstance(a, TensorT) and isinstance(bb, TensorT):
        return Value(ck.matmul(a, bb, e.span, e.args[0].span, e.args[1].span))
    return Value(TensorT("float32", None))


def ternary_matmul_rule(ck, name, b, e) -> Value:
    xa, w = b["x"].ty, b["w"].ty
    if _scalar_operand(ck, name, b, e, ("x", "w")):
        return Value(ANY)
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
        return Value(TensorT(xt.dtype if name not in ("mean", "std", "var") else "float32",
                             tuple(1 for _ in xt.shape) if keep else ()))
    dims = dim if isinstance(dim, list) else [dim]
    idx = set()
    for d in dims:
        i = ck.norm_dim(xt, d, e) if _is_int(d) else None
        if i is None:
            return Value(ANY)
        idx.add(i)
    s = tuple((1 if i in idx else d) for i, d in enumerate(xt.shape) if keep or i not in idx)
    return Value(TensorT(xt.dtype if name not in ("mean", "std", "var") else "float32", s))


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
    dt = _const(b, "dtype")
    if isinstance(dt, str) and not _dtype_ok(ck, dt, e):
        return Value(ANY)
    if isinstance(dt, str):
        ternary = ternary or dt == "trit"
    return Value(TensorT(dt if isinstance(dt, str) else "trit" if ternary else "float32",
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


# ----------------------------------------------------------------------------- the seed's builtins

def _dtype_ok(ck, dt: str, e) -> bool:
    if dt in vocab.DTYPES and dt != "str":
        return True
    ck.report("E0309", f"unknown dtype \"{dt}\"", e.span,
              help=did_you_mean(dt, [d for d in vocab.DTYPES if d != "str"]))
    return False


def _range_check(ck, b, e, key: str, lo: float, strict: bool) -> bool:
    """Report E0820 unless the constant argument `key` (when known) is > lo (>= lo)."""
    v = _const(b, key)
    if _num(v) and (v <= lo if strict else v < lo):
        ck.report("E0820", f"`{key}` must be {'>' if strict else '>='} {lo:g}, got {v}", e.span)
        return False
    return True


def _quantizer_ok(ck, b, e) -> bool:
    """`quantizer=` names a weight quantizer (E0309 otherwise); the threshold quantizer
    needs `threshold=` in the builtins that take one."""
    q = _const(b, "quantizer")
    if q is None or not isinstance(q, str):
        return True
    if q.strip().lower() not in vocab.QUANTIZER_NAMES:
        ck.report("E0309", f"unknown quantizer \"{q}\"", e.span,
                  help=did_you_mean(q, vocab.QUANTIZER_NAMES)
                  or f"choose one of: {', '.join(vocab.QUANTIZER_NAMES)}")
        return False
    canon = vocab.QUANTIZER_ALIASES.get(q.strip().lower(), q.strip().lower())
    if canon == "threshold" and _const(b, "threshold") is None:
        ck.report("E0309", f"the quantizer \"{q}\" needs `threshold=`", e.span,
                  help="e.g. ternary_quantize(w, threshold=0.05)")
        return False
    if canon != "threshold" and "threshold" in b and "quantizer" in b:
        ck.report("E0309", f"`threshold=` applies to the threshold quantizer, not \"{q}\"",
                  e.span, help="drop `quantizer=` (a threshold selects it) or `threshold=`")
        return False
    return True


def _data_shape(ck, v: Value, e) -> tuple | None:
    """The shape of nested-list tensor data (a number is a 0-d tensor); None when not known.
    Reports E0821 for ragged lists and non-numbers."""
    def walk(x):
        if isinstance(x, Value):
            if isinstance(x.ty, ScalarT) or isinstance(x.ty, AnyT):
                return () if not isinstance(x.ty, ScalarT) or x.ty.name != "str" else "bad"
            if isinstance(x.ty, ListT):
                return walk(x.const) if isinstance(x.const, list) else None
            return "bad"
        if isinstance(x, bool) or _num(x):
            return ()
        if isinstance(x, list):
            subs = [walk(i) for i in x]
            if any(s == "bad" for s in subs):
                return "bad"
            if any(s is None for s in subs):
                return None
            if any(s != subs[0] for s in subs[1:]):
                return "ragged"
            return (len(x),) + (subs[0] if subs else ())
        return "bad"
    s = walk(v)
    if s in ("bad", "ragged"):
        ck.report("E0821", "tensor data must be a number or a rectangular (nested) list of "
                           "numbers" if s == "bad" else
                  "tensor data is ragged: the lists of one level have different lengths",
                  e.span, help="e.g. tensor([[1.0, 2.0], [3.0, 4.0]])")
        return "error"
    return s


def _flat_consts(x) -> list | None:
    if isinstance(x, Value):
        return _flat_consts(x.const) if x.known else None
    if isinstance(x, list):
        out = []
        for i in x:
            f = _flat_consts(i)
            if f is None:
                return None
            out.extend(f)
        return out
    return [x]


def tensor_rule(ck, name, b, e) -> Value:
    """`tensor(data, dtype=)`, `ternary_tensor(data)`: the shape of the nested lists; float32
    unless `dtype` is given (`trit` values must be -1, 0 or 1)."""
    shape = _data_shape(ck, b["data"], e)
    if shape == "error":
        return Value(ANY)
    dt = "trit" if name == "ternary_tensor" else _const(b, "dtype") or "float32"
    if not isinstance(dt, str) or not _dtype_ok(ck, dt, e):
        return Value(ANY)
    if dt == "trit":
        vals = _flat_consts(b["data"])
        bad = [v for v in vals or [] if not (_num(v) and v in (-1, 0, 1))]
        if bad:
            ck.report("E0821", f"{bad[0]} is not a trit: ternary tensor data must be -1, 0 or 1",
                      e.span, help="ternary values are -1, 0 and 1")
            return Value(ANY)
    return Value(TensorT(dt, shape, dt == "trit"))


def arange_rule(ck, name, b, e) -> Value:
    start, end, step = _const(b, "start"), _const(b, "end"), _const(b, "step", 1)
    if end is None and "end" not in b:
        start, end = 0, start
    dt = _const(b, "dtype")
    if isinstance(dt, str) and not _dtype_ok(ck, dt, e):
        return Value(ANY)
    vals = (start, end, step)
    if dt is None:
        dt = "int64" if all(_is_int(v) for v in vals) else "float32"
    if all(_num(v) for v in vals):
        if step == 0:
            ck.report("E0820", "`step` of arange cannot be 0", e.span)
            return Value(ANY)
        return Value(TensorT(dt, (max(0, math.ceil((end - start) / step)),)))
    return Value(TensorT(dt, (None,)))


def linspace_rule(ck, name, b, e) -> Value:
    n = _const(b, "steps")
    if _is_int(n) and n < 0:
        ck.report("E0820", f"`steps` must be >= 0, got {n}", e.span)
        return Value(ANY)
    return Value(TensorT("float32", (n if _is_int(n) else None,)))


def eye_rule(ck, name, b, e) -> Value:
    n, m = _const(b, "n"), _const(b, "m")
    m = n if "m" not in b or m is None and b.get("m") is not None and b["m"].known else m
    for d in (n, m):
        if _is_int(d) and d < 0:
            ck.report("E0508", f"a dimension cannot be negative ({d})", e.span)
            return Value(ANY)
    return Value(TensorT("float32", tuple(d if _is_int(d) else None for d in (n, m))))


def pow_rule(ck, name, b, e) -> Value:
    x, y = b["x"], b["exponent"]
    if isinstance(x.ty, TensorT) or isinstance(y.ty, TensorT):
        return ck.tensor_binary("*", x.ty, y.ty, e)
    if x.known and y.known and _num(x.const) and _num(y.const):
        try:
            r = x.const ** y.const
            if isinstance(r, complex):
                raise ValueError
            return Value(FLOAT, float(r), True)
        except (OverflowError, ZeroDivisionError, ValueError):
            return Value(FLOAT)
    return Value(FLOAT)


def _vec(ck, v: Value, what: str, e) -> TensorT | None:
    t = v.ty
    if isinstance(t, TensorT) and t.shape is not None and len(t.shape) != 1:
        ck.report("E0507", f"{what} needs 1-d tensors, got rank {len(t.shape)}", e.span)
        return None
    return t if isinstance(t, TensorT) else TensorT("float32", (None,))


def dot_rule(ck, name, b, e) -> Value:
    a, c = _vec(ck, b["a"], name, e), _vec(ck, b["b"], name, e)
    if a is None or c is None:
        return Value(ANY)
    if a.shape and c.shape and dims_conflict(a.shape[0], c.shape[0]):
        ck.report("E0502", f"dot: the vectors have different lengths ({a.shape[0]} vs "
                           f"{c.shape[0]})", e.span)
        return Value(ANY)
    return Value(TensorT("float32", ()))


def outer_rule(ck, name, b, e) -> Value:
    a, c = _vec(ck, b["a"], name, e), _vec(ck, b["b"], name, e)
    if a is None or c is None:
        return Value(ANY)
    return Value(TensorT("float32", ((a.shape or (None,))[0], (c.shape or (None,))[0])))


def split_rule(ck, name, b, e) -> Value:
    """A list of tensors along `dim`: chunks of `split_size` (the last may be smaller), or
    one per section of a list of sizes (which must add up to the dim)."""
    xt = _xt(b)
    size, d = _const(b, "split_size"), _const(b, "dim", 0)
    if xt is None or xt.shape is None or not _is_int(d) or size is None:
        return Value(ListT())
    i = ck.norm_dim(xt, d, e)
    if i is None:
        return Value(ANY)
    n = xt.shape[i]
    if isinstance(size, list):
        if not all(_is_int(s) and s >= 0 for s in size):
            return Value(ListT())
        if _is_int(n) and sum(size) != n:
            ck.report("E0822", f"split sizes {size} add up to {sum(size)}, but dim {d} has size "
                               f"{n}", e.span)
            return Value(ANY)
        parts = size
    elif _is_int(size):
        if size <= 0:
            ck.report("E0820", f"`split_size` must be > 0, got {size}", e.span)
            return Value(ANY)
        if not _is_int(n):
            return Value(ListT())
        parts = [min(size, n - k) for k in range(0, n, size)]
    else:
        return Value(ListT())
    items = [Value(TensorT(xt.dtype, xt.shape[:i] + (p,) + xt.shape[i + 1:], xt.ternary))
             for p in parts]
    return Value(ListT(), items, True)   # indexable: `split(x, 2)[0]` keeps its shape


def _pair2(v) -> tuple | None:
    if _is_int(v):
        return (v, v)
    if isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v):
        return tuple(v)
    return None


def conv2d_rule(ck, name, b, e) -> Value:
    """conv2d(x [N, C, H, W], weight [O, C/groups, kh, kw]) -> [N, O, H', W']."""
    if not _quantizer_ok(ck, b, e):
        return Value(ANY)
    xt, wt = _xt(b), b["weight"].ty
    if xt is None or not isinstance(wt, TensorT) or xt.shape is None or wt.shape is None:
        return Value(TensorT("float32", None))
    for t, what in ((xt, "input"), (wt, "weight")):
        if len(t.shape) != 4:
            ck.report("E0507", f"{name} needs a 4-d {what} ([N, C, H, W] / [O, C, kh, kw]), "
                               f"got rank {len(t.shape)}", e.span)
            return Value(ANY)
    stride, pad, dil = (_pair2(_const(b, k, dflt)) for k, dflt in
                        (("stride", 1), ("padding", 0), ("dilation", 1)))
    groups = _const(b, "groups", 1)
    c, cw = xt.shape[1], wt.shape[1]
    if _is_int(groups) and _is_int(c) and _is_int(cw) and c != cw * groups:
        ck.report("E0503", f"{name}: the input has {c} channels, the weight expects "
                           f"{cw} x {groups} group(s)", e.span)
        return Value(ANY)
    out = []
    for k in range(2):
        h, kk = xt.shape[2 + k], wt.shape[2 + k]
        if stride and pad and dil and _is_int(h) and _is_int(kk):
            o = (h + 2 * pad[k] - dil[k] * (kk - 1) - 1) // stride[k] + 1
            if o <= 0:
                ck.report("E0509", f"{name}: output size {o} (input {h}, kernel {kk})", e.span)
                return Value(ANY)
            out.append(o)
        else:
            out.append(None)
    return Value(TensorT("float32", (xt.shape[0], wt.shape[0], *out)))


def batch_norm_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is None:
        return Value(TensorT("float32", None))
    if xt.shape is not None and len(xt.shape) < 2:
        ck.report("E0507", f"batch_norm needs an input [N, C, ...], got rank {len(xt.shape)}",
                  e.span)
        return Value(ANY)
    for k in ("running_mean", "running_var", "weight", "bias"):
        t = b[k].ty if k in b else None
        if isinstance(t, TensorT) and t.shape is not None and xt.shape is not None and (
                len(t.shape) != 1 or dims_conflict(t.shape[0], xt.shape[1])):
            ck.report("E0823", f"batch_norm: `{k}` must have one value per channel "
                               f"([{xt.shape[1]}]), got {t}", e.span)
            return Value(ANY)
    _range_check(ck, b, e, "eps", 0, True)
    return Value(TensorT("float32", xt.shape))


def layer_norm_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is None:
        return elementwise_rule(ck, name, b, e)
    ns = _const(b, "normalized_shape")
    ns = [ns] if _is_int(ns) else ns
    if isinstance(ns, list) and xt.shape is not None and all(_is_int(d) for d in ns):
        tail = xt.shape[len(xt.shape) - len(ns):] if len(ns) <= len(xt.shape) else None
        if tail is None or any(dims_conflict(a, c) for a, c in zip(tail, ns)):
            ck.report("E0823", f"layer_norm: normalized_shape {ns} is not the last dims of "
                               f"{xt}", e.span)
            return Value(ANY)
    for k in ("weight", "bias"):
        t = b[k].ty if k in b else None
        if isinstance(ns, list) and isinstance(t, TensorT) and t.shape is not None and (
                len(t.shape) != len(ns) or any(dims_conflict(a, c) for a, c in zip(t.shape, ns))):
            ck.report("E0823", f"layer_norm: `{k}` must have the normalized shape {ns}, got {t}",
                      e.span)
            return Value(ANY)
    return elementwise_rule(ck, name, b, e)


def mse_loss_rule(ck, name, b, e) -> Value:
    r = _const(b, "reduction", "mean")
    if r not in ("mean", "sum", "none"):
        ck.report("E0309", f"reduction must be \"mean\", \"sum\" or \"none\", got {r!r}", e.span)
        return Value(ANY)
    v = ck.tensor_binary("-", b["x"].ty, b["target"].ty, e)
    if r != "none":
        return Value(TensorT("float32", ()))
    return Value(TensorT("float32", v.ty.shape if isinstance(v.ty, TensorT) else None))


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

def _reduce_torch(fn: str) -> Template:
    def render(a: dict[str, str], given: set[str]) -> str:
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
    if given <= {"x", "eps"}:
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
for _n, _d, _t, _py in _UNARY:
    _fn(_n, _X, _d, elementwise_rule, f"{_t}({{x}})", ir=IR(_n), py=_py)

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
_fn("transpose", (_p("x"), _opt("dim0", "int", 0), _opt("dim1", "int", 1)),
    "swap two dims (`transpose(x)`: the two dims of a matrix)",
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
    "clip to [min, max]", elementwise_rule, "torch.clamp({x}, min={min}, max={max})",
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
    elementwise_rule, "F.rms_norm({x}, {x}.shape[-1:], eps={eps})",
    ir=IR("rms_norm", attrs=(("eps", "eps", "float"),)))
_fn("rope", (_p("x"), _opt("base", "float", 10000.0)),
    "rotary position embedding of `x` [..., seq, head_dim] (head_dim even; the halves "
    "rotate by position * base^(-2i/head_dim), Llama's and BitNet's convention); "
    "positions continue after the tokens a decode session has cached", rope_rule,
    "trt.rope({x}, base={base})", ir=IR("rope", attrs=(("base", "base", "float"),)))
_fn("dropout", (_p("x"), _opt("p", "float", 0.5)), "dropout (identity at inference)",
    elementwise_rule, "F.dropout({x}, p={p}, training=self.training)",
    ir=IR("dropout", attrs=(("p", "p", "float"),)))
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
_fn("range", (_p("n", "int"), _opt("stop", "int", None), _opt("step", "int", None)),
    "0, 1, …, n-1 (for loops); range(start, stop, step) as in Python", range_rule, PY_CALL)
_fn("enumerate", (_p("x", "any"),), "the pairs (index, item) of a list: "
    "for (i, v) in enumerate(xs)", enumerate_rule, PY_CALL)
_fn("zip", (_p("a", "any"), _p("b", "any"), _opt("c", "any", None)),
    "the tuples of items at the same position: for (a, b) in zip(xs, ys)", zip_rule, PY_CALL)
_fn("len", (_p("x", "any"),), "length of a list or of a tensor's first dim", len_rule, PY_CALL)
_fn("print", (_p("x", "any"), _opt("sep", "str", None), _opt("end", "str", None)),
    "print values (any number; `sep=`, `end=` by name)", none_rule, PY_CALL, variadic=True)

# ----------------------------------------------------------------------------- the seed's builtins
# (docs/language.md, "Builtin functions of the seed language": which results are ternary)

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


_DATA = (_p("data", "any"), _opt("dtype", "str", None), _opt("requires_grad", "bool", False))
_fn("tensor", _DATA, "a tensor from a number or nested lists; float32 unless `dtype` is given",
    tensor_rule, "trt.tensor({data}, dtype={dtype}, requires_grad={requires_grad})", creates=True)
_fn("ternary_tensor", (_p("data", "any"),), "a ternary tensor (int8 trits) from nested lists "
    "of -1, 0, 1", tensor_rule, "trt.tensor({data}, dtype='trit')", creates=True)
_fn("arange", (_p("start", "float"), _opt("end", "float", None), _opt("step", "float", 1),
               _opt("dtype", "str", None)),
    "start, start + step, … below end (`arange(n)`: 0..n-1); int64 for integer bounds, "
    "else float32", arange_rule, "trt.arange({start}, {end}, {step}, dtype={dtype})",
    creates=True)
_fn("linspace", (_p("start", "float"), _p("end", "float"), _p("steps", "int")),
    "`steps` evenly spaced float32 values from start to end (both included)", linspace_rule,
    "torch.linspace({start}, {end}, {steps})", creates=True)
_fn("eye", (_p("n", "int"), _opt("m", "int", None)), "identity matrix [n, m] (m = n)",
    eye_rule, lambda a, given: f"torch.eye({a['n']}, {a['m']})" if "m" in given
    else f"torch.eye({a['n']})", creates=True)

_MATH = (  # name, doc, torch, python value
    ("sin", "sine", "torch.sin", math.sin),
    ("cos", "cosine", "torch.cos", math.cos),
    ("tan", "tangent", "torch.tan", math.tan),
    ("floor", "largest integer <= x", "torch.floor", math.floor),
    ("ceil", "smallest integer >= x", "torch.ceil", math.ceil),
    ("round", "nearest integer, ties to even (torch.round)", "torch.round", round),
    ("log10", "base-10 logarithm", "torch.log10", math.log10),
)
for _n, _d, _t, _py in _MATH:
    _fn(_n, _X, _d, elementwise_rule, f"{_t}({{x}})", ir=IR(_n), py=_py)
_fn("pow", (_p("x", "tensor"), _p("exponent", "tensor")), "x to the power `exponent` "
    "(elementwise, broadcast)", pow_rule, "({x} ** {exponent})", ir=IR("pow", ("x", "exponent")),
    py=lambda x, y: float(x) ** y, aliases=(("y", "exponent"),))
_STD = (_p("x"), _opt("dim", "ints", None), _opt("keepdim", "bool", False),
        _opt("unbiased", "bool", True))
_fn("std", _STD, "standard deviation over `dim` (all dims when omitted; Bessel-corrected "
    "unless unbiased=false)", reduce_rule,
    "trt.std({x}, {dim}, keepdim={keepdim}, unbiased={unbiased})")
_fn("var", _STD, "variance over `dim` (as std)", reduce_rule,
    "trt.std({x}, {dim}, keepdim={keepdim}, unbiased={unbiased}, var=True)")
_fn("dot", (_p("a"), _p("b")), "inner product of two 1-d tensors (a 0-d tensor)", dot_rule,
    "torch.dot({a}, {b})")
_fn("outer", (_p("a"), _p("b")), "outer product of two 1-d tensors [n, m]", outer_rule,
    "torch.outer({a}, {b})")
_fn("split", (_p("x"), _p("split_size", "ints"), _opt("dim", "int", 0)),
    "a list of tensors along `dim`: chunks of `split_size`, or one per size in a list",
    split_rule, "trt.split({x}, {split_size}, dim={dim})",
    aliases=(("split_size_or_sections", "split_size"), ("sections", "split_size")))
_alias("avgpool2d", "avg_pool2d")
_alias("maxpool2d", "max_pool2d")
_CONV = (_opt("stride", "ints", 1), _opt("padding", "ints", 0), _opt("dilation", "ints", 1),
         _opt("groups", "int", 1))
_fn("conv2d", (_p("x"), _p("weight"), _opt("bias", "tensor", None), *_CONV),
    "2-d convolution of x [N, C, H, W] with weight [O, C/groups, kh, kw]", conv2d_rule,
    "F.conv2d({x}, {weight}, {bias}, stride={stride}, padding={padding}, dilation={dilation}, "
    "groups={groups})", aliases=(("w", "weight"), ("input", "x")))
_fn("batch_norm", (_p("x"), _p("running_mean"), _p("running_var"), _opt("weight", "tensor", None),
                   _opt("bias", "tensor", None), _opt("training", "bool", False),
                   _opt("momentum", "float", 0.1), _opt("eps", "float", 1e-5)),
    "batch norm over dim 1 (batch statistics when training=true, else the running ones)",
    batch_norm_rule, "trt.batch_norm({x}, {running_mean}, {running_var}, {weight}, {bias}, "
    "training={training}, momentum={momentum}, eps={eps})",
    aliases=(("mean", "running_mean"), ("var", "running_var"), ("gamma", "weight"),
             ("beta", "bias"), ("input", "x")))
_fn("mse_loss", (_p("x"), _p("target"), _opt("reduction", "str", "mean")),
    "mean squared error (reduction \"mean\", \"sum\" or \"none\")", mse_loss_rule,
    "trt.mse_loss({x}, {target}, reduction={reduction})",
    aliases=(("input", "x"), ("pred", "x"), ("prediction", "x")))

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
