"""The run-time side of the seed's list forms (issue 13, `decl`): `shuffle(xs, seed=0)`
and `[x] * n` with a float count (`repeat_list`).

The permutation is the one the checker and the IR lowering draw
(`tritium.check.builtins.decl.permutation`; the runtime never imports the compiler, so the
two lines are kept equal by tests/unit/check/test_decl_lists_check.py)."""

from __future__ import annotations

import random


def shuffle(xs, seed: int = 0) -> list:
    """A new list of the items of `xs` in the order drawn with `seed`."""
    items = list(xs)
    order = random.Random(seed).sample(range(len(items)), len(items))
    return [items[i] for i in order]


def repeat_list(a, b) -> list:
    """`[x] * n` with a float count n (either side): the list repeated floor(n) times."""
    items, n = (a, b) if isinstance(a, list | tuple) else (b, a)
    return list(items) * int(n // 1)


class ProgramError(RuntimeError):
    """A program stopped itself: `panic(msg)` or `Err(msg)`."""


def panic(msg) -> None:
    """`panic(msg)`, `Err(msg)`: stop the program with `msg`."""
    raise ProgramError(str(msg))
