"""Lowering expressions: names, constants, operators (folded on Python constants), indexing,
attributes, and calls of layers, user functions and builtins."""

from __future__ import annotations

import math
from typing import Any

from ...check import bounds
from ...check.builtins import FUNCTIONS
from ...check.checker import Definition, LayerInst
from ...check.checker.calls_forms import dtype_constant
from ...check.checker.model import callable_layer, layer_as_function
from ...check.list_methods import LIST_METHODS
from ...frontend import ast as A
from ...frontend.diagnostics import Span
from ..builder import Builder
from ..core import Function, Value
from ..ops import InferError
from ..types import FLOAT_DTYPES, ScalarType, TensorType, types_compatible
from .decl import ZerosForm, floor_count, lower_zeros
from .list_methods import call_list_method, fresh_lists, list_arguments
from .user_calls import ordered_args
from .values import (
    _BINOPS,
    _LANG_DTYPES,
    _TENSOR_DTYPES,
    MAX_DEPTH,
    FnCtx,
    FnRef,
    LayerBuild,
    LayerRef,
    LazyExpr,
    LoweringError,
    ParamRef,
    RangeV,
    SymDim,
    Undef,
    Unit,
    _flat,
    _freeze,
    _is_const,
    _is_int,
    _is_num,
    _list_shape,
    _py_binary,
    _ScratchBuilder,
    _WouldEmit,
)

#: IR dtypes whose powers are integer powers (torch refuses a negative integer exponent)
_INTEGRAL = frozenset({"bool", "trit", "u8", "i8", "i16", "i32", "i64"})


class RuntimeText:
    """The text of an f-string with a field known only at run time: the IR has no strings,
    so it can only be printed (a `print` lowers to nothing); it is not a str, so no
    lowering takes it for a constant."""

    __slots__ = ("known",)

    def __init__(self, known: str) -> None:
        self.known = known   # the text with the run-time fields left out


