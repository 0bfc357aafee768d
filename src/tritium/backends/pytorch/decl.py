"""Generated code for a tensor constructed by its type (issue 13, `decl`):
`Tensor<int32, [10, 10]>()` is the zeros the checker chose
(`check.checker.decl_forms.ZerosForm`)."""

from __future__ import annotations

from ...check.checker.decl_forms import ZerosForm
from ...frontend import ast as A
from .text import CodegenError
from .text import literal as _q


def zeros_source(gen, form, ctx) -> str:
    """The Python of `form`'s zeros, or a CodegenError where the checker recorded none (a
    constructor it refused)."""
    if not isinstance(form, ZerosForm):
        raise CodegenError("a tensor type used as a value")   # the checker reports it
    dims = [str(d) if isinstance(d, int) else gen.expr(A.Name(d), ctx) for d in form.dims]
    shape = f"[{', '.join(dims)}]"
    kw = {} if form.dtype == "float32" else {"dtype": _q(form.dtype)}
    return gen.builtin("zeros", [shape], kw)
