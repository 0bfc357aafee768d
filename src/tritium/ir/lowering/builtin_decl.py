"""The lowerings of the seed's `shuffle(xs, seed=0)` (check.builtins.decl): the list known
when lowering, permuted as the checker and the runtime permute it; `Ok(v)` (v) and
`Err(msg)`/`panic(msg)` (no IR form: a LoweringError where the lowering reaches one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...check.builtins.decl import permutation
from ...frontend.diagnostics import Span
from ..builder import Builder
from .builtin_core import _builtin
from .values import LoweringError, _is_int

if TYPE_CHECKING:
    from .lowerer import Lowerer


@_builtin("shuffle")
def _shuffle(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    xs, seed = a["xs"], a.get("seed", 0)
    if not isinstance(xs, list | tuple) or not _is_int(seed):
        raise LoweringError("`shuffle` needs a list and a seed known when lowering", span)
    items = list(xs)
    return [items[i] for i in permutation(len(items), seed)]


@_builtin("Ok")
def _ok(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    return a["value"]


@_builtin("Err", "panic")
def _stop(lw: Lowerer, b: Builder, a: dict[str, Any], span: Span | None) -> Any:
    raise LoweringError(f"the program stops here ({a.get('msg')!r}): a stop has no IR form",
                        span, help="the PyTorch backend raises the error at run time")
