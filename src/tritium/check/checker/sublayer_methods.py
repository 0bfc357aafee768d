"""Methods of sub-layers (issue 13): `stage2[0].get_precision_distribution()` in a
model's method, `encoder.report()`: a method (a function beside `forward`) of the block or
layer that a sub-layer is an instance of, called through the sub-layer. Indexing a
`Sequential { A {..} B {..} }` stack or a repetition `Kind[N]` gives one member (`stage[0]`).

The call is checked against the method's signature (how many arguments, their names) and its
result is the method's declared type (its body is checked with the definition). The code
generator calls it on the sub-module (`self.stage2[0].get_precision_distribution()`); the IR,
an inference graph of `forward`, has no such call (a LoweringError says so)."""

from __future__ import annotations

from dataclasses import replace

from ...frontend import ast as A
from ...frontend.diagnostics import Label
from ..types import ANY, LayerT, NoneT, Value
from .layer_methods import body_methods
from .model import LayerInst, Scope, _is_int

SUBLAYER_METHOD = "sublayer_method"
"""The call form (`CheckResult.call_forms`) of `sub.method(…)` on a sub-layer."""


def layer_member(ck, base: Value, e: A.Index, scope) -> Value | None:
    """`stage[i]`: member i of a Sequential stack or a repetition; None when `base` is not
    such a layer (then the caller reports)."""
    inst = base.ty.inst if isinstance(base.ty, LayerT) else None
    if not isinstance(inst, LayerInst) or len(e.indices) != 1 or isinstance(
            e.indices[0], A.Slice):
        return None
    kinds = inst.kinds
    count = len(kinds) if len(kinds) > 1 else kinds[0].repeat if kinds else None
    if count is None:
        return None
    i = ck.eval_expr(e.indices[0], scope)
    if not (i.known and _is_int(i.const)):
        ck.report("E0508", f"an index of the layer stack `{inst.name}` must be a constant",
                  e.indices[0].span)
        return Value(ANY)
    k = i.const
    if not -count <= k < count:
        ck.report("E0508", f"index {k} is out of range for the {count} layers of "
                           f"`{inst.name}`", e.indices[0].span)
        return Value(ANY)
    k %= count
    member = kinds[k] if len(kinds) > 1 else replace(kinds[0], repeat=None)
    return Value(LayerT(LayerInst(f"{inst.name}[{k}]", [member], inst.present, e.span)))


def sublayer_method_call(ck, base: Value, e: A.Call, scope) -> Value | None:
    """`sub.name(…)` where `sub` is an instance of a definition with a method `name`: its
    declared result (None when `sub` has no such method: the caller reports)."""
    inst = base.ty.inst if isinstance(base.ty, LayerT) else None
    f = e.func
    if not isinstance(inst, LayerInst) or len(inst.kinds) != 1 or inst.kinds[0].user is None \
            or inst.kinds[0].repeat is not None:
        return None
    methods = {m.name: m for m in body_methods(inst.kinds[0].user.node)}
    fn = methods.get(f.attr)
    if fn is None:
        return None
    for a in e.args:
        ck.eval_expr(a.value, scope)
    names = [p.name for p in fn.params]
    given = [a.name for a in e.args if a.name is not None]
    positional = sum(1 for a in e.args if a.name is None)
    bad = [n for n in given if n not in names or names.index(n) < positional]
    required = [p.name for p in fn.params if p.default is None]
    missing = [n for n in required[positional:] if n not in given]
    if positional > len(names) or bad or missing:
        ck.report("E0306", f"the method `{fn.name}` of `{inst.kinds[0].user.name}` takes "
                           f"{len(names)} argument(s) ({', '.join(names) or 'none'})", e.span,
                  secondary=[Label(fn.span, "defined here")])
        return Value(ANY)
    ck.call_forms[e.span] = SUBLAYER_METHOD
    if fn.ret is None:
        return Value(NoneT(), None, True)
    return Value(ck.type_from_expr(fn.ret, Scope()))
