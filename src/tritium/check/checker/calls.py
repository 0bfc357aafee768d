"""Calls: layers, user functions, tensor literals and builtin functions (arguments bound to
the signature, then the record's rule from tritium.check.builtins), and the shape helpers
the rules use."""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.diagnostics import Label, Span, did_you_mean
from ...frontend.parser import DTYPES, TENSOR_TYPES
from .. import library as L
from ..builtins import FUNCTIONS, BindError, bind, resolve
from ..list_methods import LIST_METHODS, forget_passed_lists, list_method_call
from ..types import (
    ANY,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    AnyT,
    ClosureT,
    Dim,
    FnSigT,
    FnT,
    LayerT,
    ListT,
    ModuleT,
    NoneT,
    ScalarT,
    Shape,
    SymInt,
    TensorT,
    TupleT,
    UnionT,
    Value,
    dims_conflict,
    shape_str,
)
from .call_args import ArgOrderError, by_name, order_args
from .calls_forms import pair_form, scalar_pair
from .decl_forms import construct, tensor_dtype_fits
from .decl_lists import list_as_tensor
from .generics import _shown, bind_call_dims
from .hooks import register_hook
from .layer_construction import construct_layer, instance_inputs
from .layer_methods import MethodT, method_call, unknown_self_method
from .layer_values import MODEL_CONSTRUCTORS, MODULE_CALL, call_module_value, construct_model
from .model import (
    MAX_INSTANCE_DEPTH,
    Definition,
    Scope,
    _is_int,
    _num,
)
from .stubs import stub_call
from .sublayer_methods import sublayer_method_call


