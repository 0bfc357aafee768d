"""A model, block or layer that contains itself (E0310).

Building a definition builds what it always contains: the kinds of its unconditional layers
(`layer again: Loop { … }`, each kind of a sequence, a repetition `Loop[2]`) and the layers
its body constructs (`let again = Net()`). When these lead back to the definition, directly
or through others (`A` holds a `B`, which holds an `A`), building it never ends: the
generated module recursed until Python's RecursionError, and interpreting an instance nested
one message in another down to the checker's depth bound. The cycle is reported once, at the
declaration in its first definition (in program order) that starts it; the definitions on
it are not interpreted further. A layer behind a condition (`layer sub: if (d > 0) { … }`)
is not on a cycle here: its condition may end the recursion.
"""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.diagnostics import Span


def _builds(node, defs: dict) -> list[tuple[str, Span]]:
    """The definitions `node` builds whenever it is built, each with the declaration that
    builds it."""
    out: list[tuple[str, Span]] = []
    for item in getattr(node, "body", None) or []:
        if isinstance(item, A.LayerDecl) and item.cond is None:
            for k in item.kinds:
                d = defs.get(k.kind)
                zero = isinstance(k.repeat, A.Num) and k.repeat.value == 0
                if d is not None and not isinstance(d.node, A.FnDef) and not zero:
                    out.append((k.kind, item.span))
        elif isinstance(item, A.Let) and isinstance(item.value, A.Call) \
                and isinstance(item.value.func, A.Name):
            d = defs.get(item.value.func.id)
            if d is not None and not isinstance(d.node, A.FnDef):
                out.append((d.name, item.span))
    return out


def find_cycles(defs: dict) -> dict[str, tuple[list[str], Span, bool]]:
    """Each definition on a cycle -> (the shortest cycle from it, as names from it back to
    it; the span of its declaration that starts the cycle; whether the cycle is reported
    here: its first definition in program order)."""
    edges = {n: _builds(d.node, defs) for n, d in defs.items() if not isinstance(d.node, A.FnDef)}
    order = {n: i for i, n in enumerate(defs)}
    out: dict[str, tuple[list[str], Span, bool]] = {}
    for start in edges:
        # breadth first from `start`: the shortest way back to it
        parent: dict[str, tuple[str, Span]] = {}
        frontier = [start]
        found: tuple[str, Span] | None = None
        while frontier and found is None:
            nxt = []
            for n in frontier:
                for m, span in edges.get(n, []):
                    if m == start:
                        found = (n, span)
                        break
                    if m not in parent and m != start:
                        parent[m] = (n, span)
                        nxt.append(m)
                if found is not None:
                    break
            frontier = nxt
        if found is None:
            continue
        path, n = [start], found[0]
        first_span = found[1]
        while n != start:
            path.insert(1, n)
            n, first_span = parent[n]
        path.append(start)
        out[start] = (path, first_span, all(order[start] <= order[m] for m in path))
    return out
