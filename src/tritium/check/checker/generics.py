"""Generic parameters bound at each call (issue 13 item 4): `fn f<T: Numeric>(x: T, y: T)`,
`layer L<T>(w: Tensor<T, [n, m]>, …)`, `where T: Float`, shape variables `Tensor<T, S>`.

Unification, one rule for every form: each parameter's declared type is matched against its
argument's type and every type parameter it mentions is bound, in argument order:

* `T` written as a whole type binds to the argument's type (a scalar type, a tensor type with
  its dtype and shape, a list, ...);
* `Tensor<T, [n, m]>` binds `T` to the tensor's element type (its dims are bound by the
  shape check of the call, `check_direct_call_shapes`);
* `Tensor<T, S>` binds the shape variable `S` to the tensor's shape;
* `list[T]`, `[A, B]` / `tuple[A, B]`, `T?` / `T | None` bind through their members.

A parameter bound twice must get one type (`unify_join`: int literals and int types agree,
floats agree, but `process(1, 2.0)` binds `T` to int, then to float: E0843 naming `T`, both
bindings and the arguments they came from). Then each bound (`T: Numeric`, `where T: Float`)
is checked against the binding (E0842). The result is the type parameters' values in the
body, so `-> T` is the binding at that call.
"""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.diagnostics import Label, Span
from ..types import (
    ANY,
    BOUNDS,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    AnyT,
    ListT,
    NoneT,
    ScalarT,
    ShapeVarT,
    SymInt,
    TensorT,
    TupleT,
    Value,
    join_types,
    satisfies,
    shape_str,
    unify_join,
)

NUMBERS = FLOAT_TYPES | INT_TYPES | {"int", "float"}


def _elements(v: Value) -> list[Value] | None:
    if not (isinstance(v.ty, ListT | TupleT) and isinstance(v.const, list)):
        return None
    return [c if isinstance(c, Value) else Value(INT, c) if isinstance(c, SymInt)
            else Value.of(c) for c in v.const]


def unify(te: A.TypeExpr, v: Value, names: set[str], what: str, out: list) -> None:
    """Append `(name, type, what)` for each type parameter in `names` that the declared type
    `te` binds from the value `v`; `what` says where the binding comes from."""
    t = v.ty
    if isinstance(t, AnyT):
        return
    if te.name in names and te.args is None and te.shape is None and te.dtype is None:
        out.append((te.name, t, what))
        return
    if te.args is None:
        if isinstance(t, TensorT):
            if te.dtype in names and t.dtype is not None:
                out.append((te.dtype, ScalarT(t.dtype), f"the element type of {what}"))
            if te.shape_var in names and t.shape is not None:
                out.append((te.shape_var, ShapeVarT(tuple(t.shape)), f"the shape of {what}"))
        return
    if te.name == "list" and te.args:
        inner: list = []
        if isinstance(t, ListT) and t.elem is not None:
            unify(te.args[0], Value(t.elem), names, f"the elements of {what}", inner)
        for i, e in enumerate(_elements(v) or []):
            unify(te.args[0], e, names, f"element {i} of {what}", inner)
        out.extend(_join_elements(inner, f"the elements of {what}"))
    elif te.name == "tuple":
        items = _elements(v)
        if items is None and isinstance(t, TupleT):
            items = [Value(x) for x in t.items]
        for i, (a, e) in enumerate(zip(te.args, items or [])):
            unify(a, e, names, f"element {i} of {what}", out)
    elif te.name == "Union" and not isinstance(t, NoneT):
        # `T?` / `T | None`: a value that is not None binds the one member naming a parameter
        open_ = [a for a in te.args if not (a.name == "None" and a.args is None)]
        if len(open_) == 1:
            unify(open_[0], v, names, what, out)


def _join_elements(found: list, what: str) -> list:
    """The bindings from the elements of one list: numbers of both kinds join (`[1, 2.0]` is
    a list of floats, as its literal means); what still disagrees is kept apart, so the
    caller reports it."""
    merged: dict = {}
    rest = []
    for n, t, w in found:
        if n not in merged:
            merged[n] = (t, w)
            continue
        j = unify_join(merged[n][0], t)
        if j is None and isinstance(t, ScalarT) and isinstance(merged[n][0], ScalarT) \
                and t.name in NUMBERS and merged[n][0].name in NUMBERS:
            j = join_types(merged[n][0], t)
        if j is None:
            rest.append((n, t, w))
        else:
            merged[n] = (j, what)
    return [(n, t, w) for n, (t, w) in merged.items()] + rest


