"""Lowering list methods (`xs.append(v)`, `xs.index(v)`, ...; the table is
tritium.check.list_methods): a list is a Python list while lowering, so a method runs on it
as in the generated module, in program order. Comparisons (`index`, `count`, `remove`,
`sort`) need items known when lowering."""

from __future__ import annotations

from typing import Any

from ...check import bounds
from ...check.list_methods import LIST_METHODS, MUTATING, mutates_lists
from ...frontend import ast as A
from ...frontend.diagnostics import Span
from .values import LoweringError, _is_const, _is_int

_NEEDS_CONSTANTS = frozenset({"index", "count", "remove", "sort"})


def call_list_method(lst: list, name: str, args: list[tuple[str | None, Any]],
                     span: Span | None) -> Any:
    m = LIST_METHODS[name]
    if any(k is not None for k, _ in args) or not m.min_args <= len(args) <= m.max_args:
        raise LoweringError(f"wrong arguments to the list method `{name}`", span)
    vals = [v for _, v in args]
    if name in ("insert", "pop") and vals and not _is_int(vals[0]):
        raise LoweringError(f"the position given to `{name}` must be known when lowering", span)
    if name in _NEEDS_CONSTANTS and not all(_is_const(x) for x in [*lst, *vals]):
        raise LoweringError(f"`{name}` compares items, which must be known when lowering", span)
    if name == "extend" and not isinstance(vals[0], list | tuple):
        raise LoweringError("`extend` takes a list", span)
    if name in ("append", "insert", "extend"):
        grow = len(vals[0]) if name == "extend" else 1
        if len(lst) + grow > bounds.MAX_SEQUENCE:
            raise LoweringError(f"a list longer than {bounds.MAX_SEQUENCE} at compile time",
                                span)
    try:
        return getattr(lst, name)(*vals)
    except (IndexError, ValueError, TypeError) as exc:
        raise LoweringError(f"`{name}`: {exc}", span) from None


def fresh_lists(x: Any) -> Any:
    """`x` with every list in it copied."""
    return [fresh_lists(i) for i in x] if isinstance(x, list) else x


def _mutated_params(fn) -> list[str]:
    """The parameters of `fn` whose list the body changes by a method call on the name."""
    names = {p.name for p in fn.params}
    found: list[str] = []
    stack: list = list(fn.body)
    seen = 0
    while stack and seen < 10_000:
        node = stack.pop()
        seen += 1
        if isinstance(node, list | tuple):
            stack.extend(node)
            continue
        if isinstance(node, A.Call) and isinstance(node.func, A.Attr) \
                and node.func.attr in MUTATING:
            root = node.func.value
            while isinstance(root, A.Index | A.Attr):
                root = root.value
            if isinstance(root, A.Name) and root.id in names and root.id not in found:
                found.append(root.id)
        for f in getattr(node, "__dataclass_fields__", ()):
            if f != "span":
                x = getattr(node, f, None)
                if isinstance(x, list | tuple) or hasattr(x, "__dataclass_fields__"):
                    stack.append(x)
    return found


def list_arguments(fn, args: list[Any], span: Span | None) -> list[Any]:
    """The arguments a user function is lowered with: a function that changes lists gets
    copies of the lists passed to it (it may be lowered more than once, and its result is
    shared by every call with the same arguments), and one that changes a list passed to it
    through its parameter cannot be lowered (the caller would see the change)."""
    if not mutates_lists(fn):
        return args
    changed = _mutated_params(fn)
    bad = [p.name for p, a in zip(fn.params, args) if p.name in changed and isinstance(a, list)]
    if bad:
        raise LoweringError(f"`{fn.name}` changes the list passed as `{bad[0]}`, which the IR "
                            f"cannot express", span,
                            help="return the new list instead of changing the argument")
    return [fresh_lists(a) for a in args]
