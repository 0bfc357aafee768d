"""Dictionaries' items (issue 13): `d["k"]` reads an item and `d["k"] = v` (or
`d[k] += v`) sets one, as in Python. A dict's keys are strings, numbers or bools; a dict
whose keys are all known (a literal, items set with known keys) tells a missing key at
compile time (E1042); one set with a key not known becomes a dict of unknown keys."""

from __future__ import annotations

from ...frontend import ast as A
from ..types import ANY, AnyT, DictT, ScalarT, Value

_KEY_TYPES = frozenset({"str", "int", "float", "bool", "int8", "int16", "int32", "int64"})


def _key(ck, k: Value, span) -> tuple[bool, object]:
    """(ok, the key's constant or None when not known)."""
    if isinstance(k.ty, AnyT):
        return True, None
    if not (isinstance(k.ty, ScalarT) and k.ty.name in _KEY_TYPES):
        ck.report("E1041", f"a dict key must be a string, a number or a bool, not {k.ty}", span,
                  label="not a key", help="use a string key, e.g. `d[\"name\"]` or "
                                          "`d[f\"{i}-bit\"]`")
        return False, None
    return True, (k.const if k.known else None)


def dict_item(ck, base: Value, e: A.Index, scope) -> Value:
    """`d[k]`: the item's value when the dict and the key are known, else a value of
    unknown type."""
    if len(e.indices) != 1 or isinstance(e.indices[0], A.Slice):
        ck.report("E0508", "a dict takes one key: `d[k]`", e.span)
        return Value(ANY)
    k = ck.eval_expr(e.indices[0], scope)
    ok, key = _key(ck, k, e.indices[0].span)
    if not ok:
        return Value(ANY)
    items = base.const if base.known and isinstance(base.const, dict) else None
    if items is None or key is None:
        return Value(ANY)
    if key not in items:
        known = ", ".join(f"`{x}`" for x in list(items)[:8]) or "none"
        ck.report("E1042", f"the dict has no key `{key}`", e.span, label="no such key",
                  help=f"its keys: {known}")
        return Value(ANY)
    c = items[key]
    return Value.of(c) if c is not None else Value(ANY)


def assign_dict_item(ck, s: A.Assign, v: Value, scope) -> bool:
    """`d[k] = v` / `d[k] += v` where `d` is a dict; returns whether it was one."""
    t = s.target
    if not isinstance(t, A.Index):
        return False
    base = ck.eval_expr(t.value, scope)
    if not isinstance(base.ty, DictT):
        return False
    if len(t.indices) != 1 or isinstance(t.indices[0], A.Slice):
        ck.report("E0508", "a dict takes one key: `d[k] = v`", t.span)
        return True
    k = ck.eval_expr(t.indices[0], scope)
    ok, key = _key(ck, k, t.indices[0].span)
    if not ok:
        return True
    if s.op != "=":
        v = ck.binary(s.op[:-1], dict_item(ck, base, t, scope), v, s)
    if not isinstance(t.value, A.Name) or t.value.id not in scope.vars:
        return True   # an item of a dict reached otherwise (`self.stats[k]`): not tracked
    items = base.const if base.known and isinstance(base.const, dict) else None
    if items is not None and key is not None:
        # (a literal's items are constants, None where not known, as checker.expressions has)
        scope.vars[t.value.id] = Value(DictT(), {**items, key: v.const if v.known else None},
                                       True)
    else:
        scope.vars[t.value.id] = Value(DictT())
    return True
