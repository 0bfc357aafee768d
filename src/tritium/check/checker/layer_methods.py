"""Functions declared in a layer, block or model body besides `forward` (the seed's
`function quantize_block(block: Tensor, bits: int) -> Tensor { … }` beside `forward`, its
`method name()`): methods of the generated nn.Module. They see the body's names (config
constants, hyperparameters, parameters, sub-layers) and `self.training`; `forward` and the
other methods call them as `name(…)` or `self.name(…)` (frontend.lift rewrites the second
spelling to the first). A helper that reads neither `self` nor, through the helpers it
calls, a method that does, is inlined into its callers by frontend.lift instead (then it is
a local function, lowered like one).

The checker binds each method's name in the body's scope to a `MethodT` value; a call
checks the method's body with the arguments' types (cached per argument types, like a
user function) and gives its result. The code generator calls `self.name(…)`; the IR
lowering inlines the method's body where it is called (`self.training` is false there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...frontend import ast as A
from ...frontend.diagnostics import Label, did_you_mean
from ..types import ANY, FnT, Value
from .model import MAX_INSTANCE_DEPTH
from .stubs import stub_call


@dataclass(frozen=True, slots=True)
class MethodT(FnT):
    """A method of the definition being checked: its `fn`, the body's scope and layers."""
    fn: object = field(default=None, compare=False)
    scope: object = field(default=None, compare=False)
    layers: object = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"method `{self.name}`"


def body_methods(node) -> list[A.FnDef]:
    """The functions of a body other than `forward`, which are its methods."""
    return [i for i in getattr(node, "body", None) or ()
            if isinstance(i, A.FnDef) and i.name != "forward"]


def bind_methods(ck, node, scope, layers) -> None:
    """Each method's name in the body's scope (a name the body defines otherwise wins)."""
    for fn in body_methods(node):
        if fn.name in scope.vars:
            continue
        scope.vars[fn.name] = Value(MethodT(fn.name, fn, scope, layers))
        scope.used.add(fn.name)


def method_call(ck, ty: MethodT, args: list[Value], e: A.Call) -> Value:
    fn: A.FnDef = ty.fn
    if stub_call(ck, fn, e):   # its body is only `pass` (checker.stubs)
        return Value(ANY)
    names = [p.name for p in fn.params]
    slots: list[Value | None] = [None] * len(fn.params)
    k = 0
    for a, v in zip(e.args, args):   # positional, then by name
        if a.name is None:
            if k < len(slots):
                slots[k] = v
            k += 1
        elif a.name in names and slots[names.index(a.name)] is None:
            slots[names.index(a.name)] = v
        else:
            ck.report("E0307", f"the method `{fn.name}` has no argument named `{a.name}`"
                      if a.name not in names else f"the argument `{a.name}` of `{fn.name}` "
                      f"is given twice", a.span, secondary=[Label(fn.span, "defined here")])
            return Value(ANY)
    missing = [p.name for p, s in zip(fn.params, slots) if s is None and p.default is None]
    if k > len(fn.params) or missing:
        ck.report("E0306", f"the method `{fn.name}` takes {len(fn.params)} argument(s), got "
                           f"{len(args)}", e.span, secondary=[Label(fn.span, "defined here")])
        return Value(ANY)
    declared = Value(ck.type_from_expr(fn.ret, ty.scope)) if fn.ret else Value(ANY)
    key = ("method", id(fn), tuple((repr(a.ty), repr(a.const) if a.known else None)
                                   if a is not None else None for a in slots))
    if fn.broken or ck.instance_depth >= MAX_INSTANCE_DEPTH or key[:2] in ck._active_fns:
        return declared   # a recursive call: its declared type
    if key in ck._fn_cache:
        return ck._fn_cache[key]
    ck.instance_depth += 1
    ck.quiet += 1
    ck._active_fns.add(key[:2])
    saved_inner = ck.inner
    ck.inner = []
    try:
        filled = [s if s is not None else Value(ANY) for s in slots]
        res = ck.check_function(fn, ty.scope, ty.layers, inputs=filled)
    finally:
        ck.instance_depth -= 1
        ck.quiet -= 1
        ck._active_fns.discard(key[:2])
        ck.inner = saved_inner
    ck._fn_cache[key] = res
    return res


def unknown_self_method(ck, f: A.Attr, e: A.Call, scope) -> bool:
    """`self.name(…)` in a method where the body has no method `name` (a method it has was
    rewritten to `name(…)` by frontend.lift): reported here; True when it was."""
    if not (isinstance(f.value, A.Name) and f.value.id == "self" and "self" not in scope.vars
            and getattr(ck, "_in_method", False)):
        return False
    v = scope.vars.get(f.attr)
    if v is not None and not isinstance(v.ty, MethodT) or f.attr in ck.defs:
        return False   # `self.fc(x)`: a layer of the body, called (checker.calls)
    if v is not None:
        return False
    methods = [n for n, x in scope.vars.items() if isinstance(x.ty, MethodT)]
    ck.report("E0305", f"this body has no method `{f.attr}`", f.span,
              label="no such method",
              help=did_you_mean(f.attr, methods) or "define it beside `forward`: "
                   f"`fn {f.attr}(…) {{ … }}`")
    for a in e.args:
        ck.eval_expr(a.value, scope)
    return True
