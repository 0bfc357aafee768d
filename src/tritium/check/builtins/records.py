"""The record of a builtin function (`Builtin`, its parameters `FnParam` and its IR op
`IR`), the table `FUNCTIONS` and the helpers that fill it (`_p`, `_opt`, `_fn`, `_alias`),
and `bind`, the one argument binding of a builtin call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..types import (
    Value,
)


@dataclass(frozen=True, slots=True)
class FnParam:
    name: str
    kind: str          # tensor, int, float, bool, str, ints (int or list), shape (list), any, tensors
    default: object = None
    required: bool = True


@dataclass(frozen=True, slots=True)
class IR:
    """How a builtin lowers to one IR op: the tensor operands (param names; an optional one
    that is None is left out) and the attributes (param, attribute, kind: int | ints | float),
    each a constant when lowering."""
    op: str
    operands: tuple[str, ...] = ("x",)
    attrs: tuple[tuple[str, str, str], ...] = ()


Rule = Callable[..., Value]
Template = str | Callable[[dict[str, str], set[str]], str]

PY_CALL = "<python>"
"""A `torch` template meaning: the Python builtin of the same name, with the arguments."""


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    params: tuple[FnParam, ...]
    doc: str
    rule: Rule
    torch: Template
    ir: IR | None = None
    py: Callable | None = None
    variadic: bool = False     # extra positional args allowed (e.g. print(a, b))
    pair_op: str | None = None
    creates: bool = False          # makes a new tensor: may initialize a layer's state (`let`)
    aliases: tuple[tuple[str, str], ...] = ()   # other names of parameters (`min_val` -> `min`)
    of: str | None = None          # an alias: the builtin this name means
    # another record a call means by its written form alone (how many positional
    # arguments, which names): `resolve` below; every stage asks before binding
    overload: Callable[[list[tuple[str | None, object]]], str | None] | None = None


FnSpec = Builtin     # the name the signature users knew


def _p(name: str, kind: str = "tensor", default=None, required: bool | None = None) -> FnParam:
    return FnParam(name, kind, default, default is None if required is None else required)


def _opt(name: str, kind: str, default) -> FnParam:
    return FnParam(name, kind, default, False)


FUNCTIONS: dict[str, Builtin] = {}


def _fn(name: str, params: tuple, doc: str, rule: Rule, torch: Template, **kw) -> None:
    FUNCTIONS[name] = Builtin(name, params, doc, rule, torch, **kw)


def _alias(name: str, of: str) -> None:
    """`name` means builtin `of` (its own name in messages)."""
    FUNCTIONS[name] = replace(FUNCTIONS[of], name=name, doc=f"alias of {of}", of=of)


def resolve(name: str, args: list[tuple[str | None, object]]) -> str:
    """The builtin a call of `name` with `args` ((keyword or None, value) in call order)
    means: the record's `overload` may name another record from the call's written form
    (never from the values' types), so the checker, the lowering and the code generator
    agree."""
    spec = FUNCTIONS.get(name)
    if spec is not None and spec.overload is not None:
        other = spec.overload(args)
        if other is not None and other in FUNCTIONS:
            return other
    return name


# ----------------------------------------------------------------------------- argument binding

ARG_ALIASES = {"axis": "dim"}
"""Keyword names every builtin accepts for one of its parameters (`axis=` is `dim=` for
every builtin with a `dim`)."""


class BindError(Exception):
    """A call's arguments do not fit the signature: `kind` is `many` (too many positional
    arguments), `unknown` (no parameter of that name), `twice` or `missing`; `name` is the
    argument's name as written (the parameter's for `missing`), `index` its position in
    the call's argument list."""

    def __init__(self, kind: str, name: str | None = None, index: int | None = None):
        super().__init__(kind)
        self.kind, self.name, self.index = kind, name, index


def param_name(spec: Builtin, name: str) -> str | None:
    """The parameter a keyword `name` of a call to `spec` binds to (aliases resolved)."""
    names = {p.name for p in spec.params}
    if name in names:
        return name
    for alias, canonical in spec.aliases:
        if alias == name:
            return canonical
    canonical = ARG_ALIASES.get(name)
    return canonical if canonical in names else None


def bind(spec: Builtin, args: list[tuple[str | None, object]]) -> tuple[dict, dict[str, int]]:
    """The one argument binding of a builtin call, shared by the checker, the IR lowering
    and the PyTorch code generator: `args` are (keyword or None, value) in call order; the
    result maps each given parameter to its value (defaults are not filled in) and to its
    position in `args`. Raises BindError."""
    bound: dict[str, object] = {}
    where: dict[str, int] = {}
    positional = [(i, v) for i, (n, v) in enumerate(args) if n is None]
    if len(positional) > len(spec.params):
        raise BindError("many", None, positional[len(spec.params)][0])
    for p, (i, v) in zip(spec.params, positional):
        bound[p.name], where[p.name] = v, i
    for i, (n, v) in enumerate(args):
        if n is None:
            continue
        c = param_name(spec, n)
        if c is None:
            raise BindError("unknown", n, i)
        if c in bound:
            raise BindError("twice", n, i)
        bound[c], where[c] = v, i
    for p in spec.params:
        if p.required and p.name not in bound:
            raise BindError("missing", p.name)
    return bound, where
