"""Builtins the seed language's custom quantizers and vision models call (the model2 forms of
issue 13): `zeros_like` / `ones_like` / `full_like`, `argmax` / `argmin`, `one_hot`,
`gumbel_softmax`, `repeat` and `concatenate`: their rules, templates and records,
registered after `corpus`."""

from __future__ import annotations

from ..types import ANY, SymInt, TensorT, Value
from .records import _alias, _fn, _opt, _p
from .rules import _const, _dtype_ok, _is_int, _range_check, reduce_rule

# ----------------------------------------------------------------------------- rules


def _tensor_arg(ck, name: str, b, e, key: str = "x") -> TensorT | None:
    v = b.get(key)
    if v is not None and isinstance(v.ty, TensorT):
        return v.ty
    if v is not None and v.ty is not ANY and type(v.ty).__name__ != "AnyT":
        ck.report("E0404", f"argument `{key}` of `{name}` must be a tensor, got {v.ty}", e.span)
    return None


def like_rule(ck, name, b, e) -> Value:
    """A new tensor of x's shape (and dtype, unless `dtype=` names one)."""
    xt = _tensor_arg(ck, name, b, e)
    dt = _const(b, "dtype")
    if isinstance(dt, str) and not _dtype_ok(ck, dt, e):
        return Value(ANY)
    if xt is None:
        return Value(TensorT(dt if isinstance(dt, str) else None, None))
    return Value(TensorT(dt if isinstance(dt, str) else xt.dtype or "float32", xt.shape,
                         dt == "trit" if isinstance(dt, str) else False))


def _like_torch(base: str):
    def render(a: dict[str, str], given: set[str]) -> str:
        call = base.format(**a)
        return call if "dtype" not in given else f"trt.with_dtype({call}, {a['dtype']}, False)"
    return render


def arg_rule(ck, name, b, e) -> Value:
    """The int64 index of the max (min) over `dim`; over all elements when omitted."""
    if _tensor_arg(ck, name, b, e) is None:
        return Value(TensorT("int64", None))
    r = reduce_rule(ck, name, b, e)
    return Value(TensorT("int64", r.ty.shape)) if isinstance(r.ty, TensorT) else r


def one_hot_rule(ck, name, b, e) -> Value:
    """idx [...] of class indices -> float32 [..., num_classes] of 0/1."""
    it = _tensor_arg(ck, name, b, e, "idx")
    n = _const(b, "num_classes")
    if _is_int(n) and n < 1:
        ck.report("E0508", f"`{name}` needs at least one class, got {n}", e.span)
        return Value(ANY)
    if it is not None and it.dtype is not None and it.dtype.startswith("float"):
        ck.report("E0404", f"`{name}` takes integer class indices, got {it.dtype} values",
                  e.span, help="convert them first, e.g. `int64(idx)`, or use `argmax`")
        return Value(ANY)
    dim = n if _is_int(n) or isinstance(n, SymInt) else None
    if it is None or it.shape is None:
        return Value(TensorT("float32", None))
    return Value(TensorT("float32", it.shape + (dim,)))


def gumbel_rule(ck, name, b, e) -> Value:
    """Samples of softmax((logits + Gumbel noise) / temperature) along `dim` (one-hot with
    `hard=true`, straight-through gradient): float32 of the logits' shape."""
    lt = _tensor_arg(ck, name, b, e, "logits")
    if not _range_check(ck, b, e, "temperature", 0.0, True):
        return Value(ANY)
    if lt is None:
        return Value(TensorT("float32", None))
    if lt.shape is not None and _is_int(_const(b, "dim")):
        if ck.norm_dim(lt, _const(b, "dim"), e) is None:
            return Value(ANY)
    return Value(TensorT("float32", lt.shape))


