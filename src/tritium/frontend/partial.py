"""Partial application of a layer written as a function, before checking (frontend.lift
runs it): the seed's "Hello World" binds a layer's weights first and calls it later,

    let layer = TernaryLinear(weights, bias)     // TernaryLinear(weights, bias, input)
    let output = layer(input)

A `let name = L(…)` (no declared type) whose value calls by name a top-level layer written
as a function (no `forward`, a `return` in its body, no `param` or sub-layer of its own)
with fewer arguments than it declares, the first ones by position (then any by name),
leaving out at least one without a default, binds `name` to that layer with the given
arguments bound: a function of the others, in declared order. Elsewhere (`return FC(x)`) too
few arguments stay `E0306`; given by name only (`Affine(w: …, b: …)`), they construct an
instance of the layer (check.checker.layer_construction) as before. It becomes a closure
(`ast.Closure`) of a module-level function `bound<k>__<Layer>(free…, bound…)` whose body is
the full call; the bound values are computed once, where the call stands, as a Python
`functools.partial` would. A call that gives every argument is left to the checker (and a
named or unknown argument there is reported as before).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from . import ast as A
from .lift import _function_layer, _walk


def bind_partial_calls(program: A.Program, taken: set[str],
                       names: Callable[[], set[str]]) -> None:
    """Rewrite the partial calls of `program` in place; `taken`: names in use across the
    program's files (the functions made are added to it); `names()`: the names the program
    writes (computed only when a partial call is found)."""
    layers = {d.name: d for d in program.items if _function_layer(d) and not any(
        isinstance(i, A.ParamDecl | A.LayerDecl) for i in d.body)}
    if not layers:
        return
    made: list[A.FnDef] = []

    def bind(call: A.Call) -> A.Closure | None:
        d = layers.get(call.func.id) if isinstance(call.func, A.Name) else None
        if d is None or not call.args or call.args[0].name is not None:
            return None   # by name only: a construction (check.checker.layer_construction)
        bound = _bound_args(d.params, call.args)
        if bound is None:
            return None
        free = [p for p in d.params if p.name not in bound]
        if not free or all(p.default is not None for p in free):
            return None
        if not made:
            taken.update(names())
        k = 1
        while f"bound{k}__{d.name}" in taken:
            k += 1
        name = f"bound{k}__{d.name}"   # shown as `Layer` in messages (checker.generics)
        taken.add(name)
        s = call.span
        given = [p for p in d.params if p.name in bound]
        params = [copy.copy(p) for p in free] + [A.ParamSpec(p.name, p.type, None, p.span)
                                                 for p in given]
        full = A.Call(A.Name(d.name, s), [A.Arg(A.Name(p.name, s), None, s) for p in d.params], s)
        made.append(A.FnDef(name, params, d.ret, [A.Return(full, s)], s, d.type_params,
                            where=list(d.where)))
        return A.Closure(name, [bound[p.name] for p in given], s)

    def visit(n) -> None:
        if isinstance(n, A.Let) and n.type is None and isinstance(n.value, A.Call):
            new = bind(n.value)
            if new is not None:
                n.value = new
    _walk(program, visit)
    program.items.extend(made)


def _bound_args(params: list[A.ParamSpec], args: list[A.Arg]) -> dict | None:
    """The arguments a call binds, by parameter name: positional ones first, then named
    ones. None when the call is not a well-formed partial call (too many arguments, a
    positional one after a named one, an unknown or repeated name): the checker reports it."""
    bound: dict[str, A.Expr] = {}
    known = {p.name for p in params}
    for i, a in enumerate(args):
        if a.name is None:
            if i >= len(params) or len(bound) != i:   # too many, or after a named one
                return None
            bound[params[i].name] = a.value
        elif a.name not in known or a.name in bound:
            return None
        else:
            bound[a.name] = a.value
    return bound
