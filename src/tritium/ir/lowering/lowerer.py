"""The entry point and the driver of a lowering run: monomorphization (one IR layer per
(definition, hyperparameters) pair used), parameters, declared types, forward functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ... import vocab
from ...check import CheckResult
from ...check import library as L
from ...check.checker import Checker, Definition, LayerInst
from ...check.checker.layer_methods import MethodT
from ...check.checker.model import form_b_inputs, param_init, param_type, signature_weights
from ...check.summary import pick_definition
from ...check.types import LayerT, TensorT
from ...check.types import Value as CValue
from ...frontend import ast as A
from ...frontend.diagnostics import Span
from ...frontend.names import py_attr
from ..builder import new_function
from ..core import Function, LayerDef, Module, ParamDef, QuantSpec, SubLayer
from ..types import ScalarType, TensorType, Type
from ..verifier import VerifyError, verify
from .builtins import BuiltinsMixin
from .expressions import ExpressionsMixin
from .layers import LayersMixin
from .statements import StatementsMixin
from .values import (
    _SCALAR_DTYPES,
    _TENSOR_DTYPES,
    MAX_DEPTH,
    QUANTIZER_MAP,
    FnCtx,
    LayerBuild,
    LayerRef,
    LazyExpr,
    LoweredModel,
    LoweringError,
    ParamRef,
    QuantCfg,
    StateRef,
    SymDim,
    Undef,
    Unit,
    _flat,
    _freeze,
    _is_const,
    _is_int,
    _Unshaped,
    mono_name,
)

# ----------------------------------------------------------------------------- entry point


def lower(result: CheckResult, entry: str | None = None,
          hyper: dict[str, Any] | None = None, *,
          input_types: Sequence[Type] | None = None) -> LoweredModel:
    """Lower the checked program `result` with `entry` (a model/block/layer name; default the
    file's only model, else its last layer/block) as the root, `hyper` giving values for the
    entry's hyperparameters. `input_types` gives the entry's argument types, as a caller
    would (needed when an input is declared without a shape, e.g. `x: Tensor`; declared
    dims and dtypes win otherwise). Raises LoweringError."""
    if result.program is None or not result.ok:
        first = result.errors[0] if result.errors else None
        msg = first.message if first else "the program could not be read"
        raise LoweringError(f"cannot lower a program with errors: {msg}",
                            first.span if first else None)
    try:
        return Lowerer(result).run(entry, hyper or {},
                                    list(input_types) if input_types is not None else None)
    except LoweringError:
        raise
    except RecursionError:
        raise LoweringError("the program nests too deeply to lower") from None
    except Exception as e:  # a bug of the lowering: still no raw traceback for the user
        raise LoweringError(f"internal error while lowering: {type(e).__name__}: {e}") from e




class Lowerer(StatementsMixin, ExpressionsMixin, LayersMixin, BuiltinsMixin):
    """One lowering run: the monomorphized instances, their parameters and forward
    functions; statements, expressions, builtin layers and builtin functions come from the
    mixins."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        self.checker = Checker(result.definitions, [])
        self.builds: dict[tuple, LayerBuild] = {}
        self.names: dict[str, tuple] = {}
        self.fns: dict[tuple, tuple[str, Function | None, list[Any]]] = {}
        self.fn_order: list[Function] = []
        self.fn_names: set[str] = set()
        self.depth = 0
        self.unrolled = 0        # loop iterations unrolled so far (bounds.MAX_UNROLLED)

    # ------------------------------------------------------------------ top level
    def run(self, entry: str | None, hyper: dict[str, Any],
            input_types: list[Type] | None) -> LoweredModel:
        d = pick_definition(self.result, entry)
        if d is None:
            names = [n for n, x in self.result.definitions.items() if x.kind != "fn"]
            if entry is not None:
                raise LoweringError(f"no model, block or layer named `{entry}`",
                                    help=f"defined: {', '.join(names) or 'none'}")
            raise LoweringError("the file has no single model to lower; name the entry",
                                help=f"defined: {', '.join(names) or 'none'}")
        known = {p.name for p in self.checker.user_params(d.node)}
        for k in hyper:
            if k not in known:
                raise LoweringError(f"`{d.name}` has no hyperparameter `{k}`", d.node.span,
                                    help=f"its hyperparameters: {', '.join(sorted(known)) or 'none'}")
        root = self.instance(d, dict(hyper), d.node.span)
        self.ensure_forward(root, input_types, d.node.span)
        for b in list(self.builds.values()):
            if b.forward is None:
                self.try_forward(b)
        module = Module(list(self.fn_order) + self.ordered_layers(root))
        try:
            verify(module)
        except VerifyError as e:
            raise LoweringError(f"internal error: the lowered IR does not verify: {e}",
                                d.node.span) from None
        params: dict[str, tuple[tuple[int, ...], str, str, QuantSpec | None]] = {}
        self.collect_params(module, root.layer, "", params)
        return LoweredModel(module, f"{root.name}.forward", params)

    def ordered_layers(self, root: LayerBuild) -> list[LayerDef]:
        by_name = {b.name: b.layer for b in self.builds.values()}
        out: list[LayerDef] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen or name not in by_name:
                return
            seen.add(name)
            for s in by_name[name].sublayers:
                visit(s.kind)
            out.append(by_name[name])

        visit(root.name)
        return out

    def collect_params(self, module: Module, layer: LayerDef, prefix: str,
                       out: dict[str, tuple[tuple[int, ...], str, str, QuantSpec | None]]) -> None:
        for p in layer.params:
            t = p.type
            assert isinstance(t, TensorType)
            out[prefix + p.name] = (tuple(int(d) for d in t.shape), t.dtype, p.init or "", p.quant)  # type: ignore[arg-type]
        for s in layer.sublayers:
            sub = module.layer(s.kind)
            if sub is not None:
                self.collect_params(module, sub, prefix + s.name + ".", out)

    # ------------------------------------------------------------------ monomorphization
    def instance(self, d: Definition, cfg: dict, span: Span | None) -> LayerBuild:
        if d.kind == "fn":
            raise LoweringError(f"`{d.name}` is a function, not a layer", span)
        if self.depth >= MAX_DEPTH:
            raise LoweringError(f"`{d.name}` instantiates itself recursively", span)
        seen = len(self.checker.diags)
        scope, layers = self.checker.definition_env(d.node, cfg, abstract=False)
        errors = [x for x in self.checker.diags[seen:] if x.is_error]
        if errors:
            given = ", ".join(f"{k}: {v!r}" for k, v in cfg.items()
                              if not isinstance(v, CValue))
            raise LoweringError(f"`{d.name}` cannot be instantiated with {{{given}}}: "
                                f"{errors[0].message}", errors[0].span or span)
        hparams: dict[str, Any] = {}
        for p in self.checker.user_params(d.node):
            v = scope.vars.get(p.name)
            if v is not None and isinstance(v.ty, TensorT):
                raise LoweringError(
                    f"hyperparameter `{p.name}` of `{d.name}` is a tensor: the IR passes "
                    f"only constants to a layer's config", span,
                    help="compile for PyTorch (the default target), which passes the tensor "
                         "itself; or read the tensor in the outer layer's forward")
            if v is None or not v.known or not (_is_const(v.const) or isinstance(v.const, list)
                                                and all(_is_const(x) for x in _flat(v.const))):
                raise LoweringError(
                    f"hyperparameter `{p.name}` of `{d.name}` has no constant value", span,
                    help="give it in the layer's config (or `hyper` for the entry)")
            hparams[p.name] = v.const
        key = (d.name, _freeze(hparams))
        if key in self.builds:
            return self.builds[key]
        name = mono_name(d.name, hparams)
        base, n = name, 2
        while name in self.names and self.names[name] != key:
            name = f"{base}__{n}"
            n += 1
        self.names[name] = key
        layer = LayerDef(d.kind, name, dict(hparams), [], [], [])
        build = LayerBuild(d, name, hparams, layer, {}, scope)
        self.builds[key] = build
        self.depth += 1
        try:
            self.declare_state(build, layers)
        finally:
            self.depth -= 1
        return build

    def declare_state(self, build: LayerBuild, layers: dict[str, LayerInst]) -> None:
        node = build.d.node
        scope = build.scope
        env = build.env
        form_b = isinstance(node, A.LayerDef) and not self.checker.has_forward(node)
        quant = self.section_quant(node, scope)
        for name, v in scope.vars.items():
            if isinstance(v.ty, MethodT):
                continue   # a method: lowered inline where it is called
            if isinstance(v.ty, LayerT):
                env[name] = LayerRef(v.ty.inst)
            elif v.known and (_is_const(v.const) or isinstance(v.const, list | dict)):
                env[name] = v.const
            else:
                env[name] = Undef(name, "its value is not known when lowering")
        for p in signature_weights(node):   # the learned weights of the signature
            self.add_param(build, p.name, p.type, None, quant, p.span)
        for item in node.body:
            if isinstance(item, A.LayerDecl):
                inst = layers[item.name]
                self.declare_layer(build, inst)
            elif isinstance(item, A.ParamDecl):
                self.declare_param_decl(build, item, quant)
            elif isinstance(item, A.StateDecl):
                self.declare_state_buffer(build, item)
            elif isinstance(item, A.Let) and not form_b:
                self.declare_let(build, item, quant)

    def section_quant(self, node: Any, scope: Any) -> Callable[[], QuantCfg]:
        """The definition's `quantization { … }` section (quantizer, per_channel, threshold,
        format) for its TernaryTensor weights (TWN per tensor, t2 without one); resolved only
        when a ternary weight needs it."""
        # the settings the checker reads from the sections (one reading for layers and params)
        cfg: dict[str, Any] = {k: v for k, v in self.checker.quant_section_defaults(node, scope).items()
                               if k in ("quantizer", "per_channel", "threshold", "format")}
        if L.needs_default_threshold(cfg.get("quantizer"), "threshold" in cfg):
            cfg["threshold"] = L.DEFAULT_THRESHOLD
        return lambda: self.quant_cfg(cfg, "twn", getattr(node, "span", None))

    def quant_cfg(self, cfg: dict, default: str, span: Span | None) -> QuantCfg:
        raw = cfg.get("quantizer") or cfg.get("quantization") or default
        q = QUANTIZER_MAP.get(str(raw).strip().lower())
        if q is None:
            raise LoweringError(f"unknown quantizer `{raw}`", span,
                                help=f"choose one of: {', '.join(QUANTIZER_MAP)}")
        th = cfg.get("threshold")
        if q == "threshold" and th is None:
            raise LoweringError(f"quantizer `{raw}` needs a `threshold` (the runtime has no "
                                "default)", span, help="add e.g. `threshold: 0.05`")
        if q != "threshold" and th is not None:
            raise LoweringError(f"`threshold` only applies to the fixed-threshold quantizer, not "
                                f"to `{raw}` (the runtime rejects it)", span,
                                help="remove `threshold`, or use `quantizer: \"threshold\"`")
        fmt = cfg.get("format") or "t2"
        if fmt not in vocab.FORMATS:
            raise LoweringError(f"unknown packing format `{fmt}`", span)
        return QuantCfg(q, bool(cfg.get("per_channel", False)) or vocab.quantizer_per_channel(raw),
                        None if th is None else float(th), fmt)

    def declare_layer(self, build: LayerBuild, inst: LayerInst) -> None:
        if inst.present is None:
            raise LoweringError(f"the condition of layer `{inst.name}` is not known when "
                                "lowering", inst.span)
        units: list[Unit] = []
        build.units[inst.name] = units
        if not inst.present:
            return
        for i, kind in enumerate(inst.kinds):
            if kind.spec is None and kind.user is None:
                raise LoweringError(f"unknown layer kind `{kind.kind}`", kind.span)
            cfg = dict(kind.cfg)
            for r in range(kind.repeat or 1):
                if r > 0:
                    cfg = self.checker.next_repeat_cfg(kind, cfg)
                parts = ([str(i)] if len(inst.kinds) > 1 else []) + (
                    [str(r)] if kind.repeat is not None else [])
                path = ".".join([py_attr(inst.name), *parts])
                if kind.spec is not None:
                    for k, v in cfg.items():
                        if isinstance(v, CValue) or (isinstance(v, str) and not _is_const(v)):
                            raise LoweringError(f"config key `{k}` of layer `{inst.name}` has no "
                                                "constant value", kind.span)
                    self.declare_builtin(build, path, kind.spec, cfg, kind.span)
                    build.layer.sublayers.append(SubLayer(path, kind.spec.name, {
                        k: v for k, v in cfg.items() if _is_const(v) or isinstance(v, list)}))
                    units.append(Unit(path, kind.spec.name, dict(cfg), kind.spec, None))
                else:
                    assert kind.user is not None
                    sub = self.instance(kind.user, dict(cfg), kind.span)
                    build.layer.sublayers.append(SubLayer(path, sub.name, dict(sub.hparams)))
                    units.append(Unit(path, kind.user.name, dict(cfg), None, sub))

    # ------------------------------------------------------------------ parameters
    def param(self, build: LayerBuild, name: str, shape: Sequence[Any], init: str,
              quant: QuantSpec | None = None, dtype: str = "f32",
              span: Span | None = None) -> None:
        dims = list(shape)
        if not all(_is_int(d) and d >= 0 for d in dims):
            raise LoweringError(f"parameter `{name}` of `{build.d.name}` needs a static shape, "
                                f"got {dims}", span)
        build.layer.params.append(ParamDef(name, TensorType(tuple(dims), dtype), init, quant))


    def add_param(self, build: LayerBuild, name: str, te: A.TypeExpr, init: A.Expr | None,
                  quant: Callable[[], QuantCfg], span: Span | None,
                  init_kind: str | None = None) -> None:
        ty = self.decl_type(te, build, span)
        if not isinstance(ty, TensorType) or ty.shape is None:
            raise LoweringError(f"parameter `{name}` needs a tensor type with a shape", span)
        ternary = te.name == "TernaryTensor"
        dtype = "f32" if ternary or ty.dtype is None else ty.dtype
        q = quant() if ternary else None
        self.param(build, py_attr(name), list(ty.shape),
                   init_kind or self.init_text(init, len(ty.shape)), q.spec if q else None,
                   dtype, span)
        build.env[name] = ParamRef(py_attr(name), build.layer.params[-1].type, q)  # type: ignore[arg-type]

    def declare_param_decl(self, build: LayerBuild, item: A.ParamDecl,
                           quant: Callable[[], QuantCfg]) -> None:
        """`param name: [if (c)] T [= init] [{ init: "kind", … }]`; None when `c` is false."""
        if item.cond is not None:
            c = self.checker.eval_const(item.cond, build.scope)
            if not c.known or not isinstance(c.const, bool):
                raise LoweringError(f"the condition of parameter `{item.name}` is not known "
                                    "when lowering", item.cond.span)
            if not c.const:
                build.env[item.name] = None
                return
        kind, _ = param_init(item)
        self.add_param(build, item.name, param_type(item), item.init, quant, item.span,
                       init_kind=kind)

    def declare_state_buffer(self, build: LayerBuild, item: A.StateDecl) -> None:
        """`state steps: int = 0`: a buffer, an IR parameter (0-d for a scalar) that the
        inference computation reads."""
        te = item.type
        if te.name in ("Tensor", "TernaryTensor"):
            ty = self.decl_type(te, build, item.span)
            if not isinstance(ty, TensorType) or ty.shape is None:
                raise LoweringError(f"state `{item.name}` needs a static shape", item.span)
            shape, dtype = list(ty.shape), "f32"
        else:
            st = self.decl_type(te, build, item.span)
            shape, dtype = [], st.dtype if isinstance(st, ScalarType) else "f32"
        self.param(build, py_attr(item.name), shape, "state", None, dtype, item.span)
        build.env[item.name] = StateRef(py_attr(item.name), build.layer.params[-1].type, None)  # type: ignore[arg-type]

    def declare_let(self, build: LayerBuild, item: A.Let, quant: Callable[[], QuantCfg]) -> None:
        ternary = item.type is not None and item.type.name == "TernaryTensor"
        call = item.value.func.id if isinstance(item.value, A.Call) and isinstance(
            item.value.func, A.Name) else None
        if ternary or call in ("random_ternary", "randn", "rand", "empty"):
            v = build.scope.vars.get(item.name)
            shape = v.ty.shape if v is not None and isinstance(v.ty, TensorT) else None
            if shape is None or not all(_is_int(d) for d in shape):
                raise LoweringError(f"weight `{item.name}` needs a static shape", item.span)
            q = quant() if ternary or call == "random_ternary" else None
            self.param(build, py_attr(item.name), list(shape),
                       self.init_text(item.value, len(shape)), q.spec if q else None,
                       span=item.span)
            build.env[item.name] = ParamRef(py_attr(item.name), build.layer.params[-1].type,  # type: ignore[arg-type]
                                            q)
        elif not isinstance(build.env.get(item.name), bool | int | float | str | list):
            build.env[item.name] = LazyExpr(item.value)

    @staticmethod
    def init_text(init: A.Expr | None, rank: int) -> str:
        if init is None:
            return "kaiming_uniform" if rank >= 2 else "zeros"
        if isinstance(init, A.Call) and isinstance(init.func, A.Name):
            if init.func.id == "full" and len(init.args) > 1 and isinstance(init.args[1].value, A.Num):
                return f"full({init.args[1].value.value})"
            return init.func.id
        if isinstance(init, A.Call) and isinstance(init.func, A.Index):
            return "values"
        if isinstance(init, A.Num):
            return f"full({init.value})"
        return "custom"

    # ------------------------------------------------------------------ types
    def decl_type(self, te: A.TypeExpr | None, build: LayerBuild | None,
                  span: Span | None) -> TensorType | ScalarType | None:
        """A declared type with hyperparameters substituted: tensor dims are ints, symbol names
        or None (`?`); a tensor type without a shape gives `_Unshaped`; None without a type."""
        if te is None:
            return None
        if te.name in ("Tensor", "TernaryTensor"):
            dtype = _TENSOR_DTYPES.get(te.dtype or "", None)
            if te.name == "TernaryTensor":
                dtype = "f32"
            if te.shape is None:
                return _Unshaped(dtype)  # type: ignore[return-value]
            dims: list[Any] = []
            for d in te.shape:
                v = d.value
                if v is None or _is_int(v):
                    dims.append(v)
                elif isinstance(v, str):
                    c = build.env.get(v) if build is not None else None
                    dims.append(c if _is_int(c) else v)
                else:
                    val = self.checker.eval_expr(v, build.scope) if build is not None else None
                    dims.append(val.const if val is not None and val.known and _is_int(val.const)
                                else None)
            return TensorType(tuple(dims), dtype or "f32")
        if te.name in _SCALAR_DTYPES:
            return ScalarType(_SCALAR_DTYPES[te.name])
        if te.name == "str":
            raise LoweringError("a `str` argument cannot be a run-time input", span)
        raise LoweringError(f"cannot lower an argument of type `{te.name}`", span)

    # ------------------------------------------------------------------ forward functions
    def forward_inputs(self, build: LayerBuild) -> tuple[A.FnDef, list[A.ParamSpec]]:
        node = build.d.node
        if not isinstance(node, A.LayerDef) and not self.checker.has_forward(node):
            raise LoweringError(f"`{build.d.name}` has no `forward`", node.span,
                                help="add `forward(x: Tensor[…]) -> Tensor { … }`")
        fn = self.checker.forward_of(node)
        if isinstance(node, A.LayerDef) and not self.checker.has_forward(node):
            params = form_b_inputs(node.params)
            return fn, params
        return fn, list(fn.params)

    def try_forward(self, build: LayerBuild) -> None:
        """The forward of a layer that is declared but never called, when its input types are
        declared; skipped (the LayerDef keeps its state only) when it cannot be lowered alone."""
        try:
            _, params = self.forward_inputs(build)
            for p in params:
                t = self.decl_type(p.type, build, p.span)
                if t is None or isinstance(t, _Unshaped):
                    return
            self.ensure_forward(build, None, build.d.node.span)
        except LoweringError:
            return

    def ensure_forward(self, build: LayerBuild, actual: list[Type] | None,
                       span: Span | None) -> Function:
        if build.forward is not None:
            return build.forward
        if build.building:
            raise LoweringError(f"`{build.d.name}` calls itself", span)
        fn, params = self.forward_inputs(build)
        if actual is not None and len(actual) != len(params):
            raise LoweringError(f"`{build.d.name}` takes {len(params)} input(s), got "
                                f"{len(actual)}", span)
        args: list[tuple[str, Type]] = []
        for i, p in enumerate(params):
            t = self.decl_type(p.type, build, p.span)
            a = actual[i] if actual is not None else None
            args.append((p.name, self.formal_type(t, a, p, build)))
        build.building = True
        try:
            f = self.lower_function("forward", fn, params, args, dict(build.env),
                                    FnCtx(build, f"{build.d.name}.forward"))
        finally:
            build.building = False
        build.forward = f
        build.layer.functions.append(f)
        return f

    def formal_type(self, decl: Any, actual: Type | None, p: A.ParamSpec,
                    build: LayerBuild | None) -> Type:
        if isinstance(decl, ScalarType):
            return decl
        if decl is None or isinstance(decl, _Unshaped):
            if actual is None:
                raise LoweringError(f"input `{p.name}` of `{build.d.name if build else '?'}` "
                                    "needs a declared shape to be lowered as the entry", p.span,
                                    help="declare it as e.g. `Tensor[batch, 64]`")
            if isinstance(actual, TensorType) and isinstance(decl, _Unshaped) and decl.dtype:
                return actual.with_dtype(decl.dtype)
            return actual
        if isinstance(actual, TensorType):
            if actual.rank != decl.rank:
                raise LoweringError(f"input `{p.name}` is declared with rank {decl.rank} but "
                                    f"gets a rank-{actual.rank} tensor", p.span)
            dtype = decl.dtype if p.type is not None and p.type.dtype else actual.dtype
            return TensorType(decl.shape, dtype)
        return decl

    def lower_function(self, name: str, fn: A.FnDef, params: list[A.ParamSpec],
                       args: list[tuple[str, Type]], env: dict[str, Any], ctx: FnCtx) -> Function:
        f, b = new_function(name, args)
        for p, v in zip(params, f.args):
            env[p.name] = v
        for p, v in zip(params, f.args):
            if p.type is None or not p.type.shape or not isinstance(v.type, TensorType):
                continue
            for i, d in enumerate(p.type.shape):
                if isinstance(d.value, str) and d.value not in env and i < v.type.rank:
                    actual = v.type.shape[i]
                    env[d.value] = actual if _is_int(actual) else SymDim(v, i, actual)
        ret = self.lower_stmts(list(fn.body), env, b, ctx)
        if ret is None:
            raise LoweringError(f"`{ctx.what}` does not return a value", fn.span)
        vals = [self.to_value(b, v, None, fn.span) for v in ret]
        b.ret(*vals)
        f.result_types = [v.type for v in vals]
        return f
