"""The checker's result rules of the builtin functions, `rule(checker, name, bound_args,
call) -> Value`, shared by the tables (`core`, `seed`, `quant`), and the helpers and
argument checks (dtype, ranges, quantizer names) they use."""

from __future__ import annotations

from ... import vocab
from ...frontend.diagnostics import did_you_mean
from .. import bounds
from .. import library as L
from ..types import (
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
    TupleT,
    Value,
    dims_conflict,
)

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


# ----------------------------------------------------------------------------- argument checks

def _dtype_ok(ck, dt: str, e) -> bool:
    if dt in vocab.DTYPES and dt != "str":
        return True
    ck.report("E0309", f"unknown dtype \"{dt}\"", e.span,
              help=did_you_mean(dt, [d for d in vocab.DTYPES if d != "str"]))
    return False


def _range_check(ck, b, e, key: str, lo: float, strict: bool, hi: float | None = None,
                 help: str | None = None) -> bool:  # noqa: A002
    """Report E0820 unless the constant argument `key` (when known) is > lo (>= lo) and,
    with `hi`, at most hi."""
    v = _const(b, key)
    if _num(v) and (v <= lo if strict else v < lo):
        ck.report("E0820", f"`{key}` must be {'>' if strict else '>='} {lo:g}, got {v}", e.span,
                  help=help)
        return False
    if hi is not None and _num(v) and v > hi:
        ck.report("E0820", f"`{key}` must be at most {hi:g}, got {v}", e.span, help=help)
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
#: elementwise functions whose value on integers is a float (`relu`, `abs`, `round`… keep
#: integers integers)
_FLOAT_VALUED = frozenset({"gelu", "silu", "sigmoid", "tanh", "exp", "log", "log2", "log10",
                           "sqrt", "sin", "cos", "tan", "softmax", "log_softmax", "rms_norm",
                           "layer_norm"})


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
    dtype = "float32" if xt.dtype in (None, "trit") or xt.ternary else xt.dtype
    if name in _FLOAT_VALUED and xt.dtype is not None and xt.dtype not in FLOAT_TYPES:
        # `sqrt(int32(x))`, `gelu(trit(x))`: a float of the integers (as the IR computes)
        dtype = "float32"
        ck.call_forms[e.span] = ON_FLOATS
    out = TensorT(dtype, xt.shape, name in ("quantize_ternary", "ternary_quantize"))
    return Value(out)


#: CheckResult.call_forms: `clamp`/`clip` of an integer tensor: its bounds are truncated to
#: integers, so the result keeps the tensor's dtype, as the checker and the IR type it
#: (clamping integers then truncating is clamping to the truncated bounds)
INT_BOUNDS = "int_bounds"


def clamp_rule(ck, name, b, e) -> Value:
    xt = _xt(b)
    if xt is not None and xt.dtype in INT_TYPES and not xt.ternary:
        ck.call_forms[e.span] = INT_BOUNDS
    out = elementwise_rule(ck, name, b, e)
    if xt is not None and xt.dtype == "trit" and isinstance(out.ty, TensorT):
        # clipped, trits are floats (`clip(trit(x), min=0.5)` holds 0.5): the input is cast
        # to float32 first, whether it is held as int8 (`trit(x)`) or as the floats a caller
        # passed for a `TernaryTensor` argument, so the bounds are never truncated
        ck.call_forms[e.span] = ON_FLOATS
        return Value(TensorT("float32", out.ty.shape))
    return out


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
    if "dim0" not in b and "dim1" not in b and len(xt.shape) < 2:
        ck.report("E0507", f"transpose(x) without dims swaps the last two dims; this "
                           f"tensor has rank {len(xt.shape)}", e.span,
                  help="name the dims to swap: transpose(x, dim0, dim1)")
        return Value(ANY)
    d0, d1 = _const(b, "dim0", -2), _const(b, "dim1", -1)
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


