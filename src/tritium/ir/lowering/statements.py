"""Lowering statements to SSA: assignments, `if` (a branch known when lowering, else a
structured IR `if` whose branches yield the variables they change), unrolled `for` loops,
`return`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ... import vocab
from ...check import bounds
from ...frontend import ast as A
from ...frontend.diagnostics import Span
from ..builder import Builder
from ..core import Op, Value
from ..ops import InferError
from ..types import FLOAT_DTYPES, ScalarType, TensorType, Type, promote
from .values import (
    _MISSING,
    MAX_UNROLL,
    FnCtx,
    LayerRef,
    LoweringError,
    RangeV,
    StateRef,
    SymDim,
    Undef,
    _block,
    _contains_return,
    _is_const,
    _is_int,
    _is_num,
    _join_types,
    _node_count,
    _SetVar,
)


def dict_item_target(lw, s: A.Assign, env: dict[str, Any], b: Builder, ctx: FnCtx) -> bool:
    """`d[k] = v` / `d[k] += v` where `d` names a dict known when lowering: a new dict with
    the item set (dicts are compile-time values here). Returns whether it was one."""
    t = s.target
    if not (isinstance(t, A.Index) and isinstance(t.value, A.Name) and len(t.indices) == 1
            and isinstance(env.get(t.value.id), dict)):
        return False
    d = env[t.value.id]
    key = lw.eval(t.indices[0], env, b, ctx)
    if not isinstance(key, str | int | float | bool):
        raise LoweringError("a dict key must be known when lowering", t.span)
    v = lw.eval(s.value, env, b, ctx)
    if s.op != "=":
        if key not in d:
            raise LoweringError(f"the dict has no key {key!r}", t.span)
        v = lw.binary(s.op[:-1], d[key], v, b, s.span)
    env[t.value.id] = {**d, key: v}
    return True


class _IterEnd:
    """Work-list marker: the end of one unrolled iteration (where `continue` goes)."""


class _LoopEnd:
    """Work-list marker: the end of an unrolled loop (where `break` goes)."""


class _WhileAgain:
    """Work-list item: test a `while` condition again, after `done` iterations."""

    def __init__(self, node: A.While, done: int) -> None:
        self.node, self.done = node, done
        self.span = node.span


class StatementsMixin:
    # ------------------------------------------------------------------ statements
    def lower_stmts(self, stmts: list[Any], env: dict[str, Any], b: Builder,
                    ctx: FnCtx) -> list[Any] | None:
        work = list(stmts)
        while work:
            s = work.pop(0)
            try:
                r = self.lower_stmt(s, work, env, b, ctx)
            except (InferError, ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
                raise LoweringError(f"cannot lower this statement: {e}",
                                    getattr(s, "span", None)) from None
            if r is not None:
                return r
        return None

    def lower_stmt(self, s: Any, work: list[Any], env: dict[str, Any], b: Builder,
                   ctx: FnCtx) -> list[Any] | None:
        if isinstance(s, _SetVar):
            env[s.name] = s.value
        elif isinstance(s, A.Let) and s.value is None:
            env[s.name] = Undef(s.name, "it is declared without a value and not assigned yet")
        elif isinstance(s, A.Let):
            env[s.name] = self.coerce_decl(self.eval(s.value, env, b, ctx), s.type)
        elif isinstance(s, A.Assign) and dict_item_target(self, s, env, b, ctx):
            pass   # `d["k"] = v` on a dict known when lowering (its value is updated)
        elif isinstance(s, A.Assign):
            if not isinstance(s.target, A.Name):
                raise LoweringError("assignment to an element or attribute is not supported",
                                    s.span, help="build a new tensor instead")
            v = self.eval(s.value, env, b, ctx)
            if s.op != "=":
                cur = self.lookup(s.target.id, env, b, ctx, s.target.span)
                v = self.binary(s.op[:-1], cur, v, b, s.span)
            if not isinstance(env.get(s.target.id), StateRef):   # no update in inference
                env[s.target.id] = v
        elif isinstance(s, A.Return):
            if s.value is None:
                return []
            v = self.eval(s.value, env, b, ctx)
            return list(v) if isinstance(v, list | tuple) else [v]
        elif isinstance(s, A.ExprStmt):
            v = s.value
            if isinstance(v, A.Call) and isinstance(v.func, A.Name) and v.func.id == "print":
                return None
            self.eval(v, env, b, ctx)
        elif isinstance(s, A.If):
            return self.lower_if(s, work, env, b, ctx)
        elif isinstance(s, A.For):
            it = self.eval(s.iter, env, b, ctx)
            if isinstance(it, RangeV):
                seq: Sequence[Any] = it.values()
            elif isinstance(it, list):
                seq = it
            elif _is_int(it):
                seq = range(it)
            else:
                raise LoweringError("a `for` loop needs a range known when lowering", s.iter.span)
            if len(seq) > MAX_UNROLL:
                raise LoweringError(f"a loop of {len(seq)} iterations is too long to unroll",
                                    s.span)
            self.unrolled += len(seq) * _node_count(s.body)
            if self.unrolled > bounds.MAX_UNROLLED:
                raise LoweringError(f"the loops unroll to more than {bounds.MAX_UNROLLED} "
                                    f"expression nodes in all", s.span,
                                    help="nested loops multiply; use fewer or shorter loops")
            items: list[Any] = list(seq)
            expanded: list[Any] = []
            for i in items:
                if s.vars is None:
                    expanded.append(_SetVar(s.var, i, s.span))
                else:
                    expanded.extend(_SetVar(n, x, s.span) for n, x in
                                    zip(s.vars, self.unpacked(i, len(s.vars), s.iter.span)))
                expanded.extend(s.body)
                expanded.append(_IterEnd())
            expanded.append(_LoopEnd())
            work[0:0] = expanded
        elif isinstance(s, A.While):
            self.lower_while(s, 0, work, env, b, ctx)
        elif isinstance(s, A.With):   # `with no_grad()`: the IR computes no gradients
            work[0:0] = list(s.body)
        elif isinstance(s, A.Unpack):
            v = self.eval(s.value, env, b, ctx)
            for name, part in zip(s.targets, self.unpacked(v, len(s.targets), s.value.span)):
                env[name] = part
        elif isinstance(s, _WhileAgain):
            self.lower_while(s.node, s.done, work, env, b, ctx)
        elif isinstance(s, _IterEnd | _LoopEnd | A.Pass):
            pass
        elif isinstance(s, A.Break | A.Continue):
            stops = (_LoopEnd,) if isinstance(s, A.Break) else (_IterEnd, _LoopEnd)
            while work and not isinstance(work[0], stops):
                work.pop(0)
            if not work:
                raise LoweringError(f"`{'break' if isinstance(s, A.Break) else 'continue'}` "
                                    f"under a condition known only at run time cannot be "
                                    f"lowered to IR (loops are unrolled)", s.span,
                                    help="the PyTorch backend compiles it")
            if isinstance(s, A.Break):
                work.pop(0)
        elif isinstance(s, A.Assert):
            c = self.eval(s.cond, env, b, ctx)
            if self.const_truth(c) is False:
                raise LoweringError("this assertion is false", s.cond.span)
            # an assertion on run-time values is checked by the PyTorch module only
        elif isinstance(s, A.FnDef | A.Import):
            raise LoweringError("a definition cannot appear inside a function", s.span)
        else:
            raise LoweringError(f"cannot lower a `{type(s).__name__}` statement",
                                getattr(s, "span", None))
        return None

    @staticmethod
    def unpacked(v: Any, n: int, span: Span | None) -> list[Any]:
        if not isinstance(v, list | tuple) or len(v) != n:
            raise LoweringError(f"cannot unpack this value into {n} names (a list or tuple of "
                                f"{n} known when lowering is needed)", span)
        return list(v)

    def lower_while(self, s: A.While, done: int, work: list[Any], env: dict[str, Any],
                    b: Builder, ctx: FnCtx) -> None:
        """One iteration of a `while` whose condition is known when lowering: its body, then
        the loop again (at most `MAX_UNROLL` iterations of one loop)."""
        truth = self.const_truth(self.eval(s.cond, env, b, ctx))
        if truth is None:
            raise LoweringError("a `while` loop whose condition is known only at run time "
                                "cannot be lowered to IR (loops are unrolled)", s.cond.span,
                                help="the PyTorch backend compiles it; for the IR, count "
                                     "with `for i in 0..n`")
        if not truth:
            return
        if done >= MAX_UNROLL:
            raise LoweringError(f"a `while` loop of more than {MAX_UNROLL} iterations is too "
                                f"long to unroll", s.span)
        self.unrolled += _node_count(s.body)
        if self.unrolled > bounds.MAX_UNROLLED:
            raise LoweringError(f"the loops unroll to more than {bounds.MAX_UNROLLED} "
                                f"expression nodes in all", s.span,
                                help="nested loops multiply; use fewer or shorter loops")
        work[0:0] = [*s.body, _IterEnd(), _WhileAgain(s, done + 1), _LoopEnd()]

    def coerce_decl(self, v: Any, te: A.TypeExpr | None) -> Any:
        if te is None:
            return v
        if _is_num(v) or isinstance(v, bool):
            if te.name in vocab.FLOAT_DTYPES:
                return float(v)
            if te.name in vocab.INT_DTYPES or te.name == "trit":
                return int(v)
        return v

    def const_truth(self, c: Any) -> bool | None:
        if isinstance(c, LayerRef):
            return bool(c.inst.present)
        if isinstance(c, Value | SymDim):
            return None
        if _is_const(c) or isinstance(c, list | dict):
            return bool(c)
        return None

    def lower_if(self, s: A.If, work: list[Any], env: dict[str, Any], b: Builder,
                 ctx: FnCtx) -> list[Any] | None:
        c = self.eval(s.cond, env, b, ctx)
        truth = self.const_truth(c)
        if truth is not None:
            work[0:0] = list(s.then if truth else (s.other or []))
            return None
        cond = self.to_bool(b, c, s.cond.span)
        op = b.create("if", [cond], {}, [], [_block(), _block()])
        tb, eb = Builder(op.regions[0]), Builder(op.regions[1])
        if _contains_return(s.then) or _contains_return(s.other or []):
            rest = list(work)
            work.clear()
            r1 = self.lower_stmts(list(s.then) + rest, dict(env), tb, ctx)
            r2 = self.lower_stmts(list(s.other or []) + rest, dict(env), eb, ctx)
            if r1 is None or r2 is None or len(r1) != len(r2):
                raise LoweringError("with a condition known only at run time, both branches "
                                    "must return the same number of values", s.span)
            return self.finish_if(op, tb, eb, r1, r2, s.span)
        env1, env2 = dict(env), dict(env)
        if self.lower_stmts(list(s.then), env1, tb, ctx) is not None or self.lower_stmts(
                list(s.other or []), env2, eb, ctx) is not None:
            raise LoweringError("internal error: unexpected return in a branch", s.span)
        names = [n for n in dict.fromkeys([*env1, *env2])
                 if env1.get(n, _MISSING) is not env.get(n, _MISSING)
                 or env2.get(n, _MISSING) is not env.get(n, _MISSING)]
        merge: list[str] = []
        a_vals: list[Any] = []
        b_vals: list[Any] = []
        for n in names:
            a, bb = env1.get(n, _MISSING), env2.get(n, _MISSING)
            if a is _MISSING or bb is _MISSING:
                env[n] = Undef(n, "it is assigned on only one branch of a run-time condition")
                continue
            if a is bb or (_is_const(a) and _is_const(bb) and type(a) is type(bb) and a == bb):
                env[n] = a
                continue
            if not self.yieldable(a) or not self.yieldable(bb):
                env[n] = Undef(n, "it gets different non-tensor values on the branches of a "
                                  "run-time condition")
                continue
            merge.append(n)
            a_vals.append(a)
            b_vals.append(bb)
        results = self.finish_if(op, tb, eb, a_vals, b_vals, s.span)
        for n, v in zip(merge, results):
            env[n] = v
        return None

    @staticmethod
    def yieldable(v: Any) -> bool:
        return isinstance(v, Value | SymDim) or (_is_const(v) and v is not None
                                                  and not isinstance(v, str))

    def finish_if(self, op: Op, tb: Builder, eb: Builder, a_vals: list[Any], b_vals: list[Any],
                  span: Span | None) -> list[Value]:
        ya: list[Value] = []
        yb: list[Value] = []
        types: list[Type] = []
        for a, bb in zip(a_vals, b_vals):
            va, vb = self.harmonize(tb, eb, a, bb, span)
            ya.append(va)
            yb.append(vb)
            types.append(_join_types(va.type, vb.type))
        tb.yield_(*ya)
        eb.yield_(*yb)
        op.results = [Value(t, op, i) for i, t in enumerate(types)]
        return list(op.results)

    def harmonize(self, tb: Builder, eb: Builder, a: Any, bb: Any,
                  span: Span | None) -> tuple[Value, Value]:
        a_ir = isinstance(a, Value | SymDim)
        b_ir = isinstance(bb, Value | SymDim)
        if a_ir:
            va = self.to_value(tb, a, None, span)
        if b_ir:
            vb = self.to_value(eb, bb, None, span)
        if not a_ir and not b_ir:
            va = self.to_value(tb, a, None, span)
            vb = self.to_value(eb, bb, None, span)
        elif not a_ir:
            va = self.const_like(tb, a, vb.type, span)
        elif not b_ir:
            vb = self.const_like(eb, bb, va.type, span)
        ta, tb_ = va.type, vb.type
        if isinstance(ta, TensorType) != isinstance(tb_, TensorType) or (
                isinstance(ta, TensorType) and isinstance(tb_, TensorType) and ta.rank != tb_.rank):
            raise LoweringError(f"the branches of a run-time condition give {ta} and {tb_}", span)
        if ta.dtype != tb_.dtype:
            dt = promote(ta.dtype, tb_.dtype)
            if ta.dtype != dt:
                va = tb.cast(va, dtype=dt)
            if tb_.dtype != dt:
                vb = eb.cast(vb, dtype=dt)
        return va, vb

    def const_like(self, b: Builder, c: Any, t: Type, span: Span | None) -> Value:
        if isinstance(t, ScalarType):
            return b.constant(self.py_cast(c, t.dtype), t)
        if isinstance(t, TensorType) and t.is_static:
            return b.constant(self.py_cast(c, t.dtype), t)
        raise LoweringError(f"a constant and a {t} cannot be merged by a run-time condition", span)

    @staticmethod
    def py_cast(c: Any, dtype: str) -> Any:
        if dtype == "bool":
            return bool(c)
        if dtype in FLOAT_DTYPES:
            return float(c)
        return int(c)
