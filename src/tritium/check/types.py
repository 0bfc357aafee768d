"""Types the checker infers: tensors with dtype and symbolic shapes, scalars, lists, layers.

A dimension is an `int`, a `str` (a symbolic name such as `batch`, or a derived expression
such as `(h-1)//2+1`), or `None` for `?`. Two dims conflict only when both are known ints and
differ: symbolic dims might be equal at run time, so they are never reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import vocab

Dim = int | str | None
Shape = tuple[Dim, ...]

INT_TYPES = vocab.INT_DTYPES
FLOAT_TYPES = vocab.FLOAT_DTYPES
SCALAR_TYPES = INT_TYPES | FLOAT_TYPES | {"bool", "str", "trit"}


class SymInt(str):
    """An int hyperparameter whose value is not known: it acts as a symbolic dimension."""


@dataclass(frozen=True, slots=True)
class TensorT:
    dtype: str | None = None          # None: not known
    shape: Shape | None = None        # None: rank not known
    ternary: bool = False

    def __str__(self) -> str:
        base = "TernaryTensor" if self.ternary else "Tensor"
        if self.shape is None:
            return base if self.dtype is None or self.ternary else f"{base}<{self.dtype}>"
        dims = ", ".join(dim_str(d) for d in self.shape)
        if self.dtype and not self.ternary and self.dtype != "float32":
            return f"{base}<{self.dtype}, [{dims}]>"
        return f"{base}[{dims}]"


@dataclass(frozen=True, slots=True)
class ScalarT:
    name: str   # int, float, bool, str, trit, int8, …

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListT:
    elem: Type | None = None      # the element type when declared (`list[int]`, `[Layer]`)

    def __str__(self) -> str:
        return "list" if self.elem is None else f"list[{self.elem}]"


@dataclass(frozen=True, slots=True)
class TupleT:
    """A fixed-length sequence: `tuple[A, B]`, `[A, B]`. At run time it is a list."""
    items: tuple = ()

    def __str__(self) -> str:
        return f"tuple[{', '.join(str(t) for t in self.items)}]"


@dataclass(frozen=True, slots=True)
class UnionT:
    """`A | B` (and `T?`, `Optional[T]`: `T | None`): a value of any one member type."""
    members: tuple = ()

    def __str__(self) -> str:
        return " | ".join(str(t) for t in self.members)


@dataclass(frozen=True, slots=True)
class TypeVarT:
    """A generic type parameter `T` inside its function's body (bound at each call)."""
    name: str
    bound: str | None = None

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ShapeVarT:
    """What a shape variable (`S` in `Tensor<T, S>`) is bound to at one call: a shape."""
    shape: Shape | None = None

    def __str__(self) -> str:
        return shape_str(self.shape)


@dataclass(frozen=True, slots=True)
class DictT:
    def __str__(self) -> str:
        return "dict"


@dataclass(frozen=True, slots=True)
class NoneT:
    def __str__(self) -> str:
        return "None"


@dataclass(frozen=True, slots=True)
class RangeT:
    def __str__(self) -> str:
        return "range"


@dataclass(frozen=True, slots=True)
class AnyT:
    def __str__(self) -> str:
        return "unknown"


@dataclass(frozen=True, slots=True)
class LayerT:
    inst: object = field(compare=False)   # a checker.LayerInst
    optional: bool = False                # a conditional layer whose condition is not known

    def __str__(self) -> str:
        return f"layer `{getattr(self.inst, 'name', '?')}`"


@dataclass(frozen=True, slots=True)
class ModuleT:
    """A layer or model passed around as a value, its definition unknown here (a value
    declared `Layer`, `TernaryLayer`, `Module` or `Model`, an item of `model.layers`): an
    nn.Module called on one tensor, the result's shape unknown (check.checker.layer_values).
    """
    kind: str = "Layer"

    def __str__(self) -> str:
        return self.kind


@dataclass(frozen=True, slots=True)
class FnT:
    name: str

    def __str__(self) -> str:
        return f"function `{self.name}`"


