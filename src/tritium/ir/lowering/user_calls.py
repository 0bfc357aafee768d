"""The arguments of a call of a user function in parameter order (issue 13): named
arguments go to the parameters of their names (`process(y: 2.0, x: 1)`), by the checker's
rule (tritium.check.checker.call_args); a parameter not given gets its default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...check.checker.call_args import ArgOrderError, by_name, order_args
from ...frontend.diagnostics import Span
from ..builder import Builder
from .values import FnCtx, LoweringError

if TYPE_CHECKING:
    from .lowerer import Lowerer


def ordered_args(lw: Lowerer, fn, args: list[tuple[str | None, Any]], b: Builder,
                 ctx: FnCtx, span: Span | None, n_params: int | None = None) -> list[Any]:
    """The values of `args` ((name, value) in call order) for the first `n_params`
    parameters of `fn` (default all), in their order, defaults filled in."""
    names = [n for n, _ in args]
    if not by_name(names):
        return [v for _, v in args]
    params = fn.params[:n_params] if n_params is not None else fn.params
    try:
        slots = order_args(params, names)
    except ArgOrderError as err:   # the checker reports these; never reached for checked code
        raise LoweringError(f"the arguments of `{fn.name}` do not fit its parameters "
                            f"({err.kind} {err.name or ''})", span) from None
    return [args[i][1] if i is not None else lw.eval(p.default, {}, b, ctx)
            for p, i in zip(params, slots)]
