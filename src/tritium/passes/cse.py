"""`cse`: common subexpression elimination.

Two region-free, pure ops with the same name, operands, attributes and result types compute
the same values: the later one is replaced by the earlier. Values of an enclosing block are
visible inside nested regions, never the other way round.
"""

from __future__ import annotations

from typing import Any

from ..ir.core import Attr, Block, Dense, Function, Module, Op, erase_op, replace_all_uses
from ..ir.ops import OPS
from .base import Pass, register


def attr_key(v: Attr) -> Any:
    """A hashable key that tells apart values Python equates (1, 1.0, True; 0.0, -0.0)."""
    if isinstance(v, float):
        return ("f", repr(v))
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, list):
        return ("l", tuple(attr_key(x) for x in v))
    if isinstance(v, dict):
        return ("d", tuple((k, attr_key(x)) for k, x in sorted(v.items())))
    if isinstance(v, Dense):
        return ("t", tuple(attr_key(x) for x in v.data))
    return (type(v).__name__, v)


def op_key(op: Op) -> Any:
    return (op.name, tuple(id(o) for o in op.operands), attr_key(op.attrs),
            tuple(str(t) for t in op.result_types))


@register
class CommonSubexpressionElimination(Pass):
    name = "cse"

    def run_on_function(self, f: Function, module: Module) -> bool:
        self.changed = False
        self.root = f.body
        self.block(f.body, {})
        return self.changed

    def block(self, block: Block, scope: dict[Any, Op]) -> None:
        scope = dict(scope)
        for op in list(block.ops):
            for r in op.regions:
                self.block(r, scope)
            if op.regions or not OPS[op.name].pure:
                continue
            key = op_key(op)
            prev = scope.get(key)
            if prev is None:
                scope[key] = op
                continue
            for old, new in zip(op.results, prev.results):
                replace_all_uses(self.root, old, new)
            erase_op(op)
            self.changed = True
