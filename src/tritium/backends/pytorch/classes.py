"""Definitions of generated modules: one `nn.Module` class per model, block and layer (its
`__init__`: hyperparameters, constants, layers, parameters, conditional layers and
repetitions; its methods), one function per `fn`.

`DefinitionGen` is the part of the code generator (`codegen.PyTorchCodegen`) that writes
them; builtin layer kinds become constructor calls through `builtin_ctor` (codegen.py).
Repetitions follow the one rule in `tritium.check.repetition`, and the batch norms that
freezing may fold come from `tritium.check.folds`.
"""

from __future__ import annotations

import ast as pyast

from ...check import library as L
from ...check.checker import Checker, Definition, Scope
from ...check.checker.model import (
    INIT_DEFAULTS,
    callable_layer,
    form_b_inputs,
    forward_body,
    param_init,
    param_trainable,
    param_type,
    signature_weights,
)
from ...check.folds import fold_pairs
from ...check.repetition import instance_configs, repeat_clause
from ...check.types import Value
from ...frontend import ast as A
from ...frontend.names import internal, py_attr, py_local
from ...frontend.parser import TENSOR_TYPES
from .chain import forward_chain
from .expressions import PY_PREC, Ctx
from .graph import forward_graph
from .layer_values import holds_layers
from .text import CodegenError, scan
from .text import escape as _text
from .text import literal as _q

# a static repetition of at most this many instances is written out one by one
UNROLL = 16


def atomic(expr: str) -> str:
    """`expr`, parenthesized unless it is a name, a number, a literal or ends in one
    bracket group that spans the rest (a call, a subscript, a list)."""
    head = expr.lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
    if not head:
        return expr
    if head[0] in "([{" and expr[-1] in ")]}":
        closes = [i for i, c, depth in scan(head) if c in ")]}" and depth == 0]
        if closes == [len(head) - 1]:
            return expr
    try:
        if type(pyast.literal_eval(expr)) is str:
            return expr
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    return f"({expr})"