class ExpressionsMixin:
    def fstring(self, e: A.FString, env: dict[str, Any], b: Builder,
                ctx: FnCtx) -> str | RuntimeText:
        """An f-string: its text when every field is a compile-time constant (a config
        string such as f"{name}_proj"), else a RuntimeText (fields still lowered)."""
        out = []
        runtime = False
        for part in e.parts:
            if not isinstance(part, A.FField):
                out.append(part)
                continue
            v = self.eval(part.value, env, b, ctx)
            if isinstance(v, Value) or isinstance(v, RuntimeText) or not isinstance(
                    v, int | float | str | bool | list | tuple | type(None)):
                runtime = True
                continue
            if part.conv:
                v = {"r": repr, "s": str, "a": ascii}[part.conv](v)
            try:
                out.append(format(v, part.spec))
            except (TypeError, ValueError) as exc:
                raise LoweringError(f"cannot format the field: {exc}", part.span) from None
        return RuntimeText("".join(out)) if runtime else "".join(out)

    # ------------------------------------------------------------------ expressions
    def lookup(self, name: str, env: dict[str, Any], b: Builder, ctx: FnCtx,
               span: Span | None) -> Any:
        if name in env:
            v = env[name]
            if isinstance(v, ParamRef):
                return self.read_param(b, v)
            if isinstance(v, LazyExpr):
                return self.eval(v.expr, env, b, ctx)
            if isinstance(v, Undef):
                raise LoweringError(f"`{name}` cannot be used here: {v.why}", span)
            return v
        d = self.result.definitions.get(name)
        if d is not None and d.kind == "fn":
            return FnRef(name)
        if name in FUNCTIONS:
            return FnRef(name)
        if name in _TENSOR_DTYPES:   # a dtype written as a name: `zeros(s, dtype=float64)`
            return name
        raise LoweringError(f"undefined name `{name}`", span)

    def read_param(self, b: Builder, ref: ParamRef) -> Value:
        w = b.param(ref.name, ref.type)
        if ref.quant is None:
            return w
        return self.ternary(b, w, ref.quant)

    def eval(self, e: A.Expr, env: dict[str, Any], b: Builder, ctx: FnCtx) -> Any:
        t = type(e)
        if t is A.Num:
            return e.value
        if t is A.Name:
            return self.lookup(e.id, env, b, ctx, e.span)
        if t in (A.Str, A.Bool, A.TritLit):
            return e.value
        if t is A.FString:
            return self.fstring(e, env, b, ctx)
        if t is A.NoneLit:
            return None
        if t is A.Unknown:
            return -1
        if t is A.ListLit:
            return [self.eval(x, env, b, ctx) for x in e.items]
        if t is A.DictLit:
            return {en.key: self.eval(en.value, env, b, ctx) for en in e.entries}
        if t is A.Unary:
            v = self.eval(e.operand, env, b, ctx)
            if e.op == "+":
                return v
            if e.op == "-":
                if _is_num(v):
                    return -v
                return b.neg(self.to_value(b, v, None, e.span))
            truth = self.const_truth(v)
            if truth is not None:
                return not truth
            return b.logical_not(self.to_bool(b, v, e.span))
        if t is A.Binary:
            return self.eval_binary(e, env, b, ctx)
        if t is A.CondExpr:
            c = self.eval(e.cond, env, b, ctx)
            truth = self.const_truth(c)
            if truth is not None:
                return self.eval(e.then if truth else e.other, env, b, ctx)
            cond = self.to_bool(b, c, e.cond.span)
            x, y = self.eval(e.then, env, b, ctx), self.eval(e.other, env, b, ctx)
            xv, yv = self.operands(b, x, y, e.span)
            return b.select(cond, xv, yv)
        if t is A.Call:
            return self.eval_call(e, env, b, ctx)
        if t is A.Index:
            return self.eval_index(e, env, b, ctx)
        if t is A.Attr:
            return self.eval_attr(e, env, b, ctx)
        if t is A.BlockExpr or t is A.IfExpr:
            return self.eval_block_value(e, env, b, ctx)
        if t is A.Closure:   # the lifted function with the values it reads bound
            return FnRef(e.fn, tuple(self.eval(c, env, b, ctx) for c in e.captured))
        if t is A.WithGradient:   # inference: the value `a`, broadcast as `b + (a - b)`
            x = self.eval(e.value, env, b, ctx)
            y = self.eval(e.source, env, b, ctx)
            return self.binary("+", y, self.binary("-", x, y, b, e.span), b, e.span)
        if t is A.ListComp:
            return self.eval_list_comp(e, env, b, ctx)
        if t is A.Range:
            lo, hi = self.eval(e.start, env, b, ctx), self.eval(e.stop, env, b, ctx)
            step = 1 if e.step is None else self.eval(e.step, env, b, ctx)
            if not _is_int(lo) or not _is_int(hi) or not _is_int(step):
                raise LoweringError("range bounds must be known when lowering", e.span)
            if step == 0:
                raise LoweringError("a range step cannot be zero", e.span)
            if e.inclusive:
                hi += 1 if step > 0 else -1
            return RangeV(lo, hi, step)
        raise LoweringError(f"cannot lower a `{t.__name__}` expression", getattr(e, "span", None))

    def eval_list_comp(self, e: A.ListComp, env: dict[str, Any], b: Builder, ctx: FnCtx) -> Any:
        it = self.eval(e.iter, env, b, ctx)
        if isinstance(it, RangeV):
            seq: list[Any] = list(it.values()) if len(it.values()) <= bounds.MAX_SEQUENCE \
                else None
        elif isinstance(it, list | tuple):
            seq = list(it)
        else:
            seq = None
        if seq is None:
            raise LoweringError("a list comprehension needs a list or range known when "
                                "lowering", e.iter.span)
        out: list[Any] = []
        for item in seq:
            inner = dict(env)
            if e.vars is None:
                inner[e.var] = item
            else:
                inner.update(zip(e.vars, self.unpacked(item, len(e.vars), e.iter.span)))
            if e.cond is not None:
                truth = self.const_truth(self.eval(e.cond, inner, b, ctx))
                if truth is None:
                    raise LoweringError("a list comprehension's condition must be known when "
                                        "lowering", e.cond.span)
                if not truth:
                    continue
            out.append(self.eval(e.elt, inner, b, ctx))
        return out

    def eval_block_value(self, e: A.Expr, env: dict[str, Any], b: Builder, ctx: FnCtx) -> Any:
        """`{ … v }` and `if c { … a } else { … b }` as values: a condition known when
        lowering picks its block; otherwise both blocks are computed and selected from."""
        if isinstance(e, A.BlockExpr):
            if self.lower_stmts(list(e.body), env, b, ctx) is not None:
                raise LoweringError("a block used as a value cannot return", e.span)
            return self.eval_block_value(e.value, env, b, ctx)
        if not isinstance(e, A.IfExpr):
            return self.eval(e, env, b, ctx)
        form = self.result.call_forms.get(e.span)
        if form in ("where", "where_trit"):   # a tensor condition (checker.select_forms)
            c = self.to_value(b, self.eval(e.cond, env, b, ctx), None, e.cond.span)
            xv, yv = self.operands(b, self.eval_block_value(e.then, env, b, ctx),
                                   self.eval_block_value(e.other, env, b, ctx), e.span)
            out = b.select(c, xv, yv)
            return b.cast(out, dtype="i8") if form == "where_trit" else out
        c = self.eval(e.cond, env, b, ctx)
        truth = self.const_truth(c)
        if truth is not None:
            return self.eval_block_value(e.then if truth else e.other, env, b, ctx)
        cond = self.to_bool(b, c, e.cond.span)
        env1, env2 = dict(env), dict(env)
        x = self.eval_block_value(e.then, env1, b, ctx)
        y = self.eval_block_value(e.other, env2, b, ctx)
        for n in set(env1) | set(env2):
            if env1.get(n) is not env.get(n) or env2.get(n) is not env.get(n):
                env[n] = Undef(n, "it is assigned in a block of an `if` value whose "
                                  "condition is known only at run time")
        xv, yv = self.operands(b, x, y, e.span)
        return b.select(cond, xv, yv)

    def eval_binary(self, e: A.Binary, env: dict[str, Any], b: Builder, ctx: FnCtx) -> Any:
        op = e.op
        if op in ("and", "or"):
            x = self.eval(e.left, env, b, ctx)
            tx = self.const_truth(x)
            if tx is not None:
                if (op == "and" and not tx) or (op == "or" and tx):
                    return tx
                y = self.eval(e.right, env, b, ctx)
                ty = self.const_truth(y)
                return ty if ty is not None else self.to_bool(b, y, e.right.span)
            y = self.eval(e.right, env, b, ctx)
            ty = self.const_truth(y)
            xb = self.to_bool(b, x, e.left.span)
            if ty is not None:
                if (op == "and" and ty) or (op == "or" and not ty):
                    return xb
                return ty
            yb = self.to_bool(b, y, e.right.span)
            return b.logical_and(xb, yb) if op == "and" else b.logical_or(xb, yb)
        x = self.eval(e.left, env, b, ctx)
        y = self.eval(e.right, env, b, ctx)
        if op == "/" and self.result.call_forms.get(e.span) == "int_div":
            op = "//"   # `n: int = a / b`: the seed's integer division (checker.int_division)
        if op == "*" and self.result.call_forms.get(e.span) == "repeat_floor":
            x, y = floor_count(x, y)   # `[x] * n` with a float n (decl.py)
        power = self.result.call_forms.get(e.span) if op == "**" else None
        if power == "float_pow":
            x = self.as_float(b, x, e.span)   # `d ** k` of ints typed float (checker.powers)
        r = self.binary(op, x, y, b, e.span)
        if power == "int_pow" and isinstance(r, float):
            r = int(r)   # `n: int = 2 ** k` stays an int: truncated, as the generated int(…)
        return r

    def as_float(self, b: Builder, x: Any, span: Span | None) -> Any:
        """The number `x` as a float (a Python float, or an f32 scalar value)."""
        if _is_num(x) or isinstance(x, bool):
            return float(x)
        v = self.to_value(b, x, None, span)
        return v if v.type.dtype in FLOAT_DTYPES else b.op("cast", v, dtype="f32")

    def binary(self, op: str, x: Any, y: Any, b: Builder, span: Span | None) -> Any:
        if op in ("is", "is not"):
            same = self.is_same(x, y, span)
            return same if op == "is" else not same
        if op in ("in", "not in"):
            if isinstance(y, list | dict | str) and _is_const(x):
                r = x in y
                return r if op == "in" else not r
            raise LoweringError(f"`{op}` needs values known when lowering", span)
        consts = (_is_num(x) or isinstance(x, bool)) and (_is_num(y) or isinstance(y, bool))
        if consts:
            return _py_binary(op, x, y, span)
        if op == "*" and (isinstance(x, list) and _is_int(y) or isinstance(y, list) and _is_int(x)):
            lst, n = (x, y) if isinstance(x, list) else (y, x)
            if len(lst) * max(n, 0) > bounds.MAX_SEQUENCE:
                raise LoweringError(f"a list longer than {bounds.MAX_SEQUENCE} at compile time",
                                    span)
            return lst * n
        if isinstance(x, str) and isinstance(y, str) or isinstance(x, list) and isinstance(y, list):
            if op == "+":
                if len(x) + len(y) > bounds.MAX_SEQUENCE:
                    raise LoweringError(f"a list or string longer than {bounds.MAX_SEQUENCE} "
                                        f"at compile time", span)
                return x + y
            if op in ("==", "!="):
                return (x == y) == (op == "==")
        if x is None or y is None or isinstance(x, str) or isinstance(y, str):
            if op in ("==", "!="):
                return (x == y) == (op == "==") if _is_const(x) and _is_const(y) else op == "!="
        if op == "%":   # Python's and torch's modulo (the divisor's sign): x - floor(x / y) * y
            xv, yv = self.operands(b, x, y, span)
            return b.op("sub", xv, b.op("mul", b.floordiv(xv, yv), yv))
        if op == "//":
            xv, yv = self.operands(b, x, y, span)
            return b.floordiv(xv, yv)
        if op == "**" and isinstance(x, Value) and isinstance(x.type, TensorType) and \
                x.type.dtype in _INTEGRAL and _is_int(y) and not isinstance(y, bool) and y < 0:
            raise LoweringError(f"an integer tensor ({_LANG_DTYPES.get(x.type.dtype)}) to a "
                                f"negative integer "
                                f"power ({y}) has no value (PyTorch refuses it)", span,
                                help=f"make the base a float (`float32(x) ** {y}`) or the "
                                     f"exponent (`** {y}.0`)")
        if op not in _BINOPS:
            raise LoweringError(f"cannot lower the operator `{op}`", span)
        xv, yv = self.operands(b, x, y, span)
        return b.op(_BINOPS[op], xv, yv)

    def is_same(self, x: Any, y: Any, span: Span | None) -> bool:
        for a, c in ((x, y), (y, x)):
            if c is None and isinstance(a, LayerRef):
                return not a.inst.present
            if c is None and isinstance(a, Value | SymDim | FnRef):
                return False
        if _is_const(x) and _is_const(y):
            return x is y or x == y and type(x) is type(y)
        raise LoweringError("`is` is only supported against None or constants", span)

    def operands(self, b: Builder, x: Any, y: Any, span: Span | None) -> tuple[Value, Value]:
        xi = x if isinstance(x, Value) else None
        yi = y if isinstance(y, Value) else None
        xv = self.to_value(b, x, yi, span)
        yv = self.to_value(b, y, xi or xv, span)
        return xv, yv

    def to_value(self, b: Builder, v: Any, like: Value | None, span: Span | None) -> Value:
        if isinstance(v, Value):
            return v
        if isinstance(v, SymDim):
            return b.dim(v.src, dim=v.dim)
        if isinstance(v, bool):
            return b.constant(v, ScalarType("bool"))
        if _is_int(v):
            if like is not None and isinstance(like.type, ScalarType) and like.type.dtype in (
                    "f32", "f16", "f64"):
                return b.constant(float(v), ScalarType(like.type.dtype))
            if like is not None and like.type.dtype == "i32":
                return b.constant(v, ScalarType("i32"))
            return b.constant(v, ScalarType("i64"))
        if isinstance(v, float):
            if like is not None and isinstance(like.type, ScalarType) and like.type.dtype == "f16":
                return b.constant(v, ScalarType("f16"))
            return b.constant(v, ScalarType("f32"))
        if isinstance(v, list) and v and all(_is_num(x) for x in _flat(v)):
            flat = _flat(v)
            shape = _list_shape(v)
            if shape is None:
                raise LoweringError("a nested list literal must be rectangular", span)
            fl = any(isinstance(x, float) for x in flat)
            return b.constant([float(x) if fl else int(x) for x in flat],
                              TensorType(tuple(shape), "f32" if fl else "i64"))
        what = {LayerRef: "a layer", FnRef: "a function", RangeV: "a range"}.get(type(v))
        raise LoweringError(f"{what or repr(v)} cannot be used as a run-time value", span)

    def to_bool(self, b: Builder, v: Any, span: Span | None) -> Value:
        x = self.to_value(b, v, None, span)
        t = x.type
        if isinstance(t, TensorType) and t.rank != 0:
            raise LoweringError(f"a condition must be a scalar, got {t}", span,
                                help="reduce the tensor first, e.g. `sum(x) > 0`")
        if t.dtype == "bool":
            return x
        zero = self.to_value(b, 0.0 if t.dtype in FLOAT_DTYPES else 0, None, span)
        return b.ne(x, zero)

    # ------------------------------------------------------------------ indexing, attributes
    def eval_index(self, e: A.Index, env: dict[str, Any], b: Builder, ctx: FnCtx) -> Any:
        base = self.eval(e.value, env, b, ctx)
        if isinstance(base, list | dict | str):
            if len(e.indices) != 1:
                raise LoweringError("a list takes one index", e.span)
            i = e.indices[0]
            if isinstance(i, A.Slice) and isinstance(base, list | str):
                parts = [self.eval(p, env, b, ctx) if p is not None else None
                         for p in (i.start, i.stop, i.step)]
                if not all(p is None or _is_int(p) for p in parts):
                    raise LoweringError("list slice bounds must be known", e.span)
                return base[slice(*parts)]
            k = self.eval(i, env, b, ctx)
            try:
                return base[k]
            except (IndexError, KeyError, TypeError):
                raise LoweringError(f"index {k!r} is out of range", e.span) from None
        if not isinstance(base, Value) or not isinstance(base.type, TensorType):
            raise LoweringError("only tensors and lists can be indexed", e.span)
        x = base
        pos = 0
        for i in e.indices:
            if isinstance(i, A.Slice):
                parts = [self.eval(p, env, b, ctx) if p is not None else None
                         for p in (i.start, i.stop, i.step)]
                if not all(p is None or _is_int(p) for p in parts):
                    raise LoweringError("slice bounds must be known when lowering", i.span)
                start, stop, step = parts
                if not (start in (None, 0) and stop is None and step in (None, 1)):
                    attrs: dict[str, Any] = {"dim": pos, "start": start or 0}
                    if stop is not None:
                        attrs["end"] = stop
                    if step is not None:
                        attrs["step"] = step
                    x = b.slice(x, **attrs)
                pos += 1
            else:
                k = self.eval(i, env, b, ctx)
                if not _is_int(k):
                    raise LoweringError("tensor indices must be integers known when lowering",
                                        getattr(i, "span", e.span))
                x = b.index(x, dim=pos, index=k)
        return x

    def eval_attr(self, e: A.Attr, env: dict[str, Any], b: Builder, ctx: FnCtx) -> Any:
        special = dtype_constant(e)
        if special is not None and e.value.id not in env:
            return special
        if isinstance(e.value, A.Name) and e.value.id == "self" and "self" not in env:
            # the IR is the inference graph: `self.training` is false; `self.fc` is `fc`
            if e.attr == "training":
                return False
            return self.eval(A.Name(e.attr, e.span), env, b, ctx)
        base = self.eval(e.value, env, b, ctx)
        if isinstance(base, dict) and e.attr in base:
            return base[e.attr]
        if isinstance(base, Value) and isinstance(base.type, TensorType):
            t = base.type
            if e.attr == "shape":
                return [d if _is_int(d) else SymDim(base, i, d) for i, d in enumerate(t.shape)]
            if e.attr == "ndim":
                return t.rank
            if e.attr == "T":
                return b.transpose(base, dim0=-2, dim1=-1) if t.rank >= 2 else base
            if e.attr == "dtype":
                return _LANG_DTYPES.get(t.dtype, t.dtype)
        raise LoweringError(f"cannot lower the attribute `.{e.attr}` here", e.span)

    # ------------------------------------------------------------------ calls
    def eval_call(self, e: A.Call, env: dict[str, Any], b: Builder, ctx: FnCtx) -> Any:
        f = e.func
        if isinstance(f, A.Index) and isinstance(f.value, A.Name) and f.value.id in (
                "Tensor", "TernaryTensor"):
            return self.tensor_literal(f, e, env, b, ctx)
        if isinstance(f, A.TypeValue):   # `Tensor<int32, [2, 2]>()`: zeros (decl.py)
            form = self.result.call_forms.get(e.span)
            if not isinstance(form, ZerosForm):
                raise LoweringError("a tensor type is not a value", e.span)
            return lower_zeros(self, form, env, b, ctx, e.span)
        args = [(a.name, self.eval(a.value, env, b, ctx)) for a in e.args]
        if isinstance(f, A.Attr):
            base = self.eval(f.value, env, b, ctx)
            if isinstance(base, Value) and f.attr == "size":
                if not args:
                    return self.eval_attr(A.Attr(f.value, "shape", f.span), env, b, ctx)
                k = args[0][1]
                t = base.type
                if not _is_int(k) or not isinstance(t, TensorType):
                    raise LoweringError("`size` needs a known dim", e.span)
                d = t.shape[k]
                return d if _is_int(d) else SymDim(base, k % t.rank, d)
            if isinstance(base, list) and self.result.call_forms.get(f.span) == "list_tensor":
                base = self.builtin("tensor", [(None, base), ("dtype", "float32")], b, f.span,
                                    ctx)   # `xs.reshape(s)`: the list as a tensor (decl.py)
            if isinstance(base, list) and f.attr in LIST_METHODS:
                return call_list_method(base, f.attr, args, e.span)
            if isinstance(base, Value) and f.attr in FUNCTIONS:
                return self.builtin(f.attr, [(None, base), *args], b, e.span, ctx)
            if f.attr == "register_hook":   # a gradient hook: nothing to do in inference
                return None
            raise LoweringError(f"cannot lower the method `.{f.attr}(…)`", f.span)
        if not isinstance(f, A.Name):
            raise LoweringError("only named functions and layers can be called", e.span)
        v = env.get(f.id)
        if isinstance(v, LayerRef):
            assert ctx.build is not None
            return self.apply_layer(ctx.build, v.inst, [a for _, a in args], b, e.span)
        if v is not None and not isinstance(v, FnRef):
            raise LoweringError(f"`{f.id}` is not a layer or function", f.span)
        # a variable holding a function (`f: fn(int) -> int`) calls the function it names
        fid = v.name if isinstance(v, FnRef) else f.id
        d = self.result.definitions.get(fid)
        if d is not None and d.kind == "fn":
            bound = list(v.bound) if isinstance(v, FnRef) else []   # a closure's values
            given = ordered_args(self, d.node, args, b, ctx, e.span,
                                 len(d.node.params) - len(bound))   # named: by name
            return self.call_user_fn(d, given + bound, b, e.span, ctx)
        if d is not None and self.result.call_forms.get(e.span) == "construct":
            raise LoweringError(f"`{fid}(…)` constructs a layer, which has no IR form in a "
                                f"function body", e.span,
                                help=f"declare it in the model: `layer m: {fid} {{ … }}`")
        if d is not None and callable_layer(d.node):   # `FC(w1, x)`: a pure function
            view = layer_as_function(d)
            return self.call_user_fn(view, ordered_args(self, view.node, args, b, ctx, e.span),
                                     b, e.span, ctx)
        if fid in FUNCTIONS:
            return self.builtin(fid, args, b, e.span, ctx)
        method = self.body_method(fid, ctx)
        if method is not None:   # a method of the layer (check.checker.layer_methods)
            return self.call_method(method, [a for _, a in args], b, e.span, ctx)
        raise LoweringError(f"cannot call `{f.id}`", f.span)

    @staticmethod
    def body_method(name: str, ctx: FnCtx) -> A.FnDef | None:
        if ctx.build is None:
            return None
        return next((i for i in getattr(ctx.build.d.node, "body", None) or ()
                     if isinstance(i, A.FnDef) and i.name == name and name != "forward"), None)

    def call_method(self, fn: A.FnDef, args: list[Any], b: Builder, span: Span | None,
                    ctx: FnCtx) -> Any:
        """A method called in a forward: its body lowered inline there, with the layer's
        names (its parameters, sub-layers and constants) and the arguments."""
        if len(args) > len(fn.params):
            raise LoweringError(f"`{fn.name}` takes {len(fn.params)} argument(s)", span)
        if ctx.depth >= MAX_DEPTH:
            raise LoweringError(f"`{fn.name}` calls itself too deeply", span)
        env = dict(ctx.build.env)
        for i, p in enumerate(fn.params):
            if i < len(args):
                env[p.name] = args[i]
            elif p.default is not None:
                env[p.name] = self.eval(p.default, {}, b, ctx)
            else:
                raise LoweringError(f"`{fn.name}` is missing its argument `{p.name}`", span)
        ret = self.lower_stmts(list(fn.body), env, b,
                               FnCtx(ctx.build, f"{ctx.what}.{fn.name}", ctx.depth + 1))
        return None if not ret else ret[0] if len(ret) == 1 else ret

    def tensor_literal(self, f: A.Index, e: A.Call, env: dict[str, Any], b: Builder,
                       ctx: FnCtx) -> Value:
        ternary = f.value.id == "TernaryTensor"  # type: ignore[attr-defined]
        dtype = "trit" if ternary else "f32"
        dims: list[int] = []
        for i in f.indices:
            if isinstance(i, A.Name) and i.id in _TENSOR_DTYPES and i.id not in env:
                dtype = "trit" if ternary else _TENSOR_DTYPES[i.id]
                continue
            d = self.eval(i, env, b, ctx)
            if not _is_int(d):
                raise LoweringError("a tensor literal needs static dims", e.span)
            dims.append(d)
        vals = _flat([self.eval(a.value, env, b, ctx) for a in e.args])
        if not all(_is_num(v) or isinstance(v, bool) for v in vals):
            raise LoweringError("tensor literal values must be numbers known when lowering", e.span)
        if math.prod(dims) != len(vals):
            raise LoweringError(f"a tensor literal of shape {dims} needs {math.prod(dims)} values",
                                e.span)
        data = [self.py_cast(v, dtype) for v in vals]
        return b.constant(data, TensorType(tuple(dims), dtype))

    def apply_layer(self, build: LayerBuild, inst: LayerInst, args: list[Any], b: Builder,
                    span: Span | None) -> Any:
        units = build.units.get(inst.name)
        if units is None or not inst.present:
            raise LoweringError(f"layer `{inst.name}` does not exist here: its condition is false",
                                span)
        cur: list[Any] = list(args)
        for u in units:
            if u.spec is not None:
                if len(cur) != 1:
                    raise LoweringError(f"layer `{inst.name}` takes 1 input, got {len(cur)}", span)
                x = self.to_value(b, cur[0], None, span)
                try:
                    cur = [self.apply_builtin(b, build.layer, u.path, u.spec, u.cfg, x, span)]
                except InferError as err:
                    raise LoweringError(f"layer `{u.path}` ({u.kind}): {err}", span) from None
            else:
                assert u.build is not None
                cur = self.call_layer(b, u, cur, span)
        return cur[0] if len(cur) == 1 else cur

    def call_layer(self, b: Builder, u: Unit, args: list[Any], span: Span | None) -> list[Value]:
        build = u.build
        assert build is not None
        vals: list[Value] = []
        for a in args:
            vals.append(self.to_value(b, a, None, span))
        f = self.ensure_forward(build, [v.type for v in vals], span)
        if len(vals) != len(f.args):
            raise LoweringError(f"layer `{u.path}` takes {len(f.args)} input(s), got {len(vals)}",
                                span)
        return self.emit_call(b, f, vals, span, u.path, f"layer `{u.path}`")

    def emit_call(self, b: Builder, f: Function, vals: list[Value], span: Span | None,
                  instance: str | None, what: str) -> list[Value]:
        sym: dict[str, Any] = {}
        args: list[Value] = []
        for v, formal in zip(vals, f.arg_types):
            if isinstance(formal, TensorType) and isinstance(v.type, TensorType):
                if v.type.dtype != formal.dtype:
                    v = b.cast(v, dtype=formal.dtype)
                if not types_compatible(v.type, formal):
                    raise LoweringError(f"{what} expects {formal}, got {v.type}", span)
                for fd, ad in zip(formal.shape, v.type.shape):
                    if isinstance(fd, str):
                        sym.setdefault(fd, ad)
            elif isinstance(formal, ScalarType):
                if v.type != formal:
                    v = b.cast(v, dtype=formal.dtype)
            else:
                raise LoweringError(f"{what} expects {formal}, got {v.type}", span)
            args.append(v)
        rtypes = [t if not isinstance(t, TensorType) else t.with_shape(
            tuple(sym.get(d) if isinstance(d, str) else d for d in t.shape)) for t in f.result_types]
        return b.call(f.name, args, rtypes, instance=instance)

    def call_user_fn(self, d: Definition, args: list[Any], b: Builder, span: Span | None,
                     ctx: FnCtx) -> Any:
        fn: A.FnDef = d.node  # type: ignore[assignment]
        if len(args) > len(fn.params):
            raise LoweringError(f"`{fn.name}` takes {len(fn.params)} argument(s)", span)
        args = list_arguments(fn, list(args), span)
        if fn.ret is not None and fn.ret.name == "None" and fn.ret.args is None:
            # a `-> void` / `-> None` function: its only effects (`print`) have no IR
            return None
        full = list(args)
        for p in fn.params[len(args):]:
            if p.default is None:
                raise LoweringError(f"`{fn.name}` is missing its argument `{p.name}`", span)
            full.append(self.eval(p.default, {}, b, ctx))
        if ctx.build is not None and any(isinstance(a, LayerRef) or isinstance(a, list) and any(
                isinstance(i, LayerRef) for i in a) for a in full):   # a layer or list of them
            # given a layer (a local function of a forward that calls one): lowered inline,
            # in the forward, where the layer's parameters are
            if ctx.depth >= MAX_DEPTH:
                raise LoweringError(f"`{fn.name}` calls itself too deeply", span)
            ret = self.lower_stmts(list(fn.body), {p.name: a for p, a in zip(fn.params, full)},
                                   b, FnCtx(ctx.build, fn.name, ctx.depth + 1))
            return None if not ret else ret[0] if len(ret) == 1 else ret
        key_parts: list[Any] = [fn.name]
        dyn_params: list[A.ParamSpec] = []
        dyn_args: list[Value] = []
        env: dict[str, Any] = {}
        for p, a in zip(fn.params, full):
            if isinstance(a, Value | SymDim):
                v = self.to_value(b, a, None, span)
                dyn_params.append(p)
                dyn_args.append(v)
                key_parts.append(("dyn", str(v.type)))
            elif _is_const(a) or isinstance(a, list):
                env[p.name] = a
                key_parts.append(_freeze(a))
            elif isinstance(a, FnRef):
                # a function argument: one specialization per function passed (and per
                # value a closure binds: only values known when lowering cross functions)
                if not all(_is_const(c) or isinstance(c, list) for c in a.bound):
                    raise LoweringError(f"a closure reading run-time values cannot be passed "
                                        f"to `{fn.name}` in IR", span,
                                        help="the PyTorch backend compiles it; for the IR, "
                                             "pass those values as parameters")
                env[p.name] = a
                key_parts.append(("fn", a.name, *(_freeze(c) for c in a.bound)))
            else:
                raise LoweringError(f"cannot pass {a!r} to `{fn.name}`", span)
        key = tuple(key_parts)
        if key not in self.fns:
            if ctx.depth >= MAX_DEPTH:
                raise LoweringError(f"`{fn.name}` calls itself too deeply", span)
            sub = FnCtx(None, fn.name, ctx.depth + 1)
            if not dyn_args:
                try:
                    ret = self.lower_stmts(list(fn.body), dict(env), _ScratchBuilder(), sub)
                except _WouldEmit:
                    ret = None
                if ret is not None and all(_is_const(r) or isinstance(r, list) for r in ret):
                    self.fns[key] = ("", None, ret)
                    return fresh_lists(ret[0] if len(ret) == 1 else ret)
            name = fn.name
            n = 2
            while name in self.fn_names:
                name = f"{fn.name}__{n}"
                n += 1
            self.fn_names.add(name)
            f = self.lower_function(name, fn, dyn_params,
                                    [(p.name, v.type) for p, v in zip(dyn_params, dyn_args)],
                                    env, sub)
            self.fns[key] = (name, f, [])
            self.fn_order.append(f)
        name, f, consts = self.fns[key]
        if f is None:   # a list result is the caller's own (it may change it)
            return fresh_lists(consts[0] if len(consts) == 1 else consts)
        res = self.emit_call(b, f, dyn_args, span, None, f"function `{fn.name}`")
        return res[0] if len(res) == 1 else res
