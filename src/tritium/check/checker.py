"""The checker: names, config keys, types, the trit constraint and shapes, by abstract
interpretation of every `forward` over types with symbolic dims.

Each definition is checked once on its own, with its hyperparameters as symbolic values
(`channels` stays the dim `channels`). Each use of a block or layer with a concrete config is
then interpreted again with that config and the caller's input type; a problem found only
there is reported at the call site, pointing into the definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..frontend import ast as A
from ..frontend.diagnostics import Diagnostic, Label, Severity, Span, did_you_mean
from ..frontend.parser import DTYPES, TENSOR_TYPES
from . import bounds
from . import library as L
from .builtins import FUNCTIONS
from .types import (
    ANY,
    BOOL,
    FLOAT,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    STR,
    AnyT,
    DictT,
    Dim,
    FnT,
    LayerT,
    ListT,
    NoneT,
    RangeT,
    ScalarT,
    Shape,
    SymInt,
    TensorT,
    Value,
    dim_str,
    dims_conflict,
    join_types,
    shape_str,
)

MAX_INSTANCE_DEPTH = 32
MAX_UNROLL = 64


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# ----------------------------------------------------------------------------- definitions

@dataclass(slots=True)
class Definition:
    name: str
    node: object            # ModelDef | BlockDef | LayerDef | FnDef
    file: str

    @property
    def kind(self) -> str:
        return {A.ModelDef: "model", A.BlockDef: "block", A.LayerDef: "layer",
                A.FnDef: "fn"}[type(self.node)]


@dataclass(slots=True)
class UserParam:
    name: str
    type: A.TypeExpr | None
    default: A.Expr | None
    span: Span


@dataclass(slots=True)
class KindInst:
    kind: str
    spec: L.LayerSpec | None          # builtin
    user: Definition | None           # block / layer / model
    cfg: dict                         # key -> constant (int, float, str, SymInt, list, …)
    spans: dict                       # key -> Span of the config entry
    repeat: int | None                # None: no repetition; an int: that many instances
    span: Span


@dataclass(slots=True)
class LayerInst:
    name: str
    kinds: list[KindInst]
    present: bool | None              # False: the condition is false; None: not known
    span: Span


@dataclass(slots=True)
class Scope:
    vars: dict[str, Value] = field(default_factory=dict)
    defined_at: dict[str, Span] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)


class _Abort(Exception):
    """Stops interpreting one function body after a fatal problem (already reported)."""


class Checker:
    def __init__(self, defs: dict[str, Definition], diags: list[Diagnostic]):
        self.defs = defs
        self.diags = diags
        self.instance_depth = 0
        self.quiet = 0            # >0 while re-interpreting a definition for one instance
        self.inner: list[Diagnostic] = []
        self.used_layers: set[str] = set()
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
        scope = Scope()
        layers: dict[str, LayerInst] = {}
        cfg = cfg or {}
        for p in self.user_params(node):
            if p.name in cfg:
                v = cfg[p.name]
                scope.vars[p.name] = v if isinstance(v, Value) else Value.of(v)
            elif p.default is not None:
                scope.vars[p.name] = self.eval_const(p.default, scope)
            else:
                scope.vars[p.name] = self.symbolic_param(p)
            scope.used.add(p.name)
        if isinstance(node, A.LayerDef) and not self.has_forward(node):
            pass  # form (b): tensor args are handled as function parameters
        for item in node.body:
            if isinstance(item, A.ConfigEntry):
                if item.key in scope.vars and item.key not in cfg:
                    self.report("E0206", f"`{item.key}` is defined twice", item.span)
                if item.key in cfg:
                    continue
                scope.vars[item.key] = self.eval_const(item.value, scope)
                scope.used.add(item.key)
            elif isinstance(item, A.LayerDecl):
                if item.name in layers or item.name in scope.vars:
                    self.report("E0206", f"`{item.name}` is defined twice", item.span,
                                label="second definition")
                inst = self.layer_instance(item, scope)
                layers[item.name] = inst
                scope.vars[item.name] = Value(LayerT(inst, inst.present is None))
            elif isinstance(item, A.ParamDecl):
                self.check_param_shape(item.name, item.type, scope)
                ty = self.type_from_expr(item.type, scope)
                if item.init is not None:
                    init = self.eval_expr(item.init, scope)
                    self.check_assignable(ty, init, item.init.span, item.name)
                scope.vars[item.name] = Value(ty)
                scope.used.add(item.name)
                if self.param_trace is not None and not abstract:
                    self.param_trace.append((".".join([*self._path, item.name]), ty))
            elif isinstance(item, A.Let):
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
                    and isinstance(node, A.ModelDef | A.BlockDef):
                kind = "model" if isinstance(node, A.ModelDef) else "block"
                self.report("E0204", f"a statement cannot stand directly in a {kind} body",
                            item.span, help="statements belong inside `forward(…) { … }`")
        return scope, layers

    def check_bodies(self, node, scope: Scope, layers: dict[str, LayerInst],
                     report_unused_layers: bool) -> None:
        self.used_layers = set()
        fns = [i for i in node.body if isinstance(i, A.FnDef)]
        for fn in fns:
            self.check_function(fn, scope, layers)
        if isinstance(node, A.LayerDef) and not fns:
            stmts = [i for i in node.body if isinstance(i, A.Stmt) and not isinstance(i, A.Let)]
            lets = [i for i in node.body if isinstance(i, A.Let)]
            fn = A.FnDef("forward", node.params or [], node.ret, lets + stmts, node.span)
            self.check_function(fn, scope, layers, form_b=True)
        if report_unused_layers:
            for name, inst in layers.items():
                if name not in self.used_layers and fns:
                    self.warn("W0002", f"layer `{name}` is declared but never used", inst.span,
                              label="never called in any function",
                              help=f"remove it, or call `{name}(…)` in `forward`")

    def user_params(self, node) -> list[UserParam]:
        """The hyperparameters of a definition, as config keys for its instances."""
        out: list[UserParam] = []
        if isinstance(node, A.BlockDef | A.ModelDef):
            for item in node.body:
                if isinstance(item, A.ParamsSection):
                    out.extend(UserParam(p.name, p.type, p.default, p.span) for p in item.params)
        elif isinstance(node, A.LayerDef):
            form_b = not self.has_forward(node)
            seen = set()
            for p in node.params or []:
                if p.type is None or p.type.name not in TENSOR_TYPES:
                    out.append(UserParam(p.name, p.type, p.default, p.span))
                    seen.add(p.name)
            if form_b:
                # symbolic dims of the weight arguments are hyperparameters too
                for p in node.params or []:
                    if p.type is not None and p.type.name == "TernaryTensor" and p.type.shape:
                        for dim in p.type.shape:
                            if isinstance(dim.value, str) and dim.value not in seen:
                                seen.add(dim.value)
                                out.append(UserParam(dim.value, A.TypeExpr("int"), None, dim.span))
        return out

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
                     "validation_split", "betas", "nesterov", "early_stopping", "data"},
        "performance": {"min_accuracy", "max_size_kb", "max_latency_ms", "max_params",
                        "target_device", "max_memory_mb", "min_speedup"},
        "quantization": {"quantizer", "weights", "activations", "format", "per_channel",
                         "threshold", "act_quant", "ste", "bits", "exclude", "granularity"},
    }

    def check_section(self, sec: A.Section, scope: Scope) -> None:
        known = self._SECTION_KEYS.get(sec.name)
        for e in sec.entries:
            v = self.eval_const(e.value, scope)
            if known is not None and e.key not in known:
                self.warn("W0004", f"unknown key `{e.key}` in `{sec.name}`", e.span,
                          help=did_you_mean(e.key, known) or
                          f"known keys: {', '.join(sorted(known))}")
            if sec.name == "training" and v.known and _num(v.const):
                # the ranges `tritium train` enforces (one table: tritium.argcheck.RANGES)
                from ..argcheck import RANGES
                rng = RANGES.get("learning_rate" if e.key == "lr" else e.key)
                problem = rng.check(v.const) if rng is not None else None
                if problem is not None:
                    self.report("E0309", f"`{e.key}` {problem}", e.span)
        if sec.name not in self._SECTION_KEYS and sec.name != "repeat":
            self.warn("W0004", f"unknown section `{sec.name}`", sec.span,
                      help=did_you_mean(sec.name, [*self._SECTION_KEYS, "repeat", "params"]))

    # ------------------------------------------------------------------ layer instances
    def resolve_kind(self, kind: str, span: Span) -> tuple[L.LayerSpec | None, Definition | None]:
        d = self.defs.get(kind)
        if d is not None and d.kind in ("block", "layer", "model"):
            return None, d   # user definitions shadow builtin kinds of the same name
        k = L.LAYER_ALIASES.get(kind, kind)
        if k in L.LAYERS:
            return L.LAYERS[k], None
        cands = list(L.LAYERS) + [n for n, dd in self.defs.items() if dd.kind != "fn"]
        self.report("E0303", f"unknown layer kind `{kind}`", span, label="not a layer kind",
                    help=did_you_mean(kind, cands) or "define it with `block` or `layer`, or "
                    "import the file that does")
        return None, None

    def layer_instance(self, decl: A.LayerDecl, scope: Scope) -> LayerInst:
        present: bool | None = True
        if decl.cond is not None:
            c = self.eval_expr(decl.cond, scope)
            present = bool(c.const) if c.known else None
        kinds = []
        for lk in decl.kinds:
            spec, user = self.resolve_kind(lk.kind, lk.span)
            repeat = None
            if lk.repeat is not None:
                r = self.eval_const(lk.repeat, scope)
                if r.known and _is_int(r.const) and r.const > bounds.MAX_REPEAT:
                    self.report("E0312", f"a repetition count of {r.const} is too large "
                                         f"(at most {bounds.MAX_REPEAT})", lk.repeat.span,
                                label="too many instances")
                elif r.known and _is_int(r.const) and r.const >= 1:
                    repeat = r.const
                elif r.known:
                    self.report("E0309", "a repetition count must be a positive integer",
                                lk.repeat.span, help="write e.g. `Down[2] { … }`")
            if spec is None and user is None:
                kinds.append(KindInst(lk.kind, None, None, {}, {}, repeat, lk.span))
                continue
            cfg, spans = self.config_of(lk, spec, user, scope)
            kinds.append(KindInst(lk.kind, spec, user, cfg, spans, repeat, lk.span))
        return LayerInst(decl.name, kinds, present, decl.span)

    def config_of(self, lk: A.LayerKind, spec: L.LayerSpec | None, user: Definition | None,
                  scope: Scope) -> tuple[dict, dict]:
        if spec is not None:
            keys = spec.keys
            order = spec.positional
        else:
            ups = self.user_params(user.node)
            keys = {p.name: self.key_of_user_param(p) for p in ups}
            order = tuple(p.name for p in ups)
        cfg: dict = {}
        spans: dict = {}
        given: list[tuple[str, A.Expr, Span]] = []
        for i, a in enumerate(lk.args or []):
            if a.name is None:
                if i >= len(order):
                    self.report("E0306", f"`{lk.kind}` takes at most {len(order)} positional "
                                         f"arguments, got {len(lk.args)}", a.span,
                                help=f"its arguments are: {', '.join(order) or 'none'}")
                    continue
                given.append((order[i], a.value, a.span))
            else:
                given.append((a.name, a.value, a.span))
        given.extend((e.key, e.value, e.span) for e in lk.config)
        for key, expr, span in given:
            if key in spans:
                self.report("E0206", f"config key `{key}` is given twice", span,
                            secondary=[Label(spans[key], "first given here")])
                continue
            v = self.eval_const(expr, scope)
            if key not in keys:
                self.report("E0301", f"unknown config key `{key}` for `{lk.kind}`", span,
                            label="unknown key",
                            help=did_you_mean(key, keys) or
                            (f"valid keys: {', '.join(keys)}" if keys else
                             f"`{lk.kind}` takes no configuration"))
                continue
            spans[key] = span
            if v.known or isinstance(v.const, SymInt):
                if self.check_key_value(lk.kind, key, keys[key], v, expr.span):
                    cfg[key] = v.const
            elif user is not None:
                cfg[key] = v
        if spec is not None and "quantization" in cfg:
            cfg.setdefault("quantizer", cfg.pop("quantization"))
        if spec is not None and "quantizer" in spec.keys and isinstance(
                cfg.get("quantizer", spec.keys["quantizer"].default), str):
            q = cfg.get("quantizer", spec.keys["quantizer"].default)
            fixed = q in ("threshold", "deterministic", "fixed")
            if fixed and "threshold" not in cfg:
                self.report("E0302", f"the `{q}` quantizer needs a `threshold`", lk.span,
                            help="add e.g. `threshold: 0.05`")
            elif not fixed and "threshold" in cfg and "threshold" in spans:
                self.report("E0309", f"`threshold` applies only to the threshold quantizer, "
                                     f"not `{q}`", spans["threshold"],
                            help="use `quantizer: \"threshold\"`, or remove `threshold`")
        if spec is not None:
            n = L.weight_elements(spec, cfg)
            if n is not None and n > bounds.MAX_ELEMENTS:
                self.report("E0312", f"`{lk.kind}` would allocate a weight of {n} elements "
                                     f"(at most {bounds.MAX_ELEMENTS})", lk.span,
                            label="too large")
        for key, k in keys.items():
            if key not in spans and k.required:
                self.report("E0302", f"missing required config key `{key}` for `{lk.kind}`",
                            lk.span, label=f"`{key}` is not set",
                            help=f"add `{key}: …` to the config" + (f" ({k.doc})" if k.doc else ""))
            elif key not in cfg and k.default is not None and spec is not None:
                cfg[key] = k.default
        return cfg, spans

    def key_of_user_param(self, p: UserParam) -> L.Key:
        t = p.type.name if p.type else "any"
        t = "int" if t in INT_TYPES else "float" if t in FLOAT_TYPES else t
        if t not in ("int", "float", "bool", "str"):
            t = "any"
        return L.Key(t, None, p.default is None, min=None)

    def check_key_value(self, kind: str, key: str, k: L.Key, v: Value, span: Span) -> bool:
        c = v.const
        ok = True
        t = k.type
        if isinstance(c, SymInt):
            ok = t in ("int", "pair", "ints", "padding", "float", "any")
        elif t == "int":
            ok = _is_int(c)
        elif t == "float":
            ok = _num(c)
        elif t == "bool":
            ok = isinstance(c, bool)
        elif t == "str":
            ok = isinstance(c, str)
        elif t == "pair":
            ok = L.pair(c) is not None
        elif t == "ints":
            ok = _is_int(c) or (isinstance(c, list) and all(_is_int(x) for x in c))
        elif t == "padding":
            ok = L.pair(c) is not None or c in ("same", "valid")
        elif t == "list":
            ok = isinstance(c, list)
        if isinstance(v.ty, RangeT) and t != "any":
            ok = False
        if c is None and v.known and not k.required:
            return True
        if not ok:
            want = {"int": "an integer", "float": "a number", "bool": "`true` or `false`",
                    "str": "a string", "pair": "an integer or a list of two integers",
                    "ints": "an integer or a list of integers",
                    "padding": "an integer, a pair, \"same\" or \"valid\"",
                    "list": "a list"}.get(t, t)
            got = "a range" if isinstance(v.ty, RangeT) else self.describe_const(c)
            help = None
            if t == "int" and isinstance(c, float) and math.isfinite(c) and c == int(c):
                help = f"write `{int(c)}`"
            elif t in ("int", "float") and isinstance(c, str) and not isinstance(c, SymInt):
                help = "remove the quotes"
            self.report("E0308", f"`{key}` of `{kind}` must be {want}, got {got}", span,
                        label=f"expected {want}", help=help)
            return False
        if k.choices and isinstance(c, str) and not isinstance(c, SymInt) and c not in k.choices:
            self.report("E0309", f"`{c}` is not a valid `{key}` for `{kind}`", span,
                        help=did_you_mean(c, k.choices) or f"choose one of: {', '.join(k.choices)}")
            return False
        vals = [c] if _num(c) else c if isinstance(c, list) else []
        for x in vals:
            if not _num(x):
                continue
            if isinstance(x, float) and not math.isfinite(x):
                self.report("E0309", f"`{key}` of `{kind}` must be a finite number, got {x}",
                            span, label="not finite")
                return False
            if _is_int(x) and abs(x) > bounds.MAX_DIM:
                self.report("E0312", f"`{key}` of `{kind}` is too large: {x} (at most "
                                     f"{bounds.MAX_DIM})", span, label="too large")
                return False
            if k.min is not None and x < k.min:
                what = "positive" if k.min == 1 else f"at least {k.min}"
                self.report("E0309", f"`{key}` of `{kind}` must be {what}, got {x}", span)
                return False
            if k.max is not None and x > k.max:
                self.report("E0309", f"`{key}` of `{kind}` must be at most {k.max}, got {x}",
                            span, label="out of range")
                return False
        return True

    @staticmethod
    def describe_const(c) -> str:
        if isinstance(c, bool):
            return f"`{str(c).lower()}`"
        if isinstance(c, str):
            return f"the string \"{c}\""
        if c is None:
            return "`None`"
        return f"`{c}`"

    # ------------------------------------------------------------------ applying layers
    def apply_layer(self, inst: LayerInst, args: list[Value], call: A.Call,
                    optional_ok: bool) -> Value:
        self.used_layers.add(inst.name)
        if inst.present is False:
            self.report("E0310", f"layer `{inst.name}` does not exist here: its condition is false",
                        call.span, secondary=[Label(inst.span, "declared here")],
                        help=f"guard the call with `if {inst.name} is not None {{ … }}`")
            return Value(ANY)
        cur = args
        self._path.append(inst.name)
        try:
            for i, kind in enumerate(inst.kinds):
                count = kind.repeat or 1
                cfg = dict(kind.cfg)
                for r in range(count):
                    if not self.count_layers(1, call.span):
                        return Value(ANY)
                    if r > 0:
                        cfg = self.next_repeat_cfg(kind, cfg)
                    parts = ([str(i)] if len(inst.kinds) > 1 else []) + (
                        [str(r)] if kind.repeat is not None else [])
                    self._path.extend(parts)
                    try:
                        cur = [self.apply_kind(inst, kind, cfg, cur, call)]
                    finally:
                        del self._path[len(self._path) - len(parts):]
        finally:
            self._path.pop()
        return cur[0]

    def next_repeat_cfg(self, kind: KindInst, cfg: dict) -> dict:
        """The DESIGN.md repetition rule: the block's `repeat { }` clause, else chain each
        in/out pair (in_X/out_X, X_in/X_out) and reset `stride` to 1. Builtins repeat as is."""
        if kind.user is None:
            return cfg
        node = kind.user.node
        clause = next((i for i in node.body if isinstance(i, A.Section) and i.name == "repeat"),
                      None)
        new = dict(cfg)
        if clause is not None:
            env = Scope()
            for p in self.user_params(node):
                if p.name in cfg:
                    v = cfg[p.name]
                    env.vars[p.name] = v if isinstance(v, Value) else Value.of(v)
            for e in clause.entries:
                v = self.eval_const(e.value, env)
                new[e.key] = v.const if v.known or isinstance(v.const, SymInt) else v
            return new
        names = [p.name for p in self.user_params(node)]
        for n in names:   # as the code generator's `repeat_user`: in_X := out_X, X_in := X_out
            for a, b in ((f"in_{n[4:]}", n) if n.startswith("out_") else (None, None),
                         (n[:-4] + "_in", n) if n.endswith("_out") else (None, None)):
                if a is not None and a in names and b in cfg:
                    new[a] = cfg[b]
        if "stride" in names:
            new["stride"] = 1
        return new

    def apply_kind(self, inst: LayerInst, kind: KindInst, cfg: dict, args: list[Value],
                   call: A.Call) -> Value:
        if kind.spec is None and kind.user is None:
            return Value(ANY)
        if kind.spec is not None:
            if len(args) != 1:
                self.report("E0306", f"layer `{inst.name}` takes 1 input, got {len(args)}",
                            call.span)
                return Value(TensorT("float32", None))
            x = args[0]
            if isinstance(x.ty, AnyT):
                return Value(TensorT("float32", None))
            if not isinstance(x.ty, TensorT):
                self.report("E0404", f"layer `{inst.name}` takes a tensor, got {x.ty}",
                            call.args[0].span if call.args else call.span)
                return Value(ANY)
            dt = x.ty.dtype
            if not kind.spec.int_input and (x.ty.ternary or dt is not None and (
                    dt in ("bool", "trit") or dt.startswith(("int", "uint")))):
                self.report("E0404", f"layer `{inst.name}` ({kind.kind}) computes in floating "
                                     f"point but its input holds {dt} values", call.span,
                            label=f"a {dt} tensor", help="convert it first, e.g. "
                            "`float32(x)`, or declare the input as a float tensor")
                x = Value(TensorT("float32", x.ty.shape))   # go on, to find other problems
            try:
                out = Value(kind.spec.rule(x.ty, cfg))
                if self.trace is not None:
                    self.trace.append((".".join(self._path), kind, dict(cfg), x.ty, out.ty))
                return out
            except L.ShapeError as e:
                sec = []
                if e.key and e.key in kind.spans:
                    sec.append(Label(kind.spans[e.key], f"`{e.key}` is set here"))
                elif e.key:
                    sec.append(Label(kind.span, f"`{e.key}` defaults to {cfg.get(e.key)}"))
                msg = f"layer `{inst.name}` ({kind.kind}): {e.message}"
                if x.ty.shape is not None and e.code in ("E0503", "E0507"):
                    msg += f" (input shape {shape_str(x.ty.shape)})"
                self.report(e.code, msg, call.span, label="called here", help=e.help,
                            secondary=sec)
                return Value(TensorT("float32", None))
        return self.instantiate(kind.user, cfg, args, call, inst.name)

    def instantiate(self, d: Definition, cfg: dict, args: list[Value], call: A.Call,
                    inst_name: str) -> Value:
        if self.instance_depth >= MAX_INSTANCE_DEPTH:
            self.report("E0310", f"`{d.name}` instantiates itself recursively", call.span,
                        help="a block cannot contain itself")
            return Value(ANY)
        key = (d.name, tuple(sorted((k, repr(v.ty) if isinstance(v, Value) else repr(v))
                                    for k, v in cfg.items())),
               tuple(repr(a.ty) for a in args))
        if key in self._instance_cache and self.trace is None:
            self.count_layers(self._instance_work.get(key, 0), call.span)
            return self._instance_cache[key]
        before = self.layer_count
        saved = (self.inner, self.used_layers)
        self.inner = []
        self.quiet += 1
        self.instance_depth += 1
        try:
            env = self.definition_env(d.node, cfg, abstract=False)
            result = Value(ANY)
            if env is not None:
                scope, layers = env
                fn = self.forward_of(d.node)
                result = self.check_function(fn, scope, layers, inputs=args,
                                             form_b=not self.has_forward(d.node)
                                             and isinstance(d.node, A.LayerDef))
            problems = self.inner
        finally:
            self.quiet -= 1
            self.instance_depth -= 1
            self.inner, self.used_layers = saved
        if problems:
            first = problems[0]
            sec = [Label(first.span, first.message)] if first.span else []
            code = first.code if first.code.startswith("E05") else "E0503"
            self.report(code, f"layer `{inst_name}` ({d.name}) cannot be used with this input "
                              f"and config: {first.message}", call.span,
                        label=f"input {self.describe_args(args)}", secondary=sec,
                        help=first.help)
        self._instance_cache[key] = result
        self._instance_work[key] = self.layer_count - before
        return result

    def describe_args(self, args: list[Value]) -> str:
        return ", ".join(str(a.ty) for a in args)

    def forward_of(self, node) -> A.FnDef:
        for item in node.body:
            if isinstance(item, A.FnDef) and item.name in ("forward", "__call__", "call"):
                return item
        fns = [i for i in node.body if isinstance(i, A.FnDef)]
        if fns:
            return fns[0]
        stmts = [i for i in node.body if isinstance(i, A.Stmt)]
        params = getattr(node, "params", None) or []
        tensor_params = [p for p in params if p.type is not None and p.type.name in TENSOR_TYPES]
        return A.FnDef("forward", tensor_params, getattr(node, "ret", None), stmts, node.span)

    # ------------------------------------------------------------------ functions
    def check_function(self, fn: A.FnDef, outer: Scope, layers: dict[str, LayerInst],
                       inputs: list[Value] | None = None, form_b: bool = False) -> Value:
        scope = Scope(dict(outer.vars), {}, set())
        bindings: dict[str, Dim] = {}
        params = fn.params
        if form_b:
            # form (b): TernaryTensor args are weights, scalars hyperparameters, rest inputs
            weights = [p for p in params if p.type is not None and p.type.name == "TernaryTensor"]
            for p in weights:
                scope.vars[p.name] = Value(self.type_from_expr(p.type, scope))
                scope.used.add(p.name)
            params = [p for p in params if p.type is not None and p.type.name == "Tensor"]
        if inputs is not None and len(inputs) != len(params):
            self.report("E0306", f"`{fn.name}` takes {len(params)} input(s), got {len(inputs)}",
                        fn.span)
            return Value(ANY)
        for i, p in enumerate(params):
            declared = self.type_from_expr(p.type, scope) if p.type else ANY
            if inputs is not None:
                actual = inputs[i]
                self.bind_input(p, declared, actual, bindings)
                scope.vars[p.name] = actual if not isinstance(actual.ty, AnyT) else Value(declared)
            else:
                if isinstance(declared, ScalarT):
                    v = self.symbolic_param(UserParam(p.name, p.type, None, p.span))
                    scope.vars[p.name] = v
                else:
                    scope.vars[p.name] = Value(declared)
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
        self.returns = []
        try:
            self.exec_block(fn.body, scope)
        except _Abort:
            return Value(ANY)
        finally:
            rets = self.returns
            self.returns = saved_returns
        for name, span in scope.defined_at.items():
            if name not in scope.used and not name.startswith("_"):
                self.warn("W0001", f"variable `{name}` is assigned but never used", span,
                          help=f"remove it, or name it `_{name}` if it is intentional")
        if ret_decl is not None and not isinstance(ret_decl, NoneT):
            if not rets and fn.body is not None:
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
        if isinstance(decl, ScalarT):
            self.check_assignable(decl, v, span, "the return value")

    # ------------------------------------------------------------------ statements
    def exec_block(self, stmts: list, scope: Scope) -> None:
        for s in stmts:
            self.exec_stmt(s, scope)

    def define(self, scope: Scope, name: str, v: Value, span: Span) -> None:
        if name not in scope.vars or name not in scope.defined_at:
            if name not in scope.used:
                scope.defined_at.setdefault(name, span)
        scope.vars[name] = v

    def eval_let(self, s: A.Let, scope: Scope) -> Value:
        """The value of `let name[: T] = e`, checked against and refined by T."""
        v = self.eval_expr(s.value, scope)
        if s.type is not None:
            ty = self.type_from_expr(s.type, scope)
            self.check_assignable(ty, v, s.value.span, s.name)
            if isinstance(ty, ScalarT):
                v = Value(ty, v.const, v.known)
            elif isinstance(ty, TensorT):
                v = Value(self.refine(ty, v.ty))
        return v

    def exec_stmt(self, s, scope: Scope) -> None:
        if isinstance(s, A.Let):
            self.define(scope, s.name, self.eval_let(s, scope), s.span)
        elif isinstance(s, A.Assign):
            v = self.eval_expr(s.value, scope)
            if isinstance(s.target, A.Name):
                name = s.target.id
                if s.op != "=":
                    if name not in scope.vars:
                        self.undefined(name, s.target.span, scope)
                        return
                    scope.used.add(name)
                    v = self.binary(s.op[:-1], scope.vars[name], v, s)
                if name in scope.vars and isinstance(scope.vars[name].ty, LayerT):
                    self.report("E0205", f"cannot assign to layer `{name}`", s.target.span)
                    return
                self.define(scope, name, v, s.span)
            else:
                self.eval_expr(s.target, scope)
        elif isinstance(s, A.Return):
            v = self.eval_expr(s.value, scope) if s.value is not None else Value(NoneT(), None, True)
            self.returns.append((v, s.value.span if s.value is not None else s.span))
        elif isinstance(s, A.ExprStmt):
            self.eval_expr(s.value, scope)
        elif isinstance(s, A.If):
            c = self.eval_expr(s.cond, scope)
            self.check_cond(c, s.cond.span)
            if c.known and not isinstance(c.const, SymInt):
                self.exec_block(s.then if c.const else (s.other or []), scope)
                return
            then_scope = Scope(dict(scope.vars), scope.defined_at, scope.used)
            self.exec_block(s.then, then_scope)
            else_scope = Scope(dict(scope.vars), scope.defined_at, scope.used)
            if s.other:
                self.exec_block(s.other, else_scope)
            for name in set(then_scope.vars) | set(else_scope.vars):
                a, b = then_scope.vars.get(name), else_scope.vars.get(name)
                if a is not None and b is not None:
                    scope.vars[name] = a if a is b else Value(join_types(a.ty, b.ty))
                else:
                    scope.vars[name] = a or b
        elif isinstance(s, A.For):
            it = self.eval_expr(s.iter, scope)
            if not isinstance(it.ty, RangeT | ListT | AnyT | TensorT):
                self.report("E0404", f"cannot iterate over {it.ty}", s.iter.span,
                            help="write `for i in 0..n` or `for i in range(n)`")
            n = it.const if it.known and isinstance(it.const, int) else None
            # Unroll known loops (the loop variable may feed shapes), but only the outermost
            # two levels: nested loops multiply, so inner ones run twice with an unknown index.
            exact = n is not None and n <= MAX_UNROLL and self._loop_depth < 2
            count = n if exact else (min(n, 2) if n is not None else 2)
            self._loop_depth += 1
            try:
                for i in range(count):
                    scope.vars[s.var] = Value.of(i) if exact else Value(INT)
                    scope.used.add(s.var)
                    self.exec_block(s.body, scope)
            finally:
                self._loop_depth -= 1
        elif isinstance(s, A.FnDef):
            self.report("E0204", "functions cannot be nested", s.span)

    def check_cond(self, c: Value, span: Span) -> None:
        t = c.ty
        if isinstance(t, TensorT) or (isinstance(t, ScalarT) and t.name == "str") or isinstance(
                t, ListT | DictT):
            self.report("E0406", f"a condition must be a bool, got {t}", span,
                        help="compare it, e.g. `x > 0`, or reduce a tensor first")

    # ------------------------------------------------------------------ types
    def type_from_expr(self, te: A.TypeExpr | None, scope: Scope, bindings: dict | None = None):
        if te is None:
            return ANY
        name = te.name
        if name in TENSOR_TYPES:
            ternary = name == "TernaryTensor"
            dtype = te.dtype or ("trit" if ternary else None)
            if te.dtype is not None and te.dtype not in DTYPES:
                self.report("E0401", f"unknown element type `{te.dtype}`", te.span,
                            help=did_you_mean(te.dtype, DTYPES))
            if ternary and te.dtype not in (None, "trit", "int8"):
                self.report("E0401", f"a TernaryTensor holds trits, not {te.dtype}", te.span,
                            help="write `TernaryTensor<trit, [...]>` or use `Tensor`")
            shape = None
            if te.shape is not None:
                shape = tuple(self.dim_of(d, scope, bindings) for d in te.shape)
                if not self.shape_ok(shape, te.span):
                    shape = None
            return TensorT(dtype if dtype is not None else "float32", shape, ternary)
        if name in DTYPES:
            if te.shape is not None:
                self.report("E0401", f"the scalar type `{name}` takes no shape", te.span,
                            help=f"write `Tensor<{name}, [...]>`")
            return ScalarT(name)
        if name == "None":
            return NoneT()
        if name in ("list", "List"):
            return ListT()
        if name in ("dict", "Dict"):
            return DictT()
        if name in self.defs or name in L.LAYERS:
            return ANY
        self.report("E0401", f"unknown type `{name}`", te.span,
                    help=did_you_mean(name, list(DTYPES) + list(TENSOR_TYPES)))
        return ANY

    def check_param_shape(self, name: str, te: A.TypeExpr | None, scope: Scope) -> None:
        """A parameter is allocated when its module is built: each dim of its declared
        shape must be an int, a hyperparameter or a constant known there (not `?`, not a
        name bound nowhere)."""
        if te is None or not te.shape:
            return
        for d in te.shape:
            if d.value is None:
                self.report("E0508", f"the shape of parameter `{name}` has an unknown dim `?`",
                            d.span, label="unknown when the layer is built",
                            help="write the size, a hyperparameter or a constant")
            elif isinstance(d.value, str) and (d.value not in scope.vars or isinstance(
                    scope.vars[d.value].ty, LayerT | TensorT)):
                self.report("E0304", f"the shape of parameter `{name}` names `{d.value}`, "
                                     f"which is not a hyperparameter or constant", d.span,
                            label="not defined here",
                            help=did_you_mean(d.value, [k for k, v in scope.vars.items()
                                                        if not isinstance(v.ty, LayerT)])
                            or "add it to the parameters or define a constant")

    def shape_ok(self, dims, span: Span | None) -> bool:
        """A shape within bounds.MAX_DIM and bounds.MAX_ELEMENTS (else E0312)."""
        try:
            bounds.shape_elements([d for d in dims if _is_int(d)])
        except bounds.TooLarge as exc:
            self.report("E0312", f"the shape is too large: {exc}", span, label="too large")
            return False
        return True

    def dim_of(self, d: A.Dim, scope: Scope, bindings: dict | None) -> Dim:
        v = d.value
        if v is None or _is_int(v):
            if _is_int(v) and v < 0:
                self.report("E0508", f"a dimension cannot be negative ({v})", d.span)
            return v
        if isinstance(v, str):
            if bindings and v in bindings:
                return bindings[v]
            known = scope.vars.get(v)
            if known is not None:
                scope.used.add(v)
                if known.known and _is_int(known.const):
                    return known.const
                if isinstance(known.const, SymInt):
                    return known.const
            return v
        val = self.eval_expr(v, scope)
        if val.known and _is_int(val.const):
            return val.const
        if isinstance(val.const, SymInt):
            return val.const
        return None

    def refine(self, declared: TensorT, got) -> TensorT:
        if not isinstance(got, TensorT):
            return declared
        if declared.shape is None:
            return TensorT(declared.dtype, got.shape, declared.ternary)
        if got.shape is None or len(got.shape) != len(declared.shape):
            return declared
        return TensorT(declared.dtype, tuple(a if isinstance(a, int) or b is None else b
                                             for a, b in zip(declared.shape, got.shape)),
                       declared.ternary)

    def check_assignable(self, ty, v: Value, span: Span, what: str) -> None:
        got = v.ty
        if isinstance(got, AnyT) or isinstance(ty, AnyT):
            return
        if isinstance(ty, ScalarT):
            t = ty.name
            if t == "trit":
                if v.known and _num(v.const):
                    if v.const not in (-1, 0, 1) or isinstance(v.const, float) and v.const != int(v.const):
                        self.report("E0403", f"{v.const} is not a trit: `{what}` must be -1, 0 "
                                             f"or 1", span, label="outside {-1, 0, 1}",
                                    help="a trit is one of -1, 0, 1")
                elif isinstance(got, ScalarT) and got.name in FLOAT_TYPES:
                    self.report("E0402", f"cannot store a {got.name} in trit `{what}` without a "
                                         f"cast", span, help="use `trit(…)`")
                elif not isinstance(got, ScalarT) or got.name not in INT_TYPES | {"trit"}:
                    self.report("E0401", f"`{what}` is a trit but the value is {got}", span)
                return
            if t in INT_TYPES:
                if isinstance(got, ScalarT) and got.name in FLOAT_TYPES:
                    self.report("E0402", f"cannot store a {got.name} in {t} `{what}` without a "
                                         f"cast", span, label=f"this is a {got.name}",
                                help=f"convert it explicitly: `{t}(…)`")
                elif not isinstance(got, ScalarT) or got.name not in INT_TYPES | {"trit", "bool"}:
                    self.report("E0401", f"`{what}` is declared {t} but the value is {got}", span)
                elif t == "int8" and v.known and _is_int(v.const) and not -128 <= v.const <= 127:
                    self.report("E0309", f"{v.const} does not fit in int8 (-128..127)", span)
                return
            if t in FLOAT_TYPES:
                if not isinstance(got, ScalarT) or got.name not in FLOAT_TYPES | INT_TYPES | {"trit"}:
                    self.report("E0401", f"`{what}` is declared {t} but the value is {got}", span)
                return
            if t != getattr(got, "name", None):
                self.report("E0401", f"`{what}` is declared {t} but the value is {got}", span)
            return
        if isinstance(ty, TensorT):
            if not isinstance(got, TensorT):
                self.report("E0401", f"`{what}` is declared {ty} but the value is {got}", span)
                return
            if ty.shape is not None and got.shape is not None:
                if len(ty.shape) != len(got.shape) or any(
                        dims_conflict(a, b) for a, b in zip(ty.shape, got.shape)):
                    self.report("E0401", f"`{what}` is declared {ty} but the value has shape "
                                         f"{shape_str(got.shape)}", span)
            if ty.dtype in INT_TYPES and got.dtype in FLOAT_TYPES:
                self.report("E0402", f"cannot store a {got.dtype} tensor in `{what}` ({ty}) "
                                     f"without a cast", span, help=f"use `cast(…, \"{ty.dtype}\")`")

    # ------------------------------------------------------------------ expressions
    def undefined(self, name: str, span: Span, scope: Scope) -> Value:
        help = None
        if not self.quiet:   # inside an instance only the first problem is kept: skip difflib
            cands = list(scope.vars) + [n for n, d in self.defs.items()] + list(FUNCTIONS)
            help = did_you_mean(name, cands)
        self.report("E0304", f"undefined name `{name}`", span, label="not defined", help=help)
        return Value(ANY)

    def eval_const(self, e: A.Expr, scope: Scope) -> Value:
        return self.eval_expr(e, scope)

    def eval_expr(self, e: A.Expr, scope: Scope) -> Value:
        t = type(e)
        if t is A.Num:
            return Value(FLOAT if e.is_float else INT, e.value, True)
        if t is A.Name:
            v = scope.vars.get(e.id)
            if v is not None:
                scope.used.add(e.id)
                if isinstance(v.ty, LayerT):
                    self.used_layers.add(e.id)
                return v
            if e.id in self.defs:
                d = self.defs[e.id]
                return Value(FnT(e.id)) if d.kind == "fn" else Value(ANY)
            if e.id in FUNCTIONS:
                self.report("E0310", f"`{e.id}` is a builtin function: call it, e.g. "
                                     f"`{e.id}(x)`", e.span, label="not called",
                            help="a builtin function is not a value")
                return Value(FnT(e.id))
            if e.id in L.LAYERS or e.id in L.LAYER_ALIASES or e.id in TENSOR_TYPES:
                what = "a type" if e.id in TENSOR_TYPES else "a layer kind"
                self.report("E0310", f"`{e.id}` is {what}, not a value", e.span,
                            label="not a value", help="declare a layer with "
                            f"`layer name: {e.id} {{ … }}` and call it by that name"
                            if what != "a type" else "write a tensor literal like "
                            f"`{e.id}[2](1, 0)`, or a function such as `zeros([2])`")
                return Value(ANY)
            return self.undefined(e.id, e.span, scope)
        if t is A.Str:
            return Value(STR, e.value, True)
        if t is A.Bool:
            return Value(BOOL, e.value, True)
        if t is A.NoneLit:
            return Value(NoneT(), None, True)
        if t is A.TritLit:
            if e.value not in (-1, 0, 1):
                self.report("E0403", f"`{e.value}t` is not a trit", e.span,
                            label="outside {-1, 0, 1}", help="a trit literal is -1t, 0t or 1t")
                return Value(ScalarT("trit"))
            return Value(ScalarT("trit"), e.value, True)
        if t is A.Unknown:
            return Value(ANY, None, True)
        if t is A.ListLit:
            vals = [self.eval_expr(x, scope) for x in e.items]
            if all(v.known or isinstance(v.const, SymInt) for v in vals):
                return Value(ListT(), [v.const for v in vals], True)
            return Value(ListT(), [v for v in vals], False)
        if t is A.DictLit:
            out = {}
            for entry in e.entries:
                v = self.eval_expr(entry.value, scope)
                out[entry.key] = v.const
            return Value(DictT(), out, True)
        if t is A.Unary:
            v = self.eval_expr(e.operand, scope)
            if e.op == "not":
                if v.known and not isinstance(v.const, SymInt):
                    return Value(BOOL, not v.const, True)
                return Value(BOOL)
            if e.op == "-":
                if v.known and _num(v.const):
                    if _is_int(v.const) and v.const == bounds.INT_MIN:
                        self.report("E0312", "the negation does not fit in 64 bits", e.span)
                        return Value(v.ty)
                    return Value(v.ty, -v.const, True)
                if isinstance(v.const, SymInt):
                    return Value(INT, SymInt(f"-{v.const}"))
                if isinstance(v.ty, ScalarT | TensorT | AnyT):
                    return Value(v.ty)
                self.report("E0405", f"cannot negate {v.ty}", e.span)
                return Value(ANY)
            return v
        if t is A.Binary:
            return self.eval_binary(e, scope)
        if t is A.CondExpr:
            c = self.eval_expr(e.cond, scope)
            if c.known and not isinstance(c.const, SymInt):
                return self.eval_expr(e.then if c.const else e.other, scope)
            a, b = self.eval_expr(e.then, scope), self.eval_expr(e.other, scope)
            return Value(join_types(a.ty, b.ty))
        if t is A.Call:
            return self.eval_call(e, scope)
        if t is A.Index:
            return self.eval_index(e, scope)
        if t is A.Attr:
            return self.eval_attr(e, scope)
        if t is A.Range:
            a, b = self.eval_expr(e.start, scope), self.eval_expr(e.stop, scope)
            for v, x in ((a, e.start), (b, e.stop)):
                if not isinstance(v.ty, AnyT) and not (isinstance(v.ty, ScalarT)
                                                       and v.ty.name in INT_TYPES):
                    self.report("E0404", f"a range bound must be an int, got {v.ty}", x.span)
            if a.known and b.known and _is_int(a.const) and _is_int(b.const):
                return Value(RangeT(), max(b.const - a.const, 0), True)
            return Value(RangeT())
        if t is A.Slice:
            self.report("E0201", "a slice is only allowed inside `[…]`", e.span)
            return Value(ANY)
        return Value(ANY)

    def eval_binary(self, e: A.Binary, scope: Scope) -> Value:
        # Left-deep chains (`a + b + c + …`, `p and q and …`) are walked iteratively, so a
        # 10,000-term sum does not recurse 10,000 levels.
        chain: list[A.Binary] = []
        cur: A.Expr = e
        while isinstance(cur, A.Binary):
            chain.append(cur)
            cur = cur.left
        if len(chain) > bounds.MAX_CHAIN:
            self.report("E0203", f"an expression of {len(chain) + 1} operands is too long to "
                                 f"compile (at most {bounds.MAX_CHAIN + 1})", e.span,
                        label="too long", help="split it with `let` statements")
            return Value(ANY)
        a = self.eval_expr(cur, scope)
        for node in reversed(chain):
            a = self.binary_step(node, a, scope)
        return a

    def binary_step(self, e: A.Binary, a: Value, scope: Scope) -> Value:
        op = e.op
        if op in ("and", "or"):
            if a.known and not isinstance(a.const, SymInt):
                if (op == "and" and not a.const) or (op == "or" and a.const):
                    self.names_resolve(e.right, scope)
                    return Value(BOOL, bool(a.const), True)
                b = self.eval_expr(e.right, scope)
                if b.known and not isinstance(b.const, SymInt):
                    return Value(BOOL, bool(b.const), True)
                return Value(BOOL)
            self.eval_expr(e.right, scope)
            return Value(BOOL)
        b = self.eval_expr(e.right, scope)
        return self.binary(op, a, b, e)

    def names_resolve(self, e: A.Expr, scope: Scope) -> None:
        """The operand a short-circuit skips is never evaluated, but the generated code holds
        it, so its names must still resolve: evaluate it with every diagnostic but undefined
        names (E0304) dropped (a skipped `1 / 0` is no error)."""
        out = self.inner if self.quiet else self.diags
        start = len(out)
        self.eval_expr(e, scope)
        kept = [d for d in out[start:] if d.code == "E0304"]
        del out[start:]
        out.extend(kept)

    def binary(self, op: str, a: Value, b: Value, e) -> Value:
        if op in ("is", "is not"):
            if a.known and b.known and not isinstance(a.const, SymInt) and not isinstance(
                    b.const, SymInt):
                res = a.const is b.const or (a.const is None and b.const is None)
                return Value(BOOL, res if op == "is" else not res, True)
            for x, y in ((a, b), (b, a)):
                if isinstance(x.ty, LayerT) and isinstance(y.ty, NoneT):
                    present = x.ty.inst.present
                    if present is not None:
                        res = not present
                        return Value(BOOL, res if op == "is" else not res, True)
                    return Value(BOOL)
            return Value(BOOL)
        if op in ("in", "not in"):
            return Value(BOOL)
        ta, tb = a.ty, b.ty
        if isinstance(ta, AnyT) or isinstance(tb, AnyT):
            if isinstance(ta, TensorT) or isinstance(tb, TensorT):
                return Value(TensorT("float32", None))
            return Value(BOOL if op in ("==", "!=", "<", "<=", ">", ">=") else ANY)
        if isinstance(ta, ScalarT) and isinstance(tb, ScalarT):
            return self.scalar_binary(op, a, b, e)
        if isinstance(ta, TensorT | ScalarT) and isinstance(tb, TensorT | ScalarT):
            return self.tensor_binary(op, ta, tb, e)
        if op == "+" and isinstance(ta, ListT) and isinstance(tb, ListT):
            if a.known and b.known:
                if len(a.const) + len(b.const) > bounds.MAX_SEQUENCE:
                    self.report("E0312", f"a list longer than {bounds.MAX_SEQUENCE} elements "
                                         f"at compile time", e.span, label="too long")
                    return Value(ListT())
                return Value(ListT(), list(a.const) + list(b.const), True)
            return Value(ListT())
        if op in ("==", "!="):
            return Value(BOOL)
        self.report("E0405", f"`{op}` is not defined for {ta} and {tb}", e.span,
                    label=f"{ta} {op} {tb}")
        return Value(ANY)

    def scalar_binary(self, op: str, a: Value, b: Value, e) -> Value:
        ta, tb = a.ty.name, b.ty.name
        if "str" in (ta, tb):
            if op == "+" and ta == tb == "str":
                if a.known and b.known and len(a.const) + len(b.const) > bounds.MAX_SEQUENCE:
                    self.report("E0312", f"a string longer than {bounds.MAX_SEQUENCE} "
                                         f"characters at compile time", e.span, label="too long")
                    return Value(STR)
                return Value(STR, a.const + b.const, True) if a.known and b.known else Value(STR)
            if op in ("==", "!="):
                if a.known and b.known:
                    return Value(BOOL, (a.const == b.const) == (op == "=="), True)
                return Value(BOOL)
            self.report("E0405", f"`{op}` is not defined for {ta} and {tb}", e.span)
            return Value(ANY)
        is_float = ta in FLOAT_TYPES or tb in FLOAT_TYPES or op == "/"
        cmp = op in ("==", "!=", "<", "<=", ">", ">=")
        rt = BOOL if cmp else FLOAT if is_float else INT
        if op == "@":
            self.report("E0405", "`@` needs tensors, not scalars", e.span, help="use `*`")
            return Value(ANY)
        ca, cb = a.const, b.const
        if isinstance(ca, SymInt) or isinstance(cb, SymInt):
            if cmp:
                if op in ("==", "!=") and isinstance(ca, SymInt) and ca == cb:
                    return Value(BOOL, op == "==", True)
                return Value(BOOL)
            if (a.known or isinstance(ca, SymInt)) and (b.known or isinstance(cb, SymInt)) \
                    and not is_float and op in ("+", "-", "*", "//", "%"):
                return Value(INT, SymInt(f"{_paren(ca)}{op}{_paren(cb)}"))
            return Value(rt)
        if not (a.known and b.known) or not _num(ca) and not isinstance(ca, bool) \
                or not _num(cb) and not isinstance(cb, bool):
            return Value(rt)
        try:
            res = bounds.binary(op, ca, cb)
        except ZeroDivisionError:
            self.report("E0309", "division by zero", e.span)
            return Value(rt)
        except bounds.TooLarge as exc:
            self.report("E0312", f"cannot compute `{op}` at compile time: {exc}", e.span,
                        label="too large", help="integers are 64-bit and floats 64-bit IEEE")
            return Value(rt)
        except (KeyError, TypeError, ValueError):
            return Value(rt)
        if op == "**" and isinstance(res, float) and not is_float:
            rt = FLOAT
        return Value(rt, res, True)

    def tensor_binary(self, op: str, ta, tb, e) -> Value:
        if op == "@":
            if not isinstance(ta, TensorT) or not isinstance(tb, TensorT):
                self.report("E0405", "`@` needs two tensors", e.span, help="use `*` to scale")
                return Value(ANY)
            return Value(self.matmul(ta, tb, e.span, e.left.span, e.right.span))
        sa = ta.shape if isinstance(ta, TensorT) else ()
        sb = tb.shape if isinstance(tb, TensorT) else ()
        shape = self.broadcast(sa, sb, e.span)
        cmp = op in ("==", "!=", "<", "<=", ">", ">=")
        da = ta.dtype if isinstance(ta, TensorT) else None
        dtype = "bool" if cmp else (da if da not in (None, "trit", "bool") else "float32")
        return Value(TensorT(dtype, shape))

    def broadcast(self, a: Shape | None, b: Shape | None, span: Span) -> Shape | None:
        if a is None or b is None:
            return None
        out: list[Dim] = []
        for i in range(1, max(len(a), len(b)) + 1):
            x = a[-i] if i <= len(a) else 1
            y = b[-i] if i <= len(b) else 1
            if x == 1:
                out.append(y)
            elif y == 1 or x == y:
                out.append(x)
            elif dims_conflict(x, y):
                self.report("E0505", f"shapes {shape_str(a)} and {shape_str(b)} cannot be "
                                     f"broadcast: dim {dim_str(x)} vs {dim_str(y)}", span,
                            help="make the sizes equal, or one of them 1")
                return None
            else:
                out.append(x if isinstance(x, int) else y if isinstance(y, int) else x)
        return tuple(reversed(out))

    def matmul(self, ta: TensorT, tb: TensorT, span: Span, ls: Span, rs: Span,
               transpose_b: bool = False) -> TensorT:
        dtype = "float32"
        if ta.shape is None or tb.shape is None:
            return TensorT(dtype, None)
        sa, sb = ta.shape, tb.shape
        if transpose_b and len(sb) >= 2:
            sb = sb[:-2] + (sb[-1], sb[-2])
        if not sa or not sb:
            self.report("E0507", "matmul needs tensors of rank at least 1", span)
            return TensorT(dtype, None)
        k1 = sa[-1]
        k2 = sb[-2] if len(sb) >= 2 else sb[0]
        if dims_conflict(k1, k2):
            self.report("E0502", f"matmul inner dimensions differ: {shape_str(ta.shape)} @ "
                                 f"{shape_str(sb)} ({k1} vs {k2})", span,
                        label="inner dimensions must match",
                        secondary=[Label(ls, f"has {k1} columns"), Label(rs, f"has {k2} rows")],
                        help="transpose one operand or fix the declared shapes")
            return TensorT(dtype, None)
        if len(sa) == 1 and len(sb) == 1:
            return TensorT(dtype, ())
        if len(sb) == 1:
            return TensorT(dtype, sa[:-1])
        if len(sa) == 1:
            return TensorT(dtype, sb[:-2] + (sb[-1],))
        batch = self.broadcast(sa[:-2], sb[:-2], span) or ()
        return TensorT(dtype, tuple(batch) + (sa[-2], sb[-1]))

    # ------------------------------------------------------------------ indexing / attributes
    def eval_index(self, e: A.Index, scope: Scope) -> Value:
        base = self.eval_expr(e.value, scope)
        idx = []
        for i in e.indices:
            if isinstance(i, A.Slice):
                parts = [self.eval_expr(p, scope) if p is not None else None
                         for p in (i.start, i.stop, i.step)]
                idx.append(("slice", parts, i.span))
            else:
                idx.append(("index", self.eval_expr(i, scope), i.span))
        t = base.ty
        if isinstance(t, ListT):
            if len(idx) == 1 and idx[0][0] == "index":
                iv = idx[0][1]
                if base.known and iv.known and _is_int(iv.const) and isinstance(base.const, list):
                    lst = base.const
                    if not -len(lst) <= iv.const < len(lst):
                        self.report("E0508", f"index {iv.const} is out of range for a list of "
                                             f"{len(lst)}", idx[0][2])
                        return Value(ANY)
                    c = lst[iv.const]
                    if isinstance(c, Value):
                        return c
                    if isinstance(c, SymInt):
                        return Value(INT, c)
                    return Value.of(c) if not isinstance(c, str) or c is None else Value(STR, c, True)
            return Value(ANY)
        if isinstance(t, TensorT):
            if t.shape is None:
                return Value(TensorT(t.dtype, None, t.ternary))
            shape = list(t.shape)
            out: list[Dim] = []
            pos = 0
            for kind, v, span in idx:
                if pos >= len(shape):
                    self.report("E0508", f"too many indices for a tensor of rank {len(shape)}",
                                span)
                    return Value(ANY)
                d = shape[pos]
                if kind == "index":
                    if v.known and _is_int(v.const) and isinstance(d, int) and not -d <= v.const < d:
                        self.report("E0508", f"index {v.const} is out of range for dim {pos} of "
                                             f"size {d}", span)
                    elif isinstance(v.ty, TensorT):
                        out.append(None)
                else:
                    start, stop, step = (p.const if p is not None and p.known else None
                                         for p in v)
                    if step == 0:
                        self.report("E0508", "slice step cannot be zero", span)
                    if isinstance(d, int) and all(x is None or _is_int(x) for x in (start, stop, step)) \
                            and all(p is None or p.known for p in v):
                        out.append(len(range(*slice(start, stop, step).indices(d))))
                    elif all(p is None for p in v):
                        out.append(d)
                    else:
                        out.append(None)
                pos += 1
            out.extend(shape[pos:])
            return Value(TensorT(t.dtype, tuple(out), t.ternary))
        if isinstance(t, AnyT):
            return Value(ANY)
        self.report("E0405", f"cannot index {t}", e.span)
        return Value(ANY)

    def eval_attr(self, e: A.Attr, scope: Scope) -> Value:
        base = self.eval_expr(e.value, scope)
        t = base.ty
        if isinstance(t, TensorT):
            if e.attr == "shape":
                if t.shape is None:
                    return Value(ListT())
                dims = [d if _is_int(d) else SymInt(d) if isinstance(d, str) else None
                        for d in t.shape]
                if all(d is not None for d in dims):
                    return Value(ListT(), dims, True)
                return Value(ListT(), [Value(INT, d, _is_int(d)) for d in dims], False)
            if e.attr == "ndim":
                return Value(INT, len(t.shape), True) if t.shape is not None else Value(INT)
            if e.attr == "T":
                if t.shape is not None and len(t.shape) >= 2:
                    return Value(TensorT(t.dtype, t.shape[:-2] + (t.shape[-1], t.shape[-2]),
                                         t.ternary))
                return Value(t)
            if e.attr == "dtype":
                return Value(STR, t.dtype, t.dtype is not None)
            if e.attr in FUNCTIONS:
                return Value(FnT(f".{e.attr}"))
            self.report("E0304", f"a tensor has no attribute `{e.attr}`", e.span,
                        help=did_you_mean(e.attr, ["shape", "ndim", "T", "dtype",
                                                   *FUNCTIONS]))
            return Value(ANY)
        if isinstance(t, DictT) and base.known and isinstance(base.const, dict):
            if e.attr in base.const:
                return Value.of(base.const[e.attr])
        return Value(ANY)

    # ------------------------------------------------------------------ calls
    def eval_call(self, e: A.Call, scope: Scope) -> Value:
        f = e.func
        # tensor literal: Tensor[2, 2](1, 0, -1, 1)
        if isinstance(f, A.Index) and isinstance(f.value, A.Name) and f.value.id in TENSOR_TYPES:
            return self.tensor_literal(f, e, scope)
        # method call x.reshape(…) → reshape(x, …)
        if isinstance(f, A.Attr):
            base = self.eval_expr(f.value, scope)
            if isinstance(base.ty, TensorT | AnyT) and f.attr in FUNCTIONS:
                args = [base] + [self.eval_expr(a.value, scope) for a in e.args]
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
            if not isinstance(base.ty, AnyT):
                self.report("E0305", f"{base.ty} has no method `{f.attr}`", f.span,
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
                if isinstance(v.ty, LayerT):
                    for a in e.args:
                        if a.name is not None:
                            self.report("E0307", f"layer `{name}` takes no named arguments",
                                        a.span)
                    return self.apply_layer(v.ty.inst, args, e, v.ty.optional)
                if isinstance(v.ty, AnyT):
                    return Value(ANY)
                self.report("E0310", f"`{name}` is {v.ty}, not a layer or function", f.span,
                            help="only layers and functions can be called")
                return Value(ANY)
            d = self.defs.get(name)
            if d is not None:
                args = [self.eval_expr(a.value, scope) for a in e.args]
                if d.kind == "fn":
                    return self.user_fn_call(d, args, e)
                self.report("E0310", f"`{name}` is a {d.kind} type; declare an instance with "
                                     f"`layer x: {name} {{ … }}` and call that", f.span)
                return Value(ANY)
            if name in FUNCTIONS:
                args = [self.eval_expr(a.value, scope) for a in e.args]
                return self.builtin_call(name, args, [a.name for a in e.args], e)
            for a in e.args:
                self.eval_expr(a.value, scope)
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
        for a in e.args:
            self.eval_expr(a.value, scope)
        if not isinstance(callee.ty, AnyT | FnT | LayerT):
            self.report("E0310", f"{callee.ty} is not callable", f.span)
        return Value(ANY)

    def user_fn_call(self, d: Definition, args: list[Value], e: A.Call) -> Value:
        fn: A.FnDef = d.node
        n_req = sum(1 for p in fn.params if p.default is None)
        if not n_req <= len(args) <= len(fn.params):
            self.report("E0306", f"`{fn.name}` takes {len(fn.params)} argument(s), got "
                                 f"{len(args)}", e.span,
                        secondary=[Label(fn.span, "defined here")])
            return Value(ANY)
        for p, a, arg in zip(fn.params, args, e.args):
            if p.type is not None:
                ty = self.type_from_expr(p.type, Scope())
                if isinstance(ty, ScalarT):
                    self.check_assignable(ty, a, arg.span, p.name)
                elif isinstance(ty, TensorT) and not isinstance(a.ty, TensorT | AnyT):
                    self.report("E0404", f"argument `{p.name}` of `{fn.name}` must be {ty}, got "
                                         f"{a.ty}", arg.span)
        declared = Value(self.type_from_expr(fn.ret, Scope())) if fn.ret else Value(ANY)
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
            filled = args + [Value(ANY)] * (len(fn.params) - len(args))
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

    def builtin_call(self, name: str, args: list[Value], names: list[str | None], e: A.Call,
                     offset: int = 0) -> Value:
        spec = FUNCTIONS[name]
        bound: dict[str, Value] = {}
        spans: dict[str, Span] = {}
        params = spec.params
        arg_spans = ([e.func.span] if offset else []) + [a.span for a in e.args]
        positional = [(a, s) for a, n, s in zip(args, names, arg_spans) if n is None]
        if spec.variadic:
            return Value(NoneT())
        if spec.pair_op and len(positional) == 2 and isinstance(positional[1][0].ty, TensorT):
            return self.elementwise2(positional[0][0], positional[1][0], e)
        if len(positional) > len(params):
            self.report("E0306", f"`{name}` takes at most {len(params) - offset} argument(s), got "
                                 f"{len(positional) - offset}", e.span,
                        help=f"signature: {self.signature(spec)}")
            return Value(ANY)
        for p, (a, s) in zip(params, positional):
            bound[p.name] = a
            spans[p.name] = s
        for a, n, s in zip(args, names, arg_spans):
            if n is None:
                continue
            if n not in {p.name for p in params}:
                self.report("E0307", f"`{name}` has no argument named `{n}`", s,
                            help=did_you_mean(n, [p.name for p in params])
                            or f"signature: {self.signature(spec)}")
                return Value(ANY)
            if n in bound:
                self.report("E0306", f"argument `{n}` of `{name}` is given twice", s)
                return Value(ANY)
            bound[n] = a
            spans[n] = s
        for p in params:
            if p.required and p.name not in bound:
                self.report("E0306", f"`{name}` is missing its argument `{p.name}`", e.span,
                            help=f"signature: {self.signature(spec)}")
                return Value(ANY)
        for p in params:
            if p.name not in bound:
                continue
            v = bound[p.name]
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
        parts = [p.name if p.required else f"{p.name}={p.default}" for p in spec.params]
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


def _paren(c) -> str:
    s = str(c)
    return s if s.isidentifier() or s.lstrip("-").isdigit() else f"({s})"


_STATE_INITS = ("random_ternary", "zeros", "ones", "randn", "rand", "empty", "full")


def _is_state_let(item: A.Let) -> bool:
    """A `let` in a layer body that is the layer's learned state (a tensor), as the
    generated code makes it a parameter."""
    if item.type is not None:
        return item.type.name in ("Tensor", "TernaryTensor")
    v = item.value
    return isinstance(v, A.Call) and isinstance(v.func, A.Name) and v.func.id in _STATE_INITS