@dataclass(frozen=True, slots=True)
class ClosureT(FnT):
    """A closure (frontend `Closure`): the function `name` with the values `bound` appended
    to the arguments of every call."""
    bound: tuple = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class FnSigT(FnT):
    """A function type `fn(A, B) -> R`; `ret` None: returns nothing."""
    params: tuple = ()
    ret: Type | None = None

    def __str__(self) -> str:
        tail = "" if self.ret is None else f" -> {self.ret}"
        return f"fn({', '.join(str(t) for t in self.params)}){tail}"


Type = (TensorT | ScalarT | ListT | TupleT | UnionT | TypeVarT | DictT | NoneT | RangeT | AnyT
        | LayerT | FnT | ModuleT)

ANY = AnyT()
INT = ScalarT("int")
FLOAT = ScalarT("float")
BOOL = ScalarT("bool")
STR = ScalarT("str")


@dataclass(slots=True)
class Value:
    """What the checker knows about a value: its type and, when known, its constant."""
    ty: Type
    const: object = None    # python int/float/bool/str/list/dict/None when known
    known: bool = False     # distinguishes a known `None` constant from "not known"

    @staticmethod
    def of(const) -> Value:
        if isinstance(const, bool):
            return Value(BOOL, const, True)
        if isinstance(const, int):
            return Value(INT, const, True)
        if isinstance(const, float):
            return Value(FLOAT, const, True)
        if isinstance(const, SymInt):   # a symbolic int hyperparameter passed on: an int
            return Value(INT, const, False)
        if isinstance(const, str):
            return Value(STR, const, True)
        if const is None:
            return Value(NoneT(), None, True)
        if isinstance(const, list):
            return Value(ListT(), const, True)
        if isinstance(const, dict):
            return Value(DictT(), const, True)
        return Value(ANY)


def dim_str(d: Dim) -> str:
    return "?" if d is None else str(d)


def dims_conflict(a: Dim, b: Dim) -> bool:
    return isinstance(a, int) and isinstance(b, int) and a != b


def dims_equal(a: Dim, b: Dim) -> bool:
    return a is not None and a == b


def join_dim(a: Dim, b: Dim) -> Dim:
    return a if a == b else None


def join_shape(a: Shape | None, b: Shape | None) -> Shape | None:
    if a is None or b is None or len(a) != len(b):
        return None
    return tuple(join_dim(x, y) for x, y in zip(a, b))


def join_types(a: Type, b: Type) -> Type:
    if a == b:
        return a
    if isinstance(a, TensorT) and isinstance(b, TensorT):
        return TensorT(a.dtype if a.dtype == b.dtype else None, join_shape(a.shape, b.shape),
                       a.ternary and b.ternary)
    if isinstance(a, ScalarT) and isinstance(b, ScalarT):
        if a.name in FLOAT_TYPES or b.name in FLOAT_TYPES:
            return FLOAT
        return a
    if isinstance(a, ListT) and isinstance(b, ListT):
        return ListT(a.elem if a.elem == b.elem else None)
    return ANY


def working_type(t: Type) -> Type:
    """The type a body works with for a value declared `t`: a union is the join of its
    members other than `None` (`int?` is used as an int after the check for `None`)."""
    if isinstance(t, UnionT):
        rest = [m for m in t.members if not isinstance(m, NoneT)]
        if not rest:
            return NoneT()
        out = rest[0]
        for m in rest[1:]:
            out = join_types(out, m)
        return out
    if isinstance(t, TupleT):
        # a fixed-length list is indexed and iterated as a list
        elem = t.items[0] if t.items else None
        for m in t.items[1:]:
            elem = join_types(elem, m)
        return ListT(None if isinstance(elem, AnyT) else elem)
    if isinstance(t, TypeVarT):
        return ANY
    return t


def shape_str(shape: Shape | None) -> str:
    if shape is None:
        return "[…]"
    return "[" + ", ".join(dim_str(d) for d in shape) + "]"


