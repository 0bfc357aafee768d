"""Functions and statements: binding inputs, checking returns, `let`, assignments, `if`
(both branches when the condition is not known), unrolled or abstract `for`, `return`."""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.diagnostics import Label, Span
from .. import bounds
from ..contexts import check_with
from ..types import (
    ANY,
    BOUNDS,
    DIM_BOUNDS,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    AnyT,
    DictT,
    Dim,
    FnSigT,
    LayerT,
    ListT,
    ModuleT,
    NoneT,
    RangeT,
    ScalarT,
    SymInt,
    TensorT,
    TupleT,
    TypeVarT,
    UnionT,
    Value,
    dims_conflict,
    join_types,
    shape_str,
    working_type,
)
from .decl_forms import float_type_into_ternary
from .dict_items import assign_dict_item
from .generics import bind_call
from .int_division import mark_int_divisions
from .layer_values import assign_layer_attr, loop_item
from .model import (
    GENERATE_CODES,
    MAX_UNROLL,
    LayerInst,
    Scope,
    UserParam,
    _Abort,
    _is_int,
    form_b_inputs,
    form_b_weight,
)
from .pair_quantizers import pair_quantizer_value
from .stubs import is_stub


class _LoopExit(Exception):
    """A `break` or `continue` the checker executes; the innermost loop catches it."""

    def __init__(self, kind: str):
        self.kind = kind
        super().__init__(kind)