class DefinitionGen:
    """Classes and functions (mixed into `codegen.PyTorchCodegen`)."""

    def gen_function(self, d: Definition) -> None:
        fn: A.FnDef = d.node
        ctx = Ctx()
        params = []
        # a default before a parameter without one (the values frontend.lift appends for
        # the names a function reads from around it) is not Python's: each call writes it out
        last = max((i for i, p in enumerate(fn.params) if p.default is None), default=-1)
        for i, p in enumerate(fn.params):
            name = py_local(p.name)
            ctx.locals.add(p.name)
            params.append(name + (f"={self.expr(p.default, ctx)}"
                                  if p.default is not None and i > last else ""))
        self.origin(0, fn)
        self.emit(0, f"def {self.class_names[d.name]}({', '.join(params)}):")
        self.emit(1, f'"""`fn {fn.name}` from {_text(d.file)}:{fn.span.line}."""')
        self.gen_dim_bindings(fn.params, fn.body, ctx, 1)
        self.block(fn.body, ctx, 1)

    # ------------------------------------------------------------------ classes
    def gen_class(self, d: Definition) -> None:
        node = d.node
        cls = self.class_names[d.name]
        form_b = isinstance(node, A.LayerDef) and not Checker.has_forward(node)
        self.scope = Scope()
        self.origin(0, node)
        self.emit(0, f"class {cls}(nn.Module):")
        self.emit(1, f'"""`{d.kind} {d.name}` from {_text(d.file)}:{node.span.line}."""')
        self.emit(0, "")
        hparams = self.checker.user_params(node)
        ctx = Ctx()
        sig = ["self"]
        if hparams:
            sig.append("*")
        for p in hparams:
            ann = self.annotation(p.type)
            default = f" = {self.expr(p.default, ctx)}" if p.default is not None else ""
            sig.append(f"{py_local(p.name)}{ann}{default}")
            ctx.locals.add(p.name)
        self.emit(1, f"def __init__({', '.join(sig)}) -> None:")
        self.emit(2, "super().__init__()")
        attrs: set[str] = set()
        for p in hparams:
            value = py_local(p.name)
            if holds_layers(p.type):   # `layers: [Layer]`: registered as sub-layers
                value = f"nn.ModuleList({value})"
            self.emit(2, f"self.{py_attr(p.name)} = {value}")
            attrs.add(p.name)
        section_quant = self.quant_section(node)
        # the settings the `quantization { }` section gives the ternary layers (the checker's)
        self.layer_quant = self.checker.quant_section_defaults(node)
        ternary_params: dict[str, dict] = {}
        optional: set[str] = set()   # conditional ternary params (None when absent)
        state: set[str] = set()
        for item in node.body:
            if isinstance(item, A.ConfigEntry):
                self.origin(2, item)
                v = self.checker.eval_expr(item.value, self.scope)
                if v.known:
                    self.scope.vars[item.key] = v
                self.emit(2, f"{py_local(item.key)} = {self.expr(item.value, ctx)}")
                self.emit(2, f"self.{py_attr(item.key)} = {py_local(item.key)}")
                ctx.locals.add(item.key)
                attrs.add(item.key)
            elif isinstance(item, A.LayerDecl):
                self.origin(2, item)
                self.gen_layer_decl(item, ctx, 2)
                attrs.add(item.name)
            elif isinstance(item, A.ParamDecl):
                self.origin(2, item)
                self.gen_param_decl(item, ctx, 2)
                attrs.add(item.name)
                ctx.self_attrs.add(item.name)   # a later layer's config may pass it on
                if item.type.name == "TernaryTensor":
                    ternary_params[item.name] = section_quant
                    if item.cond is not None:
                        optional.add(item.name)
            elif isinstance(item, A.StateDecl):
                self.origin(2, item)
                self.gen_state(item, ctx, 2)
                attrs.add(item.name)
                ctx.self_attrs.add(item.name)
                state.add(item.name)
            elif isinstance(item, A.Let) and isinstance(node, A.LayerDef) and not form_b:
                self.origin(2, item)
                if self.is_tensor_let(item):
                    self.gen_param(item.name, item.type, item.value, ctx, 2)
                    if item.type is not None and item.type.name == "TernaryTensor":
                        ternary_params[item.name] = section_quant
                else:
                    self.emit(2, f"{py_local(item.name)} = {self.expr(item.value, ctx)}")
                    self.emit(2, f"self.{py_attr(item.name)} = {py_local(item.name)}")
                    ctx.locals.add(item.name)
                attrs.add(item.name)
        for p in signature_weights(node):   # the learned weights of a layer's signature
            self.origin(2, p)
            self.gen_param(p.name, p.type, None, ctx, 2)
            attrs.add(p.name)
            if p.type.name == "TernaryTensor":
                ternary_params[p.name] = section_quant
        for sec in node.body:
            if isinstance(sec, A.Section) and sec.name in ("training", "performance", "quantization"):
                values = {e.key: self.const_value(e.value) for e in sec.entries}
                if sec.name == "performance":   # under the names `tritium train` measures
                    values = L.performance_expectations(values)
                self.emit(2, f"self.tritium_{sec.name} = {_q(values)}")
        fns = [i for i in node.body if isinstance(i, A.FnDef)]
        if form_b:
            inputs = form_b_inputs(node.params)
            fns = [A.FnDef("forward", inputs, node.ret, forward_body(node), node.span)]
        folds = [[py_attr(a), py_attr(b)] for a, b in fold_pairs(node.body, fns, self.kind_of)]
        if folds:
            self.emit(2, "# batch norms that freezing folds into the layer before them "
                         "(then nn.Identity)")
            self.emit(2, f"self.tritium_identity_folds = {_q(folds)}")
        chain = forward_chain(node.body, fns, set(self.defs))
        if chain:
            self.emit(2, "# forward as one chain of steps (a frozen model runs it as one plan)")
            self.emit(2, f"self.tritium_chain = {_q(chain)}")
        else:
            scalars = {p.name for p in hparams} | {
                i.key for i in node.body if isinstance(i, A.ConfigEntry)}
            graph = forward_graph(node.body, fns, set(self.defs), scalars)
            if graph:
                self.emit(2, "# forward as dataflow ops (a frozen model fuses its residual adds)")
                self.emit(2, f"self.tritium_graph = {_q(graph)}")
        # the body's other functions are methods, called as `self.name(…)`
        attrs |= {f.name for f in fns if f.name != "forward"}
        for fn in fns:
            self.emit(0, "")
            self.gen_method(fn, attrs, ternary_params, optional, state)
        if callable_layer(node) and d.name in self.direct_layer_calls():
            self.emit(0, "")
            self.emit(0, "")
            self.gen_functional(d)

    def direct_layer_calls(self) -> set[str]:
        """The names called as functions anywhere in the program (`FC(w1, x)`)."""
        found = getattr(self, "_direct_calls", None)
        if found is None:
            found = set()
            stack: list = [d.node for d in self.defs.values()]
            if self.result.program is not None:   # the entry's statements call them too
                stack.extend(self.result.program.items)
            while stack:
                x = stack.pop()
                if isinstance(x, A.Call) and isinstance(x.func, A.Name):
                    found.add(x.func.id)
                for s in getattr(x, "__slots__", ()):
                    v = getattr(x, s, None)
                    if isinstance(v, list):
                        stack.extend(v)
                    elif hasattr(v, "__slots__") and not isinstance(v, str):
                        stack.append(v)
            self._direct_calls = found
        return found

    def gen_functional(self, d: Definition) -> None:
        """A layer written as a function, called by name (`FC(w1, x)`): its body as a pure
        function of all its arguments, in declared order (the weights as given, no
        quantization: the caller passes the values the computation uses)."""
        node = d.node
        ctx = Ctx()
        params = []
        # a default before a parameter without one is not Python's: such a call passes it
        last = max((i for i, p in enumerate(node.params or []) if p.default is None), default=-1)
        for i, p in enumerate(node.params or []):
            ctx.locals.add(p.name)
            params.append(py_local(p.name) + (f"={self.expr(p.default, ctx)}"
                                               if p.default is not None and i > last else ""))
        body = forward_body(node)
        self.emit(0, f"def {internal('f', d.name)}({', '.join(params)}):")
        self.emit(1, f'"""`{d.name}(…)` called directly: a pure function of its arguments."""')
        for p in node.params or []:
            if p.type is not None and p.type.name == "TernaryTensor":
                # trits passed in (`ternary_tensor(…)`, int8) compute as the float storage of
                # a layer's ternary weight does, so `x @ w` mixes them with float inputs
                self.emit(1, f"{py_local(p.name)} = trt.cast({py_local(p.name)}, 'float32')")
        self.gen_dim_bindings(node.params or [], body, ctx, 1)
        if not body:
            self.emit(1, "return None")
        self.block(body, ctx, 1)

    def kind_of(self, lk: A.LayerKind) -> str | None:
        """The builtin kind `lk` names (aliases resolved), None for a user definition."""
        spec, _ = self.checker.resolve_kind(lk.kind, lk.span)
        return spec.name if spec is not None else None

    def quant_section(self, node) -> dict:
        q = {"quantizer": "twn", "per_channel": False, "threshold": None}
        # the settings the checker reads from the sections (one reading for layers and params)
        q.update({k: v for k, v in self.checker.quant_section_defaults(node).items()
                  if k in ("quantizer", "per_channel", "threshold")})
        if L.needs_default_threshold(q["quantizer"], q["threshold"] is not None):
            q["threshold"] = L.DEFAULT_THRESHOLD
        return q

    def is_tensor_let(self, item: A.Let) -> bool:
        if item.type is not None:
            return item.type.name in TENSOR_TYPES
        v = item.value
        return isinstance(v, A.Call) and isinstance(v.func, A.Name) and v.func.id in (
            "random_ternary", "zeros", "ones", "randn", "rand", "empty", "full")

    def const_value(self, e: A.Expr):
        v = self.checker.eval_expr(e, self.checker_scope())
        return v.const if v.known else None

    def checker_scope(self) -> Scope:
        return Scope()

    def static_int(self, e: A.Expr) -> int | None:
        """The value of `e` when the checker knows it from constants alone (a literal, a
        config constant of the definition), else None (e.g. a hyperparameter)."""
        v = self.checker.eval_expr(e, self.scope)
        return v.const if v.known and type(v.const) is int else None

    def annotation(self, te: A.TypeExpr | None) -> str:
        if te is None:
            return ""
        return {"int": ": int", "float": ": float", "bool": ": bool", "str": ": str"}.get(
            "int" if te.name.startswith("int") else "float" if te.name.startswith(
                ("float", "bfloat")) else te.name, "")

    def gen_param(self, name: str, te: A.TypeExpr | None, init: A.Expr | None, ctx: Ctx,
                  indent: int) -> None:
        shape = None
        if te is not None and te.shape is not None:
            dims = []
            for d in te.shape:
                if isinstance(d.value, int):
                    dims.append(str(d.value))
                elif isinstance(d.value, str):
                    if d.value not in ctx.locals:
                        raise CodegenError(f"parameter `{name}` has the unbound dim `{d.value}`")
                    dims.append(py_local(d.value))
                elif d.value is None:
                    raise CodegenError(f"parameter `{name}` has an unknown dim `?`")
                else:
                    dims.append(self.expr(d.value, ctx))
            shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        if init is not None:
            value = self.expr(init, ctx)
            if isinstance(init, A.Call) and isinstance(init.func, A.Name) and \
                    init.func.id == "random_ternary":
                value = f"{value}.to(torch.float32)"
        elif shape is not None:
            value = f"trt.init_weight({shape})"
        else:
            raise CodegenError(f"parameter `{name}` needs a shape or an initializer")
        self.emit(indent, f"self.{py_attr(name)} = nn.Parameter(torch.as_tensor({value}, "
                          f"dtype=torch.float32))")

    def gen_param_decl(self, item: A.ParamDecl, ctx: Ctx, indent: int) -> None:
        """`param name: [if (c)] T [= init] [{ init: "kind", … }]`: an nn.Parameter, set
        to None when the condition is false."""
        te = param_type(item)
        if item.cond is not None:
            self.emit(indent, f"if {self.expr(item.cond, ctx)}:")
            indent += 1
        kind, keys = param_init(item)
        if kind is not None:
            value = self.init_expr(kind, keys, self.shape_dims(item.name, te, ctx), ctx)
            frozen = "" if param_trainable(item) else ", requires_grad=False"
            self.emit(indent, f"self.{py_attr(item.name)} = nn.Parameter({value}{frozen})")
        else:
            self.gen_param(item.name, te, item.init, ctx, indent)
            if not param_trainable(item):   # `requires_grad: false`: not trained
                self.emit(indent, f"self.{py_attr(item.name)}.requires_grad_(False)")
        if item.cond is not None:
            self.emit(indent - 1, "else:")
            self.emit(indent, f"self.{py_attr(item.name)} = None")

    def shape_dims(self, name: str, te: A.TypeExpr, ctx: Ctx) -> list[str]:
        dims = []
        for d in te.shape or []:
            if isinstance(d.value, int):
                dims.append(str(d.value))
            elif isinstance(d.value, str):
                if d.value not in ctx.locals:
                    raise CodegenError(f"parameter `{name}` has the unbound dim `{d.value}`")
                dims.append(py_local(d.value))
            elif d.value is None:
                raise CodegenError(f"parameter `{name}` has an unknown dim `?`")
            else:
                dims.append(self.expr(d.value, ctx))
        return dims

    def init_expr(self, kind: str, keys: dict[str, A.Expr], dims: list[str], ctx: Ctx) -> str:
        """The initial value of a parameter with an init spec (the formulas of
        torch.nn.init: Glorot and He bounds from the fans of the shape)."""
        def k(key: str) -> str:
            return self.expr(keys[key], ctx) if key in keys else _q(INIT_DEFAULTS[key])

        shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        rec = "".join(f" * {d}" for d in dims[2:])
        fan_in = f"({dims[1]}{rec})" if len(dims) >= 2 else (dims[0] if dims else "1")
        fan_out = f"({dims[0]}{rec})" if len(dims) >= 2 else (dims[0] if dims else "1")
        if kind == "normal":
            return f"torch.randn({shape}) * {atomic(k('std'))} + {atomic(k('mean'))}"
        if kind == "uniform":
            lo = atomic(k("low"))
            return f"torch.rand({shape}) * ({k('high')} - {lo}) + {lo}"
        if kind in ("zeros", "ones"):
            return f"torch.{kind}({shape})"
        if kind == "constant":
            return f"torch.full({shape}, float({k('value')}))"
        if kind.startswith("xavier"):
            var = f"2.0 / ({fan_in} + {fan_out})"
            if kind == "xavier_normal":
                return f"torch.randn({shape}) * ({atomic(k('gain'))} * ({var}) ** 0.5)"
            return (f"(torch.rand({shape}) * 2.0 - 1.0) * "
                    f"({atomic(k('gain'))} * (3.0 * {var}) ** 0.5)")
        # kaiming: the gain of the nonlinearity, over the chosen fan
        nl = self.const_value(keys["nonlinearity"]) if "nonlinearity" in keys \
            else INIT_DEFAULTS["nonlinearity"]
        gain = {"relu": "2.0 ** 0.5", "linear": "1.0", "sigmoid": "1.0", "tanh": "(5.0 / 3.0)"
                }.get(nl, f"(2.0 / (1.0 + {atomic(k('a'))} ** 2)) ** 0.5")
        mode = self.const_value(keys["mode"]) if "mode" in keys else "fan_in"
        fan = fan_out if mode == "fan_out" else fan_in
        if kind == "kaiming_normal":
            return f"torch.randn({shape}) * ({gain} / {atomic(fan)} ** 0.5)"
        return f"(torch.rand({shape}) * 2.0 - 1.0) * ({gain} * (3.0 / {atomic(fan)}) ** 0.5)"

    def gen_state(self, item: A.StateDecl, ctx: Ctx, indent: int) -> None:
        """`state steps: int = 0`: a registered buffer (in the state_dict, not learned)."""
        te = item.type
        tensor = te.name in TENSOR_TYPES
        dtype = "torch.float32" if tensor or te.name.startswith(("float", "bfloat")) else None
        if item.init is not None:
            value = self.expr(item.init, ctx)
        elif tensor:
            dims = self.shape_dims(item.name, te, ctx)
            value = f"torch.zeros(({', '.join(dims)}{',' if len(dims) == 1 else ''}))"
        else:
            value = "False" if te.name == "bool" else "0"
        dt = f", dtype={dtype}" if dtype else ""
        self.emit(indent, f"self.register_buffer({_q(py_attr(item.name))}, "
                          f"torch.as_tensor({value}{dt}))")

    def gen_state_update(self, s: A.Assign, ctx: Ctx, indent: int) -> None:
        """An assignment to a `state` in a method: the buffer is updated in training only
        (as batch-norm statistics are); in evaluation the method reads it unchanged."""
        attr = f"self.{py_attr(s.target.id)}"
        if s.op == "=":
            value = self.expr(s.value, ctx)
        else:
            op = s.op[:-1]
            value = f"{attr} {op} {self.sub(s.value, ctx, PY_PREC[op] + 1)}"
        self.emit(indent, "if self.training:")
        self.emit(indent + 1, f"{attr} = torch.as_tensor({value}, dtype={attr}.dtype)")

    def gen_layer_decl(self, decl: A.LayerDecl, ctx: Ctx, indent: int) -> None:
        attr = py_attr(decl.name)
        branches = [(decl.cond, decl.kinds)] + [(b.cond, b.kinds) for b in decl.orelse]
        for i, (cond, kinds) in enumerate(branches):
            pre: list[tuple[int, str]] = []   # statements that build a repetition first
            ctors = [self.kind_ctor(k, ctx, pre, f"{decl.name}_{i}_{j}" if i else
                                    f"{decl.name}_{j}") for j, k in enumerate(kinds)]
            value = ctors[0] if len(ctors) == 1 else "nn.Sequential(" + ", ".join(ctors) + ")"
            inner = indent
            if cond is not None:
                self.emit(indent, f"{'el' if i else ''}if {self.expr(cond, ctx)}:")
                inner = indent + 1
            elif i:
                self.emit(indent, "else:")
                inner = indent + 1
            for k, line in pre:
                self.emit(inner + k, line)
            self.emit(inner, f"self.{attr} = {value}")
        if branches[-1][0] is not None:
            self.emit(indent, "else:")
            self.emit(indent + 1, f"self.{attr} = None")

    def kind_ctor(self, lk: A.LayerKind, ctx: Ctx, pre: list[tuple[int, str]],
                  tag: str) -> str:
        """The constructor expression of one layer kind; a repetition of a user definition
        whose count is only known at run time may first add statements to `pre`."""
        spec, user = self.checker.resolve_kind(lk.kind, lk.span)
        drop = None
        if spec is not None:   # `quantization: "ternary"` may choose the ternary kind
            spec, drop = self.checker.quantization_key(lk, spec, self.scope)
        given: dict[str, str] = {}
        if spec is not None:
            order = spec.positional
        else:
            order = tuple(p.name for p in self.checker.user_params(user.node))
        for i, a in enumerate(lk.args or []):
            given[a.name if a.name is not None else order[i]] = self.expr(a.value, ctx)
        for e in lk.config:
            given[e.key] = self.expr(e.value, ctx)
        given.pop(drop, None) if drop is not None else None
        if spec is not None and spec.weights == "ternary":
            have = set(given) | ({"quantizer"} if "quantization" in given else set())
            for k, v in L.section_defaults(spec, have, getattr(self, "layer_quant", {})).items():
                given[k] = _q(v)
            q = given.get("quantizer", given.get("quantization"))
            if q is not None and "threshold" not in given and L.needs_default_threshold(
                    self.const_value_text(q), False):
                given["threshold"] = _q(L.DEFAULT_THRESHOLD)
        n = self.static_int(lk.repeat) if lk.repeat is not None else None
        if user is not None:
            if lk.repeat is None:
                return self.user_call(user, given)
            return self.repeat_user(lk, user, given, ctx, n, pre, tag)
        one = self.builtin_ctor(spec, given)
        if lk.repeat is None:
            return one
        if n is not None and n <= UNROLL:
            return "nn.Sequential(" + ", ".join([one] * n) + ")"
        i = internal("i")
        return f"nn.Sequential(*[{one} for {i} in range({self.expr(lk.repeat, ctx)})])"

    @staticmethod
    def const_value_text(text: str) -> object:
        """The value of a generated Python string literal (`'deterministic'`), else None."""
        try:
            v = pyast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return v if isinstance(v, str) else None

    def user_call(self, user: Definition, cfg: dict[str, str]) -> str:
        args = ", ".join(f"{py_local(k)}={v}" for k, v in cfg.items())
        return f"{self.class_names[user.name]}({args})"

    def repeat_user(self, lk: A.LayerKind, user: Definition, given: dict[str, str], ctx: Ctx,
                    n: int | None, pre: list[tuple[int, str]], tag: str) -> str:
        """`Block[N] { … }`: the instances configured by the repetition rule
        (`check.repetition`), each written out when `N` is a known constant up to `UNROLL`.
        Otherwise (a count known only at run time, or a large one): the first instance and
        a comprehension of the second when the rule changes nothing after it (chaining, a
        `stride` reset), else a loop over the hyperparameters in `pre`."""
        ups = self.checker.user_params(user.node)
        params = [p.name for p in ups]
        defaults = {p.name: p.default for p in ups if p.default is not None}
        clause = repeat_clause(user.node)

        def evaluate(e: A.Expr, cfg: dict[str, str]) -> str:
            return self.config_expr(e, cfg, defaults)

        if n is not None and n <= UNROLL:
            cfgs = instance_configs(params, clause, given, n, evaluate)
            return "nn.Sequential(" + ", ".join(self.user_call(user, c) for c in cfgs) + ")"
        # the number of instances after the first
        later = str(n - 1) if n is not None else \
            f"{self.sub(lk.repeat, ctx, PY_PREC['-'])} - 1"
        first, second, third = instance_configs(params, clause, given, 3, evaluate)
        i = internal("i")
        if second == third:
            return (f"nn.Sequential({self.user_call(user, first)}, "
                    f"*[{self.user_call(user, second)} for {i} in range({later})])")
        # a rule that keeps changing the config: a loop over one local per hyperparameter
        var = {k: internal("c", k) for k in second}
        init = {k: first.get(k) or (self.config_expr(defaults[k], first, defaults)
                                    if k in defaults else "None") for k in second}
        state = {k: var[k] for k in second}
        step = instance_configs(params, clause, state, 2, evaluate)[1]
        changed = [k for k in second if step[k] != var[k]]
        lst = internal("i", tag)
        pre.append((0, f"{', '.join(var[k] for k in second)} = "
                       f"{', '.join(init[k] for k in second)}"))
        pre.append((0, f"{lst} = [{self.user_call(user, {k: var[k] for k in first})}]"))
        pre.append((0, f"for {i} in range({later}):"))
        if changed:
            pre.append((1, f"{', '.join(var[k] for k in changed)} = "
                           f"{', '.join(step[k] for k in changed)}"))
        pre.append((1, f"{lst} = {lst} + [{self.user_call(user, state)}]"))
        return f"nn.Sequential(*{lst})"

    def config_expr(self, e: A.Expr, cfg: dict[str, str], defaults: dict[str, A.Expr]) -> str:
        """A repetition rule's expression over the previous instance's config `cfg` (key ->
        Python expression), a hyperparameter it does not hold taking its default: a literal
        when the checker can compute it from literals, else the expression with the config's
        values substituted."""
        scope = Scope()
        subst: dict[str, str] = {}
        for k, d in defaults.items():
            if k not in cfg and isinstance(d, A.Num | A.Str | A.Bool):
                subst[k] = self.expr(d, Ctx())
        subst.update(cfg)
        for k, v in subst.items():
            try:
                c = pyast.literal_eval(v)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if type(c) in (int, float, bool, str):
                scope.vars[k] = Value.of(c)
        v = self.checker.eval_expr(e, scope)
        if v.known and type(v.const) in (int, float, bool, str):
            return _q(v.const)
        return self.expr(e, Ctx(subst={k: atomic(x) for k, x in subst.items()}))

    # ------------------------------------------------------------------ methods
    def gen_method(self, fn: A.FnDef, attrs: set[str], ternary: dict[str, dict],
                   optional: set[str] = frozenset(), state: set[str] = frozenset()) -> None:
        ctx = Ctx(self_attrs=set(attrs), state=set(state))
        params = ["self"]
        for p in fn.params:
            ctx.locals.add(p.name)
            params.append(py_local(p.name) + (f"={self.expr(p.default, ctx)}"
                                               if p.default is not None else ""))
        self.origin(1, fn)
        self.emit(1, f"def {py_attr(fn.name) if fn.name != 'forward' else 'forward'}"
                     f"({', '.join(params)}):")
        used = self.names_used(fn.body)
        for name, q in ternary.items():
            if name in used:
                local = internal("q", name)
                thr = q.get("threshold")
                quant = self.canonical_quantizer(q.get("quantizer") or "twn")
                view = (f"trt.ternary_weight(self.{py_attr(name)}, "
                        f"quantizer={_q(quant)}, per_channel={_q(bool(q.get('per_channel')))}"
                        f", threshold={_q(thr)}, training=self.training)")
                if name in optional:   # `param b: if (c) TernaryTensor …`: None when absent
                    view = f"None if self.{py_attr(name)} is None else {view}"
                self.emit(2, f"{local} = {view}")
                ctx.ternary[name] = local
        self.gen_dim_bindings(fn.params, fn.body, ctx, 2)
        if not fn.body:
            self.emit(2, "return None")
        self.block(fn.body, ctx, 2)
