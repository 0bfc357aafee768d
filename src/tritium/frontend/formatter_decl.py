"""Formatting the forms of the seed's declarations (issue 13, `decl`): a tensor type written
where a value stands (`ast.TypeValue`), always in its `<…>` spelling, since `Tensor[3, 4]`
would read back as an index of the name `Tensor`; a spread `...xs` in a list literal; the
rest `...name` of a destructuring."""

from __future__ import annotations

from collections.abc import Callable

from . import ast as A


def _plain_dim(d: A.Dim) -> str:
    v = d.value
    if v is None:
        return "?"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, int | str) else "…"


def tensor_type_text(t: A.TypeExpr, dim: Callable[[A.Dim], str] = _plain_dim) -> str:
    """`Tensor<int32, [10, 10]>`, `TernaryTensor<trit, S>`, `Tensor<[3, 4]>`, `Tensor<float32>`
    (a dim printed by `dim`: the formatter's, or numbers and names with `…` for an
    expression)."""
    parts = []
    if t.dtype is not None:
        parts.append(t.dtype)
    if t.shape_var is not None:
        parts.append(t.shape_var)
    elif t.shape is not None:
        parts.append(f"[{', '.join(dim(d) for d in t.shape)}]")
    return f"{t.name}<{', '.join(parts)}>" if parts else t.name


def format_type_value(p, e: A.TypeValue) -> str:
    t = e.type
    if t.args is not None or t.ret is not None:
        return p.type(t)   # `Tensor<…>?`: the parser made it a union
    return tensor_type_text(t, p.dim)

