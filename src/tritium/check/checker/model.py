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


# What code the checker does not evaluate (a short-circuit operand it skips, a branch or loop
# body its constants rule out, statements after a `break`) must still get right, because the
# generated code holds it: its names resolve to values (E0304, E0310, E0311), its calls name
# a function and fit its parameters (E0305-E0307), `break`/`continue` sit in a loop (E0862)
# and a block with statements is a whole value (E0865). Other diagnostics there (a `1 / 0`,
# a type error) are dropped: that code never runs.
GENERATE_CODES = frozenset({"E0304", "E0305", "E0306", "E0307", "E0310", "E0311", "E0862",
                            "E0865"})


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


def is_function_layer(node) -> bool:
    """Dialect (b): a `layer` with no method in its body. The body is the forward
    computation (its `let`s are forward locals, in order, seeing the arguments); only in
    dialect (a), with an inner `fn forward`, are body `let`s the layer's state."""
    return isinstance(node, A.LayerDef) and not any(isinstance(i, A.FnDef) for i in node.body)


def forward_body(node) -> list:
    """The statements of a dialect (b) layer body, in source order (`let`s included)."""
    return [i for i in node.body if isinstance(i, A.Stmt)]


def callable_layer(node) -> bool:
    """A layer that a call by name (`FC(w1, x)`) may run as a pure function: dialect (b),
    holding no state of its own (no `param`, no sub-layer)."""
    return is_function_layer(node) and not any(
        isinstance(i, A.ParamDecl | A.LayerDecl) for i in node.body)


def signature_weights(node) -> list:
    """The arguments of a layer's signature that are its learned weights: in a layer written
    as a function (dialect (b)) the `TernaryTensor` ones (the other tensors are inputs); in a
    layer with a `forward` method (dialect (a), the benchmark form `layer TinyNet(weights:
    TernaryTensor[10, 5]) { forward(x: …) … }`) every tensor argument, the inputs being the
    `forward`'s own. Their symbolic dims are hyperparameters."""
    if not isinstance(node, A.LayerDef):
        return []
    if is_function_layer(node):
        return [p for p in node.params or [] if form_b_weight(p)]
    return [p for p in node.params or [] if p.type is not None
            and p.type.name in ("Tensor", "TernaryTensor")]


def form_b_weight(p) -> bool:
    """In a layer written as a function, whether the argument `p` is a learned weight: a
    `TernaryTensor` whose shape has no `?` (one with a `?` dim, a batch, is an input)."""
    t = p.type
    return t is not None and t.name == "TernaryTensor" and not any(
        d.value is None for d in t.shape or [])


def form_b_inputs(params) -> list:
    """The inputs of a layer written as a function: its tensor arguments that are not
    weights (`form_b_weight`), in order."""
    return [p for p in params or [] if p.type is not None
            and p.type.name in ("Tensor", "TernaryTensor") and not form_b_weight(p)]


# `param w: T { init: "kind", key: value }`: the initializers and the keys each takes
# (docs/language.md, "Parameters with an init spec"); every spec may also give `shape:`.
PARAM_INITS: dict[str, tuple[str, ...]] = {
    "normal": ("mean", "std"),
    "uniform": ("low", "high"),
    "zeros": (),
    "ones": (),
    "constant": ("value",),
    "xavier": ("gain",),            # Glorot uniform
    "xavier_uniform": ("gain",),
    "xavier_normal": ("gain",),
    "kaiming": ("a", "mode", "nonlinearity"),   # He uniform
    "kaiming_uniform": ("a", "mode", "nonlinearity"),
    "kaiming_normal": ("a", "mode", "nonlinearity"),
}
INIT_DEFAULTS = {"mean": 0.0, "std": 1.0, "low": 0.0, "high": 1.0, "value": 0.0, "gain": 1.0,
                 "a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"}
INIT_KEY_ALIASES = {"fan_mode": "mode"}   # the seed's spelling of torch's kaiming `mode`
TRAINED_KEYS = ("requires_grad", "learnable")   # `learnable`: the seed's spelling
INIT_CHOICES = {"mode": ("fan_in", "fan_out"),
                "nonlinearity": ("relu", "leaky_relu", "linear", "tanh", "sigmoid")}


