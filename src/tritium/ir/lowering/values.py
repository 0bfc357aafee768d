"""The lowering's value model: what a name is bound to while lowering (an IR value, a Python
constant, a symbolic dim, a parameter or layer reference, a lazy expression, a range), the
per-instance build state, the dtype and quantizer maps, and small helpers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ... import vocab
from ...check import bounds
from ...check import library as L
from ...check.checker import Definition, LayerInst
from ...frontend import ast as A
from ...frontend.diagnostics import Span
from ..builder import Builder
from ..core import Block, Function, LayerDef, Module, Op, QuantSpec, Value
from ..types import TensorType, Type

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
class StateRef(ParamRef):
    """A `state` buffer: read as a parameter; the IR is the inference computation, where
    `forward` does not update it (the generated module updates it in training only)."""


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
    bound: tuple = field(default=(), compare=False)   # a closure's values, passed last


@dataclass(frozen=True)
class RangeV:
    start: int
    stop: int
    step: int = 1

    def values(self) -> range:
        return range(self.start, self.stop, self.step)


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
        if isinstance(s, A.For | A.While | A.With) and _contains_return(s.body):
            return True
    return False


def _pair(v: Any, what: str, span: Span | None) -> list[int]:
    p = L.pair(v)
    if p is None:
        raise LoweringError(f"`{what}` must be an integer or a pair of integers, got {v!r}", span)
    return [p[0], p[1]]




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
