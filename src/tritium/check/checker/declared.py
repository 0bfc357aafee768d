"""Declared types: a type expression with its dims resolved, shape checks, and whether a
value is assignable to a declared type."""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.diagnostics import Span, did_you_mean
from ...frontend.parser import DTYPES, TENSOR_TYPES
from .. import bounds
from .. import library as L
from ..types import (
    ANY,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    AnyT,
    ClosureT,
    DictT,
    Dim,
    FnSigT,
    FnT,
    LayerT,
    ListT,
    ModuleT,
    NoneT,
    RangeT,
    ScalarT,
    ShapeVarT,
    SymInt,
    TensorT,
    TupleT,
    TypeVarT,
    UnionT,
    Value,
    dims_conflict,
    shape_str,
)
from .layer_values import LAYER_VALUE_TYPES, check_assignable_layer
from .model import (
    Scope,
    _is_int,
    _num,
)

# Type names that stand for any layer (`[Layer]`: a list of layers)
ANY_LAYER_TYPES = frozenset({"Layer", "Module"})


def _elements(v: Value) -> list[Value] | None:
    """The element values of a list value when its length is known."""
    if not isinstance(v.ty, ListT) or not isinstance(v.const, list):
        return None
    return [c if isinstance(c, Value) else Value(INT, c) if isinstance(c, SymInt)
            else Value.of(c) if v.known else Value(ANY) for c in v.const]


