"""The seed language's builtins (docs/language.md, "Builtin functions of the seed
language"): tensors from data, math, statistics, vector products, `split`, `conv2d`,
`batch_norm`, `mse_loss`, `cross_entropy`: their rules and records, registered after `core`."""

from __future__ import annotations

import math

from ..types import (
    ANY,
    FLOAT,
    AnyT,
    ListT,
    ScalarT,
    TensorT,
    Value,
    dims_conflict,
)
from .core import _X, float_x, on_floats
from .records import IR, _alias, _fn, _opt, _p
from .rules import (
    _const,
    _dtype_ok,
    _is_int,
    _num,
    _quantizer_ok,
    _range_check,
    _xt,
    elementwise_rule,
    reduce_rule,
)

# ----------------------------------------------------------------------------- rules

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
    dt = _const(b, "dtype")
    if isinstance(dt, str) and not _dtype_ok(ck, dt, e):
        return Value(ANY)
    return Value(TensorT(dt if isinstance(dt, str) else "float32",
                         tuple(d if _is_int(d) else None for d in (n, m))))


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
    for key, vals, lo in (("stride", stride, 1), ("padding", pad, 0), ("dilation", dil, 1),
                          ("groups", (groups,) if _is_int(groups) else None, 1)):
        bad = [v for v in vals or () if v < lo]
        if bad:
            ck.report("E0820", f"{name}: `{key}` must be >= {lo}, got {bad[0]}", e.span)
            return Value(ANY)
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


def mse_loss_rule(ck, name, b, e) -> Value:
    r = _const(b, "reduction", "mean")
    if r not in ("mean", "sum", "none"):
        ck.report("E0309", f"reduction must be \"mean\", \"sum\" or \"none\", got {r!r}", e.span)
        return Value(ANY)
    v = ck.tensor_binary("-", b["x"].ty, b["target"].ty, e)
    if r != "none":
        return Value(TensorT("float32", ()))
    return Value(TensorT("float32", v.ty.shape if isinstance(v.ty, TensorT) else None))


def cross_entropy_rule(ck, name, b, e) -> Value:
    """`cross_entropy(logits [.., C], targets [..])`: class indices (an integer tensor with the
    logits' shape less the class dim); the mean (or sum) over the rows, or one loss a row."""
    r = _const(b, "reduction", "mean")
    if r not in ("mean", "sum", "none"):
        ck.report("E0309", f"reduction must be \"mean\", \"sum\" or \"none\", got {r!r}", e.span)
        return Value(ANY)
    lt, tt = b["logits"].ty, b["targets"].ty
    rows = None
    if isinstance(lt, TensorT) and lt.shape is not None:
        if len(lt.shape) == 0:
            ck.report("E0507", "cross_entropy needs logits with a class dim (rank >= 1), got a "
                               "0-d tensor", e.span)
            return Value(ANY)
        rows = lt.shape[:-1]
    if isinstance(tt, TensorT):
        if tt.dtype not in ("int8", "int32", "int64", "trit", "int", "uint8", "int16"):
            ck.report("E0404", f"cross_entropy takes the targets as class indices (an integer "
                               f"tensor), got {tt}", e.span,
                      help="write `tensor([...], dtype=int64)` or cast with `.long()`")
            return Value(ANY)
        if rows is not None and tt.shape is not None and (
                len(tt.shape) != len(rows)
                or any(dims_conflict(a, c) for a, c in zip(tt.shape, rows, strict=True))):
            ck.report("E0502", f"cross_entropy: targets of shape {list(tt.shape)} do not match "
                               f"the logits' rows {list(rows)} (logits {list(lt.shape)})", e.span)
            return Value(ANY)
    elif isinstance(tt, ScalarT):
        ck.report("E0404", f"cross_entropy takes the targets as a tensor of class indices, got "
                           f"{tt}", e.span)
        return Value(ANY)
    if r != "none":
        return Value(TensorT("float32", ()))
    return Value(TensorT("float32", rows))


# ----------------------------------------------------------------------------- the seed's builtins
# (docs/language.md, "Builtin functions of the seed language": which results are ternary)

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
def _eye_torch(a: dict[str, str], given: set[str]) -> str:
    call = f"torch.eye({a['n']}, {a['m']})" if "m" in given else f"torch.eye({a['n']})"
    return f"trt.with_dtype({call}, {a['dtype']})" if "dtype" in given else call


_fn("eye", (_p("n", "int"), _opt("m", "int", None), _opt("dtype", "str", None)),
    "identity matrix [n, m] (m = n; float32 unless `dtype` is given)", eye_rule, _eye_torch,
    creates=True)

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
    _fn(_n, _X, _d, elementwise_rule, on_floats(f"{_t}({{x}})"), ir=IR(_n), py=_py)
_fn("pow", (_p("x", "tensor"), _p("exponent", "tensor")), "x to the power `exponent` "
    "(elementwise, broadcast)", pow_rule, "({x} ** {exponent})", ir=IR("pow", ("x", "exponent")),
    py=lambda x, y: float(x) ** y, aliases=(("y", "exponent"),))
_STD = (_p("x"), _opt("dim", "ints", None), _opt("keepdim", "bool", False),
        _opt("unbiased", "bool", True))
_fn("std", _STD, "standard deviation over `dim` (all dims when omitted; Bessel-corrected "
    "unless unbiased=false)", reduce_rule,
    lambda a, given: "trt.std({x}, {dim}, keepdim={keepdim}, unbiased={unbiased})".format(
        **float_x(a, given)))
_fn("var", _STD, "variance over `dim` (as std)", reduce_rule,
    lambda a, given: "trt.std({x}, {dim}, keepdim={keepdim}, unbiased={unbiased}, "
                     "var=True)".format(**float_x(a, given)))
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
_fn("cross_entropy", (_p("logits"), _p("targets"), _opt("reduction", "str", "mean")),
    "cross-entropy of logits [.., classes] against integer class indices [..] (reduction "
    "\"mean\", \"sum\" or \"none\")", cross_entropy_rule,
    "trt.cross_entropy({logits}, {targets}, reduction={reduction})",
    aliases=(("input", "logits"), ("target", "targets"), ("predictions", "logits")))
