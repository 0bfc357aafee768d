"""Lowering: a checked Tritium program to Tritium IR.

    lowered = lower(check_file("examples/resnet18.tri"))
    lowered.module    # tritium.ir.Module (verified)
    lowered.entry     # "ResNet18.forward"
    lowered.params    # "layer1.0.conv1.weight" -> ((64, 64, 3, 3), "f32", "kaiming_uniform", QuantSpec)

Every (definition, concrete hyperparameters) pair that is used becomes its own IR LayerDef
(monomorphization), so shapes and conditional layers are concrete. Builtin sub-layers are
emitted inline as ops on dotted parameters; user blocks/layers become `sublayer` instances
called with `call {callee = "forward", instance = …}`. Statements are lowered to SSA: `if` on
a condition known at lowering time picks its branch, other conditions become structured IR
`if` ops, `for` loops are unrolled. See docs/ir.md, "Lowering", for the rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import vocab
from ..check import CheckResult, bounds
from ..check import library as L
from ..check.builtins import FUNCTIONS, Builtin
from ..check.checker import Checker, Definition, LayerInst
from ..check.summary import pick_definition
from ..check.types import LayerT, TensorT
from ..check.types import Value as CValue
from ..frontend import ast as A
from ..frontend.diagnostics import Span
from .builder import Builder, new_function
from .core import Block, Function, LayerDef, Module, Op, ParamDef, QuantSpec, SubLayer, Value
from .ops import INDEX_DTYPES, InferError
from .types import FLOAT_DTYPES, ScalarType, TensorType, Type, promote, types_compatible
from .verifier import VerifyError, verify

__all__ = ["LoweredModel", "LoweringError", "lower", "QUANTIZER_MAP", "mono_name"]

MAX_DEPTH = 32
MAX_UNROLL = bounds.MAX_UNROLL
MAX_SPLIT_SLICES = 4096

# language quantizer names -> IR/runtime canonical names (tritium.vocab)
QUANTIZER_MAP = {n: vocab.canonical_quantizer(n) for n in vocab.QUANTIZER_NAMES}

# language dtype -> IR dtype of a tensor / of a scalar; IR tensor dtype -> language name
_TENSOR_DTYPES = {n: d.ir for n, d in vocab.DTYPES.items() if d.ir is not None}
_SCALAR_DTYPES = {n: d.ir_scalar for n, d in vocab.DTYPES.items() if d.ir is not None}
_LANG_DTYPES = vocab.IR_TO_LANG

_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul",
           "==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_ACT_LAYERS = {"ReLU": "relu", "ReLU6": "relu6", "GELU": "gelu", "SiLU": "silu",
               "Sigmoid": "sigmoid", "Tanh": "tanh"}


class LoweringError(Exception):
    """A program the lowering cannot turn into IR (or one with check errors)."""

    def __init__(self, message: str, span: Span | None = None, help: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.help = help

    def __str__(self) -> str:
        where = f"{self.span.file}:{self.span.line}:{self.span.col}: " if self.span else ""
        return where + self.message + (f" (help: {self.help})" if self.help else "")


@dataclass
class LoweredModel:
    module: Module
    entry: str
    params: dict[str, tuple[tuple[int, ...], str, str, QuantSpec | None]]


# ----------------------------------------------------------------------------- lowering values


@dataclass(frozen=True, eq=False)
class SymDim:
    """The run-time size of dim `dim` of `src` (a symbolic or unknown dim): materialized as a
    `dim` op when used as a number; usable as a symbolic dim in reshape targets."""

    src: Value
    dim: int
    name: str | None


@dataclass(frozen=True)
class ParamRef:
    name: str
    type: TensorType
    quant: QuantCfg | None


@dataclass(frozen=True)
class LayerRef:
    inst: LayerInst


@dataclass(frozen=True)
class LazyExpr:
    """A definition-level `let` whose value is computed (as IR constants) at each use."""

    expr: A.Expr


@dataclass(frozen=True)
class FnRef:
    name: str


@dataclass(frozen=True)
class RangeV:
    start: int
    stop: int


@dataclass(frozen=True)
class Undef:
    name: str
    why: str


@dataclass(frozen=True)
class _SetVar:
    """Internal statement of an unrolled loop: binds the loop variable."""

    name: str
    value: Any
    span: Span | None = None


@dataclass(frozen=True)
class QuantCfg:
    quantizer: str          # twn | absmean | threshold | stochastic
    per_channel: bool = False
    threshold: float | None = None
    format: str = "t2"

    @property
    def spec(self) -> QuantSpec:
        return QuantSpec(self.quantizer, self.per_channel, self.format)


@dataclass
class Unit:
    """One builtin or user layer application of a layer declaration (after repetition)."""

    path: str
    kind: str
    cfg: dict
    spec: L.LayerSpec | None
    build: LayerBuild | None


@dataclass
class LayerBuild:
    d: Definition
    name: str
    hparams: dict[str, Any]
    layer: LayerDef
    env: dict[str, Any]
    scope: Any
    units: dict[str, list[Unit]] = field(default_factory=dict)
    forward: Function | None = None
    building: bool = False


@dataclass
class FnCtx:
    build: LayerBuild | None
    what: str
    depth: int = 0


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_const(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str)


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if _is_int(v):
        return f"m{-v}" if v < 0 else str(v)
    if isinstance(v, float):
        return repr(v).replace("-", "m").replace(".", "p").replace("+", "")
    if isinstance(v, list | tuple):
        return "x".join(_fmt_value(x) for x in v)
    return re.sub(r"[^A-Za-z0-9_]", "_", str(v))


def mono_name(name: str, hparams: dict[str, Any]) -> str:
    """`BasicBlock__c_in_64_c_out_128_stride_2`: the definition name, then every
    hyperparameter (declaration order) and its value; just the name without hyperparameters."""
    if not hparams:
        return name
    return name + "__" + "_".join(f"{k}_{_fmt_value(v)}" for k, v in hparams.items())


def _freeze(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return (type(v).__name__, v)


def _contains_return(stmts: Sequence[Any]) -> bool:
    for s in stmts:
        if isinstance(s, A.Return):
            return True
        if isinstance(s, A.If) and (_contains_return(s.then) or _contains_return(s.other or [])):
            return True
        if isinstance(s, A.For) and _contains_return(s.body):
            return True
    return False


def _pair(v: Any, what: str, span: Span | None) -> list[int]:
    p = L.pair(v)
    if p is None:
        raise LoweringError(f"`{what}` must be an integer or a pair of integers, got {v!r}", span)
    return [p[0], p[1]]


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
        return _Lowerer(result).run(entry, hyper or {},
                                    list(input_types) if input_types is not None else None)
    except LoweringError:
        raise
    except RecursionError:
        raise LoweringError("the program nests too deeply to lower") from None
    except Exception as e:  # a bug of the lowering: still no raw traceback for the user
        raise LoweringError(f"internal error while lowering: {type(e).__name__}: {e}") from e


class _Lowerer:
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
            if isinstance(v.ty, LayerT):
                env[name] = LayerRef(v.ty.inst)
            elif v.known and (_is_const(v.const) or isinstance(v.const, list | dict)):
                env[name] = v.const
            else:
                env[name] = Undef(name, "its value is not known when lowering")
        if form_b:
            for p in node.params or []:
                if p.type is not None and p.type.name == "TernaryTensor":
                    self.add_param(build, p.name, p.type, None, quant, p.span)
        for item in node.body:
            if isinstance(item, A.LayerDecl):
                inst = layers[item.name]
                self.declare_layer(build, inst)
            elif isinstance(item, A.ParamDecl):
                self.add_param(build, item.name, item.type, item.init, quant, item.span)
            elif isinstance(item, A.Let) and not form_b:
                self.declare_let(build, item, quant)

    def section_quant(self, node: Any, scope: Any) -> Callable[[], QuantCfg]:
        """The definition's `quantization { … }` section (quantizer, per_channel, threshold,
        format) for its TernaryTensor weights (TWN per tensor, t2 without one); resolved only
        when a ternary weight needs it."""
        cfg: dict[str, Any] = {}
        for item in node.body:
            if isinstance(item, A.Section) and item.name == "quantization":
                for e in item.entries:
                    v = self.checker.eval_const(e.value, scope)
                    if v.known and e.key in ("quantizer", "weights", "per_channel", "threshold",
                                             "format"):
                        cfg["quantizer" if e.key == "weights" else e.key] = v.const
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
        return QuantCfg(q, bool(cfg.get("per_channel", False)),
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
                path = ".".join([inst.name, *parts])
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

    def declare_builtin(self, build: LayerBuild, p: str, spec: L.LayerSpec, cfg: dict,
                        span: Span | None) -> None:
        k = spec.name
        P = self.param  # noqa: N806

        def linear(quant: QuantSpec | None) -> None:
            P(build, f"{p}.weight", [cfg["out_features"], cfg["in_features"]], "kaiming_uniform",
              quant, span=span)
            if cfg.get("bias"):
                P(build, f"{p}.bias", [cfg["out_features"]], "zeros", span=span)

        if k == "TernaryLinear":
            linear(self.quant_cfg(cfg, "twn", span).spec)
        elif k == "BitLinear":
            linear(QuantSpec("absmean", False, cfg.get("format") or "t2"))
        elif k == "Linear":
            linear(None)
        elif k in ("Int8Linear", "Int4Linear"):
            linear(QuantSpec("int8" if k == "Int8Linear" else "int4", True, "none"))
        elif k in ("TernaryConv2d", "Conv2d"):
            kh, kw = _pair(cfg["kernel_size"], "kernel_size", span)
            g = cfg.get("groups", 1)
            quant = self.quant_cfg(cfg, "twn", span).spec if k == "TernaryConv2d" else None
            P(build, f"{p}.weight", [cfg["out_channels"], cfg["in_channels"] // g, kh, kw],
              "kaiming_uniform", quant, span=span)
            if cfg.get("bias"):
                P(build, f"{p}.bias", [cfg["out_channels"]], "zeros", span=span)
        elif k in ("BatchNorm1d", "BatchNorm2d"):
            c = cfg["num_features"]
            if cfg.get("affine", True):
                P(build, f"{p}.weight", [c], "ones", span=span)
                P(build, f"{p}.bias", [c], "zeros", span=span)
            P(build, f"{p}.running_mean", [c], "zeros", span=span)
            P(build, f"{p}.running_var", [c], "ones", span=span)
        elif k in ("LayerNorm", "RMSNorm"):
            shape = self.norm_shape(cfg, span)
            P(build, f"{p}.weight", shape, "ones", span=span)
            if k == "LayerNorm" and cfg.get("elementwise_affine", True):
                P(build, f"{p}.bias", shape, "zeros", span=span)
        elif k == "Embedding":
            P(build, f"{p}.weight", [cfg["num_embeddings"], cfg["embedding_dim"]], "normal",
              span=span)
        elif k in ("MultiheadAttention", "TernaryAttention"):
            e = cfg["embed_dim"]
            quant = self.quant_cfg(cfg, "twn", span).spec if k == "TernaryAttention" else None
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                P(build, f"{p}.{proj}.weight", [e, e], "kaiming_uniform", quant, span=span)
                if cfg.get("bias"):
                    P(build, f"{p}.{proj}.bias", [e], "zeros", span=span)

    def norm_shape(self, cfg: dict, span: Span | None) -> list[int]:
        ns = cfg.get("normalized_shape")
        if ns is None:
            ns = cfg.get("dim")
        dims = [ns] if _is_int(ns) else ns if isinstance(ns, list) else None
        if not dims or not all(_is_int(d) for d in dims):
            raise LoweringError("a normalization layer needs `normalized_shape` (or `dim`)", span)
        return list(dims)

    def add_param(self, build: LayerBuild, name: str, te: A.TypeExpr, init: A.Expr | None,
                  quant: Callable[[], QuantCfg], span: Span | None) -> None:
        ty = self.decl_type(te, build, span)
        if not isinstance(ty, TensorType) or ty.shape is None:
            raise LoweringError(f"parameter `{name}` needs a tensor type with a shape", span)
        ternary = te.name == "TernaryTensor"
        dtype = "f32" if ternary or ty.dtype is None else ty.dtype
        q = quant() if ternary else None
        self.param(build, name, list(ty.shape), self.init_text(init, len(ty.shape)),
                   q.spec if q else None, dtype, span)
        build.env[name] = ParamRef(name, build.layer.params[-1].type, q)  # type: ignore[arg-type]

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
            self.param(build, item.name, list(shape), self.init_text(item.value, len(shape)),
                       q.spec if q else None, span=item.span)
            build.env[item.name] = ParamRef(item.name, build.layer.params[-1].type,  # type: ignore[arg-type]
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
            params = [p for p in node.params or [] if p.type is not None and p.type.name == "Tensor"]
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
        elif isinstance(s, A.Let):
            env[s.name] = self.coerce_decl(self.eval(s.value, env, b, ctx), s.type)
        elif isinstance(s, A.Assign):
            if not isinstance(s.target, A.Name):
                raise LoweringError("assignment to an element or attribute is not supported",
                                    s.span, help="build a new tensor instead")
            v = self.eval(s.value, env, b, ctx)
            if s.op != "=":
                cur = self.lookup(s.target.id, env, b, ctx, s.target.span)
                v = self.binary(s.op[:-1], cur, v, b, s.span)
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
                seq: Sequence[Any] = range(it.start, it.stop)
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
                expanded.append(_SetVar(s.var, i, s.span))
                expanded.extend(s.body)
            work[0:0] = expanded
        elif isinstance(s, A.FnDef | A.Import):
            raise LoweringError("a definition cannot appear inside a function", s.span)
        else:
            raise LoweringError(f"cannot lower a `{type(s).__name__}` statement",
                                getattr(s, "span", None))
        return None

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
        if t is A.Range:
            lo, hi = self.eval(e.start, env, b, ctx), self.eval(e.stop, env, b, ctx)
            if not _is_int(lo) or not _is_int(hi):
                raise LoweringError("range bounds must be known when lowering", e.span)
            return RangeV(lo, hi)
        raise LoweringError(f"cannot lower a `{t.__name__}` expression", getattr(e, "span", None))

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
        return self.binary(op, x, y, b, e.span)

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
        if op == "%":
            raise LoweringError("`%` is only supported on values known when lowering", span,
                                help="compute it from hyperparameters or static shapes")
        if op == "//":
            xv, yv = self.operands(b, x, y, span)
            return b.floordiv(xv, yv)
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
            if isinstance(base, Value) and f.attr in FUNCTIONS:
                return self.builtin(f.attr, [(None, base), *args], b, e.span, ctx)
            raise LoweringError(f"cannot lower the method `.{f.attr}(…)`", f.span)
        if not isinstance(f, A.Name):
            raise LoweringError("only named functions and layers can be called", e.span)
        v = env.get(f.id)
        if isinstance(v, LayerRef):
            assert ctx.build is not None
            return self.apply_layer(ctx.build, v.inst, [a for _, a in args], b, e.span)
        if v is not None and not isinstance(v, FnRef):
            raise LoweringError(f"`{f.id}` is not a layer or function", f.span)
        d = self.result.definitions.get(f.id)
        if d is not None and d.kind == "fn":
            return self.call_user_fn(d, [a for _, a in args], b, e.span, ctx)
        if f.id in FUNCTIONS:
            return self.builtin(f.id, args, b, e.span, ctx)
        raise LoweringError(f"cannot call `{f.id}`", f.span)

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
                    cur = [self.apply_builtin(b, build.layer, u.path, u.spec.name, u.cfg, x, span)]
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
        full = list(args)
        for p in fn.params[len(args):]:
            if p.default is None:
                raise LoweringError(f"`{fn.name}` is missing its argument `{p.name}`", span)
            full.append(self.eval(p.default, {}, b, ctx))
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
                    return ret[0] if len(ret) == 1 else ret
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
        if f is None:
            return consts[0] if len(consts) == 1 else consts
        res = self.emit_call(b, f, dyn_args, span, None, f"function `{fn.name}`")
        return res[0] if len(res) == 1 else res

    # ------------------------------------------------------------------ builtin layers
    def ternary(self, b: Builder, w: Value, q: QuantCfg) -> Value:
        """The dequantized ternary weight (what the runtime computes with in eval mode)."""
        if q.quantizer == "stochastic":
            return self.stochastic_nearest(b, w, q.per_channel)
        t, s = self.quantize(b, w, q)
        return b.dequantize(t, s)

    @staticmethod
    def quantize(b: Builder, w: Value, q: QuantCfg) -> tuple[Value, Value]:
        attrs: dict[str, Any] = {"quantizer": q.quantizer}
        if q.per_channel:
            attrs["per_channel"] = True
        if q.quantizer == "threshold":
            attrs["threshold"] = float(q.threshold)  # type: ignore[arg-type]
        return b.quantize_ternary(w, **attrs)

    def stochastic_nearest(self, b: Builder, w: Value, per_channel: bool) -> Value:
        """runtime quantize_stochastic_nearest: scale = max|W| (per tensor or per channel);
        sign(W) where 2|W| >= scale and scale > 0, else 0; times the scale."""
        t = w.type
        assert isinstance(t, TensorType)
        mag = b.abs(w)
        if per_channel and t.rank == 1:
            m = mag
        else:
            m = b.max(mag, dims=list(range(1, t.rank)) if per_channel else [], keepdim=True)
        f = ScalarType("f32")
        zero = b.constant(0.0, f)
        keep = b.logical_and(b.ge(b.mul(mag, b.constant(2.0, f)), m), b.gt(m, zero))
        pos = b.logical_and(keep, b.gt(w, zero))
        neg = b.logical_and(keep, b.lt(w, zero))
        return b.select(pos, m, b.select(neg, b.neg(m), zero))

    def apply_builtin(self, b: Builder, layer: LayerDef, p: str, kind: str, cfg: dict, x: Value,
                      span: Span | None) -> Value:
        """The inline ops of builtin layer `kind` (instance path `p`) applied to `x`."""
        def prm(name: str) -> Value:
            return self.load(b, layer, f"{p}.{name}")

        if kind in ("TernaryLinear", "BitLinear", "Linear", "Int8Linear", "Int4Linear"):
            w = prm("weight")
            bias = [prm("bias")] if cfg.get("bias") else []
            if kind == "Linear":
                return b.linear(x, w, *bias)
            if kind in ("Int8Linear", "Int4Linear"):
                q, s = (b.quantize_int8 if kind == "Int8Linear" else b.quantize_int4)(
                    w, per_channel=True, axis=0)
                return b.linear(x, b.dequantize(q, s, axis=0), *bias)
            if kind == "BitLinear":
                q = QuantCfg("absmean", False, None, cfg.get("format") or "t2")
                x = b.rms_norm(x, eps=float(cfg.get("eps", 1e-5)))
                act_int8 = True
            else:
                q = self.quant_cfg(cfg, "twn", span)
                act_int8 = cfg.get("act_quant") == "int8"
            if act_int8:
                return self.int8_linear(b, x, w, bias, q)
            return b.linear(x, self.ternary(b, w, q), *bias)
        if kind in ("TernaryConv2d", "Conv2d"):
            attrs = self.conv_attrs(cfg, span)
            w = prm("weight")
            bias = [prm("bias")] if cfg.get("bias") else []
            if kind == "TernaryConv2d":
                if cfg.get("act_quant") == "int8":
                    raise LoweringError("TernaryConv2d with `act_quant: \"int8\"` (per-im2col-"
                                        "column activation quantization) cannot be expressed in "
                                        "the IR", span)
                w = self.ternary(b, w, self.quant_cfg(cfg, "twn", span))
            return b.conv2d(x, w, *bias, **attrs)
        if kind in ("BatchNorm1d", "BatchNorm2d"):
            c = cfg["num_features"]
            if cfg.get("affine", True):
                wt, bs = prm("weight"), prm("bias")
            else:
                vt = TensorType((c,), "f32")
                wt, bs = b.constant(1.0, vt), b.constant(0.0, vt)
            return b.batch_norm(x, prm("running_mean"), prm("running_var"), wt, bs,
                                eps=float(cfg.get("eps", 1e-5)))
        if kind == "LayerNorm":
            nd = len(self.norm_shape(cfg, span))
            ws = [prm("weight"), prm("bias")] if cfg.get("elementwise_affine", True) else []
            return b.layer_norm(x, *ws, normalized_ndim=nd, eps=float(cfg.get("eps", 1e-5)))
        if kind == "RMSNorm":
            nd = len(self.norm_shape(cfg, span))
            return b.rms_norm(x, prm("weight"), normalized_ndim=nd,
                              eps=float(cfg.get("eps", 1e-6)))
        if kind == "Embedding":
            if not isinstance(x.type, TensorType) or x.type.dtype not in INDEX_DTYPES:
                raise LoweringError(f"Embedding takes integer token ids, got {x.type}", span)
            return b.embedding(x, prm("weight"))
        if kind in _ACT_LAYERS:
            return b.op(_ACT_LAYERS[kind], x)
        if kind == "Identity":
            return x
        if kind == "Softmax":
            return b.softmax(x, dim=cfg.get("dim", -1))
        if kind == "Dropout":
            return b.dropout(x, p=float(cfg.get("p", 0.5)))
        if kind == "Flatten":
            return b.flatten(x, start_dim=cfg.get("start_dim", 1), end_dim=cfg.get("end_dim", -1))
        if kind in ("MaxPool2d", "AvgPool2d"):
            return self.pool(b, x, "max_pool2d" if kind == "MaxPool2d" else "avg_pool2d", cfg, span)
        if kind == "AdaptiveAvgPool2d":
            return b.adaptive_avg_pool2d(x, output_size=_pair(cfg["output_size"], "output_size",
                                                              span))
        if kind in ("MultiheadAttention", "TernaryAttention"):
            return self.attention_layer(b, layer, p, kind, cfg, x, span)
        if kind == "TernaryActivation":
            return b.ternarize(x, threshold=float(cfg.get("threshold", 0.5)))
        raise LoweringError(f"cannot lower the builtin layer `{kind}`", span)

    @staticmethod
    def load(b: Builder, layer: LayerDef, name: str) -> Value:
        p = layer.param(name)
        if p is None:
            raise LoweringError(f"internal error: `{layer.name}` has no parameter `{name}`")
        return b.param(name, p.type)

    def int8_linear(self, b: Builder, x: Value, w: Value, bias: list[Value], q: QuantCfg) -> Value:
        """int8 per-token activation fake quantization + ternary weight, as one fused_linear
        (the IR has no rounding op; fused_linear's act_quant is exactly the runtime's
        fake_quant_int8)."""
        attrs: dict[str, Any] = {"act_quant": "int8"}
        if bias:
            attrs["has_bias"] = True
        if q.quantizer == "stochastic":
            ops = [x, self.stochastic_nearest(b, w, q.per_channel), *bias]
        else:
            t, s = self.quantize(b, w, q)
            ops = [x, t, s, *bias]
            attrs["has_scale"] = True
        return b.create("fused_linear", ops, attrs).result

    @staticmethod
    def conv_attrs(cfg: dict, span: Span | None) -> dict[str, Any]:
        k = _pair(cfg["kernel_size"], "kernel_size", span)
        s = _pair(cfg.get("stride", 1), "stride", span)
        d = _pair(cfg.get("dilation", 1), "dilation", span)
        pad = cfg.get("padding", 0)
        if pad == "valid":
            p = [0, 0]
        elif pad == "same":
            if any(dd * (kk - 1) % 2 for dd, kk in zip(d, k)):
                raise LoweringError("`padding: \"same\"` with an even kernel pads asymmetrically, "
                                    "which the IR cannot express", span)
            p = [dd * (kk - 1) // 2 for dd, kk in zip(d, k)]
        else:
            p = _pair(pad, "padding", span)
        return {"stride": s, "padding": p, "dilation": d, "groups": int(cfg.get("groups", 1))}

    @staticmethod
    def pool(b: Builder, x: Value, op: str, cfg: dict, span: Span | None) -> Value:
        attrs: dict[str, Any] = {"kernel_size": _pair(cfg["kernel_size"], "kernel_size", span),
                                 "padding": _pair(cfg.get("padding", 0), "padding", span)}
        if cfg.get("stride") is not None:
            attrs["stride"] = _pair(cfg["stride"], "stride", span)
        dilation = _pair(cfg.get("dilation", 1), "dilation", span)
        if dilation != [1, 1]:
            if op != "max_pool2d":
                raise LoweringError("average pooling has no dilation", span)
            attrs["dilation"] = dilation
        if cfg.get("ceil_mode"):
            attrs["ceil_mode"] = True
        return b.op(op, x, **attrs)

    def attention_layer(self, b: Builder, layer: LayerDef, p: str, kind: str, cfg: dict,
                        x: Value, span: Span | None) -> Value:
        """q/k/v/o projections (ternary for TernaryAttention), heads split from the last dim,
        scaled dot-product attention per head, heads merged, output projection."""
        e, h = cfg["embed_dim"], cfg["num_heads"]
        if not isinstance(x.type, TensorType) or x.type.rank != 3:
            raise LoweringError(f"{kind} expects [batch, seq, embed], got {x.type}", span)
        q = self.quant_cfg(cfg, "twn", span) if kind == "TernaryAttention" else None
        act_int8 = q is not None and cfg.get("act_quant") == "int8"

        def proj(name: str, inp: Value) -> Value:
            w = self.load(b, layer, f"{p}.{name}.weight")
            bias = [self.load(b, layer, f"{p}.{name}.bias")] if cfg.get("bias") else []
            if q is None:
                return b.linear(inp, w, *bias)
            if act_int8:
                return self.int8_linear(b, inp, w, bias, q)
            return b.linear(inp, self.ternary(b, w, q), *bias)

        qv, kv, vv = proj("q_proj", x), proj("k_proj", x), proj("v_proj", x)
        # [B, L, E] -> reshape [B, L, h, E/h] -> permute [B, h, L, E/h]
        heads = [b.permute(b.reshape(t, shape=[0, 0, h, e // h]), dims=[0, 2, 1, 3])
                 for t in (qv, kv, vv)]
        o = b.scaled_dot_product_attention(*heads, causal=bool(cfg.get("causal", False)))
        merged = b.reshape(b.permute(o, dims=[0, 2, 1, 3]), shape=[0, 0, e])
        return proj("o_proj", merged)

    # ------------------------------------------------------------------ builtin functions
    def builtin(self, name: str, args: list[tuple[str | None, Any]], b: Builder,
                span: Span | None, ctx: FnCtx) -> Any:
        spec = FUNCTIONS[name]
        if name == "print":
            return None
        positional = [v for n, v in args if n is None]
        if spec.pair_op and len(positional) == 2 and isinstance(positional[1], Value) \
                and isinstance(positional[1].type, TensorType):
            xv, yv = self.operands(b, positional[0], positional[1], span)
            return b.op(spec.pair_op, xv, yv)
        bound: dict[str, Any] = {}
        for p, v in zip(spec.params, positional):
            bound[p.name] = v
        for n, v in args:
            if n is not None:
                bound[n] = v
        for p in spec.params:
            if p.name not in bound:
                if p.required:
                    raise LoweringError(f"`{name}` is missing its argument `{p.name}`", span)
                bound[p.name] = p.default
        if spec.ir is not None:
            return _lower_record(self, spec, b, bound, span)
        fn = _BUILTIN_FNS.get(name)
        if fn is None:
            raise LoweringError(f"the function `{name}` cannot be lowered", span)
        return fn(self, b, bound, span)

    def reshape(self, b: Builder, x: Value, target: Any, span: Span | None) -> Value:
        t = x.type
        if not isinstance(t, TensorType):
            raise LoweringError("reshape needs a tensor", span)
        tgt = target if isinstance(target, list) else [target]
        items: list[Any] = []
        for v in tgt:
            if isinstance(v, bool):
                raise LoweringError("reshape dims must be integers", span)
            if _is_int(v) or isinstance(v, SymDim):
                items.append(v)
            elif isinstance(v, Value) and isinstance(v.type, ScalarType) and v.type.dtype in (
                    "i64", "i32"):
                items.append(_Dyn(v))
            else:
                raise LoweringError(f"reshape dim {v!r} is not an integer", span)
        dyn = [i for i, d in enumerate(items) if not _is_int(d) or d == -1]
        if len(dyn) <= 1:
            shape = [d if _is_int(d) else -1 for d in items]
            out = b.reshape(x, shape=shape)
            if dyn and isinstance(items[dyn[0]], SymDim) and out.type.shape[dyn[0]] is None:
                name = items[dyn[0]].name
                sym_in = [d for d in t.shape if not _is_int(d)]
                st_in = math.prod(d for d in t.shape if _is_int(d))
                st_out = math.prod(d for d in shape if d != -1)
                if name is not None and sym_in == [name] and st_in == st_out:
                    op = out.op
                    assert op is not None
                    op.results[0].type = out.type.with_shape(
                        tuple(name if i == dyn[0] else d for i, d in enumerate(out.type.shape)))
            return out
        copied = self.copy_reshape(b, x, items)
        if copied is not None:
            return copied
        return self.structural_reshape(b, x, items, span)

    @staticmethod
    def copy_reshape(b: Builder, x: Value, items: list[Any]) -> Value | None:
        """A reshape that keeps leading dynamic dims in place with `0` (copy the input dim):
        `[b, s, 128] -> [b, s, 4, 32]` is `reshape {shape = [0, 0, 4, 32]}`."""
        t = x.type
        assert isinstance(t, TensorType)
        shape: list[int] = []
        for i, d in enumerate(items):
            if i < t.rank and isinstance(d, SymDim) and (
                    (d.src is x and d.dim == i) or (d.name is not None and d.name == t.shape[i])):
                shape.append(0)
            elif _is_int(d) and d != 0:
                shape.append(d)
            else:
                shape.append(-2)
        if shape.count(-2) + shape.count(-1) > 1:
            return None
        shape = [-1 if d == -2 else d for d in shape]
        try:
            return b.reshape(x, shape=shape)
        except InferError:
            return None

    def structural_reshape(self, b: Builder, x: Value, items: list[Any],
                           span: Span | None) -> Value:
        """A reshape whose unchanged dims (same symbol or size) are not all leading: the dims
        that change must be static; they are merged with `flatten` and split again with
        static `slice`s and `stack`."""
        t = x.type
        assert isinstance(t, TensorType)
        dims = list(t.shape)

        def same(d: Any, tg: Any, pos: int) -> bool:
            if _is_int(tg):
                return tg != -1 and tg == d
            if isinstance(tg, SymDim):
                return (tg.name is not None and tg.name == d) or (tg.src is x and tg.dim == pos)
            return False

        i = 0
        while i < len(dims) and i < len(items) and same(dims[i], items[i], i):
            i += 1
        j = 0
        while (j < len(dims) - i and j < len(items) - i
               and same(dims[len(dims) - 1 - j], items[len(items) - 1 - j], len(dims) - 1 - j)):
            j += 1
        mid_in = dims[i:len(dims) - j]
        mid_out = items[i:len(items) - j]
        if not all(_is_int(d) for d in mid_in) or not all(_is_int(d) for d in mid_out):
            raise LoweringError("this reshape changes dims whose sizes are not known when "
                                "lowering (only one dynamic dim can be inferred)", span,
                                help="keep the dynamic dims (e.g. batch) in place and reshape "
                                     "only static dims")
        size = math.prod(mid_in)
        if -1 in mid_out:
            known = math.prod(d for d in mid_out if d != -1)
            if known == 0 or size % known:
                raise LoweringError(f"cannot reshape {t} to the requested shape", span)
            mid_out = [size // known if d == -1 else d for d in mid_out]
        if math.prod(mid_out) != size:
            raise LoweringError(f"cannot reshape {t}: {mid_in} has {size} elements, "
                                f"{mid_out} has {math.prod(mid_out)}", span)
        cur = x
        if not mid_in:
            cur = b.unsqueeze(cur, dim=i)
        elif len(mid_in) > 1:
            cur = b.flatten(cur, start_dim=i, end_dim=i + len(mid_in) - 1)
        if not mid_out:
            return b.squeeze(cur, dim=i)
        if sum(mid_out[:-1]) > MAX_SPLIT_SLICES:
            raise LoweringError("this reshape is too large to express with static slices", span)
        pos = i
        rest = size
        for f in mid_out[:-1]:
            rest //= f
            if f == 1:
                cur = b.unsqueeze(cur, dim=pos)
            else:
                parts = [b.slice(cur, dim=pos, start=k * rest, end=(k + 1) * rest)
                         for k in range(f)]
                cur = b.stack(*parts, dim=pos)
            pos += 1
        return cur

    def shape_of(self, v: Any, span: Span | None) -> list[int]:
        shape = v if isinstance(v, list) else [v]
        if not all(_is_int(d) and d >= 0 for d in shape):
            raise LoweringError(f"a new tensor needs a static shape, got {shape}", span)
        return list(shape)


class _Unshaped:
    """A declared tensor type without a shape (`x: Tensor`)."""

    def __init__(self, dtype: str | None) -> None:
        self.dtype = dtype


@dataclass(frozen=True)
class _Dyn:
    value: Value


_MISSING = object()


def _block() -> Block:
    return Block()


class _WouldEmit(Exception):
    """Raised by _ScratchBuilder: the function computes at run time, so it needs IR."""


class _ScratchBuilder(Builder):
    """A builder that refuses to emit ops: calls of user functions whose arguments are all
    constants are first tried with it, and folded to their constant result when they emit
    nothing."""

    def __init__(self) -> None:
        super().__init__(_block())

    def insert(self, op: Op) -> Op:
        raise _WouldEmit


def _flat(v: Any) -> list[Any]:
    if isinstance(v, list):
        out: list[Any] = []
        for x in v:
            out.extend(_flat(x))
        return out
    return [v]


def _list_shape(v: Any) -> list[int] | None:
    if not isinstance(v, list):
        return []
    subs = [_list_shape(x) for x in v]
    if any(s is None for s in subs) or any(s != subs[0] for s in subs):
        return None
    return [len(v)] + (subs[0] if subs else [])  # type: ignore[operator]


def _join_types(a: Type, b: Type) -> Type:
    """The result type of an `if` yielding `a` or `b`: dims that differ become `?`."""
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        return a.with_shape(tuple(x if x == y else None for x, y in zip(a.shape, b.shape)))
    return a


def _node_count(body: list) -> int:
    """The number of AST nodes in `body` (what one unrolled iteration costs)."""
    n = 0
    stack = list(body)
    while stack:
        x = stack.pop()
        n += 1
        for slot in getattr(x, "__slots__", ()):
            v = getattr(x, slot, None)
            if isinstance(v, list):
                stack.extend(v)
            elif hasattr(v, "__slots__") and not isinstance(v, str | Span):
                stack.append(v)
    return n


def _py_binary(op: str, x: Any, y: Any, span: Span | None) -> Any:
    try:
        return bounds.binary(op, x, y)
    except KeyError:
        raise LoweringError(f"`{op}` is not defined for numbers", span) from None
    except ZeroDivisionError:
        raise LoweringError("division by zero", span) from None
    except bounds.TooLarge as exc:
        raise LoweringError(f"cannot compute `{op}` when lowering: {exc}", span) from None
    except TypeError as exc:
        raise LoweringError(f"`{op}`: {exc}", span) from None


# ----------------------------------------------------------------------------- builtin functions

BuiltinFn = Callable[[_Lowerer, Builder, dict[str, Any], Span | None], Any]
_BUILTIN_FNS: dict[str, BuiltinFn] = {}


def _builtin(*names: str) -> Callable[[BuiltinFn], BuiltinFn]:
    def deco(fn: BuiltinFn) -> BuiltinFn:
        for n in names:
            _BUILTIN_FNS[n] = fn
        return fn
    return deco


def _tensor(lw: _Lowerer, b: Builder, v: Any, span: Span | None) -> Value:
    x = lw.to_value(b, v, None, span)
    return x


def _int_attr(v: Any, what: str, span: Span | None) -> int:
    if not _is_int(v):
        raise LoweringError(f"`{what}` must be an integer known when lowering, got {v!r}", span)
    return v


def _ints_attr(v: Any, what: str, span: Span | None) -> list[int]:
    vals = v if isinstance(v, list) else [v]
    return [_int_attr(x, what, span) for x in vals]


def _attr(v: Any, kind: str, what: str, span: Span | None) -> Any:
    if kind == "int":
        return _int_attr(v, what, span)
    if kind == "ints":
        return _ints_attr(v, what, span)
    if not _is_num(v):
        raise LoweringError(f"`{what}` must be a number known when lowering", span)
    return float(v)


def _lower_record(lw: _Lowerer, spec: Builtin, b: Builder, a: dict[str, Any],
                  span: Span | None) -> Any:
    """A builtin whose record names one IR op (tritium.check.builtins `IR`): its value on
    Python numbers when every operand is one (and the record says how), else the op on its
    operands with its attributes, each a constant known when lowering. Two operands of an
    elementwise op with a Python value meet as `operands` (dtypes promoted)."""
    ir = spec.ir
    assert ir is not None
    vals = [a[n] for n in ir.operands]
    if spec.py is not None and all(_is_num(v) for v in vals):
        return spec.py(*vals)
    if spec.py is not None and len(vals) == 2:
        operands = list(lw.operands(b, vals[0], vals[1], span))
    else:
        operands = [_tensor(lw, b, v, span) for v in vals]
    attrs = {attr: _attr(a[p], kind, p, span) for p, attr, kind in ir.attrs}
    return b.op(ir.op, *operands, **attrs)


@_builtin("reshape", "view")
def _reshape(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return lw.reshape(b, _tensor(lw, b, a["x"], span), a["shape"], span)


@_builtin("squeeze")
def _squeeze(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _tensor(lw, b, a["x"], span)
    if a["dim"] is not None:
        d = _int_attr(a["dim"], "dim", span)
        t = x.type
        if isinstance(t, TensorType) and t.shape[d] != 1:
            if _is_int(t.shape[d]):
                return x   # torch.squeeze(dim) of a non-1 dim is a no-op
            raise LoweringError("squeeze of a dim whose size is not known when lowering", span)
        return b.squeeze(x, dim=d)
    t = x.type
    assert isinstance(t, TensorType)
    if not all(_is_int(d) for d in t.shape):
        raise LoweringError("squeeze without a dim needs a static shape", span)
    return b.squeeze(x)


def _concat_fn(op: str) -> BuiltinFn:
    def fn(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        items = a["tensors"]
        if not isinstance(items, list) or not items:
            raise LoweringError(f"`{op}` takes a non-empty list of tensors", span)
        vals = [_tensor(lw, b, v, span) for v in items]
        dts = {v.type.dtype for v in vals}
        if len(dts) > 1:
            dt = "bool"
            for d in dts:
                dt = promote(dt, d)
            vals = [v if v.type.dtype == dt else b.cast(v, dtype=dt) for v in vals]
        return b.op(op, *vals, dim=_int_attr(a["dim"], "dim", span))
    return fn


_BUILTIN_FNS["concat"] = _BUILTIN_FNS["cat"] = _concat_fn("concat")
_BUILTIN_FNS["stack"] = _concat_fn("stack")


def _reduce_fn(op: str) -> BuiltinFn:
    def fn(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        x = _tensor(lw, b, a["x"], span)
        dims = [] if a["dim"] is None else _ints_attr(a["dim"], "dim", span)
        keep = a["keepdim"]
        if not isinstance(keep, bool):
            raise LoweringError("`keepdim` must be true or false", span)
        if not isinstance(x.type, TensorType):
            return x
        return b.op(op, x, dims=dims, keepdim=keep)
    return fn


for _n, _op in (("sum", "sum"), ("mean", "mean"), ("amax", "max"), ("amin", "min"),
                ("max", "max"), ("min", "min")):   # reductions (two-tensor max/min: `pair_op`)
    _BUILTIN_FNS[_n] = _reduce_fn(_op)


@_builtin("clamp")
def _clamp(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = a["x"]
    if _is_num(x):
        lo, hi = a["min"], a["max"]
        x = x if lo is None else max(x, lo)
        return x if hi is None else min(x, hi)
    attrs: dict[str, Any] = {}
    for k in ("min", "max"):
        v = a[k]
        if v is not None:
            if not _is_num(v):
                raise LoweringError(f"`{k}` of clamp must be a number known when lowering", span)
            attrs[k] = float(v)
    return b.clamp(_tensor(lw, b, x, span), **attrs)


@_builtin("where")
def _where(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    c = _tensor(lw, b, a["cond"], span)
    if c.type.dtype != "bool":
        c = b.ne(c, lw.to_value(b, 0, c, span))
    xv, yv = lw.operands(b, a["a"], a["b"], span)
    return b.select(c, xv, yv)


def _fill_fn(value: float | None) -> BuiltinFn:
    def fn(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        shape = lw.shape_of(a["shape"], span)
        v = value if value is not None else a["value"]
        if not _is_num(v):
            raise LoweringError("`full` needs a fill value known when lowering", span)
        return b.constant(float(v), TensorType(tuple(shape), "f32"))
    return fn


_BUILTIN_FNS["zeros"] = _fill_fn(0.0)
_BUILTIN_FNS["ones"] = _fill_fn(1.0)
_BUILTIN_FNS["full"] = _fill_fn(None)


@_builtin("randn", "rand", "random_ternary", "empty")
def _random(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    raise LoweringError("random or uninitialized tensors can only initialize weights (a "
                        "layer-level `let` or `param`), not appear in a function", span)


@_builtin("attention", "scaled_dot_product_attention")
def _attention(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    causal = a["causal"]
    if not isinstance(causal, bool):
        raise LoweringError("`causal` must be true or false known when lowering", span)
    ops = [_tensor(lw, b, a[n], span) for n in ("q", "k", "v")]
    if a["mask"] is not None:
        ops.append(_tensor(lw, b, a["mask"], span))
    return b.scaled_dot_product_attention(*ops, causal=causal)


@_builtin("floordiv")
def _floordiv(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x, y = a["a"], a["b"]
    if (_is_num(x) or isinstance(x, bool)) and (_is_num(y) or isinstance(y, bool)):
        return _py_binary("//", x, y, span)
    xv, yv = lw.operands(b, x, y, span)
    return b.floordiv(xv, yv)


def _pool_fn(op: str) -> BuiltinFn:
    def fn(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
        cfg = {"kernel_size": a["kernel_size"], "stride": a["stride"], "padding": a["padding"]}
        return lw.pool(b, _tensor(lw, b, a["x"], span), op, cfg, span)
    return fn


_BUILTIN_FNS["max_pool2d"] = _pool_fn("max_pool2d")
_BUILTIN_FNS["avg_pool2d"] = _pool_fn("avg_pool2d")


@_builtin("adaptive_avg_pool2d")
def _adaptive(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return b.adaptive_avg_pool2d(_tensor(lw, b, a["x"], span),
                                 output_size=_pair(a["output_size"], "output_size", span))


@_builtin("quantize_ternary")
def _quantize_ternary(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = _tensor(lw, b, a["x"], span)
    q = lw.quant_cfg({"quantizer": a["quantizer"]}, "twn", span)
    if not isinstance(x.type, TensorType) or x.type.dtype not in FLOAT_DTYPES:
        x = b.cast(x, dtype="f32")
    return lw.ternary(b, x, q)


def _cast_to(lw: _Lowerer, b: Builder, x: Any, lang: str, span: Span | None) -> Any:
    if lang not in _TENSOR_DTYPES:
        raise LoweringError(f"unknown dtype `{lang}`", span)
    if _is_num(x) or isinstance(x, bool):
        if lang == "bool":
            return bool(x)
        if lang in vocab.FLOAT_DTYPES:
            return float(x)
        if lang == "trit":
            return max(-1, min(1, round(x)))
        return int(x)
    xv = _tensor(lw, b, x, span)
    if isinstance(xv.type, ScalarType):
        return b.cast(xv, dtype=_SCALAR_DTYPES[lang])
    return b.cast(xv, dtype=_TENSOR_DTYPES[lang])


@_builtin("cast")
def _cast(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    if not isinstance(a["dtype"], str):
        raise LoweringError("`cast` needs a dtype string known when lowering", span)
    return _cast_to(lw, b, a["x"], a["dtype"], span)


for _n in vocab.CONVERSIONS:
    _BUILTIN_FNS[_n] = (lambda lang: lambda lw, b, a, span: _cast_to(lw, b, a["x"], lang, span))(_n)


@_builtin("range")
def _range(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return RangeV(0, _int_attr(a["n"], "n", span))


@_builtin("len")
def _len(lw: _Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    x = a["x"]
    if isinstance(x, list | str | dict):
        return len(x)
    if isinstance(x, Value) and isinstance(x.type, TensorType) and x.type.rank:
        d = x.type.shape[0]
        return d if _is_int(d) else SymDim(x, 0, d)
    raise LoweringError("`len` needs a list or a tensor of rank >= 1", span)
