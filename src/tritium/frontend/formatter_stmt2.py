"""Formatting the expressions given to `stmt2` (issue 13) that the formatter's own rules do
not print: `a with_gradient_from b` (its level, ½, lies between `if … else` (0) and ranges
(1); left-associative). Every other expression goes on to `formatter_forms2` (an atom),
whose statement and table formatters it also hands on to the formatter."""

from __future__ import annotations

from . import ast as A
from .formatter_decl import format_type_value
from .formatter_forms2 import format_forms2_expr, format_forms2_statement, format_table

__all__ = ["GRAD", "format_forms2_statement", "format_more_expr", "format_table"]

GRAD = 0.5
_RANGE = 1      # the formatter's level of a range, the tightest operand of `with_gradient_from`
_ATOM = 11      # the formatter's level of an atom


def format_more_expr(p, e) -> tuple[str, float]:
    """The text of `e` and its precedence level (the formatter's `_expr` contract)."""
    if isinstance(e, A.WithGradient):
        return f"{p.expr(e.value, GRAD)} with_gradient_from {p.expr(e.source, _RANGE)}", GRAD
    if isinstance(e, A.TypeValue):   # `Tensor<int32, [2, 2]>` as a value (formatter_decl)
        return format_type_value(p, e), _ATOM
    return format_forms2_expr(p, e), _ATOM   # fn(…) { … } (formatter_forms2)
