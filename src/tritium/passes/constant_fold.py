"""`constant-fold`: evaluate ops whose operands are all constants with the reference
interpreter and replace them by constants. Results larger than `max_elements` (default
4096, at most `MAX_CONST_ELEMENTS`) stay unfolded so that the IR does not grow, and operands
larger than it are never materialized (a splat constant of 10**10 elements stays a splat)."""

from __future__ import annotations

from typing import Any

from ..ir.builder import Builder
from ..ir.core import Function, Module, Op, Value
from ..ir.interpreter import InterpretError, eval_op
from ..ir.ops import OPS
from ..ir.types import TensorType
from .base import MAX_CONST_ELEMENTS, Pass, apply_patterns, const_array, register

NOT_FOLDABLE = ("constant", "param", "call", "if")


@register
class ConstantFold(Pass):
    name = "constant-fold"
    options = {"max_elements": 4096}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.opts["max_elements"] > MAX_CONST_ELEMENTS:
            raise ValueError(f"pass '{self.name}': option max_elements="
                             f"{self.opts['max_elements']} must be an integer from 0 to "
                             f"{MAX_CONST_ELEMENTS} (what is folded is built in memory)")

    def fold(self, op: Op, b: Builder) -> list[Value] | None:
        d = OPS[op.name]
        if op.name in NOT_FOLDABLE or d.terminator or not d.pure or op.regions:
            return None
        for t in op.result_types:
            if isinstance(t, TensorType) and (t.numel() is None or t.numel() > self.opts["max_elements"]):
                return None
        # operands too: a huge splat is never materialized to fold what uses it
        args = [const_array(v, self.opts["max_elements"]) for v in op.operands]
        if any(a is None for a in args):
            return None
        try:
            outs = eval_op(op.name, op.attrs, args, op.result_types)  # type: ignore[arg-type]
        except (InterpretError, ValueError, IndexError, ArithmeticError):
            return None
        return [b.constant(x if isinstance(t, TensorType) else x.item(), t)
                for x, t in zip(outs, op.result_types)]

    def run_on_function(self, f: Function, module: Module) -> bool:
        return apply_patterns(f, [self.fold])
