"""The seed's tensor types written as values (issue 13, `decl`).

A tensor type written where a value stands parses as `ast.TypeValue`: called with no
arguments (`Tensor<int32, [10, 10]>()`) it constructs zeros of that type: a tensor of zeros
of the declared shape and dtype (an unknown `?` or symbolic dim is 1; a dim named by a
variable in scope takes its value). Bare (`let w = Tensor<float32, [10]>`) it is E1031, and
checking goes on taking it as such a tensor (so an assignment to a TernaryTensor still
reports the trit constraint). A call with arguments, or one of a type whose shape is not
known, is E1032.

A `let a: T` without a value is a declaration: a use before an assignment is E0840
(checker.functions), whether or not an assignment follows.

The checker records the zeros as a `ZerosForm` of the call's span in
`CheckResult.call_forms`; the lowering and the code generator build them from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...frontend import ast as A
from ...frontend.formatter_decl import tensor_type_text
from ..types import (
    FLOAT_TYPES,
    INT_TYPES,
    AnyT,
    ScalarT,
    SymInt,
    TensorT,
    Value,
    shape_str,
)
from .model import _is_int

TYPE_NOT_VALUE = "E1031"
BAD_CONSTRUCT = "E1032"


@dataclass(frozen=True, slots=True)
class ZerosForm:
    """Zeros of a tensor type: its `dtype` and `dims` (ints, or names of variables read at
    run time)."""
    dtype: str
    dims: tuple = ()


def _run_dims(ck, te: A.TypeExpr, ty: TensorT, scope) -> tuple | None:
    """The dims of zeros of `ty` (declared as `te`): known ints; a dim named by a variable in
    scope that is not known yet, that variable; any other dim 1. None: no shape given."""
    if ty.shape is None or te.shape is None or len(te.shape) != len(ty.shape):
        return None
    out: list = []
    for d, r in zip(te.shape, ty.shape):
        if _is_int(r):
            out.append(r)
        elif isinstance(d.value, str) and d.value in scope.vars and (
                isinstance(scope.vars[d.value].const, SymInt)
                or isinstance(scope.vars[d.value].ty, ScalarT)
                and scope.vars[d.value].ty.name in INT_TYPES):
            out.append(d.value)
        else:
            out.append(1)
    return tuple(out)


def _zeros_form(ck, te: A.TypeExpr, ty: TensorT, scope) -> ZerosForm:
    dims = _run_dims(ck, te, ty, scope)
    return ZerosForm(ty.dtype or "float32", dims if dims is not None else ())


def ck_type_text(te: A.TypeExpr) -> str:
    return tensor_type_text(te) if te.args is None and te.ret is None else te.name


def type_value(ck, e: A.TypeValue, scope) -> Value:
    """A tensor type standing bare where a value is expected: E1031, then taken as a tensor
    of that type so that checking goes on."""
    ty = ck.type_from_expr(e.type, scope)
    text = ck_type_text(e.type)
    dims = "" if not isinstance(ty, TensorT) or ty.shape is None else \
        shape_str(tuple(d if _is_int(d) else 1 for d in ty.shape))
    ck.report(TYPE_NOT_VALUE, f"`{text}` is a type, not a value", e.span, label="a type",
              help=f"construct one with `{text}()` (zeros)"
                   + (f" or `zeros({dims})`" if dims else ""))
    return Value(ty if isinstance(ty, TensorT) else AnyT())


def construct(ck, call: A.Call, scope) -> Value:
    """`Tensor<int32, [10, 10]>()`: zeros of that type."""
    te = call.func.type   # type: ignore[attr-defined]
    ty = ck.type_from_expr(te, scope)
    text = ck_type_text(te)
    if call.args:
        ck.report(BAD_CONSTRUCT, f"`{text}(…)` takes no arguments: it is zeros of that type",
                  call.span, label="arguments given",
                  help="for values write `tensor([…], dtype=\"…\")`, or a literal "
                       "`TernaryTensor[2, 2](1, 0, -1, 1)`")
        return Value(ty if isinstance(ty, TensorT) else AnyT())
    if not isinstance(ty, TensorT):
        return Value(AnyT())
    if ty.shape is None:
        ck.report(BAD_CONSTRUCT, f"`{text}()` needs a shape to make its zeros", call.span,
                  label="no shape", help=f"write `{te.name}<{ty.dtype}, [2, 3]>()`")
        return Value(ty)
    ck.call_forms[call.span] = _zeros_form(ck, te, ty, scope)
    return Value(ty)


def tensor_dtype_fits(ck, fn: A.FnDef, p: A.ParamSpec, got: TensorT, span) -> None:
    """An int tensor passed where a function declares a float element type
    (`fn safe_quantize<S>(x: Tensor<float32, S>)` called with `Tensor<int32, [10, 10]>()`)."""
    declared = p.type.dtype if p.type is not None else None
    if declared in FLOAT_TYPES and got.dtype in INT_TYPES:
        ck.report("E0404", f"argument `{p.name}` of `{fn.name}` must hold {declared} "
                           f"(`{ck_type_text(p.type)}`), got a tensor of {got.dtype}", span,
                  label=f"{got.dtype} values",
                  help=f"convert it first: `{declared}(x)`; only float tensors fit a "
                       f"{declared} parameter, whatever its shape binds")


def float_type_into_ternary(ck, s: A.Let, v: Value) -> None:
    """`let w: TernaryTensor<trit, [10]> = Tensor<float32, [10]>` (or `…()`): a tensor type of
    float elements written as the value of a TernaryTensor is E0402 (a float tensor type is
    not a ternary one). Computed values (`quantize(x)`, `sign(x)`) are not judged here."""
    e = s.value
    typed = e.func if isinstance(e, A.Call) and isinstance(e.func, A.TypeValue) else e
    if not isinstance(typed, A.TypeValue) or s.type is None:
        return
    if s.type.name != "TernaryTensor" or not isinstance(v.ty, TensorT) or v.ty.ternary:
        return
    if v.ty.dtype in FLOAT_TYPES:
        ck.report("E0402", f"cannot store a {v.ty.dtype} tensor in TernaryTensor `{s.name}`: "
                           f"`{ck_type_text(typed.type)}` is not a ternary type", e.span,
                  label="not ternary",
                  help="quantize a float tensor: `ternary_quantize(x)`; for zero trits write "
                       f"`{ck_type_text(s.type)}()`")