#: CheckResult.call_forms: `mean`/`std`/`var`, `softmax`, `gelu`, `sqrt`… of integers, trits
#: or bools, generated on the tensor cast to float32 (torch refuses most of them on integers;
#: the checker and the IR say float32)
ON_FLOATS = "on_floats"
_FLOAT_REDUCTIONS = ("mean", "std", "var")


def reduce_rule(ck, name, b, e) -> Value:
    x, xt = b.get("x"), _xt(b)
    floats = name in _FLOAT_REDUCTIONS
    if floats and xt is not None and xt.dtype is not None and xt.dtype not in FLOAT_TYPES:
        ck.call_forms[e.span] = ON_FLOATS
    dtype = "float32" if floats else xt.dtype if xt is not None else None
    if name == "sum" and dtype is not None and dtype not in FLOAT_TYPES:
        dtype = "int64"   # integers, trits and bools sum in int64, as torch and the IR do
    if xt is None or xt.shape is None:
        return Value(TensorT(dtype, None) if xt or not x
                     else FLOAT if isinstance(x.ty, ScalarT) else ANY)
    dim = _const(b, "dim")
    keep = bool(_const(b, "keepdim", False))
    if dim is None:
        return Value(TensorT(dtype, tuple(1 for _ in xt.shape) if keep else ()))
    dims = dim if isinstance(dim, list) else [dim]
    idx = set()
    for d in dims:
        i = ck.norm_dim(xt, d, e) if _is_int(d) else None
        if i is None:
            return Value(ANY)
        idx.add(i)
    s = tuple((1 if i in idx else d) for i, d in enumerate(xt.shape) if keep or i not in idx)
    return Value(TensorT(dtype, s))


def elementwise2_rule(ck, name, b, e) -> Value:
    return ck.elementwise2(b["a"], b["b"], e)


def floordiv_rule(ck, name, b, e) -> Value:
    return ck.binary("//", b["a"], b["b"], e)


def where_rule(ck, name, b, e) -> Value:
    """The values' dtype, and the shape of the condition and the values broadcast (as
    torch.where: `where(x > 0, 0.0, 1.0)` has x's shape)."""
    out = ck.tensor_binary("+", b["a"].ty, b["b"].ty, e)
    c = b["cond"].ty
    if not isinstance(c, TensorT) or not isinstance(out.ty, TensorT):
        return out
    shape = None if c.shape is None or out.ty.shape is None else \
        ck.broadcast(c.shape, out.ty.shape, e.span)
    return Value(TensorT(out.ty.dtype, shape, out.ty.ternary))


def _float_dim(shape: Value) -> bool:
    """A dimension of the list `shape` is a float (`x.shape[0] / 2`: torch refuses it)."""
    items = shape.const if isinstance(shape.const, list) else ()
    for x in items:
        c = x.const if isinstance(x, Value) else x
        if isinstance(c, float) or (isinstance(x, Value) and x.ty == FLOAT):
            return True
    return False


def creation_rule(ck, name, b, e) -> Value:
    if _float_dim(b["shape"]):
        ck.report("E0308", f"a dimension of `{name}` must be an int, not a float", e.span,
                  help="`/` divides to a float: for sizes write `floordiv(a, b)`, or `int(...)`")
        return Value(ANY)
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
    return Value(RangeT(), bounds.range_len(seq), True) if seq is not None else Value(RangeT())


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
        t = b["x"].ty
        # a list of unknown length: its pairs typed (`for (i, layer) in enumerate(layers)`)
        return Value(ListT(TupleT((INT, t.elem)) if isinstance(t, ListT) and t.elem else None))
    return _pairs([[Value.of(i), x] for i, x in enumerate(items)])


def zip_rule(ck, name, b, e) -> Value:
    """`zip(a, b[, c])`: the tuples of the items at each position, as long as the shortest."""
    lists = [_items(b[k]) for k in ("a", "b", "c") if k in b]
    if any(x is None for x in lists):
        return Value(ListT())
    return _pairs([list(row) for row in zip(*lists)])


def none_rule(ck, name, b, e) -> Value:
    return Value(NoneT())


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