class FunctionsMixin:
    # ------------------------------------------------------------------ functions
    def check_function(self, fn: A.FnDef, outer: Scope, layers: dict[str, LayerInst],
                       inputs: list[Value] | None = None, form_b: bool = False) -> Value:
        if fn.broken:   # its syntax error is reported; nothing in it is checked (no cascade)
            return Value(self.type_from_expr(fn.ret, Scope()) if fn.ret else ANY)
        saved_tvars = getattr(self, "type_vars", {})
        try:
            if fn.type_params is not None:
                self.type_vars = self.fn_type_vars(fn, inputs, form_b)
            return self._check_function(fn, outer, layers, inputs, form_b)
        finally:
            self.type_vars = saved_tvars

    def fn_type_vars(self, fn: A.FnDef, inputs: list[Value] | None,
                     form_b: bool = False) -> dict:
        """The type parameters of `fn` inside its body: bound from the inputs of one call, or
        abstract (TypeVarT) when the body is checked on its own."""
        if inputs is None:
            for tp in fn.type_params or []:
                for b in tp.bounds:
                    if b not in BOUNDS and b not in DIM_BOUNDS:
                        self.report("E0843", f"unknown bound `{b}` on the type parameter "
                                             f"`{tp.name}` of `{fn.name}`", tp.span,
                                    help="the bounds are " + ", ".join(f"`{k}`" for k in BOUNDS))
            return {tp.name: TypeVarT(tp.name, "+".join(tp.bounds) or None)
                    for tp in fn.type_params or []}
        return self.bind_type_params(fn, inputs, [None] * len(inputs), fn.span,
                                     form_b_inputs(fn.params) if form_b else None)

    def layer_type_vars(self, node) -> dict:
        """The type parameters of a generic layer (`layer L<T: Float>(…)`) in its body: a
        layer is built once for all calls, so they stay abstract (erased in the generated
        code; a tensor `Tensor<T, …>` is float32 unless T is bound). A bare `x: T` argument
        of a layer is E0843: its kind (weight, input, hyperparameter) would be unknown."""
        tps = getattr(node, "type_params", None)
        if not tps:
            return {}
        out = self.fn_type_vars(A.FnDef(node.name, [], None, [], node.span, tps), None)
        for p in getattr(node, "params", None) or []:
            if p.type is not None and p.type.name in out and p.type.args is None:
                self.report("E0843", f"the argument `{p.name}` of layer `{node.name}` has the "
                                     f"type parameter `{p.type.name}` as its type", p.span,
                            help=f"write a tensor type such as `Tensor<{p.type.name}, [...]>` "
                                 f"or a scalar type")
        return out

    def bind_type_params(self, fn: A.FnDef, args: list[Value], spans: list,
                         call_span: Span, params: list | None = None) -> dict:
        """The type parameters of one call, bound by unification (checker.generics)."""
        return bind_call(self, fn, args, spans, call_span, params)

    def check_default(self, p: A.ParamSpec, declared, outer: Scope) -> None:
        """A parameter's default is a value of its declared type (`None` stands for none
        given), checked as an argument is (E0401, E0404; its value as the calls see it)."""
        v = self.eval_expr(p.default, Scope(dict(outer.vars), {}, set()))
        if p.type is None or isinstance(v.ty, NoneT):
            return
        if isinstance(declared, TensorT) and not isinstance(v.ty, TensorT | AnyT):
            self.report("E0404", f"the default of `{p.name}` must be {declared}, got {v.ty}",
                        p.default.span, label=f"not {declared}")
        elif not isinstance(declared, TensorT):
            self.check_assignable(declared, v, p.default.span, p.name)

    def _check_function(self, fn: A.FnDef, outer: Scope, layers: dict[str, LayerInst],
                        inputs: list[Value] | None = None, form_b: bool = False) -> Value:
        scope = Scope(dict(outer.vars), {}, set())
        bindings: dict[str, Dim] = {}
        params = fn.params
        if form_b:
            # form (b): TernaryTensor args are weights, scalars hyperparameters, rest inputs
            weights = [p for p in params if form_b_weight(p)]
            for p in weights:
                scope.vars[p.name] = Value(self.type_from_expr(p.type, scope))
                scope.used.add(p.name)
            params = form_b_inputs(params)
        if inputs is not None and len(inputs) != len(params):
            self.report("E0306", f"`{fn.name}` takes {len(params)} input(s), got {len(inputs)}",
                        fn.span)
            return Value(ANY)
        for i, p in enumerate(params):
            declared = self.type_from_expr(p.type, scope) if p.type else ANY
            if inputs is not None:
                actual = inputs[i]
                self.bind_input(p, declared, actual, bindings)
                scope.vars[p.name] = actual if not isinstance(actual.ty, AnyT) else Value(
                    working_type(declared))
            else:
                if p.default is not None:   # checked against its type once, here
                    self.check_default(p, declared, outer)
                if isinstance(declared, ScalarT):
                    v = self.symbolic_param(UserParam(p.name, p.type, None, p.span))
                    scope.vars[p.name] = v
                else:
                    scope.vars[p.name] = Value(working_type(declared))
            scope.used.add(p.name)
        # the symbolic dims of the inputs (`batch`, `h`) are usable as values in the body
        for p in params:
            for dim in (p.type.shape or []) if p.type is not None else []:
                if isinstance(dim.value, str) and dim.value not in scope.vars:
                    bound = bindings.get(dim.value, dim.value)
                    scope.vars[dim.value] = (Value.of(bound) if _is_int(bound) else
                                             Value(INT, SymInt(bound) if bound else None))
                    scope.used.add(dim.value)
        ret_decl = self.type_from_expr(fn.ret, scope, bindings) if fn.ret else None
        saved_returns = getattr(self, "returns", [])
        saved_unassigned = getattr(self, "unassigned", {})
        saved_loops = getattr(self, "_loops_open", 0)
        saved_method = getattr(self, "_in_method", False)
        saved_outer = getattr(self, "_outer_values", None)
        saved_ret = getattr(self, "_ret_type", None)
        self._ret_type = fn.ret   # `-> int` makes `return a / b` an integer division
        self._outer_values = outer.vars   # the module's values, for list_methods
        self.returns = []
        self.unassigned = {}
        self._loops_open = 0    # a `break` in a called function is not the caller's
        top = self.defs.get(fn.name)
        self._in_method = not (top is not None and top.node is fn)   # `self` is the module
        try:
            self.exec_block(fn.body, scope)
        except _Abort:
            return Value(ANY)
        finally:
            rets = self.returns
            self.returns = saved_returns
            self.unassigned = saved_unassigned
            self._loops_open = saved_loops
            self._in_method = saved_method
            self._outer_values = saved_outer
            self._ret_type = saved_ret
        for name, span in scope.defined_at.items():
            if name not in scope.used and not name.startswith("_"):
                self.warn("W0001", f"variable `{name}` is assigned but never used", span,
                          help=f"remove it, or name it `_{name}` if it is intentional")
        if isinstance(ret_decl, NoneT):
            for v, span in rets:
                if not isinstance(v.ty, NoneT | AnyT):
                    self.report("E0401", f"`{fn.name}` returns {v.ty} but declares no result "
                                         f"(`-> {fn.ret.name if fn.ret else 'None'}`)", span,
                                secondary=[Label(fn.ret.span, "declared here")] if fn.ret else None,
                                help="remove the value or declare the return type")
        if ret_decl is not None and not isinstance(ret_decl, NoneT):
            if not rets and fn.body is not None and is_stub(fn):
                self.warn("W1040", f"`{fn.name}` declares a result but its body is only "
                                   f"`pass`: calling it is an error", fn.span,
                          help="write its body, or remove the return type")
            elif not rets and fn.body is not None:
                self.report("E0407", f"`{fn.name}` declares a return type but never returns",
                            fn.span, help="add a `return` statement")
            for v, span in rets:
                self.check_return(fn, ret_decl, v, span)
        if not rets:
            return Value(ret_decl or NoneT())
        result = rets[0][0].ty
        for v, _ in rets[1:]:
            result = join_types(result, v.ty)
        return Value(result, rets[0][0].const, len(rets) == 1 and rets[0][0].known)

    def bind_input(self, p: A.ParamSpec, declared, actual: Value, bindings: dict) -> None:
        if not isinstance(declared, TensorT) or not isinstance(actual.ty, TensorT):
            return
        if declared.shape is None or actual.ty.shape is None:
            return
        if len(declared.shape) != len(actual.ty.shape):
            self.report("E0507", f"`{p.name}` is declared as {declared} but the input has shape "
                                 f"{shape_str(actual.ty.shape)}", p.span)
            return
        for dd, ad in zip(declared.shape, actual.ty.shape):
            if isinstance(dd, str) and not isinstance(dd, SymInt):
                if dd in bindings and dims_conflict(bindings[dd], ad):
                    self.report("E0503", f"dim `{dd}` of `{p.name}` is {ad} here but "
                                         f"{bindings[dd]} elsewhere", p.span)
                bindings.setdefault(dd, ad)
            elif dims_conflict(dd, ad):
                self.report("E0503", f"`{p.name}` is declared as {declared} but the input has "
                                     f"shape {shape_str(actual.ty.shape)}", p.span)
                return

    def check_return(self, fn: A.FnDef, decl, v: Value, span: Span) -> None:
        got = v.ty
        if isinstance(got, AnyT) or isinstance(decl, AnyT):
            return
        if isinstance(decl, TensorT):
            if not isinstance(got, TensorT):
                if isinstance(got, ScalarT) and got.name in FLOAT_TYPES | INT_TYPES:
                    return
                self.report("E0401", f"`{fn.name}` returns {got} but declares {decl}", span,
                            secondary=[Label(fn.ret.span, "declared here")] if fn.ret else None)
                return
            if decl.shape is not None and got.shape is not None:
                if len(decl.shape) != len(got.shape) or any(
                        dims_conflict(a, b) for a, b in zip(decl.shape, got.shape)):
                    self.report("E0504", f"`{fn.name}` returns shape {shape_str(got.shape)} but "
                                         f"declares {shape_str(decl.shape)}", span,
                                label=f"this has shape {shape_str(got.shape)}",
                                secondary=[Label(fn.ret.span, "declared here")] if fn.ret else None,
                                help="change the declared return type or the last layer's output")
            return
        if isinstance(decl, ScalarT | ListT | TupleT | UnionT | FnSigT | ModuleT):
            self.check_assignable(decl, v, span, "the return value")

    # ------------------------------------------------------------------ statements
    def exec_block(self, stmts: list, scope: Scope) -> None:
        for i, s in enumerate(stmts):
            try:
                self.exec_stmt(s, scope)
            except _LoopExit:
                self.skipped_block(stmts[i + 1:], scope)   # after the `break`/`continue`
                raise

    def skipped_block(self, stmts: list, scope: Scope, loop: tuple | None = None) -> None:
        """Statements the evaluation does not reach (a branch or loop body its constants
        rule out, what follows a `break`): checked on a copy of the scope (with a loop's
        variables bound to `loop`'s value), keeping only the diagnostics the code generator
        depends on (`GENERATE_CODES`)."""
        if not stmts:
            return
        out = self.inner if self.quiet else self.diags
        start, returns = len(out), len(self.returns)
        unassigned = dict(self.unassigned)
        inner = Scope(dict(scope.vars), dict(scope.defined_at), scope.used)
        try:
            if loop is not None:
                self.bind_loop_vars(loop[0], loop[1], inner)
            self.exec_block(stmts, inner)
        except _LoopExit:
            pass
        finally:
            kept = [d for d in out[start:] if d.code in GENERATE_CODES]
            del out[start:]
            out.extend(kept)
            del self.returns[returns:]
            self.unassigned = unassigned

    def define(self, scope: Scope, name: str, v: Value, span: Span) -> None:
        if name not in scope.vars or name not in scope.defined_at:
            if name not in scope.used:
                scope.defined_at.setdefault(name, span)
        scope.vars[name] = v

    def eval_let(self, s: A.Let, scope: Scope) -> Value:
        """The value of `let name[: T] = e`, checked against and refined by T."""
        if s.value is None:
            # a declaration in a layer body: a tensor is a parameter with the default init
            ty = self.type_from_expr(s.type, scope)
            if not isinstance(ty, TensorT | AnyT):
                self.report("E0841", f"`let {s.name}: {ty}` in a layer body needs a value",
                            s.span, label="no value",
                            help=f"write `let {s.name}: {ty} = …`; only a tensor may be declared "
                                 f"without one (it is a parameter with the default init)")
            return Value(working_type(ty))
        mark_int_divisions(self, s.type, s.value)
        v = self.eval_expr(s.value, scope)
        float_type_into_ternary(self, s, v)   # `let w: TernaryTensor = Tensor<float32, …>`
        return self.assign_declared(s.name, s.type, v, s.value.span, scope)

    def assign_declared(self, name: str, te: A.TypeExpr | None, v: Value, span: Span,
                        scope: Scope) -> Value:
        """`v` stored in a variable declared with the type `te`: checked and refined."""
        if te is not None:
            ty = self.type_from_expr(te, scope)
            self.check_assignable(ty, v, span, name)
            if isinstance(ty, ScalarT):
                v = Value(ty, v.const, v.known)
            elif isinstance(ty, TensorT):
                v = Value(self.refine(ty, v.ty))
            elif isinstance(ty, ListT) and isinstance(v.ty, ListT) and v.ty.elem is None:
                v = Value(ty, v.const, v.known)
        return v

    def undefined(self, name: str, span: Span, scope: Scope) -> Value:
        pending = getattr(self, "unassigned", {}).get(name)
        if pending is not None:
            self.report("E0840", f"`{name}` is used before it is assigned", span,
                        label="no value on every path to here",
                        secondary=[Label(pending[1], f"`{name}` declared here without a value")],
                        help=f"assign `{name}` on every path before this use (in both branches "
                             f"of an `if`), or give the `let` a value")
            return Value(working_type(pending[0]))
        return super().undefined(name, span, scope)

    def exec_stmt(self, s, scope: Scope) -> None:
        # a block or `if` value with statements may stand only as a statement's whole value
        self._whole_value = s.value if isinstance(
            s, A.Let | A.Assign | A.Return | A.ExprStmt | A.Unpack) else None
        if isinstance(s, A.Let) and s.value is None:
            # `let x: T`: declared, assigned later (a use before that is E0840)
            ty = self.type_from_expr(s.type, scope)
            scope.vars.pop(s.name, None)
            self.unassigned[s.name] = (ty, s.span, s.type)
        elif isinstance(s, A.Let):
            self.unassigned.pop(s.name, None)
            self.define(scope, s.name, self.eval_let(s, scope), s.span)
        elif isinstance(s, A.Assign):
            pending_ty = getattr(self, "unassigned", {}).get(getattr(s.target, "id", None))
            if pending_ty is not None and s.op == "=":   # `let n: int` then `n = a / b`
                mark_int_divisions(self, pending_ty[2], s.value)
            v = self.eval_expr(s.value, scope)
            if isinstance(s.target, A.Name):
                name = s.target.id
                pending = self.unassigned.get(name)
                if pending is not None and s.op == "=" and name not in scope.vars:
                    v = self.assign_declared(name, pending[2], v, s.value.span, scope)
                if s.op != "=":
                    if name not in scope.vars:
                        self.undefined(name, s.target.span, scope)
                        return
                    scope.used.add(name)
                    v = self.binary(s.op[:-1], scope.vars[name], v, s)
                if name in scope.vars and isinstance(scope.vars[name].ty, LayerT) and \
                        s.op != "=":
                    self.report("E0205", f"cannot assign to layer `{name}`", s.target.span)
                    return
                # `qkv = qkv(x)`: from here on the name is this value (the layer is hidden)
                self.define(scope, name, v, s.span)
            elif not assign_layer_attr(self, s, v, scope) and \
                    not assign_dict_item(self, s, v, scope):   # `layer.weights = t`, `d[k] = v`
                self.eval_expr(s.target, scope)
        elif isinstance(s, A.Return):
            mark_int_divisions(self, getattr(self, "_ret_type", None), s.value)
            v = self.eval_expr(s.value, scope) if s.value is not None else Value(NoneT(), None, True)
            self.returns.append((v, s.value.span if s.value is not None else s.span))
        elif isinstance(s, A.ExprStmt):
            self.eval_expr(s.value, scope)
        elif isinstance(s, A.If):
            c = self.eval_expr(s.cond, scope)
            self.check_cond(c, s.cond.span)
            if c.known and not isinstance(c.const, SymInt):
                self.exec_block(s.then if c.const else (s.other or []), scope)
                self.skipped_block((s.other or []) if c.const else s.then, scope)
                return
            then_scope = Scope(dict(scope.vars), scope.defined_at, scope.used)
            self.exec_branch(s.then, then_scope)
            else_scope = Scope(dict(scope.vars), scope.defined_at, scope.used)
            if s.other:
                self.exec_branch(s.other, else_scope)
            for name in set(then_scope.vars) | set(else_scope.vars):
                a, b = then_scope.vars.get(name), else_scope.vars.get(name)
                if a is not None and b is not None:
                    scope.vars[name] = a if a is b else Value(join_types(a.ty, b.ty))
                elif name in self.unassigned and name not in scope.vars:
                    continue   # declared without a value and assigned on one branch only
                else:
                    scope.vars[name] = a or b
        elif isinstance(s, A.For):
            it = self.eval_expr(s.iter, scope)
            if not isinstance(it.ty, RangeT | ListT | AnyT | TensorT):
                self.report("E0404", f"cannot iterate over {it.ty}", s.iter.span,
                            help="write `for i in 0..n` or `for i in range(n)`")
            elems = self.elements(it) if isinstance(it.ty, ListT) else None
            if elems is not None:
                self.exec_for_items(s, elems, scope)
                return
            item = loop_item(it)   # a list of unknown length: its element type
            if item is None and isinstance(it.ty, AnyT):   # reported where it was made
                item = Value(ANY)
            n = it.const if it.known and isinstance(it.const, int) else None
            # Unroll known loops (the loop variable may feed shapes), but only the outermost
            # two levels: nested loops multiply, so inner ones run twice with an unknown index.
            exact = n is not None and n <= MAX_UNROLL and self._loop_depth < 2
            count = n if exact else (min(n, 2) if n is not None else 2)
            seq = self.loop_values(s.iter, scope) if exact else None
            if seq is None or bounds.range_len(seq) != count:
                seq = range(count)
            self._loop_depth += 1
            self._loops_open = getattr(self, "_loops_open", 0) + 1
            self._inexact_loops = getattr(self, "_inexact_loops", 0) + (not exact)
            try:
                if not seq:   # no iteration: the body is still generated
                    self.skipped_block(s.body, scope, loop=(s, Value(INT)))
                for i in seq:
                    self.bind_loop_vars(s, item if item is not None else Value.of(i) if exact
                                        else Value(INT), scope)
                    try:
                        self.exec_block(s.body, scope)
                    except _LoopExit as ex:
                        if ex.kind == "break":
                            break
            finally:
                self._loop_depth -= 1
                self._loops_open -= 1
                self._inexact_loops -= not exact
        elif isinstance(s, A.While):
            self.exec_while(s, scope)
        elif isinstance(s, A.Unpack):
            v = pair_quantizer_value(self, s, scope)   # `let (q, scale) = xnor_quantize(w)`
            if v is None:
                v = self.eval_expr(s.value, scope)
            parts = self.unpack(v, len(s.targets), s.value.span)
            for name, part in zip(s.targets, parts):
                if not s.declare and name in scope.vars and isinstance(scope.vars[name].ty, LayerT):
                    self.report("E0205", f"cannot assign to layer `{name}`", s.span)
                    continue
                self.define(scope, name, part, s.span)
        elif isinstance(s, A.Break | A.Continue):
            kind = "break" if isinstance(s, A.Break) else "continue"
            if not getattr(self, "_loops_open", 0):
                self.report("E0862", f"`{kind}` outside a loop", s.span,
                            help="`break` and `continue` belong in a `for` or `while` body")
                return
            raise _LoopExit(kind)
        elif isinstance(s, A.Assert):
            c = self.eval_expr(s.cond, scope)
            self.check_cond(c, s.cond.span)
            msg = self.eval_expr(s.msg, scope) if s.msg is not None else None
            if c.known and not isinstance(c.const, SymInt) and not c.const:
                text = f": {msg.const}" if msg is not None and msg.known and isinstance(
                    msg.const, str) else ""
                self.report("E0863", f"this assertion is false at compile time{text}",
                            s.cond.span, label="always false")
        elif isinstance(s, A.Pass):
            pass
        elif isinstance(s, A.With):
            check_with(self, s, scope)
        elif isinstance(s, A.FnDef):
            self.report("E0204", "functions cannot be nested", s.span)

    @staticmethod
    def elements(v: Value) -> list[Value] | None:
        """The items of a list (or tuple) whose length is known, as values."""
        if not isinstance(v.ty, ListT) or not isinstance(v.const, list):
            return None
        if v.known:
            return [Value(INT, c) if isinstance(c, SymInt) else Value.of(c) for c in v.const]
        return [c if isinstance(c, Value) else Value(ANY) for c in v.const]

    def unpack(self, v: Value, n: int, span: Span) -> list[Value]:
        """`n` values out of `v` (E0864 when it has another length)."""
        parts = self.elements(v)
        if parts is None and isinstance(v.ty, TupleT):   # `(i, layer)` of enumerate(xs)
            parts = [Value(t) for t in v.ty.items]
        if parts is None:
            if not isinstance(v.ty, ListT | AnyT):
                self.report("E0864", f"cannot unpack {v.ty} into {n} names", span,
                            help="the value must be a list or a tuple")
            return [Value(ANY)] * n
        if len(parts) != n:
            self.report("E0864", f"cannot unpack {len(parts)} value(s) into {n} names", span,
                        label=f"{len(parts)} value(s)")
            return [Value(ANY)] * n
        return parts

    def bind_loop_vars(self, s: A.For, v: Value, scope: Scope) -> None:
        if s.vars is None:
            scope.vars[s.var] = v
            scope.used.add(s.var)
            return
        for name, part in zip(s.vars, self.unpack(v, len(s.vars), s.iter.span)):
            scope.vars[name] = part
            scope.used.add(name)

    def exec_for_items(self, s: A.For, items: list[Value], scope: Scope) -> None:
        """`for v in xs` over a list of known length: each item in turn (the first
        `MAX_UNROLL` exactly; beyond that or when nested deeper, a joined type)."""
        exact = len(items) <= MAX_UNROLL and self._loop_depth < 2
        if not exact and items:
            joined = items[0].ty
            for x in items[1:]:
                joined = join_types(joined, x.ty)
            items = [Value(joined)] * min(len(items), 2)
        self._loop_depth += 1
        self._loops_open = getattr(self, "_loops_open", 0) + 1
        self._inexact_loops = getattr(self, "_inexact_loops", 0) + (not exact)
        try:
            if not items:   # no iteration: the body is still generated
                self.skipped_block(s.body, scope, loop=(s, Value(ANY)))
            for item in items:
                self.bind_loop_vars(s, item, scope)
                try:
                    self.exec_block(s.body, scope)
                except _LoopExit as ex:
                    if ex.kind == "break":
                        break
        finally:
            self._loop_depth -= 1
            self._loops_open -= 1
            self._inexact_loops -= not exact

    def exec_branch(self, stmts: list, scope: Scope) -> None:
        """A branch of a condition known only at run time: a `break` or `continue` in it may
        or may not happen, so the loop around it cannot be counted at compile time."""
        try:
            self.exec_block(stmts, scope)
        except _LoopExit:
            self._maybe_exit = True

    def exec_while(self, s: A.While, scope: Scope) -> None:
        """Run a `while` whose condition is known at compile time (at most `MAX_UNROLL`
        iterations, else E0861: never a hang); otherwise check its body as for a run-time
        condition, with the variables it changes no longer known."""
        self._loops_open = getattr(self, "_loops_open", 0) + 1
        self._loop_depth += 1
        try:
            if self._loop_depth > 1:
                self._abstract_while(s, scope)
                return
            first = True
            for _ in range(bounds.MAX_UNROLL + 1):
                c = self.eval_expr(s.cond, scope)
                self.check_cond(c, s.cond.span)
                if not c.known or isinstance(c.const, SymInt):
                    self._abstract_while(s, scope)
                    return
                if not c.const:
                    if first:   # never entered: the body is still generated
                        self.skipped_block(s.body, scope)
                    return
                first = False
                self._maybe_exit = False
                try:
                    self.exec_block(s.body, scope)
                except _LoopExit as ex:
                    if ex.kind == "break":
                        return
                if self._maybe_exit:
                    self._abstract_while(s, scope)
                    return
            self.report("E0861", f"this `while` loop does not end within {bounds.MAX_UNROLL} "
                                 f"iterations at compile time", s.span,
                        label="its condition stays true",
                        help="change a variable of the condition in the body, or add a `break`")
        finally:
            self._loop_depth -= 1
            self._loops_open -= 1

    def _abstract_while(self, s: A.While, scope: Scope) -> None:
        before = dict(scope.vars)
        self._inexact_loops = getattr(self, "_inexact_loops", 0) + 1
        try:
            self._abstract_while_body(s, scope)
        finally:
            self._inexact_loops -= 1
        for name, v in list(scope.vars.items()):
            old = before.get(name)
            if old is not v:
                scope.vars[name] = Value(join_types(old.ty, v.ty) if old is not None else v.ty)

    def _abstract_while_body(self, s: A.While, scope: Scope) -> None:
        for _ in range(2):
            self.check_cond(self.eval_expr(s.cond, scope), s.cond.span)
            try:
                self.exec_block(s.body, scope)
            except _LoopExit as ex:
                if ex.kind == "break":
                    break

    def loop_values(self, it: A.Expr, scope: Scope) -> range | None:
        """The values a `for` over a range takes (`2..5` is 2, 3, 4), when known; its
        diagnostics were reported once already, by the loop's own evaluation."""
        out = self.inner if self.quiet else self.diags
        start = len(out)
        try:
            if isinstance(it, A.Range):
                return self.range_values(it, scope)
            if isinstance(it, A.Call) and isinstance(it.func, A.Name) and it.func.id == "range" \
                    and "range" not in scope.vars and 1 <= len(it.args) <= 3 \
                    and all(a.name is None for a in it.args):
                vals = [self.eval_expr(a.value, scope) for a in it.args]
                if not all(v.known and _is_int(v.const) for v in vals):
                    return None
                c = [v.const for v in vals]
                lo, hi = (0, c[0]) if len(c) == 1 else (c[0], c[1])
                return self.make_range(lo, hi, False, c[2] if len(c) == 3 else 1, it.span)
            return None
        finally:
            del out[start:]

    def check_cond(self, c: Value, span: Span) -> None:
        t = c.ty
        if isinstance(t, TensorT) or (isinstance(t, ScalarT) and t.name == "str") or isinstance(
                t, ListT | DictT):
            self.report("E0406", f"a condition must be a bool, got {t}", span,
                        help="compare it, e.g. `x > 0`, or reduce a tensor first")