# ----------------------------------------------------------------------------- generic bounds
# The bounds a generic type parameter may carry (`fn f<T: Numeric>`, `where T: Float`).
BOUNDS = {
    "Any": "any type",
    "Numeric": "a number (int, float, trit) or a tensor",
    "Float": "a float scalar or a floating-point tensor",
    "Integer": "an integer scalar (or trit) or an integer tensor",
    "Tensor": "a tensor",
    "Scalar": "a scalar (int, float, bool, trit, str)",
    # the seed's traits (its type-system page)
    "Comparable": "a value that compares with < and > (a number, bool, str or tensor)",
    "Quantizable": "a float scalar or a floating-point tensor (what quantizers take)",
    "Differentiable": "a float scalar or a floating-point tensor (it has gradients)",
    "Hashable": "a scalar (int, float, bool, trit, str)",
    "Shape": "a tensor's shape (a shape variable: `Tensor<T, S>`)",
}
DIM_BOUNDS = frozenset({"int", "int8", "int16", "int32", "int64"})
"""Bounds that make a type parameter a size (`fn dot<n: int32>(…)`): any value satisfies them."""


def satisfies(bound: str, t: Type) -> bool | None:
    """Whether the type `t` satisfies the bound; None when it cannot be known."""
    if isinstance(t, AnyT | TypeVarT):
        return None
    if isinstance(t, ShapeVarT):
        return True if bound in ("Shape", "Any") else None
    if bound == "Any":
        return True
    if bound == "Tensor":
        return isinstance(t, TensorT)
    if bound in ("Scalar", "Hashable"):
        return isinstance(t, ScalarT)
    if bound == "Comparable":
        return isinstance(t, ScalarT | TensorT)
    if bound in ("Shape",) or bound in DIM_BOUNDS:
        return None
    dtype = t.dtype if isinstance(t, TensorT) else t.name if isinstance(t, ScalarT) else None
    if isinstance(t, TensorT) and dtype is None:
        return None if bound != "Numeric" else True
    if dtype is None:
        return False
    if bound == "Numeric":
        return dtype in FLOAT_TYPES | INT_TYPES | {"trit"}
    if bound in ("Float", "Quantizable", "Differentiable"):
        return dtype in FLOAT_TYPES
    if bound == "Integer":
        return dtype in INT_TYPES | {"trit"}
    return None


def _number_kind(name: str | None) -> str | None:
    """The kind of a number type for unification: "float", "int" (ints and trit), "bool"."""
    if name is None:
        return None
    if name in FLOAT_TYPES or name == "float":
        return "float"
    if name in INT_TYPES or name in ("int", "trit"):
        return "int"
    return name


def _shapes_agree(a: Shape | None, b: Shape | None) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and not any(dims_conflict(x, y) for x, y in zip(a, b))


def unify_join(a: Type, b: Type) -> Type | None:
    """One binding for a type parameter bound twice (`T` from two arguments), or None when
    the two cannot be the same type: numbers of one kind agree (int literals and int types,
    floats), an int and a float do not (`process(1, 2.0)`); tensors agree when their element
    types are of one kind and their known shapes match."""
    if a == b or isinstance(b, AnyT):
        return a
    if isinstance(a, AnyT):
        return b
    if isinstance(a, ScalarT) and isinstance(b, ScalarT):
        if _number_kind(a.name) != _number_kind(b.name):
            return None
        return join_types(a, b)
    if isinstance(a, TensorT) and isinstance(b, TensorT):
        ka, kb = _number_kind(a.dtype), _number_kind(b.dtype)
        if ka is not None and kb is not None and ka != kb:
            return None
        if not _shapes_agree(a.shape, b.shape):
            return None
        return join_types(a, b)
    if isinstance(a, ShapeVarT) and isinstance(b, ShapeVarT):
        if not _shapes_agree(a.shape, b.shape):
            return None
        return ShapeVarT(join_shape(a.shape, b.shape))
    if isinstance(a, ListT) and isinstance(b, ListT):
        if a.elem is not None and b.elem is not None and unify_join(a.elem, b.elem) is None:
            return None
        return join_types(a, b)
    if isinstance(a, TupleT) and isinstance(b, TupleT) and len(a.items) == len(b.items):
        items = [unify_join(x, y) for x, y in zip(a.items, b.items)]
        return None if any(i is None for i in items) else TupleT(tuple(items))
    return None
