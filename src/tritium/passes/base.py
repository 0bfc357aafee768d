"""Pass infrastructure: the Pass base class, the registry of passes by name and a greedy
pattern-rewrite driver shared by the rewriting passes.

A pattern is `fn(op, b) -> list[Value] | None`: it inspects `op`, may build new ops with the
Builder `b` (inserting before `op`) and returns the values that replace `op`'s results, or
None to leave it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..ir.builder import Builder
from ..ir.core import Dense, Function, Module, Op, Value, erase_op, replace_all_uses
from ..ir.interpreter import constant_value
from ..ir.types import TensorType

Pattern = Callable[[Op, Builder], "list[Value] | None"]
PASSES: dict[str, type[Pass]] = {}


class Pass:
    """A module-to-module transformation; `run` returns whether anything changed."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}  # option name → default
    free_options: ClassVar[bool] = False  # accept any option name (e.g. dim bindings)

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.options)
        if unknown and not self.free_options:
            raise ValueError(f"pass '{self.name}' has no option(s) {', '.join(sorted(unknown))}")
        for k, v in options.items():
            why = _option_problem(self.options.get(k, 0), v)
            if why is not None:
                raise ValueError(f"pass '{self.name}': option {k}={_short(v)} {why}")
        self.opts = {**self.options, **options}

    def run(self, module: Module) -> bool:
        changed = False
        for _, f in module.all_functions():
            changed |= self.run_on_function(f, module)
        return changed

    def run_on_function(self, f: Function, module: Module) -> bool:
        raise NotImplementedError(f"pass '{self.name}' must override run or run_on_function")

    def __repr__(self) -> str:
        return f"{self.name}{self.opts or ''}"


#: The largest integer a pass option (a size, an element count) may be.
MAX_OPTION_INT = 1 << 62


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:30] + "…"


def _option_problem(default: Any, v: Any) -> str | None:
    """Why `v` cannot be the value of an option whose default is `default` (an option of a
    free-option pass, a dim binding, is an integer): None when it can."""
    if isinstance(default, bool):
        return None if isinstance(v, bool) else "must be true or false"
    if isinstance(default, int):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_OPTION_INT:
            return "must be an integer from 0 to 2**62"
        return None
    if isinstance(default, float):
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            return "must be a finite number"
    return None


def register(cls: type[Pass]) -> type[Pass]:
    PASSES[cls.name] = cls
    return cls


def apply_patterns(f: Function, patterns: list[Pattern], max_rounds: int = 64) -> bool:
    """Apply `patterns` greedily to every op of `f` until none applies (or max_rounds)."""
    changed_any = False
    for _ in range(max_rounds):
        changed = False
        ops = list(f.walk())   # also keeps every op and value alive, so ids stay unique
        users: dict[int, list[Op]] = {}
        for op in ops:
            for o in op.operands:
                users.setdefault(id(o), []).append(op)
        known = {id(op) for op in ops}
        built: list[Op] = []   # ops the patterns create (kept alive for the same reason)
        for op in ops:
            if op.parent is None or not _attached(op):
                continue
            for pat in patterns:
                new = pat(op, Builder.before_op(op))
                if new is None:
                    continue
                assert len(new) == len(op.results), f"{op.name}: {len(new)} replacements"
                _register_built(new, users, known, built)
                for r, v in zip(op.results, new):
                    if r is not v:
                        # every use of r, through the use lists: no walk of the function
                        moved = users.pop(id(r), [])
                        for u in moved:
                            u.operands = [v if o is r else o for o in u.operands]
                        users.setdefault(id(v), []).extend(moved)
                erase_op(op)
                changed = True
                break
        changed_any |= changed
        if not changed:
            break
    return changed_any


def _register_built(values: list[Value], users: dict[int, list[Op]], known: set[int],
                    built: list[Op]) -> None:
    """Add the ops a pattern just built (reachable backwards from its replacement values)
    to the use lists, so that later replacements in the same round reach them too."""
    stack = [v.op for v in values if v.op is not None and id(v.op) not in known]
    while stack:
        op = stack.pop()
        if id(op) in known:
            continue
        known.add(id(op))
        built.append(op)
        for inner in op.walk():
            for o in inner.operands:
                users.setdefault(id(o), []).append(inner)
                if o.op is not None and id(o.op) not in known:
                    stack.append(o.op)


def substitute(subst: dict[int, tuple[Value, Value]], v: Value) -> Value:
    """`v` after the replacements in `subst` (id(old) -> (old, new)), chains followed."""
    seen = 0
    while id(v) in subst and subst[id(v)][0] is v and seen <= len(subst):
        v = subst[id(v)][1]
        seen += 1
    return v


def _attached(op: Op) -> bool:
    """Whether `op` is still reachable (its block's parent ops are not erased)."""
    block = op.parent
    while block is not None:
        parent = block.parent_op
        if parent is None:
            return True
        if parent.parent is None:
            return False
        block = parent.parent
    return False


def replace_op(f: Function, op: Op, values: list[Value]) -> None:
    """Replace every use of `op`'s results by `values` and erase `op`."""
    assert len(values) == len(op.results), f"{op.name}: {len(values)} replacements"
    for r, v in zip(op.results, values):
        if r is not v:
            replace_all_uses(f.body, r, v)
    erase_op(op)


#: The most elements a pass materializes of one constant (a splat `constant() {value = 1.0}`
#: of type tensor<[100000, 100000], f32> is 10**10 elements: never built as an array).
MAX_CONST_ELEMENTS = 1 << 22


def is_constant(v: Value) -> bool:
    """Whether `v` is defined by a `constant` op (nothing is materialized)."""
    return v.op is not None and v.op.name == "constant"


def const_array(v: Value, max_elements: int = MAX_CONST_ELEMENTS) -> np.ndarray | None:
    """The value of `v` if it is defined by a `constant` op of at most `max_elements`
    elements (a larger or not static one is None: too big to evaluate at compile time)."""
    op = v.op
    if op is None or op.name != "constant":
        return None
    t = v.type
    if isinstance(t, TensorType):
        n = t.numel()
        if n is None or n > max_elements:
            return None
    return constant_value(op.attrs["value"], t)


def is_splat(v: Value, x: float, negative: bool | None = None) -> bool:
    """Whether `v` is a non-empty constant whose every element equals `x` (with `negative`
    given, also has that sign bit: 0.0 == -0.0, but x + 0.0 is not x for x = -0.0). A splat
    (a scalar `value`) is judged by one element, whatever the size of its type."""
    op = v.op
    if op is None or op.name != "constant":
        return False
    t = v.type
    value = op.attrs.get("value")
    if isinstance(t, TensorType) and not isinstance(value, Dense):
        n = t.numel()
        if not n:                       # empty or not static
            return False
        c = constant_value(value, TensorType((1,), t.dtype))
    else:
        c = const_array(v)
        if c is None or c.size == 0:
            return False
    return bool(np.all(c == x)) and (negative is None or bool(np.all(np.signbit(c) == negative)))
