"""The checker: reporting, the check of each definition, sections."""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.diagnostics import Diagnostic, Label, Severity, Span, did_you_mean
from ...frontend.parser import TENSOR_TYPES
from ...qat import SCHEDULE_KEYS
from ...qat import check as qat_check
from .. import bounds
from .. import library as L
from ..types import (
    BOOL,
    FLOAT,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    STR,
    LayerT,
    NoneT,
    SymInt,
    Value,
)
from .calls import CallsMixin
from .cycles import find_cycles
from .declared import DeclaredTypesMixin
from .expressions import ExpressionsMixin
from .functions import FunctionsMixin
from .int_division import mark_int_divisions
from .layer_methods import bind_methods
from .layers import LayersMixin
from .members import check_members
from .model import (
    MAX_INSTANCE_DEPTH,
    Definition,
    LayerInst,
    Scope,
    UserParam,
    _is_state_let,
    _num,
    forward_body,
    is_function_layer,
    signature_weights,
)
from .powers import mark_int_powers
from .unused_layers import check_unused_layer


class Checker(LayersMixin, FunctionsMixin, DeclaredTypesMixin, ExpressionsMixin, CallsMixin):
    def __init__(self, defs: dict[str, Definition], diags: list[Diagnostic]):
        self.defs = defs
        self.diags = diags
        self.instance_depth = 0
        self.quiet = 0            # >0 while re-interpreting a definition for one instance
        self.inner: list[Diagnostic] = []
        self.used_layers: set[str] = set()
        # arguments where a number stands for a tensor parameter of a builtin: the code
        # generator wraps them in `torch.as_tensor` (CheckResult.scalar_tensor_args)
        self.scalar_tensor_args: set[Span] = set()
        # builtin calls whose form depends on their arguments' types (CheckResult.call_forms)
        self.call_forms: dict[Span, str] = {}
        self._instance_cache: dict = {}
        # When a list, every builtin layer application is recorded as
        # (qualified name, KindInst, config, input type, output type); see check.summary.
        self.trace: list | None = None
        # With `trace`: every `param` declaration of an instance, as (qualified name, type)
        self.param_trace: list | None = None
        self._path: list[str] = []
        self._fn_cache: dict = {}          # (fn, argument types) -> result of a call
        self._loop_depth = 0
        self._active_fns: set[str] = set()
        # layer applications interpreted so far for the definition being checked, counting
        # the ones a cached instance stands for (bounds.MAX_LAYERS)
        self.layer_count = 0
        self._instance_work: dict = {}
        self._layers_reported = False
        # `let x: T` declared without a value and not yet assigned: name -> (type, span, te)
        self.unassigned: dict = {}
        self.type_vars: dict = {}   # the type parameters in scope (generic fn or layer)
        self._cycles: dict | None = None

    def count_layers(self, n: int, span: Span | None) -> bool:
        """Count `n` layer applications; False (reported once) past bounds.MAX_LAYERS."""
        self.layer_count += n
        if self.layer_count <= bounds.MAX_LAYERS:
            return True
        if not self._layers_reported:
            self._layers_reported = True
            self.diags.append(Diagnostic(
                "E0312", f"the program applies more than {bounds.MAX_LAYERS} layers (counting "
                         f"every repetition and every instance of a block)", span,
                label="here the count passes the bound",
                help="use fewer or shorter repetitions"))
        return False

    # ------------------------------------------------------------------ reporting
    def report(self, code: str, message: str, span: Span | None, label: str = "",
               help: str | None = None, secondary: list[Label] | None = None,
               severity: Severity = Severity.ERROR) -> None:
        d = Diagnostic(code, message, span, severity, label, secondary or [], help)
        if self.quiet:
            if severity is Severity.ERROR:
                self.inner.append(d)
            return
        self.diags.append(d)

    def warn(self, code: str, message: str, span: Span, label: str = "",
             help: str | None = None) -> None:
        self.report(code, message, span, label, help, severity=Severity.WARNING)

    # ------------------------------------------------------------------ top level
    def check_definition(self, d: Definition) -> None:
        self.layer_count = 0
        self._layers_reported = False
        node = d.node
        if isinstance(node, A.FnDef):
            self.check_function(node, Scope(), {})
            return
        check_members(self, node)
        cycle = self.cycles.get(node.name)
        if cycle is not None:   # it contains itself (checker.cycles): reported once
            path, span, here = cycle
            if here:
                self.report("E0310", f"`{node.name}` instantiates itself "
                                     f"({' -> '.join(path)})", span,
                            label=f"builds `{path[1]}` whenever `{node.name}` is built",
                            help="a model, block or layer cannot contain itself: remove "
                                 "this layer, or give it another kind")
            return
        env = self.definition_env(node, None, abstract=True)
        if env is None:
            return
        scope, layers = env
        built = self.modules_built(layers, {}, 0)
        if built > bounds.MAX_LAYERS:
            self.report("E0312", f"`{d.name}` builds more than {bounds.MAX_LAYERS} layers "
                                 f"(counting every repetition and every layer of every block "
                                 f"instance)", node.span, label="too many layers",
                        help="use fewer or shorter repetitions")
            return
        self.check_bodies(node, scope, layers, report_unused_layers=True)

    @property
    def cycles(self) -> dict:
        """The definitions that contain themselves (checker.cycles), computed once."""
        if self._cycles is None:
            self._cycles = find_cycles(self.defs)
        return self._cycles

    def modules_built(self, layers: dict[str, LayerInst], memo: dict, depth: int) -> int:
        """How many layers constructing a definition with these `layers` builds: declared
        ones, used or not, each repetition and each layer of each block instance counted
        (an instance's later repetitions counted like its first). Stops counting past
        bounds.MAX_LAYERS."""
        total = 0
        for inst in layers.values():
            for kind in inst.kinds:
                n = kind.repeat or 1
                if kind.user is not None and depth < MAX_INSTANCE_DEPTH:
                    key = (kind.user.name, repr(sorted((k, repr(v)) for k, v in kind.cfg.items())))
                    if key not in memo:
                        memo[key] = 1   # a cycle counts once (the checker reports it)
                        self.quiet += 1
                        saved = self.inner
                        self.inner = []
                        try:
                            env = self.definition_env(kind.user.node, kind.cfg, abstract=False)
                            memo[key] = 1 + (self.modules_built(env[1], memo, depth + 1)
                                             if env is not None else 0)
                        finally:
                            self.quiet -= 1
                            self.inner = saved
                    n *= memo[key]
                total += n
                if total > bounds.MAX_LAYERS:
                    return total
        return total

    def definition_env(self, node, cfg: dict | None, abstract: bool):
        """The scope of a model/block/layer body: hyperparameters, constants, layers,
        parameters. `cfg` gives concrete hyperparameter values for one instance."""
        self.type_vars = self.layer_type_vars(node)
        scope = Scope()
        layers: dict[str, LayerInst] = {}
        cfg = cfg or {}
        self.quant_defaults = self.quant_section_defaults(node)
        for p in self.user_params(node):
            if p.name in cfg:
                v = cfg[p.name]
                scope.vars[p.name] = v if isinstance(v, Value) else Value.of(v)
            elif p.default is not None:
                scope.vars[p.name] = self.eval_const(p.default, scope)
                if p.type is not None and abstract:   # `n: int = "a"`: checked once
                    scope.vars[p.name] = self.assign_declared(
                        p.name, p.type, scope.vars[p.name], p.default.span, scope)
            else:
                scope.vars[p.name] = self.symbolic_param(p)
            scope.used.add(p.name)
        # form (b): tensor args are handled as function parameters, and the body's `let`s
        # are forward computation (check_bodies), not state
        form_b = is_function_layer(node)
        for p in signature_weights(node):
            self.check_weight_shape(node.name, p)
            if not form_b:   # form (b) binds them as it binds its inputs (check_function)
                scope.vars[p.name] = Value(self.type_from_expr(p.type, scope))
                scope.used.add(p.name)
                if self.param_trace is not None and not abstract:
                    self.param_trace.append((".".join([*self._path, p.name]),
                                             scope.vars[p.name].ty))
        members: set[str] = set()   # the names of the `param`s and `state`s so far
        for item in node.body:
            if isinstance(item, A.ConfigEntry):
                if item.key in scope.vars and item.key not in cfg:
                    self.report("E0206", f"`{item.key}` is defined twice", item.span)
                if item.key in cfg:
                    continue
                mark_int_divisions(self, item.type, item.value)   # `n: int = a / b`
                if item.type is None:
                    mark_int_powers(self, item.value)   # `hidden: 2 ** depth` (powers.py)
                scope.vars[item.key] = self.eval_const(item.value, scope)
                if item.type is not None:   # `hidden: int = c * e`: checked against the type
                    scope.vars[item.key] = self.assign_declared(
                        item.key, item.type, scope.vars[item.key], item.value.span, scope)
                scope.used.add(item.key)
            elif isinstance(item, A.LayerDecl):
                constant = (any(isinstance(i, A.ConfigEntry) and i.key == item.name
                                for i in node.body) or any(   # or a `params { }` entry
                    p.name == item.name for p in self.user_params(node))) \
                    and item.name not in layers
                # a config constant and a later layer may share a name (the seed's
                # `embed: 256` then `layer embed: …`): the layer is the name from here on
                if item.name in layers or (item.name in scope.vars and not constant):
                    self.report("E0206", f"`{item.name}` is defined twice", item.span,
                                label="second definition")
                inst = self.layer_instance(item, scope)
                layers[item.name] = inst
                scope.vars[item.name] = Value(LayerT(inst, inst.present is None))
            elif isinstance(item, A.ParamDecl | A.StateDecl) and item.name in members:
                continue   # defined twice (checker.members): the first definition stands
            elif isinstance(item, A.ParamDecl):
                members.add(item.name)
                scope.vars[item.name] = self.param_value(item, scope)
                ty = scope.vars[item.name].ty
                scope.used.add(item.name)
                if self.param_trace is not None and not abstract and not isinstance(ty, NoneT):
                    self.param_trace.append((".".join([*self._path, item.name]), ty))
            elif isinstance(item, A.StateDecl):
                members.add(item.name)
                scope.vars[item.name] = self.state_value(item, scope)
                scope.used.add(item.name)
            elif isinstance(item, A.Let) and not form_b:
                if isinstance(node, A.LayerDef) and item.type is not None \
                        and item.type.name in TENSOR_TYPES:
                    self.check_param_shape(item.name, item.type, scope)
                scope.vars[item.name] = self.eval_let(item, scope)
                scope.used.add(item.name)
                if self.param_trace is not None and not abstract \
                        and isinstance(node, A.LayerDef) and _is_state_let(item):
                    self.param_trace.append((".".join([*self._path, item.name]),
                                             scope.vars[item.name].ty))
            elif isinstance(item, A.Section) and abstract:
                self.check_section(item, scope)
            elif isinstance(item, A.Stmt) and not isinstance(item, A.Let) and abstract \
                    and isinstance(node, A.ModelDef | A.BlockDef) and not (
                        item is node.body[0] and isinstance(item, A.ExprStmt)
                        and isinstance(item.value, A.Str)):   # a docstring
                kind = "model" if isinstance(node, A.ModelDef) else "block"
                self.report("E0204", f"a statement cannot stand directly in a {kind} body",
                            item.span, help="statements belong inside `forward(…) { … }`")
        bind_methods(self, node, scope, layers)   # `function helper(…)` beside `forward`
        return scope, layers

    def check_bodies(self, node, scope: Scope, layers: dict[str, LayerInst],
                     report_unused_layers: bool) -> None:
        self.type_vars = self.layer_type_vars(node)
        self.used_layers = set()
        fns = [i for i in node.body if isinstance(i, A.FnDef)]
        for fn in fns:
            self.check_function(fn, scope, layers)
        if isinstance(node, A.LayerDef) and not fns:
            fn = A.FnDef("forward", node.params or [], node.ret, forward_body(node), node.span)
            self.check_function(fn, scope, layers, form_b=True)
        if report_unused_layers and not any(f.broken for f in fns):
            for name, inst in layers.items():
                if name not in self.used_layers and fns:
                    self.warn("W0002", f"layer `{name}` is declared but never used", inst.span,
                              label="never called in any function",
                              help=f"remove it, or call `{name}(…)` in `forward`")
                    check_unused_layer(self, name, inst)   # it is built all the same

    def user_params(self, node) -> list[UserParam]:
        """The hyperparameters of a definition, as config keys for its instances."""
        out: list[UserParam] = []
        if isinstance(node, A.BlockDef | A.ModelDef):
            for item in node.body:
                if isinstance(item, A.ParamsSection):
                    out.extend(UserParam(p.name, p.type, p.default, p.span) for p in item.params)
        elif isinstance(node, A.LayerDef):
            seen = set()
            for item in node.body:   # an explicit layer may list them in `params { }` too
                if isinstance(item, A.ParamsSection):
                    out.extend(UserParam(p.name, p.type, p.default, p.span) for p in item.params)
                    seen.update(p.name for p in item.params)
            for p in node.params or []:
                if p.type is None or p.type.name not in TENSOR_TYPES:
                    out.append(UserParam(p.name, p.type, p.default, p.span))
                    seen.add(p.name)
            # symbolic dims of the weight arguments are hyperparameters too
            for p in signature_weights(node):
                for dim in p.type.shape or []:
                    if isinstance(dim.value, str) and dim.value not in seen:
                        seen.add(dim.value)
                        out.append(UserParam(dim.value, A.TypeExpr("int"), None, dim.span))
        return out

    def check_weight_shape(self, layer: str, p: A.ParamSpec) -> None:
        """A weight in a layer's signature is allocated when the layer is built: it needs a
        shape of ints and hyperparameters (its symbolic dims are hyperparameters)."""
        if not p.type.shape:
            self.report("E0880", f"the weight `{p.name}` of layer `{layer}` has no shape",
                        p.span, label="a learned weight needs a shape",
                        help=f"declare it with one, e.g. `{p.name}: {p.type.name}[out, in]`")
            return
        for d in p.type.shape:
            if d.value is None or not isinstance(d.value, int | str):
                self.report("E0880", f"the shape of weight `{p.name}` of layer `{layer}` must "
                                     f"be sizes or hyperparameter names", d.span,
                            label="not known when the layer is built",
                            help="write the size or a name (a hyperparameter of the layer)")
                return

    @staticmethod
    def has_forward(node) -> bool:
        return any(isinstance(i, A.FnDef) for i in node.body)

    def symbolic_param(self, p: UserParam) -> Value:
        tname = p.type.name if p.type else None
        if tname in INT_TYPES or tname is None:
            return Value(INT, SymInt(p.name), False)
        if tname in FLOAT_TYPES:
            return Value(FLOAT)
        if tname == "bool":
            return Value(BOOL)
        if tname == "str":
            return Value(STR)
        return Value(self.type_from_expr(p.type, Scope()))

    # ------------------------------------------------------------------ sections
    _SECTION_KEYS = {
        "training": {"optimizer", "learning_rate", "lr", "epochs", "batch_size", "loss",
                     "weight_decay", "momentum", "lr_schedule", "scheduler", "augmentation",
                     "seed", "label_smoothing", "grad_clip", "warmup_epochs", "dataset",
                     "validation_split", "betas", "nesterov", "early_stopping", "data",
                     "gradient_estimator", "seq_len", "steps_per_epoch", "max_bytes",
                     "tokenizer", "qat_schedule", "quantization_schedule"},
        "performance": {"target_device", "max_memory_mb", *L.PERFORMANCE_KEYS},
        "quantization": {"quantizer", "weights", "activations", "format", "per_channel",
                         "threshold", "act_quant", "ste", "bits", "granularity", "method",
                         "quantization"},
        "optimization": {*L.FORMAT_KEYS},
    }

    def check_section(self, sec: A.Section, scope: Scope) -> None:
        known = self._SECTION_KEYS.get(sec.name)
        schedules: list[tuple[A.ConfigEntry, Value]] = []
        epochs = None
        for e in sec.entries:
            v = self.eval_const(e.value, scope)
            if sec.name == "training" and e.key in SCHEDULE_KEYS:
                schedules.append((e, v))      # checked below, against `epochs`
                continue
            if sec.name == "training" and e.key == "epochs" and v.known:
                epochs = v.const if type(v.const) is int and v.const > 0 else None
            if self.check_model_section_key(sec.name, e, v):
                continue
            if known is not None and e.key not in known:
                self.warn("W0004", f"unknown key `{e.key}` in `{sec.name}`: it has no effect",
                          e.span,
                          help=did_you_mean(e.key, known) or
                          f"known keys: {', '.join(sorted(known))}")
            if sec.name == "training" and v.known and _num(v.const):
                # the ranges `tritium train` enforces (one table: tritium.argcheck.RANGES)
                from ...argcheck import RANGES
                rng = RANGES.get("learning_rate" if e.key == "lr" else e.key)
                problem = rng.check(v.const) if rng is not None else None
                if problem is not None:
                    self.report("E0309", f"`{e.key}` {problem}", e.span)
        if sec.name not in self._SECTION_KEYS and sec.name != "repeat":
            self.warn("W0004", f"unknown section `{sec.name}`", sec.span,
                      help=did_you_mean(sec.name, [*self._SECTION_KEYS, "repeat", "params"]))
        for i, (e, v) in enumerate(schedules):
            self.check_qat_schedule(e, v, epochs, schedules[0][0] if i else None)

    def check_qat_schedule(self, e: A.ConfigEntry, v: Value, epochs: int | None,
                           first: A.ConfigEntry | None) -> None:
        """`qat_schedule` / `quantization_schedule` of `training { }`: the checks of
        `tritium.qat` (the ones `tritium train` makes), at the span of the part at fault."""
        if first is not None:
            self.warn("W0004", f"`{e.key}` has no effect: the QAT schedule is already given "
                               f"by `{first.key}` (line {first.span.line})", e.span,
                      label="a second schedule", help="keep one of them (the first is used)")
        if not v.known or _holds_unknown(v.const):
            return                    # not a constant: `tritium train` checks it
        _, problems = qat_check(v.const, epochs, e.key)
        for p in problems:
            node: A.Expr | A.ConfigEntry = e.value
            if p.path and isinstance(node, A.DictLit):
                entry = next((x for x in node.entries if x.key == p.path[0]), None)
                if entry is not None:
                    node = entry if p.warning else entry.value
                    if len(p.path) > 1 and isinstance(entry.value, A.ListLit) \
                            and p.path[1] < len(entry.value.items):
                        node = entry.value.items[p.path[1]]
            if p.warning:
                self.warn("W0004", p.message, node.span, help=p.help)
            else:
                self.report("E0970", p.message, node.span, help=p.help)


def _holds_unknown(value: object) -> bool:
    """Whether a value holds a part the checker does not know (None inside a dictionary or
    list, a symbolic size)."""
    if isinstance(value, dict):
        return any(v is None or _holds_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(v is None or _holds_unknown(v) for v in value)
    return not isinstance(value, bool | int | float | str | None)
