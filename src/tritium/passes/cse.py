"""`cse`: common subexpression elimination.

Two region-free, pure ops with the same name, operands, attributes and result types compute
the same values: the later one is replaced by the earlier. Values of an enclosing block are
visible inside nested regions, never the other way round.
"""

from __future__ import annotations

from typing import Any

from ..ir.core import Attr, Block, Dense, Function, Module, Op, Value, erase_op
from ..ir.ops import OPS
from .base import Pass, register, substitute


def attr_key(v: Attr, exact: bool = True) -> Any:
    """A hashable key that tells apart values Python equates (1, 1.0, True; 0.0, -0.0).
    With exact=False, a Dense is keyed by its length and hash only (cheap; may collide)."""
    if isinstance(v, float):
        return ("f", repr(v))
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, list):
        return ("l", tuple(attr_key(x, exact) for x in v))
    if isinstance(v, dict):
        return ("d", tuple((k, attr_key(x, exact)) for k, x in sorted(v.items())))
    if isinstance(v, Dense):
        if not exact:
            return ("t", len(v.data), hash(v.data))
        return ("t", repr(v.data))  # repr tells 0.0 from -0.0 and 1 from 1.0 from True
    return (type(v).__name__, v)


def op_key(op: Op, exact: bool = True) -> Any:
    return (op.name, tuple(id(o) for o in op.operands), attr_key(op.attrs, exact),
            tuple(str(t) for t in op.result_types))


@register
class CommonSubexpressionElimination(Pass):
    name = "cse"

    def run_on_function(self, f: Function, module: Module) -> bool:
        self.changed = False
        self.root = f.body
        # results of erased duplicates -> the values they stand for; uses follow definitions
        # in program order, so each op's operands are rewritten when it is visited (one
        # walk in all, not one per duplicate)
        self.subst: dict[int, tuple[Value, Value]] = {}
        self.block(f.body, {})  # cheap key → ops with that key (compared exactly on a hit)
        return self.changed

    def block(self, block: Block, scope: dict[Any, list[Op]]) -> None:
        scope = {k: list(v) for k, v in scope.items()}
        for op in list(block.ops):
            if self.subst:
                op.operands = [substitute(self.subst, o) for o in op.operands]
            for r in op.regions:
                self.block(r, scope)
            if op.regions or not OPS[op.name].pure:
                continue
            bucket = scope.setdefault(op_key(op, exact=False), [])
            exact = op_key(op) if bucket else None
            prev = next((p for p in bucket if op_key(p) == exact), None)
            if prev is None:
                bucket.append(op)
                continue
            for old, new in zip(op.results, prev.results):
                self.subst[id(old)] = (old, new)
            erase_op(op)
            self.changed = True