def _shown(name: str) -> str:
    """A function's name as written: a local function lifted out of its body (frontend.lift)
    is `outer__inner`."""
    return name.rsplit("__", 1)[-1] if "__" in name.strip("_") else name


def _describe(t) -> str:
    return f"shape {shape_str(t.shape)}" if isinstance(t, ShapeVarT) else str(t)


def bind_call(ck, fn: A.FnDef, args: list[Value], spans: list, call_span: Span | None,
              params: list | None = None) -> dict:
    """The type parameters of `fn` bound from the arguments of one call (see the module's
    doc), conflicts (E0843) and broken bounds (E0842) reported at the call. `params`: the
    declared parameters the arguments stand for (default `fn.params`)."""
    tps = fn.type_params or []
    names = {tp.name for tp in tps}
    found: list = []
    for i, (p, a) in enumerate(zip(params if params is not None else fn.params, args)):
        if p.type is None:
            continue
        before = len(found)
        unify(p.type, a, names, f"`{p.name}`", found)
        for k in range(before, len(found)):
            found[k] = found[k] + (spans[i] if i < len(spans) else None,)
    bound: dict = {}
    origin: dict[str, tuple[str, Span | None]] = {}
    broken: set[str] = set()   # bound to two types: unknown in the body (no cascade)
    for n, t, what, sp in found:
        if n in broken:
            continue
        if n not in bound:
            bound[n], origin[n] = t, (what, sp)
            continue
        j = unify_join(bound[n], t)
        if j is None:
            first, first_span = origin[n]
            sec = [Label(first_span, f"`{n}` is {_describe(bound[n])} from here")] \
                if first_span is not None and first_span != sp else []
            ck.report("E0843", f"the type parameter `{n}` of `{_shown(fn.name)}` is "
                               f"{_describe(bound[n])} from {first} but {_describe(t)} "
                               f"from {what}", sp or call_span,
                      label=f"`{n}` would be {_describe(t)} here", secondary=sec,
                      help=f"pass arguments of one type for every `{n}`, or convert one "
                           f"(e.g. `float(…)`)")
            broken.add(n)
            continue
        bound[n] = j
    for n in broken:
        bound[n] = ANY
    for tp in tps:
        t = bound.get(tp.name)
        for b in tp.bounds:
            if t is not None and b in BOUNDS and satisfies(b, t) is False:
                ck.report("E0842", f"the type parameter `{tp.name}` of `{_shown(fn.name)}` must be "
                                   f"{b} ({BOUNDS[b]}), but {origin[tp.name][0]} makes it "
                                   f"{_describe(t)}", call_span,
                          label=f"`{tp.name}` is {_describe(t)} here",
                          secondary=[Label(tp.span, "bound declared here")])
    return {tp.name: bound.get(tp.name, ANY) for tp in tps}


def bind_call_dims(ck, fn: A.FnDef, args: list[Value], e) -> None:
    """The named dims of the declared shapes (`<M, K, N>`, `Tensor<float32, [B, N]>`) bound
    across the arguments of one call: a dim named twice with two known sizes is E0503 at
    the call (`mm(ones([2, 3]), ones([4, 5]))`: `K` is 3 from `a` but 4 from `b`). Ranks and
    literal sizes are the body's to judge, as before."""
    from ...frontend.parser import TENSOR_TYPES
    from .model import Scope

    seen: dict[str, tuple[object, str]] = {}
    for p, a in zip(fn.params, args):
        if p.type is None or p.type.name not in TENSOR_TYPES or not isinstance(a.ty, TensorT):
            continue
        declared = ck.type_from_expr(p.type, Scope())
        if not isinstance(declared, TensorT) or declared.shape is None or a.ty.shape is None \
                or len(declared.shape) != len(a.ty.shape):
            continue
        for dd, ad in zip(declared.shape, a.ty.shape):
            if not isinstance(dd, str) or isinstance(dd, SymInt) or not isinstance(ad, int):
                continue
            if dd in seen and isinstance(seen[dd][0], int) and seen[dd][0] != ad:
                ck.report("E0503", f"`{_shown(fn.name)}` cannot be called with these "
                                   f"arguments: dim `{dd}` is {seen[dd][0]} from "
                                   f"`{seen[dd][1]}` but {ad} from `{p.name}`", e.span,
                          label="arguments " + ", ".join(str(x.ty) for x in args),
                          secondary=[Label(p.span, "declared here")])
                return
            seen.setdefault(dd, (ad, p.name))
