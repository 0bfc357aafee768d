"""`dce`: erase ops whose results are unused and that have no side effects.

Every op is free of side effects except the terminators (`return`, `yield`); an `if` or a
`call` whose results are unused is erased too.
"""

from __future__ import annotations

from ..ir.core import Function, Module, erase_op, use_counts
from ..ir.ops import OPS
from .base import Pass, register


@register
class DeadCodeElimination(Pass):
    name = "dce"

    def run_on_function(self, f: Function, module: Module) -> bool:
        changed = False
        counts = use_counts(f.body)
        # Reversed pre-order: users are visited before the ops that define their operands.
        for op in reversed(list(f.walk())):
            if not OPS[op.name].pure or any(counts.get(id(r), 0) for r in op.results):
                continue
            for inner in op.walk():
                for o in inner.operands:
                    counts[id(o)] -= 1
            erase_op(op)
            changed = True
        return changed
