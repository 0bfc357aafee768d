"""What the checker works on: definitions, user parameters, layer instances and their kinds,
scopes, and small helpers shared by its parts."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...frontend import ast as A
from ...frontend.diagnostics import Span
from .. import library as L
from ..builtins import FUNCTIONS
from ..types import (
    INT_TYPES,
    STR,
    AnyT,
    ScalarT,
    TensorT,
    Value,
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




def _paren(c) -> str:
    s = str(c)
    return s if s.isidentifier() or s.lstrip("-").isdigit() else f"({s})"


_STATE_INITS = tuple(n for n, f in FUNCTIONS.items() if f.creates)   # may be layer state


def _is_state_let(item: A.Let) -> bool:
    """A `let` in a layer body that is the layer's learned state (a tensor), as the
    generated code makes it a parameter."""
    if item.type is not None:
        return item.type.name in ("Tensor", "TernaryTensor")
    v = item.value
    return isinstance(v, A.Call) and isinstance(v.func, A.Name) and v.func.id in _STATE_INITS


# ----------------------------------------------------------------------------- the program's entry

def entry_statements(program: A.Program) -> list:
    """The program's entry: its top-level statements and the bodies of its `main { }`
    blocks, in source order (one sequence, one scope)."""
    out: list = []
    for item in program.items:
        if isinstance(item, A.MainBlock):
            out.extend(item.body)
        elif isinstance(item, A.Stmt) and not isinstance(item, A.Import):
            out.append(item)
    return out


def has_entry(program: A.Program) -> bool:
    return any(isinstance(i, A.MainBlock) or isinstance(i, A.Stmt) and not isinstance(i, A.Import)
               for i in program.items)


def check_entry(checker, program: A.Program) -> None:
    """Check the program's entry statements in order, as one function body without
    parameters: names must be defined before use, types and shapes flow from statement to
    statement, `return` ends the program."""
    stmts = entry_statements(program)
    if not stmts:
        return
    checker.layer_count = 0
    checker._layers_reported = False
    checker.used_layers = set()
    scope = Scope()
    saved = getattr(checker, "returns", [])
    checker.returns = []
    try:
        checker.exec_block(stmts, scope)
    except _Abort:
        pass
    finally:
        checker.returns = saved
    _explain_undefined(checker.diags, stmts, scope)


def _explain_undefined(diags: list, stmts: list, scope: Scope) -> None:
    """Say why a name the entry defines is undefined where it is used: used before the
    statement that defines it, or used inside a definition (top-level variables are the
    entry's locals, not globals)."""
    for d in diags:
        if d.code != "E0304" or d.span is None or d.span.file != stmts[0].span.file:
            continue
        name = d.message.removeprefix("undefined name `").removesuffix("`")
        at = scope.defined_at.get(name)
        if at is None or d.message != f"undefined name `{name}`":
            continue
        in_entry = any(s.span.line <= d.span.line <= s.span.end_line for s in stmts)
        if in_entry and (d.span.line, d.span.col) < (at.line, at.col):
            d.help = f"`{name}` is defined later, at line {at.line}: move that statement up"
        elif not in_entry:
            d.help = (f"`{name}` is a top-level variable (line {at.line}); definitions do not "
                      f"see those: pass it as an argument")


# ----------------------------------------------------------------------------- f-strings

_FLOAT_SPEC_TYPES = frozenset("eEfFgG%")
_INT_SPEC_TYPES = frozenset("bcdoxXn")


def check_fstring(checker, e: A.FString, scope: Scope):
    """The value of an f-string (a str) after checking each field's expression, and that
    its format spec applies to the value: a spec needs a number, a str or a tensor with one
    element (`.3f` on a vector, or `d` on a float, fails at run time in Python)."""
    for part in e.parts:
        if not isinstance(part, A.FField):
            continue
        v = checker.eval_expr(part.value, scope)
        spec = part.spec
        if not spec:
            continue
        ty = STR if part.conv else v.ty
        kind = spec[-1] if spec[-1] in _FLOAT_SPEC_TYPES | _INT_SPEC_TYPES | {"s"} else ""
        problem = None
        if isinstance(ty, AnyT):
            continue
        if isinstance(ty, TensorT):
            if ty.shape is not None and len(ty.shape) > 0 and not all(d == 1 for d in ty.shape):
                problem = f"a tensor of shape [{', '.join(map(str, ty.shape))}]"
        elif isinstance(ty, ScalarT):
            name = ty.name
            if name == "str":
                if kind and kind != "s":
                    problem = "a str"
            elif kind == "s":
                problem = f"a number ({name})"
            elif kind in _INT_SPEC_TYPES and name not in INT_TYPES | {"trit", "bool", "int"}:
                problem = f"a {name}"
        else:
            problem = f"a {ty}"
        if problem is not None:
            checker.report("E0804", f"the format spec `{spec}` does not apply to {problem}",
                           part.span, label=f"this is {problem}",
                           help="format a number or a one-element tensor, or convert with "
                                "`!s` and use a width only (`{x!s:>8}`)")
    return Value(STR)
