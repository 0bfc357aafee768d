"""The abstract syntax tree. Every node carries a `span`; spans never take part in equality,
so two parses of differently formatted but equivalent programs compare equal (the formatter's
property test relies on that).

Surface spellings that mean the same thing map to one node: `fn forward` and `forward`,
`start_dim: 1` and `start_dim=1`, `Tensor[2, 3]` and `Tensor<float32, [2, 3]>` (dtype aside),
`a if c else b` and `c ? a : b`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Span

_NOSPAN = Span("<none>", 0, 0, 0, 0)


def _span() -> Span:
    return field(default=_NOSPAN, compare=False, repr=False)


# ----------------------------------------------------------------------------- types

@dataclass(slots=True)
class Dim:
    """One dimension of a shape: an int, a symbolic name, `?`, or an expression (`2*c`)."""
    value: int | str | None | Expr   # None means `?`
    span: Span = _span()


@dataclass(slots=True)
class TypeExpr:
    """A type. Composite types have a canonical name and `args` (one node per meaning):
    `list` (`list[T]`, `List[T]`, `[T]`), `tuple` (`tuple[A, B]`, `Tuple[A, B]`, `[A, B]`,
    `(A, B)`), `Union` (`A | B`, `Union[A, B]`; `Optional[T]` and `T?` are `T | None`),
    `dict` (`dict[K, V]`) and `fn` (`fn(A, B) -> R`: `args` are the parameters, `ret` the
    result). `void` is `None` and the lower-case `tensor` is `Tensor`."""
    name: str                        # trit, bool, int, int8, …, Tensor, TernaryTensor
    dtype: str | None = None         # element type for tensors
    shape: list[Dim] | None = None   # None: shape not given
    span: Span = _span()
    args: list[TypeExpr] | None = None   # type arguments of list/tuple/Union/dict/fn
    ret: TypeExpr | None = None          # the result of a `fn(…) -> R` type
    shape_var: str | None = None         # `Tensor<T, S>`: the shape named by S (or `?`): any


# ----------------------------------------------------------------------------- expressions

@dataclass(slots=True)
class Expr:
    pass


@dataclass(slots=True)
class Name(Expr):
    id: str
    span: Span = _span()


@dataclass(slots=True)
class Num(Expr):
    value: int | float
    is_float: bool = False
    span: Span = _span()


@dataclass(slots=True)
class TritLit(Expr):
    value: int
    span: Span = _span()


@dataclass(slots=True)
class Str(Expr):
    value: str
    span: Span = _span()


@dataclass(slots=True)
class FField:
    """One `{expr!conv:spec}` field of an f-string (`conv` is "", "r", "s" or "a"; `spec` is
    validated by the lexer to a safe charset)."""
    value: Expr
    conv: str = ""
    spec: str = ""
    span: Span = _span()


@dataclass(slots=True)
class FString(Expr):
    """`f"loss {x:.3f} at {i}"`: literal text (str) and fields (FField), in order."""
    parts: list
    span: Span = _span()


@dataclass(slots=True)
class Bool(Expr):
    value: bool
    span: Span = _span()


@dataclass(slots=True)
class NoneLit(Expr):
    span: Span = _span()


@dataclass(slots=True)
class Unknown(Expr):
    """`?` used as a value (an unknown dimension in a shape list)."""
    span: Span = _span()


@dataclass(slots=True)
class ListLit(Expr):
    items: list[Expr]
    span: Span = _span()


@dataclass(slots=True)
class DictLit(Expr):
    entries: list[ConfigEntry]
    span: Span = _span()


@dataclass(slots=True)
class Unary(Expr):
    op: str          # "-", "+", "not"
    operand: Expr
    span: Span = _span()


@dataclass(slots=True)
class Binary(Expr):
    op: str          # + - * / // % @ ** == != < <= > >= and or is "is not"
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(slots=True)
class CondExpr(Expr):
    cond: Expr
    then: Expr
    other: Expr
    span: Span = _span()


@dataclass(slots=True)
class Arg:
    value: Expr
    name: str | None = None
    span: Span = _span()


@dataclass(slots=True)
class Call(Expr):
    func: Expr
    args: list[Arg]
    span: Span = _span()


@dataclass(slots=True)
class Slice(Expr):
    start: Expr | None
    stop: Expr | None
    step: Expr | None = None
    span: Span = _span()


@dataclass(slots=True)
class Index(Expr):
    value: Expr
    indices: list[Expr]   # each an Expr or a Slice
    span: Span = _span()


@dataclass(slots=True)
class Attr(Expr):
    value: Expr
    attr: str
    span: Span = _span()


@dataclass(slots=True)
class Range(Expr):
    start: Expr
    stop: Expr
    span: Span = _span()
    inclusive: bool = False        # `a..=b`
    step: Expr | None = None       # `a..b step k`, `(a..b).step_by(k)`


@dataclass(slots=True)
class ListComp(Expr):
    """`[elt for v in iter if cond]`; `vars` for `for (i, v) in …`."""
    elt: Expr
    var: str
    iter: Expr
    cond: Expr | None = None
    span: Span = _span()
    vars: list[str] | None = None


@dataclass(slots=True)
class BlockExpr(Expr):
    """`{ stmt … value }`: the statements, then the value of the last expression."""
    body: list[Stmt]
    value: Expr
    span: Span = _span()


@dataclass(slots=True)
class IfExpr(Expr):
    """`if c { … a } else { … b }` used as a value; `other` is a BlockExpr or an IfExpr."""
    cond: Expr
    then: BlockExpr
    other: Expr
    span: Span = _span()


@dataclass(slots=True)
class Closure(Expr):
    """A local or anonymous function that reads names of the function around it, used as a
    value (made by frontend.lift, never parsed): the lifted function `fn` with the values
    `captured` have here bound to its last parameters."""
    fn: str
    captured: list[Expr]
    span: Span = _span()


@dataclass(slots=True)
class WithGradient(Expr):
    """`value with_gradient_from source`: the value of `value`, with the gradient flowing to
    `source` as if through the identity (the straight-through estimator)."""
    value: Expr
    source: Expr
    span: Span = _span()


@dataclass(slots=True)
class FnExpr(Expr):
    """An anonymous function `fn(y: Tensor) -> Tensor { … }` used as a value (lifted to a
    module-level function before checking: tritium.frontend.lift)."""
    params: list[ParamSpec]
    ret: TypeExpr | None
    body: list[Stmt]
    span: Span = _span()


@dataclass(slots=True)
class TypeValue(Expr):
    """A tensor type written where a value stands: `Tensor<int32, [10, 10]>()` (a call
    with no arguments) constructs zeros of that type; the bare type is an error (E1031)
    that checking survives by taking it as such a tensor (tritium.check.checker.decl_forms)."""
    type: TypeExpr
    span: Span = _span()


def block_has_statements(e: Expr) -> bool:
    """Whether a block or `if` value holds statements (then Python needs them hoisted)."""
    if isinstance(e, BlockExpr):
        return bool(e.body) or block_has_statements(e.value)
    if isinstance(e, IfExpr):
        return block_has_statements(e.then) or block_has_statements(e.other)
    return False



# ----------------------------------------------------------------------------- statements

@dataclass(slots=True)
class Stmt:
    pass


@dataclass(slots=True)
class Let(Stmt):
    """`let x[: T] = e`, or `let x: T` (value None): declared here, assigned before use."""
    name: str
    type: TypeExpr | None
    value: Expr | None
    span: Span = _span()


@dataclass(slots=True)
class Assign(Stmt):
    target: Expr       # Name, or Index/Attr
    op: str            # "=", "+=", "-=", "*=", "/=", "@="
    value: Expr
    span: Span = _span()


@dataclass(slots=True)
class If(Stmt):
    cond: Expr
    then: list[Stmt]
    other: list[Stmt] | None = None   # an `else if` is an If inside `other`
    span: Span = _span()


@dataclass(slots=True)
class For(Stmt):
    var: str
    iter: Expr          # a Range or a call such as range(n)
    body: list[Stmt]
    span: Span = _span()
    vars: list[str] | None = None   # `for (i, v) in …`, `for i, v in …` (then var is vars[0])


@dataclass(slots=True)
class Unpack(Stmt):
    """`let (a, b) = e`, `let a, b = e`, the seed's `let [a, b] = e` (declare) or `a, b = e`,
    `(a, b) = e`."""
    targets: list[str]
    value: Expr
    declare: bool = False
    span: Span = _span()


@dataclass(slots=True)
class While(Stmt):
    cond: Expr
    body: list[Stmt]
    span: Span = _span()


@dataclass(slots=True)
class Break(Stmt):
    span: Span = _span()


@dataclass(slots=True)
class Continue(Stmt):
    span: Span = _span()


@dataclass(slots=True)
class Pass(Stmt):
    span: Span = _span()


@dataclass(slots=True)
class Assert(Stmt):
    cond: Expr
    msg: Expr | None = None
    span: Span = _span()


@dataclass(slots=True)
class Return(Stmt):
    value: Expr | None
    span: Span = _span()


@dataclass(slots=True)
class ExprStmt(Stmt):
    value: Expr
    span: Span = _span()


@dataclass(slots=True)
class With(Stmt):
    """`with no_grad() { … }`: the body runs with gradients off (a context the language
    knows; the body's names stay visible after it, as in Python)."""
    ctx: Expr
    body: list[Stmt]
    span: Span = _span()


@dataclass(slots=True)
class TypeAlias(Stmt):
    """`type Name = T`, at the top level or in a body (expanded before checking:
    tritium.frontend.lift)."""
    name: str
    type: TypeExpr
    span: Span = _span()
    params: list[str] | None = None   # `type Matrix<T> = Tensor<T, [?, ?]>`: its parameters


# ----------------------------------------------------------------------------- declarations

@dataclass(slots=True)
class ConfigEntry:
    key: str
    value: Expr
    span: Span = _span()
    type: TypeExpr | None = None   # a typed body constant `hidden: int = c * e`


@dataclass(slots=True)
class ParamSpec:
    """A typed parameter: a function argument or a block's `params { c: int = 1 }` entry."""
    name: str
    type: TypeExpr | None
    default: Expr | None = None
    span: Span = _span()


@dataclass(slots=True)
class LayerKind:
    """`TernaryLinear { in_features: 64 }`, `Down[2] { … }`, or `Proj(64, 10)`."""
    kind: str
    config: list[ConfigEntry]
    args: list[Arg] | None = None    # call-style instantiation `Kind(args)`
    repeat: Expr | None = None       # `Kind[N]`
    span: Span = _span()
    row: bool = False                # a row of the table `Kind[] { [..], [..] }` (check.repetition)


@dataclass(slots=True)
class LayerBranch:
    """`else if (cond) { Kind {…} }` or `else { Kind {…} }` (cond None) of a conditional layer."""
    cond: Expr | None
    kinds: list[LayerKind]
    span: Span = _span()


@dataclass(slots=True)
class LayerDecl:
    """`layer name: Kind {…}`, `layer name: Sequential { Kind {…} Kind {…} }` or
    `layer name: if (cond) { Kind {…} } else if (c2) { … } else { … }` (a `switch` is
    read as the `if` chain of its cases)."""
    name: str
    kinds: list[LayerKind]          # more than one: a sequence
    cond: Expr | None = None
    span: Span = _span()
    orelse: list[LayerBranch] = field(default_factory=list)   # tried in order when `cond` is false


@dataclass(slots=True)
class ParamDecl:
    """`param w: TernaryTensor[256, 10] = init` (the init is optional);
    `param w: Tensor[2, 4] { init: "normal", std: 0.02 }` (an init spec, `spec`);
    `param bias: if (use_bias) Tensor { shape: [n] }` (`cond`: None when false)."""
    name: str
    type: TypeExpr
    init: Expr | None = None
    span: Span = _span()
    cond: Expr | None = None
    spec: list[ConfigEntry] | None = None


@dataclass(slots=True)
class StateDecl:
    """`state steps: int = 0`: a buffer of the layer (not learned; updated by `forward` in
    training)."""
    name: str
    type: TypeExpr
    init: Expr | None = None
    span: Span = _span()


@dataclass(slots=True)
class TypeParam:
    """A generic type parameter: `T`, `T: Numeric` (or `where T: Numeric`)."""
    name: str
    bounds: list[str] = field(default_factory=list)
    span: Span = _span()


@dataclass(slots=True)
class FnDef:
    name: str
    params: list[ParamSpec]
    ret: TypeExpr | None
    body: list[Stmt]
    span: Span = _span()
    type_params: list[TypeParam] | None = None   # `fn f<T: Numeric>(…)`; `where` merged in
    # the body had a syntax error (reported): the checker says nothing more about it
    broken: bool = False
    # shape relations of a `where` clause (`S1[1] == S2[0]`): reported (W0980), not checked;
    # kept so that `tritium fmt` writes them back
    where: list[Expr] = field(default_factory=list)


@dataclass(slots=True)
class Section:
    """`training { … }`, `performance { … }`, `quantization { … }`, `params { … }`, `repeat { … }`."""
    name: str
    entries: list[ConfigEntry]
    span: Span = _span()


@dataclass(slots=True)
class ParamsSection:
    params: list[ParamSpec]
    span: Span = _span()


BodyItem = ConfigEntry | LayerDecl | ParamDecl | FnDef | Section | ParamsSection | Let | Stmt


@dataclass(slots=True)
class ModelDef:
    name: str
    body: list
    span: Span = _span()


@dataclass(slots=True)
class BlockDef:
    name: str
    body: list
    span: Span = _span()


@dataclass(slots=True)
class LayerDef:
    """The explicit layer forms: `layer Name(args) -> T { … }` and `layer Name { … }`."""
    name: str
    params: list[ParamSpec] | None   # None when written without parentheses
    ret: TypeExpr | None
    body: list
    span: Span = _span()
    type_params: list[TypeParam] | None = None   # `layer L<T>(…)`
    where: list[Expr] = field(default_factory=list)   # as FnDef.where


@dataclass(slots=True)
class Import(Stmt):
    path: str
    span: Span = _span()


@dataclass(slots=True)
class MainBlock:
    """`main { … }`: statements that are the program's entry, like top-level statements."""
    body: list[Stmt]
    span: Span = _span()


# A program's items: definitions, imports, `main { }` blocks and top-level statements (a
# `Stmt` directly in `Program.items`), which run in source order as the program's entry.
Item = ModelDef | BlockDef | LayerDef | FnDef | Import | MainBlock | Stmt


@dataclass(slots=True)
class Program:
    items: list
    file: str = field(default="<input>", compare=False)
    span: Span = _span()
    # whether it holds a type alias or a local or anonymous function (frontend.lift rewrites
    # only such programs)
    lifts: bool = field(default=False, compare=False)
    # definitions reported as having no meaning here (`layer X extends Base`): their uses are
    # not reported again (no cascade)
    rejected: set = field(default_factory=set, compare=False)
    # names bound by top-level statements or body items that had a syntax error (`let a: T =
    # ...`, `layer d: …`): their uses are not reported as undefined (no cascade)
    unparsed: set = field(default_factory=set, compare=False)