def param_type(item) -> A.TypeExpr:
    """The declared type of a `param`, its shape taken from the spec's `shape: [..]` when
    the type has none (`param bias: if (c) Tensor { shape: [n] }`)."""
    te = item.type
    if te.shape is not None or not item.spec:
        return te
    for e in item.spec:
        items = shape_items(e.value) if e.key == "shape" else None
        if items is not None:
            dims = []
            for x in items:
                if isinstance(x, A.Num) and not x.is_float:
                    dims.append(A.Dim(x.value, x.span))
                elif isinstance(x, A.Name):
                    dims.append(A.Dim(x.id, x.span))
                elif isinstance(x, A.Unknown):
                    dims.append(A.Dim(None, x.span))
                else:
                    dims.append(A.Dim(x, x.span))
            return A.TypeExpr(te.name, te.dtype, dims, te.span)
    return te


def shape_items(e: A.Expr) -> list[A.Expr] | None:
    """The dims of a `shape:` in a param's spec: a list `[a, b]`, or a conditional of lists
    of one length (`[n] if per_channel else [1]`, `c ? [a] : [b]`, `if c { [a] } else { [b] }`),
    read dim by dim (`[n if per_channel else 1]`); None for anything else."""
    if isinstance(e, A.ListLit):
        return list(e.items)
    if isinstance(e, A.CondExpr | A.IfExpr):
        then = e.then.value if isinstance(e.then, A.BlockExpr) and not e.then.body else e.then
        other = e.other.value if isinstance(e.other, A.BlockExpr) and not e.other.body \
            else e.other
        a, b = shape_items(then), shape_items(other)
        if a is None or b is None or len(a) != len(b):
            return None
        return [x if x == y else A.CondExpr(e.cond, x, y, x.span) for x, y in zip(a, b)]
    return None


def param_init(item) -> tuple[str | None, dict]:
    """The initializer a `param`'s spec names and the spec's other keys (exprs)."""
    keys = {INIT_KEY_ALIASES.get(e.key, e.key): e.value for e in item.spec or []
            if e.key != "shape" and e.key not in TRAINED_KEYS}
    init = keys.pop("init", None)
    return (init.value if isinstance(init, A.Str) else None), keys


def param_trainable(item) -> bool:
    """A `param`'s spec key `requires_grad: false` (or the seed's `learnable: false`; any
    initializer) makes it a parameter that is not trained (PyTorch's requires_grad=False);
    true, the default, a trained one."""
    v = next((e.value for e in item.spec or [] if e.key in TRAINED_KEYS), None)
    return not (isinstance(v, A.Bool) and v.value is False)


_FN_VIEWS: dict[int, tuple[object, Definition]] = {}


def layer_as_function(d: Definition) -> Definition:
    """A dialect (b) layer called directly, `FC(w1, x)`: a pure function of all its
    arguments in declared order (weights passed explicitly, hyperparameters, inputs), as a
    `fn` of the same name and body. One view per definition, so caches keyed on it agree."""
    hit = _FN_VIEWS.get(id(d.node))
    if hit is not None and hit[0] is d.node:
        return hit[1]
    node = d.node
    fn = A.FnDef(d.name, list(node.params or []), node.ret, forward_body(node), node.span,
                 node.type_params, where=node.where)   # `layer L<T>(…)`: bound at each call
    view = Definition(d.name, fn, d.file)
    _FN_VIEWS[id(node)] = (node, view)
    return view


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
    statement that defines it, or used inside a definition that does not see it (a model,
    block or layer; a function that binds the name itself: frontend.lift_globals)."""
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
            d.help = (f"`{name}` is a top-level variable (line {at.line}): models, blocks and "
                      f"layers do not see those (pass it as config or an argument), and a "
                      f"function that binds `{name}` itself (`let`, an assignment) uses its "
                      f"own `{name}` in its whole body")


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
