"""Generated code for the seed's declarations without a value (issue 13, `decl`): the zeros
the checker chose for a typed placeholder `let a: Tensor<float32, [3, 1]>` and for a tensor
constructed by its type, `Tensor<int32, [10, 10]>()` (`check.checker.decl_forms.ZerosForm`)."""

from __future__ import annotations

from ...check.checker.decl_forms import ZerosForm, scalar_zero
from ...frontend import ast as A
from .text import CodegenError
from .text import literal as _q


def zeros_source(gen, form, ctx, *, required: bool = False) -> str:
    """The Python of `form`'s zeros; `None` for a `let` the checker saw assigned later (a
    declaration), or a CodegenError when `required` (a constructor the checker refused)."""
    if not isinstance(form, ZerosForm):
        if required:
            raise CodegenError("a tensor type used as a value")   # the checker reports it
        return "None"
    if form.kind == "scalar":
        return _q(scalar_zero(form.dtype))
    if form.kind == "list":
        return "[]"
    dims = [str(d) if isinstance(d, int) else gen.expr(A.Name(d), ctx) for d in form.dims or ()]
    shape = f"[{', '.join(dims)}]"
    kw = {} if form.dtype == "float32" else {"dtype": _q(form.dtype)}
    return gen.builtin("zeros", [shape], kw)
