"""List methods (`xs.append(v)`, `xs.index(v)`, ...): one table read by the checker, the IR
lowering and the PyTorch code generator, and the checker's rule for each.

A list the checker knows (its items, or only its length and item values) stays known across
a mutation only where the mutation surely runs once: in straight-line code and in loops the
checker unrolls exactly. In a branch of a run-time condition the join of the branches drops
what differs; in a loop it does not unroll exactly the list becomes a list of unknown length.
Every other name bound to the same list (`let ys = xs`), or holding a list that contains it,
loses its constant. A call of
a user function whose body mutates a list forgets the constants of the lists passed to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..frontend import ast as A
from . import bounds
from .types import ANY, INT, AnyT, ListT, NoneT, SymInt, Value, join_types

MAX_SCAN = 10_000   # nodes looked at when asking whether a function mutates a list


@dataclass(frozen=True, slots=True)
class ListMethod:
    min_args: int
    max_args: int
    mutates: bool
    doc: str


LIST_METHODS: dict[str, ListMethod] = {
    "append": ListMethod(1, 1, True, "add one item at the end"),
    "extend": ListMethod(1, 1, True, "add the items of another list at the end"),
    "insert": ListMethod(2, 2, True, "`insert(i, v)`: add `v` before position `i`"),
    "pop": ListMethod(0, 1, True, "remove and return the item at `i` (default: the last)"),
    "remove": ListMethod(1, 1, True, "remove the first item equal to `v`"),
    "clear": ListMethod(0, 0, True, "remove every item"),
    "reverse": ListMethod(0, 0, True, "reverse the items in place"),
    "sort": ListMethod(0, 0, True, "sort the items in place (numbers or strings)"),
    "index": ListMethod(1, 1, False, "the position of the first item equal to `v`"),
    "count": ListMethod(1, 1, False, "how many items equal `v`"),
    "copy": ListMethod(0, 0, False, "a new list with the same items"),
}
MUTATING = frozenset(n for n, m in LIST_METHODS.items() if m.mutates)


def _items(v: Value) -> list[Value] | None:
    """The items of a list value as values, when its length is known."""
    if not isinstance(v.const, list):
        return None
    if v.known:
        return [c if isinstance(c, Value) else Value(INT, c) if isinstance(c, SymInt)
                else Value.of(c) for c in v.const]
    return [c if isinstance(c, Value) else Value(ANY) for c in v.const]


def _consts(items: list[Value]) -> list | None:
    if all(i.known for i in items):
        return [i.const for i in items]
    return None


def _make(ty: ListT, items: list[Value] | None) -> Value:
    if items is None:
        return Value(ty)
    consts = _consts(items)
    if consts is not None:
        return Value(ty, consts, True)
    return Value(ty, items, False)


def _elem_type(ty: ListT, items: list[Value] | None):
    if ty.elem is not None:
        return ty.elem
    if not items:
        return ANY
    out = items[0].ty
    for i in items[1:]:
        out = join_types(out, i.ty)
    return out


def _contains(obj, old: Value, target) -> bool:
    """Whether the items `obj` hold the list `old` (its value, or its constant `target`),
    at any depth. Lists nest as a graph that shares parts (`xs.extend([xs.copy()])` in a
    loop doubles the tree each time), so each list is visited once."""
    stack, seen = [obj], set()
    while stack:
        cur = stack.pop()
        if not isinstance(cur, list) or id(cur) in seen:
            continue
        seen.add(id(cur))
        for o in cur:
            if o is old or target is not None and (o is target or isinstance(o, Value)
                                                   and o.const is target):
                return True
            stack.append(o.const if isinstance(o, Value) else o)
    return False


def _root(e: A.Expr) -> str | None:
    while isinstance(e, A.Index | A.Attr):
        e = e.value
    return e.id if isinstance(e, A.Name) else None


def rebind(scope, old: Value, new: Value, root: str | None, direct: bool) -> None:
    """After a mutation of the list `old` reached through the name `root` (`direct`: `root`
    is the list itself, else the list is inside `root`'s value).

    Alone, `root` takes `new`. Names that are the same list (bound to the same value, or to
    the same constant) lose what is known, and all of them, `root` included, then share one
    value without a constant, so that a later change through any of them finds the others.
    (The checker may share one value between names that are distinct lists at run time, e.g.
    two calls of a function it checked once: they are treated as one list, which loses only
    precision.) Names whose value holds the list lose their constant too."""
    target = old.const if isinstance(old.const, list) else None
    if not direct:
        rv = scope.vars.get(root) if root is not None else None
        if rv is not None:
            rebind(scope, rv, Value(rv.ty), root, True)
    group = [n for n, v in scope.vars.items() if n != root and (
        v is old or target is not None and v.const is target)]
    holders = [n for n, v in scope.vars.items() if n != root and n not in group
               and isinstance(v.const, list) and _contains(v.const, old, target)]
    if direct and root is not None and root in scope.vars:
        if group:
            shared = Value(new.ty)
            for n in [root, *group]:
                scope.vars[n] = shared
        else:
            scope.vars[root] = new
    elif group:
        shared = Value(old.ty)
        for n in group:
            scope.vars[n] = shared
    for n in holders:
        scope.vars[n] = Value(scope.vars[n].ty)


def mutates_lists(fn) -> bool:
    """Whether a function's body calls a mutating list method anywhere (conservative)."""
    seen = 0
    stack: list = list(getattr(fn, "body", []) or [])
    while stack and seen < MAX_SCAN:
        node = stack.pop()
        seen += 1
        if isinstance(node, A.Call) and isinstance(node.func, A.Attr) \
                and node.func.attr in MUTATING:
            return True
        if isinstance(node, list | tuple):
            stack.extend(node)
            continue
        fields = getattr(node, "__dataclass_fields__", None)
        if fields is None:
            continue
        for f in fields:
            if f == "span":
                continue
            x = getattr(node, f, None)
            if isinstance(x, list | tuple) or hasattr(x, "__dataclass_fields__"):
                stack.append(x)
    return seen >= MAX_SCAN


def forget_passed_lists(checker, fn, call: A.Call, scope) -> None:
    """A call of `fn` whose body mutates lists: the lists passed to it by name are no longer
    known to the caller."""
    if not mutates_lists(fn):
        return
    for a in call.args:
        root = _root(a.value)
        if root is None:
            continue
        v = scope.vars.get(root)
        if v is not None and isinstance(v.ty, ListT) and isinstance(v.const, list):
            rebind(scope, v, Value(v.ty), root, direct=True)


def list_method_call(checker, base: Value, e: A.Call, scope) -> Value:
    """`xs.m(args)` where `xs` is a list: arguments checked, the result's value, and the
    list's new value stored where `xs` came from."""
    f = e.func
    assert isinstance(f, A.Attr)
    m = LIST_METHODS[f.attr]
    args = [checker.eval_expr(a.value, scope) for a in e.args]
    for a in e.args:
        if a.name is not None:
            checker.report("E0307", f"the list method `{f.attr}` takes no named arguments",
                           a.span)
            return Value(ANY)
    if not m.min_args <= len(args) <= m.max_args:
        want = str(m.min_args) if m.min_args == m.max_args else f"{m.min_args} to {m.max_args}"
        checker.report("E0306", f"`{f.attr}` takes {want} argument(s), got {len(args)}",
                       e.span, label=m.doc)
        return Value(ANY)
    ty = base.ty if isinstance(base.ty, ListT) else ListT()
    items = _items(base)
    elem = _elem_type(ty, items)
    # a declared element type (`list[int]`) is checked on what goes in
    if ty.elem is not None and f.attr in ("append", "insert"):
        checker.check_assignable(ty.elem, args[-1], e.args[-1].value.span, "item")
    if f.attr == "insert" and not (isinstance(args[0].ty, AnyT) or args[0].ty == INT):
        checker.report("E0404", f"`insert` takes an int position, got {args[0].ty}",
                       e.args[0].value.span)
    if f.attr == "pop" and args and not (isinstance(args[0].ty, AnyT) or args[0].ty == INT):
        checker.report("E0404", f"`pop` takes an int position, got {args[0].ty}",
                       e.args[0].value.span)
    result, new_items = _apply(checker, f.attr, items, args, elem, e)
    if not m.mutates:
        return result
    outer = getattr(checker, "_outer_values", None)
    if getattr(checker, "_in_method", False) and outer and any(
            v is base or isinstance(base.const, list) and v.const is base.const
            for v in outer.values()):
        # a config constant is the module's: a change in `forward` would outlive the call
        checker.report("E0966", f"`{f.attr}` would change a list of the module, which every "
                                f"later call would see", f.span, label="a config constant",
                       help="copy it first: `let xs = sizes.copy()`, then change the copy")
    # what is known about the list after the call
    if getattr(checker, "_inexact_loops", 0) > 0:
        new_items = None
    new = _make(ty, new_items)
    direct = isinstance(f.value, A.Name)
    rebind(scope, base, new, _root(f.value), direct)
    return result


def _apply(checker, name: str, items: list[Value] | None, args: list[Value], elem,
           e: A.Call) -> tuple[Value, list[Value] | None]:
    """The result of the method and the list's items after it (None: not known)."""
    span = e.span
    if name in ("append", "extend", "insert") and items is not None:
        other = _items(args[0]) if name == "extend" else None
        grow = len(other) if other is not None else 1
        if len(items) + grow > bounds.MAX_SEQUENCE:
            checker.report("E0312", f"`{name}` would make a list longer than "
                                    f"{bounds.MAX_SEQUENCE} items at compile time", span,
                           label="too long", help="build it at run time from a tensor")
            return Value(NoneT(), None, True), None
    if name == "append":
        return Value(NoneT(), None, True), None if items is None else items + [args[0]]
    if name == "extend":
        other = _items(args[0])
        if not isinstance(args[0].ty, ListT | AnyT):
            checker.report("E0404", f"`extend` takes a list, got {args[0].ty}",
                           e.args[0].value.span)
        ok = items is not None and other is not None
        return Value(NoneT(), None, True), items + other if ok else None
    if name == "insert":
        i = args[0]
        if items is None or not (i.known and isinstance(i.const, int)
                                 and not isinstance(i.const, bool)):
            return Value(NoneT(), None, True), None
        out = list(items)
        out.insert(i.const, args[1])
        return Value(NoneT(), None, True), out
    if name == "pop":
        if items is None:
            return Value(elem), None
        if not items:
            checker.report("E0960", "`pop` from a list that is empty here", span,
                           label="empty at compile time")
            return Value(elem), None
        i = args[0] if args else Value.of(-1)
        if not (i.known and isinstance(i.const, int) and not isinstance(i.const, bool)):
            return Value(elem), None
        if not -len(items) <= i.const < len(items):
            checker.report("E0960", f"`pop` index {i.const} is out of range for a list of "
                                    f"{len(items)} item(s)", span)
            return Value(elem), None
        out = list(items)
        got = out.pop(i.const)
        return got, out
    if name == "clear":
        return Value(NoneT(), None, True), []
    if name == "reverse":
        return Value(NoneT(), None, True), None if items is None else items[::-1]
    if name == "sort":
        consts = _consts(items) if items is not None else None
        if consts is None:
            return Value(NoneT(), None, True), None
        try:
            ordered = sorted(consts)
        except TypeError:
            checker.report("E0961", "`sort` needs items that compare (all numbers or all "
                                    "strings)", span)
            return Value(NoneT(), None, True), None
        return Value(NoneT(), None, True), [Value.of(c) for c in ordered]
    if name == "copy":
        return _make(ListT(elem if not isinstance(elem, AnyT) else None),
                     None if items is None else list(items)), None
    # index, count, remove: by equality of known items
    v = args[0]
    consts = _consts(items) if items is not None else None
    if consts is None or not v.known:
        if name == "remove":
            return Value(NoneT(), None, True), None
        return Value(INT), None
    hits = [k for k, c in enumerate(consts) if _equal(c, v.const)]
    if name == "count":
        return Value.of(len(hits)), None
    if not hits:
        checker.report("E0961", f"`{name}`: {v.const!r} is not in the list",
                       e.args[0].value.span, label="not an item here")
        return (Value(INT), None) if name == "index" else (Value(NoneT(), None, True), None)
    if name == "index":
        return Value.of(hits[0]), None
    out = list(items)   # remove
    del out[hits[0]]
    return Value(NoneT(), None, True), out


def _equal(a, b) -> bool:
    """Equality of two constants as Python compares them at run time."""
    try:
        return bool(a == b)
    except Exception:   # noqa: BLE001  (constants only; never user code)
        return False
