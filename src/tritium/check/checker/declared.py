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
    INT_TYPES,
    AnyT,
    DictT,
    Dim,
    LayerT,
    ListT,
    NoneT,
    ScalarT,
    SymInt,
    TensorT,
    Value,
    dims_conflict,
    shape_str,
)
from .model import (
    Scope,
    _is_int,
    _num,
)


class DeclaredTypesMixin:
    # ------------------------------------------------------------------ types
    def type_from_expr(self, te: A.TypeExpr | None, scope: Scope, bindings: dict | None = None):
        if te is None:
            return ANY
        name = te.name
        if name in TENSOR_TYPES:
            ternary = name == "TernaryTensor"
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
        if name in self.defs or name in L.LAYERS:
            return ANY
        self.report("E0401", f"unknown type `{name}`", te.span,
                    help=did_you_mean(name, list(DTYPES) + list(TENSOR_TYPES)))
        return ANY

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
                self.report("E0508", f"a dimension cannot be negative ({v})", d.span)
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
