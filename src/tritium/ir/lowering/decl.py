"""Lowering the seed's declaration forms (issue 13, `decl`): a tensor constructed by its
type, `Tensor<int32, [10, 10]>()` (`check.checker.decl_forms.ZerosForm`): a `zeros` of the
declared shape and dtype; and the float repeat count of `check.checker.decl_lists`."""

from __future__ import annotations

from typing import Any

from ...check.checker.decl_forms import ZerosForm
from ...frontend.diagnostics import Span
from ..builder import Builder
from .values import FnCtx, LoweringError


def lower_zeros(lw, form: ZerosForm, env: dict[str, Any], b: Builder, ctx: FnCtx,
                span: Span | None) -> Any:
    dims = [d if isinstance(d, int) else lw.lookup(d, env, b, ctx, span) for d in form.dims]
    if not all(isinstance(d, int) for d in dims):
        raise LoweringError("zeros of a declared type need dims known when lowering", span)
    return lw.builtin("zeros", [(None, dims), ("dtype", form.dtype)], b, span, ctx)


# ----------------------------------------------------------------------------- list forms

def floor_count(x: Any, y: Any) -> tuple[Any, Any]:
    """`[x] * n` with a float n (the form `repeat_floor`): n made floor(n)."""
    if isinstance(x, list) and isinstance(y, float):
        return x, int(y // 1)
    if isinstance(y, list) and isinstance(x, float):
        return int(x // 1), y
    return x, y
