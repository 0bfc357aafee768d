"""Lowering the seed's declaration forms (issue 13, `decl`): a tensor constructed by its
type, `Tensor<int32, [10, 10]>()` (`check.checker.decl_forms.ZerosForm`): a `zeros` of the
declared shape and dtype; and the list forms of
`check.checker.decl_lists`: spread items, rest patterns, a float repeat count."""

from __future__ import annotations

from typing import Any

from ...check import bounds
from ...check.checker.decl_forms import ZerosForm
from ...frontend import ast as A
from ...frontend.diagnostics import Span
from ..builder import Builder
from .values import FnCtx, LoweringError, RangeV


def lower_zeros(lw, form: ZerosForm, env: dict[str, Any], b: Builder, ctx: FnCtx,
                span: Span | None) -> Any:
    dims = [d if isinstance(d, int) else lw.lookup(d, env, b, ctx, span) for d in form.dims]
    if not all(isinstance(d, int) for d in dims):
        raise LoweringError("zeros of a declared type need dims known when lowering", span)
    return lw.builtin("zeros", [(None, dims), ("dtype", form.dtype)], b, span, ctx)


# ----------------------------------------------------------------------------- list forms

def spread_list(lw, items: list, env: dict[str, Any], b: Builder, ctx: FnCtx) -> list:
    """A list literal with `...xs` items (check.checker.decl_lists): a list known when
    lowering, each spread list's items in its place."""
    out: list = []
    for x in items:
        if not isinstance(x, A.Spread):
            out.append(lw.eval(x, env, b, ctx))
            continue
        v = lw.eval(x.value, env, b, ctx)
        if isinstance(v, RangeV):
            v = list(v.values())
        if not isinstance(v, list | tuple):
            raise LoweringError("a spread `...xs` needs a list known when lowering", x.span)
        out.extend(v)
        if len(out) > bounds.MAX_SEQUENCE:
            raise LoweringError(f"a list longer than {bounds.MAX_SEQUENCE} at compile time",
                                x.span)
    return out


def rest_parts(s: A.Unpack, v: Any) -> list:
    """The values of `let [a, ...rest, b] = v`, one per target (the rest a list)."""
    n, k = len(s.targets), s.rest
    if not isinstance(v, list | tuple) or len(v) < n - 1:
        raise LoweringError(f"cannot unpack this value into {n - 1} names and a rest (a list "
                            f"known when lowering is needed)", s.value.span)
    v = list(v)
    after = n - 1 - k
    return [*v[:k], v[k:len(v) - after], *v[len(v) - after:]]


def floor_count(x: Any, y: Any) -> tuple[Any, Any]:
    """`[x] * n` with a float n (the form `repeat_floor`): n made floor(n)."""
    if isinstance(x, list) and isinstance(y, float):
        return x, int(y // 1)
    if isinstance(y, list) and isinstance(x, float):
        return int(x // 1), y
    return x, y