def repeat_rule(ck, name, b, e) -> Value:
    """`repeat(x, n)`: x tiled n times along `dim` (default 0); `repeat(x, [a, b, …])`: one
    count per dim, as torch's Tensor.repeat (more counts than dims add leading dims)."""
    xt = _tensor_arg(ck, name, b, e)
    reps = _const(b, "repeats")
    if isinstance(b["repeats"].const, str) and b["repeats"].known:
        ck.report("E0309", f"`{name}` with an einops pattern is not supported", e.span,
                  help="write `repeat(x, n)` (n copies along dim 0) or "
                       "`repeat(x, [n, 1, 1])` (a count per dim)")
        return Value(ANY)
    if isinstance(reps, list):
        ck.call_forms[e.span] = "sizes"
        counts = [c.const if isinstance(c, Value) and c.known else c for c in reps]
        if any(_is_int(c) and c < 1 for c in counts):
            ck.report("E0508", f"`{name}` counts must be at least 1", e.span)
            return Value(ANY)
        if xt is None or xt.shape is None:
            return Value(TensorT(xt.dtype if xt else None, None))
        if len(counts) < len(xt.shape):
            ck.report("E0508", f"`{name}` needs a count for each of the {len(xt.shape)} dims, "
                               f"got {len(counts)}", e.span)
            return Value(ANY)
        shape = (1,) * (len(counts) - len(xt.shape)) + tuple(xt.shape)
        return Value(TensorT(xt.dtype, tuple(
            d * c if _is_int(d) and _is_int(c) else (d if c == 1 else None)
            for d, c in zip(shape, counts, strict=True)), xt.ternary))
    if _is_int(reps) and reps < 1:
        ck.report("E0508", f"`{name}` needs a count of at least 1, got {reps}", e.span)
        return Value(ANY)
    if xt is None or xt.shape is None:
        return Value(TensorT(xt.dtype if xt else None, None))
    dim = _const(b, "dim", 0)
    if not _is_int(dim) or not xt.shape:
        return Value(TensorT(xt.dtype, None))
    i = ck.norm_dim(xt, dim, e)
    if i is None:
        return Value(ANY)
    d = xt.shape[i]
    new = d * reps if _is_int(d) and _is_int(reps) else (
        reps if d == 1 and (_is_int(reps) or isinstance(reps, SymInt)) else None)
    return Value(TensorT(xt.dtype, xt.shape[:i] + (new,) + xt.shape[i + 1:], xt.ternary))


def _repeat_torch(a: dict[str, str], given: set[str]) -> str:
    if "@sizes" in given:
        return f"{a['x']}.repeat({a['repeats']})"
    return f"torch.cat([{a['x']}] * ({a['repeats']}), dim={a['dim']})"


# ----------------------------------------------------------------------------- records

_DT = _opt("dtype", "str", None)
_fn("zeros_like", (_p("x"), _DT), "zeros of x's shape (and dtype unless `dtype=`)", like_rule,
    _like_torch("torch.zeros_like({x})"))
_fn("ones_like", (_p("x"), _DT), "ones of x's shape (and dtype unless `dtype=`)", like_rule,
    _like_torch("torch.ones_like({x})"))
_fn("full_like", (_p("x"), _p("value", "float"), _DT),
    "`value` in x's shape (and dtype unless `dtype=`)", like_rule,
    _like_torch("torch.full_like({x}, {value})"), aliases=(("fill_value", "value"),))
_ARG = (_p("x"), _opt("dim", "int", None), _opt("keepdim", "bool", False))
_fn("argmax", _ARG, "int64 index of the maximum along `dim` (of the flattened x when "
    "omitted)", arg_rule, "torch.argmax({x}, dim={dim}, keepdim={keepdim})")
_fn("argmin", _ARG, "int64 index of the minimum along `dim` (of the flattened x when "
    "omitted)", arg_rule, "torch.argmin({x}, dim={dim}, keepdim={keepdim})")
_fn("one_hot", (_p("idx"), _p("num_classes", "int")),
    "float32 [..., num_classes]: 1 at each index of idx, else 0", one_hot_rule,
    "F.one_hot(torch.as_tensor({idx}).long(), {num_classes}).float()",
    aliases=(("x", "idx"), ("indices", "idx"), ("n", "num_classes"), ("depth", "num_classes")))
_fn("gumbel_softmax", (_p("logits"), _opt("temperature", "float", 1.0), _opt("hard", "bool", False),
                       _opt("dim", "int", -1)),
    "softmax((logits + Gumbel noise) / temperature) along `dim`; `hard=true`: one-hot "
    "samples with the soft gradient (straight-through)", gumbel_rule,
    "F.gumbel_softmax({logits}, tau={temperature}, hard={hard}, dim={dim})",
    aliases=(("tau", "temperature"), ("x", "logits")))
_fn("repeat", (_p("x"), _p("repeats", "any"), _opt("dim", "int", 0)),
    "x tiled `repeats` times along `dim` (default 0); with a list, one count per dim "
    "(torch's Tensor.repeat)", repeat_rule, _repeat_torch,
    aliases=(("n", "repeats"), ("times", "repeats"), ("sizes", "repeats")))
_alias("concatenate", "concat")
