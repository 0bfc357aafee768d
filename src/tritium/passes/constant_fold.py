"""`constant-fold`: evaluate ops whose operands are all constants with the reference
interpreter and replace them by constants. Results larger than `max_elements` (default
4096) stay unfolded so that the IR does not grow."""

from __future__ import annotations

from ..ir.builder import Builder
from ..ir.core import Function, Module, Op, Value
from ..ir.interpreter import InterpretError, eval_op
from ..ir.ops import OPS
from ..ir.types import TensorType
from .base import Pass, apply_patterns, const_array, register

NOT_FOLDABLE = ("constant", "param", "call", "if")


@register
class ConstantFold(Pass):
    name = "constant-fold"
    options = {"max_elements": 4096}

    def fold(self, op: Op, b: Builder) -> list[Value] | None:
        d = OPS[op.name]
        if op.name in NOT_FOLDABLE or d.terminator or not d.pure or op.regions:
            return None
        for t in op.result_types:
            if isinstance(t, TensorType) and (t.numel() is None or t.numel() > self.opts["max_elements"]):
                return None
        args = [const_array(v) for v in op.operands]
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