class CallsMixin:
    # ------------------------------------------------------------------ calls
    def eval_call(self, e: A.Call, scope: Scope) -> Value:
        f = e.func
        # tensor literal: Tensor[2, 2](1, 0, -1, 1)
        if isinstance(f, A.Index) and isinstance(f.value, A.Name) and f.value.id in TENSOR_TYPES:
            return self.tensor_literal(f, e, scope)
        if isinstance(f, A.TypeValue):   # `Tensor<int32, [2, 2]>()`: zeros (decl_forms)
            return construct(self, e, scope)
        # method call x.reshape(…) → reshape(x, …)
        if isinstance(f, A.Attr) and unknown_self_method(self, f, e, scope):
            return Value(ANY)   # `self.nothing(…)`: no such method (checker.layer_methods)
        if isinstance(f, A.Attr):
            base = self.eval_expr(f.value, scope)
            if isinstance(base.ty, LayerT):   # `stage[0].report()` (checker.sublayer_methods)
                r = sublayer_method_call(self, base, e, scope)
                if r is not None:
                    return r
            if isinstance(base.ty, ListT) and f.attr in LIST_METHODS:
                return list_method_call(self, base, e, scope)
            if isinstance(base.ty, ListT) and f.attr in FUNCTIONS and \
                    FUNCTIONS[f.attr].params[:1] and FUNCTIONS[f.attr].params[0].kind == "tensor":
                base = list_as_tensor(self, base, f)   # `xs.reshape(s)` (decl_lists)
            if isinstance(base.ty, TensorT | AnyT) and f.attr in FUNCTIONS:
                args = [base] + [self.builtin_arg(a.value, scope) for a in e.args]
                names = [None] + [a.name for a in e.args]
                return self.builtin_call(f.attr, args, names, e, offset=1)
            if isinstance(base.ty, TensorT) and f.attr == "size":
                if e.args:
                    i = self.eval_expr(e.args[0].value, scope)
                    if base.ty.shape is not None and i.known and _is_int(i.const):
                        if -len(base.ty.shape) <= i.const < len(base.ty.shape):
                            d = base.ty.shape[i.const]
                            return Value(INT, d if _is_int(d) else SymInt(d) if d else None,
                                         _is_int(d))
                return Value(ANY)
            if isinstance(base.ty, TensorT) and f.attr == "register_hook":
                return register_hook(self, base, e, scope)   # checker.hooks
            if not isinstance(base.ty, AnyT) or f.attr not in (*LIST_METHODS, "size",
                                                               "register_hook"):
                # (on a value of unknown type too: the generated code has no such method)
                what = "a value of unknown type" if isinstance(base.ty, AnyT) else base.ty
                self.report("E0305", f"{what} has no method `{f.attr}`", f.span,
                            help=did_you_mean(f.attr, FUNCTIONS))
            for a in e.args:
                self.eval_expr(a.value, scope)
            return Value(ANY)
        if isinstance(f, A.Name):
            name = f.id
            v = scope.vars.get(name)
            if v is not None:
                scope.used.add(name)
                args = [self.eval_expr(a.value, scope) for a in e.args]
                if isinstance(v.ty, LayerT) and any(a.name for a in e.args) and \
                        id(v.ty.inst) in self.__dict__.get("constructed_inputs", {}):
                    ordered = instance_inputs(self, v.ty.inst, e, args)   # `m(input: x)`
                    return Value(ANY) if ordered is None else \
                        self.apply_layer(v.ty.inst, ordered, e, v.ty.optional)
                if isinstance(v.ty, LayerT):
                    for a in e.args:
                        if a.name is not None:
                            self.report("E0307", f"layer `{name}` takes no named arguments",
                                        a.span)
                    return self.apply_layer(v.ty.inst, args, e, v.ty.optional)
                if isinstance(v.ty, MethodT):   # a method of this body (checker.layer_methods)
                    return method_call(self, v.ty, args, e)
                if isinstance(v.ty, ModuleT):   # a layer as a value (checker.layer_values)
                    return call_module_value(self, v.ty, args, e, f"`{name}`")
                if isinstance(v.ty, AnyT):
                    return Value(ANY)
                if isinstance(v.ty, FnT):
                    return self.fn_value_call(v.ty, args, e)
                self.report("E0310", f"`{name}` is {v.ty}, not a layer or function", f.span,
                            help="only layers and functions can be called")
                return Value(ANY)
            d = self.defs.get(name)
            if d is not None:
                args = [self.eval_expr(a.value, scope) for a in e.args]
                if d.kind == "fn":
                    forget_passed_lists(self, d.node, e, scope)
                    return self.user_fn_call(d, args, e)
                built = construct_layer(self, d, args, e, scope)   # `let m = MyLayer()`
                return built if built is not None else self.call_layer_definition(d, args, e)
            if name in MODEL_CONSTRUCTORS and name not in FUNCTIONS:   # `Model(layers)`
                return construct_model(self, e, [self.eval_expr(a.value, scope) for a in e.args])
            if name in FUNCTIONS:
                args = [self.builtin_arg(a.value, scope) for a in e.args]
                return self.builtin_call(name, args, [a.name for a in e.args], e)
            for a in e.args:
                self.eval_expr(a.value, scope)
            if name in getattr(self, "unparsed", ()):   # its declaration had a syntax error
                return Value(ANY)
            cands = list(FUNCTIONS) + [n for n, d in self.defs.items() if d.kind == "fn"] + [
                n for n, v in scope.vars.items() if isinstance(v.ty, LayerT)]
            if name in L.LAYERS:
                self.report("E0305", f"`{name}` is a layer kind, not a function", f.span,
                            help=f"declare it with `layer my_{name.lower()}: {name} {{ … }}` and "
                                 f"call that, or use the function `{name.lower()}`"
                            if name.lower() in FUNCTIONS else
                            f"declare it with `layer x: {name} {{ … }}` and call `x(…)`")
            else:
                self.report("E0305", f"undefined function `{name}`", f.span,
                            label="not a function or layer", help=did_you_mean(name, cands))
            return Value(ANY)
        callee = self.eval_expr(f, scope)
        args = [self.eval_expr(a.value, scope) for a in e.args]
        if isinstance(callee.ty, ModuleT | LayerT):   # `layers[0](x)` (checker.layer_values)
            self.call_forms[e.span] = MODULE_CALL
            if isinstance(callee.ty, ModuleT):
                return call_module_value(self, callee.ty, args, e, "this layer")
            return self.apply_layer(callee.ty.inst, args, e, callee.ty.optional)
        if not isinstance(callee.ty, AnyT | FnT | LayerT):
            self.report("E0310", f"{callee.ty} is not callable", f.span)
        return Value(ANY)

    def fn_value_call(self, ty: FnT, args: list[Value], e: A.Call) -> Value:
        """A call through a variable that holds a function: the user function it names, or
        (in a body checked on its own) the declared `fn(A) -> R` type."""
        d = self.defs.get(ty.name)
        if d is not None and d.kind == "fn" and isinstance(ty, ClosureT):
            free = d.node.params[:len(d.node.params) - len(ty.bound)]
            if not sum(p.default is None for p in free) <= len(e.args) <= len(free):
                self.report("E0306", f"`{_shown(d.name)}` takes {len(free)} argument(s) "
                                     f"besides the values bound to it, got {len(e.args)}",
                            e.span,
                            secondary=[Label(d.node.span, "made here")])
                return Value(ANY)
            if any(a.name is not None for a in e.args):
                args = self.closure_args_by_position(d.node, len(ty.bound), args, e)
                if args is None:
                    return Value(ANY)
            return self.user_fn_call(d, args + list(ty.bound), e)   # its values appended
        if d is not None and d.kind == "fn" and not isinstance(ty, FnSigT):
            return self.user_fn_call(d, args, e)
        if isinstance(ty, FnSigT):
            if len(args) != len(ty.params):
                self.report("E0306", f"a function of type {ty} takes {len(ty.params)} "
                                     f"argument(s), got {len(args)}", e.span)
                return Value(ANY)
            for i, (t, a, arg) in enumerate(zip(ty.params, args, e.args)):
                self.check_assignable(t, a, arg.span, f"argument {i}")
            return Value(ty.ret if ty.ret is not None else NoneT())
        return Value(ANY)

    def closure_args_by_position(self, fn: A.FnDef, n_bound: int, args: list[Value],
                                 e: A.Call) -> list[Value] | None:
        """`layer(input: x)` through a closure (whose last `n_bound` parameters it binds):
        the arguments put in declared order, in place (the generated call passes them by
        position, the closure appending its values), a default standing for one not given.
        None after reporting a wrong name, a repeated or a missing argument."""
        free = fn.params[:len(fn.params) - n_bound]
        try:
            slots = order_args(free, [a.name for a in e.args])
        except ArgOrderError as err:
            s = e.args[err.index].span if err.index is not None else e.span
            what = {"unknown": f"has no argument named `{err.name}`",
                    "twice": f"is given its argument `{err.name}` twice",
                    "missing": f"is missing its argument `{err.name}`"}.get(
                err.kind, f"takes {len(free)} argument(s), got {len(e.args)}")
            self.report("E0307" if err.kind == "unknown" else "E0306",
                        f"`{_shown(fn.name)}` {what}", s,
                        help=did_you_mean(err.name, [p.name for p in free])
                        if err.kind == "unknown" else None)
            return None
        given = list(e.args)
        e.args[:] = [A.Arg(given[i].value, None, given[i].span) if i is not None
                     else A.Arg(p.default, None, e.span) for i, p in zip(slots, free)]
        return [args[i] if i is not None else self.eval_expr(p.default, Scope())
                for i, p in zip(slots, free)]

    def user_fn_call(self, d: Definition, args: list[Value], e: A.Call) -> Value:
        fn: A.FnDef = d.node
        names = [a.name for a in e.args]
        if len(args) == len(e.args) and by_name(names):   # named: by name (checker.call_args)
            try:
                slots = order_args(fn.params, names)
            except ArgOrderError as err:
                s = e.args[err.index].span if err.index is not None else e.span
                if err.kind == "unknown":
                    self.report("E0307", f"`{fn.name}` has no argument named `{err.name}`", s,
                                secondary=[Label(fn.span, "defined here")],
                                help=did_you_mean(err.name, [p.name for p in fn.params]))
                else:
                    self.report("E0306", f"`{fn.name}`: argument `{err.name}` is given twice"
                                if err.kind == "twice" else
                                f"`{fn.name}` is missing its argument `{err.name}`"
                                if err.kind == "missing" else
                                f"`{fn.name}` takes {len(fn.params)} argument(s), got "
                                f"{len(args)}", s, secondary=[Label(fn.span, "defined here")])
                return Value(ANY)
            args = [args[i] if i is not None else self.default_value(fn.params[k])
                    for k, i in enumerate(slots)]
            e = A.Call(e.func, [e.args[i] if i is not None else A.Arg(A.NoneLit(e.span), None,
                                                                       e.span)
                                for i in slots], e.span)
        n_req = sum(1 for p in fn.params if p.default is None)
        if not n_req <= len(args) <= len(fn.params):
            self.report("E0306", f"`{fn.name}` takes {len(fn.params)} argument(s), got "
                                 f"{len(args)}", e.span,
                        secondary=[Label(fn.span, "defined here")])
            return Value(ANY)
        if stub_call(self, fn, e):   # its body is only `pass` (checker.stubs)
            return Value(ANY)
        saved_tvars = getattr(self, "type_vars", {})
        if fn.type_params is not None:
            self.type_vars = self.bind_type_params(fn, args, [a.span for a in e.args], e.span)
        try:
            if self.defs.get(d.name) is d:   # (a layer called directly: its own check)
                bind_call_dims(self, fn, args, e)   # `<M, K, N>` bound across the arguments
            return self._user_fn_call(d, args, e)
        finally:
            self.type_vars = saved_tvars

    def default_value(self, p: A.ParamSpec) -> Value:
        """The value of a parameter's default where a call leaves it out (its own errors are
        reported once, where the function is checked: checker.functions)."""
        if p.default is None:
            return Value(ANY)
        self.quiet += 1
        saved = self.inner
        self.inner = []
        try:
            return self.eval_expr(p.default, Scope())
        finally:
            self.quiet -= 1
            self.inner = saved

    def _user_fn_call(self, d: Definition, args: list[Value], e: A.Call) -> Value:
        fn: A.FnDef = d.node
        for p, a, arg in zip(fn.params, args, e.args):
            if p.type is not None:
                ty = self.type_from_expr(p.type, Scope())
                if isinstance(ty, ScalarT):
                    self.check_assignable(ty, a, arg.span, p.name)
                elif isinstance(ty, TensorT) and not isinstance(a.ty, TensorT | AnyT):
                    self.report("E0404", f"argument `{p.name}` of `{fn.name}` must be {ty}, got "
                                         f"{a.ty}", arg.span)
                elif isinstance(ty, TensorT) and isinstance(a.ty, TensorT):
                    tensor_dtype_fits(self, fn, p, a.ty, arg.span)   # (decl_forms)
                elif isinstance(ty, ListT | TupleT | UnionT | FnSigT | NoneT | ModuleT):
                    self.check_assignable(ty, a, arg.span, p.name)
        declared = Value(self.type_from_expr(fn.ret, Scope())) if fn.ret else Value(ANY)
        if fn.broken:
            return declared
        if self.instance_depth >= MAX_INSTANCE_DEPTH or d.name in self._active_fns:
            return declared   # a recursive call: its declared type, not another unfolding
        key = (d.name, tuple((repr(a.ty), repr(a.const) if a.known else None) for a in args))
        if key in self._fn_cache:
            return self._fn_cache[key]
        self.instance_depth += 1
        self.quiet += 1
        self._active_fns.add(d.name)
        saved_inner = self.inner
        self.inner = []
        try:
            filled = args + [self.default_value(p) for p in fn.params[len(args):]]
            res = self.check_function(fn, Scope(), {}, inputs=filled)
        finally:
            self.instance_depth -= 1
            self.quiet -= 1
            self._active_fns.discard(d.name)
            self.inner = saved_inner
        self._fn_cache[key] = res
        return res

    def tensor_literal(self, f: A.Index, e: A.Call, scope: Scope) -> Value:
        ternary = f.value.id == "TernaryTensor"
        dims: list[Dim] = []
        dtype = "trit" if ternary else "float32"
        for i in f.indices:
            if isinstance(i, A.Name) and i.id in DTYPES:
                dtype = i.id
                continue
            v = self.eval_expr(i, scope)
            if v.known and _is_int(v.const):
                if v.const < 0:
                    self.report("E0508", f"a dimension cannot be negative ({v.const})", i.span)
                dims.append(v.const)
            elif isinstance(v.const, SymInt):
                dims.append(v.const)
            else:
                dims.append(None)
        values: list[tuple[Value, Span]] = []
        for a in e.args:
            if isinstance(a.value, A.ListLit):
                stack = [a.value]
                while stack:
                    x = stack.pop()
                    if isinstance(x, A.ListLit):
                        stack.extend(reversed(x.items))
                    else:
                        values.append((self.eval_expr(x, scope), x.span))
            else:
                values.append((self.eval_expr(a.value, scope), a.value.span))
        n = 1
        for d in dims:
            n = n * d if isinstance(n, int) and _is_int(d) else None
        if n is not None and len(values) != n:
            self.report("E0501", f"a {f.value.id} of shape {shape_str(tuple(dims))} needs {n} "
                                 f"values, got {len(values)}", e.span,
                        label=f"{len(values)} values", help="give one value per element, in "
                                                            "row-major order")
        if ternary:
            for v, span in values:
                if v.known and _num(v.const) and v.const not in (-1, 0, 1):
                    self.report("E0403", f"{v.const} is not a trit: TernaryTensor values must be "
                                         f"-1, 0 or 1", span, label="outside {-1, 0, 1}",
                                help="ternary weights take only the values -1, 0 and 1")
                elif isinstance(v.ty, ScalarT) and v.ty.name in FLOAT_TYPES and v.known:
                    if v.const in (-1.0, 0.0, 1.0):
                        continue
                elif not v.known and not isinstance(v.ty, AnyT | ScalarT):
                    self.report("E0404", f"TernaryTensor values must be trits, got {v.ty}", span)
        else:
            for v, span in values:
                if not isinstance(v.ty, ScalarT | AnyT):
                    self.report("E0404", f"tensor literal values must be numbers, got {v.ty}",
                                span)
        return Value(TensorT(dtype, tuple(dims), ternary))

    def builtin_arg(self, x: A.Expr, scope: Scope) -> Value:
        """An argument of a builtin call: a dtype written as a name (`dtype=float32`,
        `cast(x, int8)`) is its string, unless the program defines that name."""
        if isinstance(x, A.Name) and x.id in DTYPES and x.id not in scope.vars and \
                x.id not in self.defs:
            return Value(ScalarT("str"), x.id, True)
        return self.eval_expr(x, scope)

    def builtin_call(self, name: str, args: list[Value], names: list[str | None], e: A.Call,
                     offset: int = 0) -> Value:
        name = resolve(name, list(zip(names, args)))
        spec = FUNCTIONS[name]
        bound: dict[str, Value] = {}
        spans: dict[str, Span] = {}
        params = spec.params
        arg_spans = ([e.func.span] if offset else []) + [a.span for a in e.args]
        positional = [(a, s) for a, n, s in zip(args, names, arg_spans) if n is None]
        if spec.variadic:
            # any number of positional values; the other parameters only by name
            named = {p.name: p for p in params[1:]}
            for a, n, s in zip(args, names, arg_spans):
                if n is None:
                    continue
                p = named.get(n)
                if p is None:
                    self.report("E0307", f"`{name}` has no argument named `{n}`", s,
                                help=f"signature: {self.signature(spec)}")
                elif not self.arg_kind_ok(p.kind, a):
                    self.report("E0404", f"argument `{n}` of `{name}` must be "
                                         f"{self.kind_desc(p.kind)}, got {a.ty}", s)
            return Value(NoneT())
        if spec.pair_op and len(positional) == 2 and len(args) == 2:
            pair = pair_form(positional[0][0], positional[1][0])
            if pair is not None:
                self.call_forms[e.span] = pair
                if pair == "scalar":
                    return scalar_pair(spec.pair_op, positional[0][0], positional[1][0])
                return self.elementwise2(positional[0][0], positional[1][0], e)
        try:
            got, where = bind(spec, list(zip(names, args)))
        except BindError as err:
            s = arg_spans[err.index] if err.index is not None else e.span
            if err.kind == "many":
                self.report("E0306", f"`{name}` takes at most {len(params) - offset} argument(s), "
                                     f"got {len(positional) - offset}", e.span,
                            help=f"signature: {self.signature(spec)}")
            elif err.kind == "unknown":
                self.report("E0307", f"`{name}` has no argument named `{err.name}`", s,
                            help=did_you_mean(err.name, [p.name for p in params])
                            or f"signature: {self.signature(spec)}")
            elif err.kind == "twice":
                self.report("E0306", f"argument `{err.name}` of `{name}` is given twice", s)
            else:
                self.report("E0306", f"`{name}` is missing its argument `{err.name}`", e.span,
                            help=f"signature: {self.signature(spec)}")
            return Value(ANY)
        bound.update(got)
        spans.update({k: arg_spans[i] for k, i in where.items()})
        for p in params:
            if p.name not in bound:
                continue
            v = bound[p.name]
            if p.kind == "tensor" and isinstance(v.ty, ScalarT) and p.name in spans:
                self.scalar_tensor_args.add(spans[p.name])
            if not self.arg_kind_ok(p.kind, v):
                self.report("E0404", f"argument `{p.name}` of `{name}` must be "
                                     f"{self.kind_desc(p.kind)}, got {v.ty}", spans[p.name],
                            label=f"expected {self.kind_desc(p.kind)}")
                return Value(ANY)
        try:
            return self.builtin_result(name, bound, e)
        except L.ShapeError as err:
            self.report(err.code, f"`{name}`: {err.message}", e.span, help=err.help)
            return Value(ANY)

    @staticmethod
    def signature(spec) -> str:
        parts = [p.name if p.required else f"{p.name}={p.default!r}"
                 if isinstance(p.default, str) else f"{p.name}={p.default}"
                 for p in spec.params]
        return f"{spec.name}({', '.join(parts)})"

    @staticmethod
    def kind_desc(kind: str) -> str:
        return {"tensor": "a tensor", "int": "an integer", "float": "a number", "bool": "a bool",
                "str": "a string", "ints": "an integer or a list of integers",
                "shape": "a list of dimensions", "tensors": "a list of tensors"}.get(kind, kind)

    @staticmethod
    def arg_kind_ok(kind: str, v: Value) -> bool:
        t = v.ty
        if isinstance(t, AnyT) or kind == "any":
            return True
        if kind == "tensor":
            return isinstance(t, TensorT) or (isinstance(t, ScalarT) and t.name != "str") or (
                isinstance(t, NoneT))
        if kind == "int":
            return isinstance(t, ScalarT) and t.name in INT_TYPES | {"trit"}
        if kind == "float":
            return (isinstance(t, ScalarT) and t.name in INT_TYPES | FLOAT_TYPES) or isinstance(
                t, NoneT)
        if kind == "bool":
            return isinstance(t, ScalarT) and t.name == "bool"
        if kind == "str":
            return isinstance(t, ScalarT) and t.name == "str"
        if kind == "ints":
            return isinstance(t, ListT | NoneT) or (isinstance(t, ScalarT) and t.name in INT_TYPES)
        if kind in ("shape", "tensors"):
            return isinstance(t, ListT) or (kind == "shape" and isinstance(t, ScalarT)
                                            and t.name in INT_TYPES)
        return True

    def elementwise2(self, a: Value, b: Value, e: A.Call) -> Value:
        return self.tensor_binary("+", a.ty, b.ty, e)

    def shape_list(self, v: Value) -> list[Dim] | None:
        if v.known and isinstance(v.const, list):
            out = []
            for c in v.const:
                out.append(c if _is_int(c) or isinstance(c, SymInt) else None)
            return out
        if v.known and _is_int(v.const):
            return [v.const]
        if isinstance(v.const, list):
            return [x.const if isinstance(x, Value) and (x.known or isinstance(x.const, SymInt))
                    else None for x in v.const]
        return None

    def builtin_result(self, name: str, b: dict[str, Value], e: A.Call) -> Value:
        """The result of builtin `name` on its bound arguments: the record's rule
        (tritium.check.builtins)."""
        return FUNCTIONS[name].rule(self, name, b, e)

    def norm_dim(self, xt: TensorT, d: int, e: A.Call) -> int | None:
        r = len(xt.shape)
        if not -r <= d < r:
            self.report("E0508", f"dim {d} is out of range for a tensor of rank {r}", e.span,
                        help=f"valid dims are {-r}..{r - 1}" if r else None)
            return None
        return d % r

    def check_dim(self, xt: TensorT, d, e: A.Call) -> None:
        if xt.shape is not None and _is_int(d):
            self.norm_dim(xt, d, e)

    def reshape(self, xt: TensorT | None, dims: list[Dim], e: A.Call) -> Shape:
        out = list(dims)
        if sum(1 for d in dims if d == -1) > 1:
            self.report("E0506", "reshape can infer only one dim (-1)", e.span)
            return tuple(None for _ in dims)
        for d in dims:
            if _is_int(d) and d < -1:
                self.report("E0506", f"invalid reshape dim {d}", e.span)
                return tuple(None for _ in dims)
        if xt is None or xt.shape is None:
            return tuple(None if d == -1 else d for d in out)
        total = 1
        for d in xt.shape:
            total = total * d if isinstance(total, int) and _is_int(d) else None
        known = 1
        for d in dims:
            if d != -1:
                known = known * d if isinstance(known, int) and _is_int(d) else None
        if total is not None and known is not None:
            if -1 in dims:
                if known == 0 or total % known:
                    self.report("E0506", f"cannot reshape {shape_str(xt.shape)} ({total} "
                                         f"elements) to {dims}", e.span)
                    return tuple(None for _ in dims)
                out = [total // known if d == -1 else d for d in dims]
            elif known != total:
                self.report("E0506", f"cannot reshape {shape_str(xt.shape)} ({total} elements) "
                                     f"to {shape_str(tuple(dims))} ({known} elements)", e.span,
                            help="the number of elements must stay the same; use -1 for one "
                                 "inferred dim")
                return tuple(dims)
        return tuple(None if d == -1 else d for d in out)

    def concat(self, name: str, lst: Value, dim, e: A.Call) -> TensorT:
        items = lst.const if isinstance(lst.const, list) else None
        if items is None or not items:
            return TensorT("float32", None)
        tys = [x.ty if isinstance(x, Value) else ANY for x in items]
        if not all(isinstance(t, TensorT) and t.shape is not None for t in tys) or not _is_int(dim):
            return TensorT("float32", None)
        r = len(tys[0].shape)
        if any(len(t.shape) != r for t in tys):
            self.report("E0507", f"{name} needs tensors of the same rank, got "
                                 f"{', '.join(shape_str(t.shape) for t in tys)}", e.span)
            return TensorT("float32", None)
        rr = r + 1 if name == "stack" else r
        if not -rr <= dim < rr:
            self.report("E0508", f"dim {dim} is out of range for {name} of rank-{r} tensors",
                        e.span)
            return TensorT("float32", None)
        d = dim % rr
        base = list(tys[0].shape)
        for t in tys[1:]:
            for i, (a, bdim) in enumerate(zip(base, t.shape)):
                if (name == "stack" or i != d) and dims_conflict(a, bdim):
                    self.report("E0505", f"{name}: shapes {shape_str(tys[0].shape)} and "
                                         f"{shape_str(t.shape)} differ in dim {i}", e.span)
                    return TensorT("float32", None)
        if name == "stack":
            return TensorT(tys[0].dtype, tuple(base[:d]) + (len(tys),) + tuple(base[d:]))
        total: Dim = 0
        for t in tys:
            x = t.shape[d]
            total = total + x if _is_int(total) and _is_int(x) else None
        base[d] = total
        return TensorT(tys[0].dtype, tuple(base))