class DeclaredTypesMixin:
    # ------------------------------------------------------------------ types
    def type_from_expr(self, te: A.TypeExpr | None, scope: Scope, bindings: dict | None = None):
        if te is None:
            return ANY
        name = te.name
        tvars = getattr(self, "type_vars", None)
        if tvars and name in tvars and te.args is None:
            return tvars[name]
        if te.args is not None or te.ret is not None:
            return self.composite_type(te, scope, bindings)
        if name in TENSOR_TYPES:
            ternary = name == "TernaryTensor"
            if tvars and te.dtype in tvars:
                # `Tensor<T, …>`: the element type a generic parameter is bound to
                bound = tvars[te.dtype]
                te = A.TypeExpr(te.name, bound.name if isinstance(bound, ScalarT)
                                and bound.name in DTYPES else None, te.shape, te.span)
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
            elif tvars and isinstance(tvars.get(te.shape_var), ShapeVarT):
                shape = tvars[te.shape_var].shape   # `Tensor<T, S>`: S bound at this call
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
        if name in LAYER_VALUE_TYPES and name not in self.defs:
            return ModuleT(name)   # a layer as a value (checker.layer_values)
        if name in self.defs or name in L.LAYERS or name in ANY_LAYER_TYPES \
                or name in getattr(self, "unparsed", ()):   # an alias with a syntax error
            return ANY
        self.report("E0401", f"unknown type `{name}`", te.span,
                    help=did_you_mean(name, list(DTYPES) + list(TENSOR_TYPES)))
        return ANY

    def composite_type(self, te: A.TypeExpr, scope: Scope, bindings: dict | None):
        """`list[T]`, `tuple[A, B]`, `A | B`, `dict[K, V]`, `fn(A) -> R` (see A.TypeExpr)."""
        if te.name == "Result":   # the seed's `Result<T, E>`: a T (`Err(msg)` stops the program)
            return self.type_from_expr(te.args[0], scope, bindings) if te.args else ANY
        args = [self.type_from_expr(a, scope, bindings) for a in te.args or []]
        if te.name == "list":
            return ListT(args[0] if args and not isinstance(args[0], AnyT) else None)
        if te.name == "tuple":
            return TupleT(tuple(args))
        if te.name == "Union":
            if any(isinstance(a, AnyT) for a in args):
                return ANY
            members: list = []
            for a in args:
                for m in a.members if isinstance(a, UnionT) else (a,):
                    if m not in members:
                        members.append(m)
            return UnionT(tuple(members)) if len(members) > 1 else members[0]
        if te.name == "dict":
            return DictT()
        if te.name == "fn":
            ret = self.type_from_expr(te.ret, scope, bindings) if te.ret is not None else None
            return FnSigT("", tuple(args), ret)
        return ANY

    def fits(self, ty, v: Value) -> bool:
        """Whether `v` is assignable to `ty` (check_assignable without reporting)."""
        self.quiet += 1
        saved = self.inner
        self.inner = []
        try:
            self.check_assignable(ty, v, None, "_")
            return not self.inner
        finally:
            self.quiet -= 1
            self.inner = saved

    def check_assignable_composite(self, ty, v: Value, span: Span, what: str) -> bool:
        """Assignability to a union, list, tuple, function or `None` type, and of a union
        value. Returns True when it handled the check."""
        got = v.ty
        if check_assignable_layer(self, ty, v, span, what):
            return True
        if isinstance(ty, UnionT):
            if isinstance(got, UnionT):
                bad = [m for m in got.members if not self.fits(ty, Value(m))]
                if bad:
                    self.report("E0401", f"`{what}` is declared {ty} but the value may be "
                                         f"{bad[0]}", span, label=f"this may be {bad[0]}")
                return True
            if not any(self.fits(m, v) for m in ty.members):
                self.report("E0401", f"`{what}` is declared {ty} but the value is {got}", span,
                            label=f"not one of {ty}")
            return True
        if isinstance(got, UnionT):
            # a union value is accepted where some member fits (checked by member)
            if not any(self.fits(ty, Value(m)) for m in got.members):
                self.report("E0401", f"`{what}` is declared {ty} but the value is {got}", span)
            return True
        if isinstance(ty, NoneT):
            if not isinstance(got, NoneT):
                self.report("E0401", f"`{what}` is declared None but the value is {got}", span)
            return True
        if isinstance(ty, ListT | TupleT):
            if isinstance(got, RangeT) and isinstance(ty, ListT):
                got = ListT()
            if not isinstance(got, ListT | TupleT):
                self.report("E0401", f"`{what}` is declared {ty} but the value is {got}", span)
                return True
            elems = _elements(v)
            if isinstance(ty, TupleT):
                n = len(elems) if elems is not None else (
                    len(got.items) if isinstance(got, TupleT) else None)
                if n is not None and n != len(ty.items):
                    self.report("E0401", f"`{what}` is declared {ty} ({len(ty.items)} "
                                         f"element(s)) but the value has {n}", span,
                                label=f"{n} element(s)")
                    return True
                if elems is not None:
                    for i, (t, e) in enumerate(zip(ty.items, elems)):
                        if not self.fits(t, e):
                            self.report("E0401", f"element {i} of `{what}` is {e.ty} but "
                                                 f"`{what}` is declared {ty}", span)
                            return True
                return True
            if ty.elem is None:
                return True
            if elems is None:
                elems = [Value(got.elem)] if isinstance(got, ListT) and got.elem else [
                    Value(t) for t in got.items] if isinstance(got, TupleT) else []
            for i, e in enumerate(elems):
                if not self.fits(ty.elem, e):
                    self.report("E0401", f"element {i} of `{what}` is {e.ty} but `{what}` is "
                                         f"declared {ty}", span)
                    return True
            return True
        if isinstance(ty, FnSigT):
            if not isinstance(got, FnT):
                self.report("E0401", f"`{what}` is declared {ty} but the value is {got}", span)
                return True
            d = self.defs.get(got.name)
            if isinstance(got, FnSigT):
                n_min = n_max = len(got.params)
            elif d is not None and isinstance(d.node, A.FnDef):
                k = len(got.bound) if isinstance(got, ClosureT) else 0   # bound by a closure
                n_max = len(d.node.params) - k
                n_min = sum(1 for p in d.node.params if p.default is None) - k
            else:
                return True
            if not n_min <= len(ty.params) <= n_max:
                self.report("E0401", f"`{what}` is declared {ty} (taking {len(ty.params)} "
                                     f"argument(s)) but `{got.name or got}` takes "
                                     f"{n_max if n_min == n_max else f'{n_min} to {n_max}'}",
                            span)
            return True
        if isinstance(ty, TypeVarT) or isinstance(got, TypeVarT):
            return True
        return False

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
                self.report("E0508", f"a dimension cannot be negative ({v})", d.span,
                            help="a dimension is a size >= 0, a name or `?`")
                return None
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
            if val.const < 0:
                self.report("E0508", f"a dimension cannot be negative ({val.const})", d.span,
                            help="a dimension is a size >= 0, a name or `?`")
                return None
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
        if self.check_assignable_composite(ty, v, span, what):
            return
        if isinstance(ty, ScalarT) and zero_d_number(got, ty):
            return   # a 0-d tensor (`sum(x)`, `max(abs(w))`) is the number it holds
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


def zero_d_number(got, ty: ScalarT) -> bool:
    """A 0-d tensor of a number dtype where an int or float scalar is declared: the seed's
    reductions return scalars, and a 0-d tensor computes like one."""
    if not isinstance(got, TensorT) or got.shape != ():
        return False
    if ty.name in FLOAT_TYPES:
        return got.dtype is None or got.dtype in FLOAT_TYPES | INT_TYPES | {"trit"}
    return ty.name in INT_TYPES and got.dtype in INT_TYPES | {"trit"}
