"""Layer instances: resolving a kind, its config (keys, types, values), block repetition,
and applying a layer (a builtin kind's shape rule, or a block or layer instantiated with
its config)."""

from __future__ import annotations

import math
from dataclasses import replace

from ... import vocab
from ...frontend import ast as A
from ...frontend.diagnostics import Label, Span, did_you_mean
from ...frontend.parser import TENSOR_TYPES
from .. import bounds, repetition
from .. import library as L
from ..types import (
    ANY,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    AnyT,
    LayerT,
    NoneT,
    RangeT,
    ScalarT,
    SymInt,
    TensorT,
    Value,
    shape_str,
)
from .model import (
    INIT_CHOICES,
    MAX_INSTANCE_DEPTH,
    PARAM_INITS,
    TRAINED_KEYS,
    Definition,
    KindInst,
    LayerInst,
    Scope,
    UserParam,
    _is_int,
    _num,
    callable_layer,
    layer_as_function,
    param_init,
    param_type,
    shape_items,
)


class LayersMixin:
    # ------------------------------------------------------------------ layer instances
    def resolve_kind(self, kind: str, span: Span) -> tuple[L.LayerSpec | None, Definition | None]:
        if kind in getattr(self, "rejected", ()):
            return None, None   # its definition was reported (E0900): no second diagnostic
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
        chosen = decl.kinds
        if decl.cond is not None:
            # `if`/`else if`/`else` (and `switch`, read as that chain): the first branch whose
            # condition holds; none holding and no `else`, the layer is `None`
            present = False
            for cond, kinds in [(decl.cond, decl.kinds)] + [(b.cond, b.kinds)
                                                            for b in decl.orelse]:
                if cond is None:
                    chosen, present = kinds, True
                    break
                c = self.eval_expr(cond, scope)
                if not c.known:
                    chosen, present = kinds, None
                    break
                if c.const:
                    chosen, present = kinds, True
                    break
        insts = {}
        for lks in [decl.kinds] + [b.kinds for b in decl.orelse]:
            # every branch's config is checked, the chosen one's instances are the layer
            got = self.kind_insts(lks, scope)
            insts[id(lks)] = got
        return LayerInst(decl.name, insts[id(chosen)], present, decl.span)

    def check_model_section_key(self, section: str, e: A.ConfigEntry, v: Value) -> bool:
        """The section keys with a meaning for the layers (`gradient_estimator`, a format,
        a quantizer) checked here, and `exclude` refused; True when `e` is handled."""
        c = v.const if v.known else None
        if section == "quantization" and e.key == "exclude":
            self.report("E0901", "`exclude` in `quantization { }` is not supported", e.span,
                        label="not supported",
                        help="declare the layers to keep in full precision with a "
                             "full-precision kind (`Linear`, `Conv2d`), or train with "
                             "`tritium train --fp32-layers NAME`")
            return True
        if section == "training" and e.key == "gradient_estimator":
            if not (isinstance(c, str) and c.lower() in L.GRADIENT_ESTIMATORS):
                self.report("E0309", "unknown `gradient_estimator`", e.value.span,
                            help=f"one of {', '.join(map(repr, L.GRADIENT_ESTIMATORS))}")
            return True
        if (section == "optimization" and e.key in L.FORMAT_KEYS) or (
                section == "quantization" and e.key == "format"):
            if c not in vocab.FORMATS:
                self.report("E0309", f"unknown packed format {c!r}", e.value.span,
                            help=f"one of {', '.join(map(repr, vocab.FORMATS))}")
            return True
        if section == "quantization" and L.SECTION_QUANT_KEYS.get(e.key) == "quantizer":
            if not (isinstance(c, str) and (vocab.canonical_quantizer(c) is not None or c.lower()
                                            in ("ternary", "trit", "trits", "1.58bit", "2bit"))):
                self.report("E0309", f"unknown quantizer {c!r} in `quantization {{ }}`",
                            e.value.span, help=f"one of {', '.join(vocab.QUANTIZER_NAMES)}")
            return True
        layer_key = L.SECTION_QUANT_KEYS.get(e.key) if section == "quantization" else None
        if layer_key in ("threshold", "per_channel", "ste", "act_quant") and v.known:
            # a setting of every ternary layer: the value the layer's own key takes
            if layer_key == "act_quant" and isinstance(c, str) and c.lower() in (
                    "fp32", "float32", "float", "full", "none"):
                return True
            self.check_key_value("quantization", e.key, L.LAYERS["TernaryLinear"].keys[layer_key],
                                 v, e.value.span)
            return True
        return False

    def quant_section_defaults(self, node, scope: Scope | None = None) -> dict:
        """The settings a definition's `quantization { }` section gives its ternary layers
        (layer key -> value; values that name no setting, such as `weights: "ternary"`,
        give none)."""
        out: dict = {}
        for sec in getattr(node, "body", []):
            if isinstance(sec, A.Section) and sec.name in ("training", "optimization"):
                for e in sec.entries:
                    v = self.eval_const(e.value, scope or Scope())
                    if not (v.known and isinstance(v.const, str)):
                        continue
                    if sec.name == "training" and e.key == "gradient_estimator":
                        ste = L.GRADIENT_ESTIMATORS.get(v.const.lower())
                        if ste is not None:
                            out.setdefault("ste", ste)
                    elif sec.name == "optimization" and e.key in L.FORMAT_KEYS:
                        out.setdefault("format", v.const)
        for sec in getattr(node, "body", []):
            if not (isinstance(sec, A.Section) and sec.name == "quantization"):
                continue
            for e in sec.entries:
                key = L.SECTION_QUANT_KEYS.get(e.key)
                v = self.eval_const(e.value, scope or Scope()) if key is not None else None
                if v is None or not v.known:
                    continue
                c = v.const
                if key == "quantizer" and isinstance(c, str) and c.lower() in (
                        "ternary", "trit", "trits", "1.58bit", "2bit"):
                    continue    # what every ternary layer is: no setting
                if key == "act_quant" and isinstance(c, str) and c.lower() in (
                        "fp32", "float32", "float", "full", "none"):
                    c = "none"
                out[key] = c
            if vocab.quantizer_per_channel(out.get("quantizer")) and not any(
                    L.SECTION_QUANT_KEYS.get(e.key) == "per_channel" for e in sec.entries):
                out["per_channel"] = True   # `adaptive_ternary`: TWN per output channel
        return out

    def kind_insts(self, lks: list[A.LayerKind], scope: Scope) -> list[KindInst]:
        kinds = []
        for lk in lks:
            spec, user = self.resolve_kind(lk.kind, lk.span)
            drop = None
            if spec is not None:
                spec, drop = self.quantization_key(lk, spec, scope)
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
            cfg, spans = self.config_of(lk, spec, user, scope, drop)
            kinds.append(KindInst(lk.kind, spec, user, cfg, spans, repeat, lk.span))
        return kinds

    def quantization_key(self, lk: A.LayerKind, spec: L.LayerSpec,
                         scope: Scope) -> tuple[L.LayerSpec, str | None]:
        """`quantization: "ternary"` in a layer's config (see library.quantized_kind): the
        kind to build, and the key to leave out of its config (None: keep every key)."""
        for key, expr in [(a.name, a.value) for a in lk.args or [] if a.name] + [
                (e.key, e.value) for e in lk.config]:
            if key not in L.QUANT_KEY_NAMES:
                continue
            v = self.eval_const(expr, scope)
            got = L.quantized_kind(spec, v.const if v.known else None)
            if got is None:
                self.report("E0309", f"`{lk.kind}` has no ternary form for "
                                     f"`{key}: {v.const!r}`", expr.span,
                            help="use a ternary kind (`TernaryLinear`, `TernaryConv2d`, "
                                 "`TernaryAttention`), or `quantization: \"none\"`")
                return spec, key
            return got[0], (None if got[1] else key)
        return spec, None

    def config_of(self, lk: A.LayerKind, spec: L.LayerSpec | None, user: Definition | None,
                  scope: Scope, drop: str | None = None) -> tuple[dict, dict]:
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
        if drop is not None:
            given = [g for g in given if g[0] != drop]
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
            what = self.not_a_config_value(expr, v) if keys[key].type != "any" else None
            if what is not None:
                self.report("E0308", f"`{key}` of `{lk.kind}` must be a value, got {what}",
                            expr.span, label="not a value",
                            help="a config value is a number, a string, a list or a constant")
                continue
            if v.known or isinstance(v.const, SymInt):
                if self.check_key_value(lk.kind, key, keys[key], v, expr.span):
                    cfg[key] = v.const
            elif user is not None:
                cfg[key] = v
        if spec is not None and spec.weights == "ternary":
            # the model's `quantization { }` section: settings of its ternary layers
            have = set(spans) | ({"quantizer"} if "quantization" in spans else set())
            cfg.update(L.section_defaults(spec, have, getattr(self, "quant_defaults", {})))
        if spec is not None and "quantization" in cfg:
            cfg.setdefault("quantizer", cfg.pop("quantization"))
        if spec is not None and "quantizer" in spec.keys and isinstance(
                cfg.get("quantizer", spec.keys["quantizer"].default), str):
            q = cfg.get("quantizer", spec.keys["quantizer"].default)
            fixed = q in ("threshold", "deterministic", "fixed")
            if fixed and "threshold" not in cfg:
                cfg["threshold"] = L.DEFAULT_THRESHOLD   # `quantization: "deterministic"`
            elif not fixed and "threshold" in cfg and "threshold" in spans:
                self.report("E0309", f"`threshold` applies only to the threshold quantizer, "
                                     f"not `{q}`", spans["threshold"],
                            help="use `quantizer: \"threshold\"`, or remove `threshold`")
        if spec is not None and "per_channel" in spec.keys and "per_channel" not in spans \
                and vocab.quantizer_per_channel(cfg.get("quantizer")):
            cfg["per_channel"] = True        # `adaptive_ternary`: TWN per output channel
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

    def not_a_config_value(self, expr: A.Expr, v: Value) -> str | None:
        """What a config value names when it is no value: a layer of the definition
        (`per_channel: pool`) or a model, block or layer type (`in_features: Blk`)."""
        if isinstance(v.ty, LayerT):
            return f"the layer `{expr.id}`" if isinstance(expr, A.Name) else "a layer"
        if isinstance(expr, A.Name) and isinstance(v.ty, AnyT) and expr.id in self.defs \
                and self.defs[expr.id].kind != "fn":
            return f"the {self.defs[expr.id].kind} type `{expr.id}`"
        return None

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
            self.report("E0313", f"layer `{inst.name}` does not exist here: its condition is false",
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
        """The next instance's config by the one repetition rule (`check.repetition`),
        evaluated on the checker's constants. Builtin kinds repeat as is."""
        if kind.user is None:
            return cfg
        node = kind.user.node

        def evaluate(e: A.Expr, prev) -> object:
            env = Scope()
            for k, v in prev.items():   # a SymInt is a symbolic int, not an unknown value
                env.vars[k] = v if isinstance(v, Value) else (
                    Value(INT, v, False) if isinstance(v, SymInt) else Value.of(v))
            r = self.eval_const(e, env)
            return r.const if r.known or isinstance(r.const, SymInt) else r

        return repetition.next_config([p.name for p in self.user_params(node)],
                                      repetition.repeat_clause(node), cfg, evaluate)

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
            if not kind.spec.int_input and (x.ty.ternary or dt == "trit"):
                # trits are exact in floating point: a ternary activation feeds a float layer
                # (the seed's `forward(x: TernaryTensor[b, n])` into a TernaryLinear)
                x = Value(TensorT("float32", x.ty.shape))
                dt = "float32"
            if not kind.spec.int_input and (dt is not None and (
                    dt == "bool" or dt.startswith(("int", "uint")))):
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
        if d.name in self.cycles:   # reported at its declaration (checker.cycles)
            return Value(ANY)
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
                if fn.type_params is None and getattr(d.node, "type_params", None):
                    # `layer L<T> { forward(x: Tensor<T, …>) … }`: T bound by this use
                    fn = replace(fn, type_params=d.node.type_params)
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

    # ------------------------------------------------------------------ params and state
    def param_value(self, item: A.ParamDecl, scope: Scope) -> Value:
        """`param name: [if (c)] T [= init] [{ spec }]` in a layer, block or model body: its
        value in the body's scope (None when the condition is false)."""
        present: bool | None = True
        if item.cond is not None:
            c = self.eval_expr(item.cond, scope)
            self.check_cond(c, item.cond.span)
            present = bool(c.const) if c.known and not isinstance(c.const, SymInt) else None
        te = param_type(item)
        self.check_init_spec(item, scope)
        if te.name not in TENSOR_TYPES or te.shape is None:
            if item.init is None:
                self.report("E0880", f"parameter `{item.name}` needs a tensor type with a shape",
                            item.type.span, label="no shape",
                            help="write e.g. `Tensor[out, in]`, or `Tensor { shape: [n] }`")
        else:
            self.check_param_shape(item.name, te, scope)
        ty = self.type_from_expr(te, scope)
        if item.init is not None:
            init = self.eval_expr(item.init, scope)
            self.check_assignable(ty, init, item.init.span, item.name)
        if present is False:
            return Value(NoneT(), None, True)
        return Value(ty)

    def check_init_spec(self, item: A.ParamDecl, scope: Scope) -> None:
        if item.spec is None:
            return
        seen: dict[str, Span] = {}
        for e in item.spec:
            if e.key in seen:
                self.report("E0206", f"`{e.key}` is given twice in the spec of `{item.name}`",
                            e.span, secondary=[Label(seen[e.key], "first given here")])
            seen[e.key] = e.span
        trained = [e for e in item.spec if e.key in TRAINED_KEYS]
        if len({e.key for e in trained}) > 1:
            self.report("E0206", f"`requires_grad` and `learnable` both say whether `{item.name}` "
                                 f"is trained", trained[1].span,
                        secondary=[Label(trained[0].span, "first given here")],
                        help="keep one of them (`learnable` is the seed's spelling)")
        for rg in trained[:1]:
            if not isinstance(rg.value, A.Bool):
                self.report("E0882", f"`{rg.key}` of parameter `{item.name}` must be true or "
                                     f"false", rg.value.span)
        kind, keys = param_init(item)
        init = next((e for e in item.spec if e.key == "init"), None)
        if init is not None and kind not in PARAM_INITS:
            got = f"\"{kind}\"" if kind is not None else "not a string"
            self.report("E0881", f"unknown initializer {got} for parameter `{item.name}`",
                        init.value.span, label="not an initializer",
                        help=(did_you_mean(kind, PARAM_INITS) if kind else None)
                        or f"choose one of: {', '.join(PARAM_INITS)}")
            return
        if init is not None and item.init is not None:
            self.report("E0881", f"parameter `{item.name}` has both an initial value and an "
                                 f"`init` spec", init.span, help="keep one of them")
        allowed = PARAM_INITS.get(kind or "", ())
        shape = next((e for e in item.spec if e.key == "shape"), None)
        if shape is not None and (item.type.shape is not None
                                  or shape_items(shape.value) is None):
            self.report("E0881", f"`shape` of parameter `{item.name}` must be a list of dims "
                                 f"(or a conditional of lists of one length), given when the "
                                 f"type has no shape", shape.span,
                        help="write `Tensor { shape: [n] }`, `shape: [n] if c else [1]`, or "
                             "the shape in the type")
        for key, expr in keys.items():
            if key not in allowed:
                self.report("E0881", f"`{key}` is not a key of the `{kind or 'default'}` "
                                     f"initializer (parameter `{item.name}`)", expr.span,
                            label="unknown key",
                            help=f"its keys: {', '.join(('init', 'shape') + allowed)}"
                            if kind else "name an initializer first, e.g. `init: \"normal\"`")
                continue
            v = self.eval_const(expr, scope)
            if key in INIT_CHOICES:
                if not (v.known and v.const in INIT_CHOICES[key]):
                    self.report("E0882", f"`{key}` of the `{kind}` initializer must be one of "
                                         f"{', '.join(INIT_CHOICES[key])}", expr.span)
            elif v.known and not (_num(v.const) and math.isfinite(v.const)):
                self.report("E0882", f"`{key}` of the `{kind}` initializer must be a finite "
                                     f"number, got {self.describe_const(v.const)}", expr.span)
            elif not v.known and not isinstance(v.ty, ScalarT | AnyT):
                self.report("E0882", f"`{key}` of the `{kind}` initializer must be a number",
                            expr.span)
            elif key == "std" and v.known and v.const < 0:
                self.report("E0882", f"`std` must not be negative, got {v.const}", expr.span)
        if kind == "uniform":
            lo = self.eval_const(keys["low"], scope) if "low" in keys else Value.of(0.0)
            hi = self.eval_const(keys["high"], scope) if "high" in keys else Value.of(1.0)
            if lo.known and hi.known and _num(lo.const) and _num(hi.const) \
                    and lo.const > hi.const:
                self.report("E0882", f"`low` ({lo.const}) is above `high` ({hi.const})",
                            item.span)

    def state_value(self, item: A.StateDecl, scope: Scope) -> Value:
        """`state steps: int = 0`: a buffer; `forward` reads it and (in training) updates
        it, so its value is not a constant of the body."""
        ty = self.type_from_expr(item.type, scope)
        if isinstance(ty, TensorT) and ty.shape is None and item.init is None:
            self.report("E0880", f"state `{item.name}` needs a shape or an initial value",
                        item.type.span)
        elif isinstance(ty, TensorT):
            self.check_param_shape(item.name, item.type, scope)
        elif not (isinstance(ty, ScalarT) and ty.name in INT_TYPES | FLOAT_TYPES | {"bool"}):
            self.report("E0883", f"state `{item.name}` must be a number, a bool or a tensor, "
                                 f"not {ty}", item.type.span)
        if item.init is not None:
            init = self.eval_expr(item.init, scope)
            self.check_assignable(ty, init, item.init.span, item.name)
            if not init.known and not isinstance(ty, TensorT):
                self.report("E0883", f"the initial value of state `{item.name}` must be a "
                                     f"constant", item.init.span)
        return Value(ty)

    def call_layer_definition(self, d: Definition, args: list[Value], call: A.Call) -> Value:
        """`FC(w1, x)`: calling a layer type by name. A layer written as a function (dialect
        (b)) is a pure function of its arguments, weights included; one with state (a
        `forward` method, `param`s, sub-layers) needs an instance."""
        if d.kind == "layer" and callable_layer(d.node):
            for a in call.args:
                if a.name is not None:
                    self.report("E0307", f"layer `{d.name}` called directly takes its "
                                         f"arguments by position", a.span,
                                help=f"pass them in the order `{d.name}` declares them")
                    return Value(ANY)
            view = layer_as_function(d)
            self.check_direct_call_shapes(view.node, args, call)
            return self.user_fn_call(view, args, call)
        self.report("E0310", f"`{d.name}` is a {d.kind} type; declare an instance with "
                             f"`layer x: {d.name} {{ … }}` and call that", call.func.span,
                    help="only a layer written as a function (`layer F(w: TernaryTensor…, "
                         "x: Tensor…) { … }`, no `forward`) can be called by name")
        return Value(ANY)

    def check_direct_call_shapes(self, fn: A.FnDef, args: list[Value], call: A.Call) -> None:
        """The arguments of `FC(w1, x)` against the declared shapes, symbolic dims bound
        across all of them (`n_in` of the weight and of the input), reported at the call."""
        saved = self.inner
        self.inner = []
        self.quiet += 1
        try:
            bindings: dict = {}
            for p, a in zip(fn.params, args):
                if p.type is not None and p.type.name in TENSOR_TYPES:
                    self.bind_input(p, self.type_from_expr(p.type, Scope()), a, bindings)
        finally:
            self.quiet -= 1
            problems, self.inner = self.inner, saved
        if problems:
            first = problems[0]
            self.report(first.code, f"`{fn.name}` cannot be called with these arguments: "
                                    f"{first.message}", call.span,
                        label=f"arguments {self.describe_args(args)}",
                        secondary=[Label(first.span, "declared here")] if first.span else None)

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
        return A.FnDef("forward", tensor_params, getattr(node, "ret", None), stmts, node.span,
                       getattr(node, "type_params", None))   # `layer L<T>(…)`: bound per use
