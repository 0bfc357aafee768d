"""Top-level variables read inside functions (lexical scoping, the seed's
`spec_lexical_scoping.tri`): a rewrite after frontend.lift.

The program's entry (its top-level statements and `main { }` blocks) binds names: `let x =
10`, assignments, loop variables. A top-level function (`fn`, and the module-level functions
lifted from local ones) that reads such a name without binding it itself sees the entry's
variable: the name becomes an extra trailing parameter of the function, and every call of the
function passes it (`outer()` becomes `outer(x)`), as a local function's captures do
(frontend.lift). A function that calls another one that reads `x` passes `x` on, so it takes
`x` too. A function used as a value (`apply(f, v)`) is then a closure over those values
(`ast.Closure`).

Shadowing follows Python (the generated code's rules, and the seed's `let` shadowing): a name
the function binds itself anywhere in its body (`let x = 20`, `x = …`, a loop variable, a
parameter or a symbolic dim of one) is the function's own throughout it; the top-level `x`
is not seen there. When a function owns `x` and also calls one that reads the top-level
`x`, the top-level value is passed under another name (`x_top`), so each function still
sees its own.

The value seen is the one the variable has when the call runs (a call before the `let` is
E0304 at the call); definitions of models, blocks and layers do not see top-level variables
(a call from a `forward` of a function that reads one reports the name there). Only the main
file's entry runs, so an imported file's functions are not rewritten.
"""

from __future__ import annotations

import copy

from . import ast as A
from .lift import _binders, _fields, _reads, _walk, append_captured

_DEF_OWNERS = (A.ModelDef, A.BlockDef, A.LayerDef)


def lift_globals(program: A.Program, taken: set[str]) -> None:
    """Pass the entry's variables to the top-level functions that read them (in place)."""
    entry: list = []
    for i in program.items:
        if isinstance(i, A.MainBlock):
            entry.extend(i.body)
        elif isinstance(i, A.Stmt) and not isinstance(i, A.Import):
            entry.append(i)
    fns = {i.name: i for i in program.items if isinstance(i, A.FnDef)}
    if not entry or not fns:
        return
    top = _binders(entry) - set(fns)
    if not top:
        return
    types = _declared_types(entry)
    own = {n: _own(f) for n, f in fns.items()}
    reads = {n: _reads(f) for n, f in fns.items()}
    needs = {n: {x for x in reads[n] if x in top and x not in own[n]} for n in fns}
    calls = {n: {x for x in reads[n] if x in fns and x not in own[n]} for n in fns}
    changed = True
    while changed:   # a function passes on what the functions it calls read
        changed = False
        for n in fns:
            for c in calls[n]:
                extra = needs[c] - needs[n]
                if extra:
                    needs[n] |= extra
                    changed = True
    if not any(needs.values()):
        return
    # the parameter name of each top-level variable: its own name, unless some function
    # that takes it binds that name itself (then a fresh one, e.g. `x_top`)
    pname: dict[str, str] = {}
    for x in sorted(set().union(*needs.values())):
        clash = any(x in needs[n] and x in own[n] for n in fns)
        pname[x] = _fresh(f"{x}_top", taken) if clash else x
    order = {n: sorted(needs[n]) for n in fns}
    for n, f in fns.items():
        if not order[n]:
            continue
        span = f.span
        f.params = list(f.params) + [
            A.ParamSpec(pname[x], copy.deepcopy(types[x]) if x in types else None, None, span)
            for x in order[n]]
        renamed = {x: pname[x] for x in order[n] if pname[x] != x and x not in own[n]}
        if renamed:
            _rename_reads(f.body, renamed)
    # calls and values of those functions: in each function (passing its parameters), in
    # the entry (passing the variables), and in definitions (which report the names)
    for f in fns.values():
        _pass_values(f.body, fns, order, lambda x: pname[x])
    _pass_values(entry, fns, order, lambda x: x)
    for i in program.items:
        if isinstance(i, _DEF_OWNERS):
            _pass_values(i.body, fns, order, lambda x: x)


def _own(f: A.FnDef) -> set[str]:
    """The names a function binds itself: parameters, the symbolic dims of their types
    (`x: Tensor[batch, n]` binds `batch`), type parameters, and what its body binds."""
    out = {p.name for p in f.params} | _binders(f.body)
    out.update(tp.name for tp in f.type_params or [])

    def visit(n) -> None:
        if isinstance(n, A.Dim) and isinstance(n.value, str):
            out.add(n.value)
    _walk([p.type for p in f.params if p.type is not None], visit)
    return out


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 2
    while name in taken:
        name = f"{base}{k}"
        k += 1
    taken.add(name)
    return name


def _declared_types(entry: list) -> dict[str, A.TypeExpr]:
    """The type of each top-level `let x: T` (the first declaration of a name)."""
    out: dict[str, A.TypeExpr] = {}

    def visit(n) -> bool | None:
        if isinstance(n, A.FnDef | A.FnExpr):
            return False
        if isinstance(n, A.Let) and n.type is not None:
            out.setdefault(n.name, n.type)
        return None
    _walk(entry, visit)
    return out


def _rename_reads(body: list, renamed: dict[str, str]) -> None:
    def visit(n) -> None:
        if isinstance(n, A.Name) and n.id in renamed:
            n.id = renamed[n.id]
    _walk(body, visit)


def _pass_values(tree, fns: dict, order: dict, name_of) -> None:
    """Every call `f(a)` of a function that takes top-level values gets them appended
    (defaults it omits written out first: lift.append_captured); every other use of `f`
    as a value becomes a closure over them."""
    def extra(f: str, span) -> list[A.Expr]:
        return [A.Name(name_of(x), span) for x in order[f]]

    def fix_call(c: A.Call) -> None:
        f = fns[c.func.id]
        k = len(f.params) - len(order[c.func.id])   # the parameters before the added ones
        append_captured(c, f.params[:k], [p.name for p in f.params[k:]],
                        extra(c.func.id, c.span))

    def wanted(x) -> bool:
        return isinstance(x, A.Name) and x.id in fns and bool(order[x.id])

    made: set[int] = set()   # the closures made here (already complete)

    def closure(x: A.Name) -> A.Closure:
        c = A.Closure(x.id, extra(x.id, x.span), x.span)
        made.add(id(c))
        return c

    def visit(n) -> bool | None:
        if isinstance(n, A.Closure) and id(n) not in made and n.fn in fns and order[n.fn]:
            n.captured = list(n.captured) + extra(n.fn, n.span)
        for fld in _fields(n):
            v = getattr(n, fld)
            if isinstance(v, A.Call) and wanted(v.func):
                fix_call(v)
            elif wanted(v) and not (isinstance(n, A.Call) and fld == "func"):
                setattr(n, fld, closure(v))
            elif isinstance(v, list):
                for k, x in enumerate(v):
                    if isinstance(x, A.Call) and wanted(x.func):
                        fix_call(x)
                    elif wanted(x):
                        v[k] = closure(x)
        return None
    _walk(tree, visit)
