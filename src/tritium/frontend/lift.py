"""Rewrites of a parsed program before it is checked: type aliases expanded, local and
anonymous functions lifted to module-level functions.

`type Name = T` (at the top level: visible in the whole file; in a body: from there to the
end of that body, nested blocks included) is replaced by `T` wherever `Name` is written as a
type; the alias itself leaves the tree. An alias may use aliases defined before it (at the
top level, any other top-level alias); one that names a builtin type, is defined twice in
one body, or refers to itself is `E0962`.

A function written inside a body (`fn g(z: Tensor) -> Tensor { … }` as a statement, or
`let g = fn(z: Tensor) { … }`) and an anonymous function used as a value (`apply(fn(y:
Tensor) { … }, x)`) become module-level functions named `<outer>__<g>` (`<outer>__fn<k>`
for an anonymous one; a number is added while the name is taken in the program). A local
function may read the names of the function around it (its parameters, `let`s and other
locals, and in a model or layer body the config constants and layers): each name it reads
there (directly or through another local function it calls) becomes an extra parameter of
the lifted function, and every call `g(a)` in the enclosing body passes it, `g(a, x)`. The
value passed is the one the name has when the call runs, as with a Python closure; an
assignment to such a name inside the local function makes a local of its own (as in
Python), never changing the outer one. A function that reads outer names used as a value
(passed, stored, returned) is a closure (`ast.Closure`): the lifted function with the values
those names have where the value is made, passed after the arguments of every call through
it; one that reads none is a plain function value.

The generated Python therefore never holds a nested `def` or a `lambda`
(backends/pytorch/validate.py refuses both). The formatter prints the program as written:
it parses the source itself and never sees this rewrite.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

from . import ast as A
from .alias_props import alias_property
from .diagnostics import Diagnostic, Label

BUILTIN_TYPE_NAMES = frozenset({
    "Tensor", "TernaryTensor", "tensor", "None", "void", "list", "List", "tuple", "Tuple",
    "dict", "Dict", "Union", "Optional", "fn", "Layer", "Any", "int", "float", "bool", "str",
    "trit",
})
MAX_NODES = 2_000_000   # nodes visited by one rewrite (a bound; programs are far smaller)
MAX_TYPE_DEPTH = 64     # how deeply an alias may expand (types nest far less)


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(node) -> tuple[str, ...]:
    t = type(node)
    out = _FIELDS.get(t)
    if out is None:
        out = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(node) if f.name != "span")
    return out


def _is_node(x) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, type)


def _walk(node, visit: Callable) -> None:
    """Every node under `node` (lists included), depth first, iteratively."""
    stack = [node]
    seen = 0
    while stack and seen < MAX_NODES:
        x = stack.pop()
        seen += 1
        if isinstance(x, list | tuple):
            stack.extend(reversed(x))
        elif _is_node(x):
            if visit(x) is False:
                continue
            for f in reversed(_fields(x)):
                v = getattr(x, f)
                if isinstance(v, list | tuple) or _is_node(v):
                    stack.append(v)


def program_names(program: A.Program) -> set[str]:
    """Every identifier the program writes (names, definitions, bindings, keys)."""
    out: set[str] = set()

    def visit(n) -> None:
        for f in _fields(n):
            v = getattr(n, f)
            if isinstance(v, str):
                out.add(v)
            elif isinstance(v, list) and v and isinstance(v[0], str):
                out.update(x for x in v if isinstance(x, str))
    _walk(program, visit)
    return out


def rewrite(program: A.Program, taken: set[str], main: bool = False) -> list[Diagnostic]:
    """Expand type aliases and lift local and anonymous functions, in place. `taken`: names
    in use across the program's files (lifted names are added to it). `main`: the program
    is the one whose entry runs, so a local function may read its top-level variables (the
    loader then runs frontend.lift_globals)."""
    diags: list[Diagnostic] = []
    if not program.lifts:   # no alias, no local or anonymous function (the parser says)
        return diags
    taken |= program_names(program)
    _Aliases(diags).program(program)
    _Lifter(program, taken, diags, main).run()
    _stray_functions(program, diags)
    return diags


def _stray_functions(program: A.Program, diags: list[Diagnostic]) -> None:
    """An anonymous function outside any function body (a config value, a default): E0965,
    and it stands as `None` from here on."""
    def visit(n) -> None:
        for f in _fields(n):
            v = getattr(n, f)
            if isinstance(v, A.FnExpr):
                setattr(n, f, _stray(v, diags))
            elif isinstance(v, list):
                for k, x in enumerate(v):
                    if isinstance(x, A.FnExpr):
                        v[k] = _stray(x, diags)
    _walk(program, visit)


def _stray(e: A.FnExpr, diags: list[Diagnostic]) -> A.NoneLit:
    diags.append(Diagnostic(
        "E0965", "an anonymous function can only be written inside a function body",
        e.span, label="not in a function",
        help="define it with `fn name(…) { … }` at the top level and use its name here"))
    return A.NoneLit(e.span)


# ----------------------------------------------------------------------------- type aliases


def append_captured(c: A.Call, own: list, names: list[str], values: list[A.Expr]) -> bool:
    """Append to a call the values a function reads from around it, taken as trailing
    parameters `names` after its own parameters `own`. The generated Python has no default
    before a parameter without one (backends.pytorch), so the defaults the call leaves out
    are written out: in place, or by name when the call names arguments. False (the call
    unchanged) when its positional arguments do not fit `own`: reported as written."""
    if not names:
        return True
    pos = [a for a in c.args if a.name is None]
    if any(a.name is not None for a in c.args):
        given = {a.name for a in c.args}
        fill = [A.Arg(copy.deepcopy(p.default), p.name, c.span) for p in own[len(pos):]
                if p.default is not None and p.name not in given]
        c.args = list(c.args) + fill + [A.Arg(v, n, c.span) for n, v in zip(names, values)]
        return True
    fill = [A.Arg(copy.deepcopy(p.default), None, c.span)
            for p in own[len(pos):] if p.default is not None]
    if len(pos) + len(fill) != len(own):
        return False
    c.args = list(c.args) + fill + [A.Arg(v, None, c.span) for v in values]
    return True

class _Aliases:
    def __init__(self, diags: list[Diagnostic]) -> None:
        self.diags = diags
        # generic aliases (`type Matrix<T> = …`): their parameters and expanded type
        self.generics: dict[str, tuple[list[str], A.TypeExpr]] = {}

    def bad_name(self, a: A.TypeAlias) -> bool:
        if a.name in BUILTIN_TYPE_NAMES:
            self.diags.append(Diagnostic(
                "E0962", f"`type {a.name} = …` would redefine the builtin type `{a.name}`",
                a.span, label="a builtin type", help="give the alias another name"))
            return True
        return False

    def program(self, program: A.Program) -> None:
        top = [i for i in program.items if isinstance(i, A.TypeAlias)]
        env: dict[str, A.TypeExpr] = {}
        first: dict[str, A.TypeAlias] = {}
        pending: list[A.TypeAlias] = []
        for a in top:
            if self.bad_name(a):
                continue
            if a.name in first:
                self.twice(a, first[a.name])
                continue
            first[a.name] = a
            pending.append(a)
        # top-level aliases may name each other in any order: each is resolved after the
        # ones it names (depth first, iteratively); a cycle is reported on every member
        by_name = {a.name: a for a in pending}
        state: dict[str, int] = {}     # 1: being resolved, 2: done
        for a in pending:
            if a.name in state:
                continue
            stack = [a.name]
            while stack:
                n = stack[-1]
                if state.get(n) == 2:
                    stack.pop()
                    continue
                state[n] = 1
                deps = [m for m in _named(by_name[n].type) if m in by_name and m != n
                        and state.get(m) != 2]
                back = n if n in _named(by_name[n].type) else next(
                    (m for m in deps if state.get(m) == 1), None)
                if back is not None:
                    # the aliases on the path from `back` to here form the cycle
                    path = list(dict.fromkeys(x for x in stack if state.get(x) == 1))
                    for m in path[path.index(back):]:
                        self.cycle(by_name[m])
                        state[m] = 2
                    continue
                if deps:
                    stack.extend(deps)
                    continue
                self.define(by_name[n], env)
                state[n] = 2
                stack.pop()
        program.items = [i for i in program.items if not isinstance(i, A.TypeAlias)]
        self.node(program, env)

    def cycle(self, a: A.TypeAlias) -> None:
        self.diags.append(Diagnostic(
            "E0962", f"the type alias `{a.name}` refers to itself", a.span,
            label="through the aliases it names",
            help="an alias names a type made of other types, never itself"))

    def define(self, a: A.TypeAlias, env: dict[str, A.TypeExpr]) -> None:
        """`env[a.name]`: its type with the aliases it names expanded, unless that nests
        deeper than MAX_TYPE_DEPTH (E0962)."""
        t = self.expand(a.type, env)
        if _depth(t) > MAX_TYPE_DEPTH:
            self.diags.append(Diagnostic(
                "E0962", f"the type alias `{a.name}` expands to a type nested more than "
                         f"{MAX_TYPE_DEPTH} levels deep", a.span, label="too deep"))
            return
        if a.params:
            self.generics[a.name] = (a.params, t)
            return
        env[a.name] = t

    def twice(self, a: A.TypeAlias, prev: A.TypeAlias) -> None:
        self.diags.append(Diagnostic(
            "E0962", f"the type alias `{a.name}` is defined more than once here", a.span,
            label="second definition", secondary=[Label(prev.span, "first defined here")],
            help="rename one of them"))

    def expand(self, t: A.TypeExpr, env: dict[str, A.TypeExpr]) -> A.TypeExpr:
        if t.name in self.generics and t.args is None and t.ret is None:
            return _instantiate(t, *self.generics[t.name], self.diags)
        if t.name in env and t.dtype is None and t.shape is None and t.args is None \
                and t.ret is None:
            out = copy.deepcopy(env[t.name])
            out.span = t.span
            return out
        if t.args:
            t.args = [self.expand(x, env) for x in t.args]
        if t.ret is not None:
            t.ret = self.expand(t.ret, env)
        return t

    def node(self, n, env: dict[str, A.TypeExpr]) -> None:
        """Expand aliases under `n`; a statement list defines body aliases as it goes."""
        stack: list = [(n, env)]
        seen = 0
        while stack and seen < MAX_NODES:
            x, e = stack.pop()
            seen += 1
            if not _is_node(x):
                continue
            if isinstance(x, A.FnDef | A.FnExpr | A.LayerDef) \
                    and getattr(x, "type_params", None):
                # a generic function's type parameters hide aliases of the same names
                hidden = {p.name for p in x.type_params}
                e = {k: v for k, v in e.items() if k not in hidden}
            for f in _fields(x):
                v = getattr(x, f)
                if isinstance(v, A.TypeExpr):
                    setattr(x, f, self.expand(v, e))
                elif isinstance(v, list):
                    if any(isinstance(i, A.TypeAlias) for i in v):
                        v, inner = self.body(v, e)
                        setattr(x, f, v)
                        stack.extend((i, env_i) for i, env_i in inner)
                        continue
                    for k, i in enumerate(v):
                        if isinstance(i, A.TypeExpr):
                            v[k] = self.expand(i, e)
                        elif isinstance(i, A.Attr) and (lit := alias_property(i, e, self.diags)):
                            v[k] = lit   # `Alias.shape`: a constant (frontend.alias_props)
                        else:
                            stack.append((i, e))
                elif isinstance(v, A.Attr) and (lit := alias_property(v, e, self.diags)):
                    setattr(x, f, lit)   # `Alias.shape`: a constant (frontend.alias_props)
                elif _is_node(v):
                    stack.append((v, e))

    def body(self, items: list, env: dict[str, A.TypeExpr]) -> tuple[list, list]:
        """A list with aliases in it: each item paired with the aliases it sees."""
        out: list = []
        pairs: list = []
        local = dict(env)
        first: dict[str, A.TypeAlias] = {}
        for i in items:
            if isinstance(i, A.TypeAlias):
                if self.bad_name(i):
                    continue
                if i.name in first:
                    self.twice(i, first[i.name])
                    continue
                first[i.name] = i
                local = dict(local)
                self.define(i, local)
                continue
            out.append(i)
            pairs.append((i, local))
        return out, pairs


def _inline_helpers(d) -> None:
    """The seed's helper functions of a layer (`function quantize_block(…)` beside
    `forward`, called as `quantize_block(…)` or `self.quantize_block(…)`): each method that
    calls one gets a copy of it (and of the helpers it calls) as a local function, lifted
    like any other; a helper that reads `self`, or calls one that does, stays a method
    (check.checker.layer_methods), called as `name(…)` (`self.name(…)` is rewritten so)."""
    methods = [i for i in d.body if isinstance(i, A.FnDef)]
    every = {f.name: f for f in methods if f.name != "forward"}
    for m in methods:
        _called_helpers(m, every)   # `self.h(…)` -> `h(…)` for every method `h`
    stays = {n for n, f in every.items() if _reads_self(f)}
    changed = True
    while changed:   # calling a method that stays makes a helper stay too
        changed = False
        for n, f in every.items():
            if n not in stays and set(_called_helpers(f, every)) & stays:
                stays.add(n)
                changed = True
    helpers = {n: f for n, f in every.items() if n not in stays}
    if not helpers:
        return
    inlined: set[str] = set()
    for m in methods:
        if m.name in helpers:
            continue
        wanted: list[str] = []
        todo = [m]
        while todo:
            for name in _called_helpers(todo.pop(), helpers):
                if name not in wanted:
                    wanted.append(name)
                    todo.append(helpers[name])
        if wanted:
            m.body = [copy.deepcopy(helpers[n]) for n in wanted] + m.body
            inlined.update(wanted)
    d.body = [i for i in d.body if not (isinstance(i, A.FnDef) and i.name in inlined)]


def _reads_self(f: A.FnDef) -> bool:
    found = []

    def visit(n) -> None:
        if isinstance(n, A.Name) and n.id == "self":
            found.append(n)
    _walk(f.body, visit)
    return bool(found)


def _called_helpers(f: A.FnDef, helpers: dict) -> list[str]:
    """The helpers `f` calls (`h(…)`, or `self.h(…)`, rewritten to `h(…)`), in order."""
    out: list[str] = []

    def visit(n) -> None:
        if not isinstance(n, A.Call):
            return
        fn = n.func
        if isinstance(fn, A.Attr) and isinstance(fn.value, A.Name) and fn.value.id == "self" \
                and fn.attr in helpers:
            n.func = fn = A.Name(fn.attr, fn.span)
        if isinstance(fn, A.Name) and fn.id in helpers and fn.id != f.name and fn.id not in out:
            out.append(fn.id)
    _walk(f.body, visit)
    return out


def _instantiate(use: A.TypeExpr, params: list[str], body: A.TypeExpr,
                 diags: list[Diagnostic]) -> A.TypeExpr:
    """`Matrix<float32>` for `type Matrix<T> = Tensor<T, [?, ?]>`: the alias's type with each
    parameter replaced by the argument in its place (a type or dtype name, a shape variable,
    a dim name, or a `[dims]` list for a shape parameter)."""
    actual: list[object] = [x for x in (use.dtype, use.shape_var) if x is not None]
    if use.shape is not None:
        actual.append(use.shape)
    out = copy.deepcopy(body)
    out.span = use.span
    if len(actual) != len(params):
        diags.append(Diagnostic(
            "E0962", f"the type alias `{use.name}` takes {len(params)} type argument(s), "
                     f"got {len(actual)}", use.span,
            help=f"write `{use.name}<{', '.join(params)}>`"))
        return A.TypeExpr(out.name if out.args is None else "Any", span=use.span)
    bind = dict(zip(params, actual))

    def visit(n) -> None:
        if not isinstance(n, A.TypeExpr):
            return
        if n.name in bind and isinstance(bind[n.name], str) and n.dtype is None \
                and n.shape is None and n.args is None:
            n.name = bind[n.name]
        if n.dtype in bind and isinstance(bind[n.dtype], str):
            n.dtype = bind[n.dtype]
        if n.shape_var in bind:
            v = bind[n.shape_var]
            n.shape, n.shape_var = (copy.deepcopy(v), None) if isinstance(v, list) else (None, v)
        for d in n.shape or []:
            if isinstance(d.value, str) and isinstance(bind.get(d.value), str):
                d.value = bind[d.value]
    _walk(out, visit)
    return out


def _named(t: A.TypeExpr) -> set[str]:
    out: set[str] = set()

    def visit(n) -> None:
        if isinstance(n, A.TypeExpr):
            out.add(n.name)
    _walk(t, visit)
    return out


def _depth(t: A.TypeExpr) -> int:
    """How deeply a type nests (iteratively)."""
    best = 0
    stack = [(t, 1)]
    while stack:
        x, d = stack.pop()
        best = max(best, d)
        if best > MAX_TYPE_DEPTH:
            return best
        stack.extend((a, d + 1) for a in (x.args or []))
        if x.ret is not None:
            stack.append((x.ret, d + 1))
    return best


def _mentions_any(ts: list, names: set[str]) -> bool:
    return any(_mentions(t, names) for t in ts)


def _mentions(t: A.TypeExpr, names: set[str]) -> bool:
    found = False

    def visit(n) -> None:
        nonlocal found
        if isinstance(n, A.TypeExpr) and n.name in names:
            found = True
    _walk(t, visit)
    return found


# ----------------------------------------------------------------------------- local functions

_BODY_OWNERS = (A.ModelDef, A.BlockDef, A.LayerDef)


class _Local:
    """One local or anonymous function of a body: its definition and what it reads."""

    def __init__(self, name: str | None, fn: A.FnDef, lifted: str) -> None:
        self.name = name          # the name the body calls it by (None: anonymous)
        self.fn = fn
        self.lifted = lifted
        self.captures: list[str] = []


class _Lifter:
    def __init__(self, program: A.Program, taken: set[str], diags: list[Diagnostic],
                 main: bool = False) -> None:
        self.program = program
        self.taken = taken
        self.diags = diags
        self.new: list[A.FnDef] = []
        self.main = main   # top-level variables are visible in functions (lift_globals)

    def fresh(self, base: str) -> str:
        name = base
        k = 2
        while name in self.taken:
            name = f"{base}{k}"
            k += 1
        self.taken.add(name)
        return name

    def run(self) -> None:
        items = self.program.items
        # the entry: top-level statements and `main { }` blocks share one scope, in order
        entry = [i for i in items if isinstance(i, A.Stmt | A.MainBlock)]
        top: set[str] = set()   # the entry's variables, which a local function may read
        if entry and self.main:
            top = _binders([s for i in entry for s in (
                i.body if isinstance(i, A.MainBlock) else [i])]) - {
                i.name for i in items if isinstance(i, A.FnDef)}
        if entry:
            wrapped = [i if isinstance(i, A.Stmt) else A.If(A.Bool(True), i.body, None, i.span)
                       for i in entry]
            stmts = [w for w in wrapped if isinstance(w, A.Stmt)]
            kept = {id(x) for x in self.body(stmts, _binders(stmts), {}, "main")}
            for i, w in zip(entry, wrapped):
                if isinstance(i, A.MainBlock):
                    i.body = w.then
            self.program.items = [i for i in items
                                  if not isinstance(i, A.Stmt) or id(i) in kept]
        for i in list(self.program.items):
            if isinstance(i, A.FnDef):
                self.function(i, top, {}, i.name)
            elif isinstance(i, _BODY_OWNERS):
                self.owner(i)
        self.program.items.extend(self.new)

    def owner(self, d) -> None:
        """A model, block or layer: its methods (and a layer function's body) see the body's
        names: config constants, layers, parameters, the signature's arguments."""
        names: set[str] = set()
        types: dict[str, A.TypeExpr] = {}
        for p in getattr(d, "params", None) or []:
            names.add(p.name)
            if p.type is not None:
                types[p.name] = p.type
        for i in d.body:
            if isinstance(i, A.LayerDecl | A.ParamDecl | A.StateDecl | A.Let):
                names.add(i.name)
            elif isinstance(i, A.ConfigEntry):
                names.add(i.key)
            elif isinstance(i, A.ParamsSection):
                names.update(p.name for p in i.params)
        if _function_layer(d):
            # a layer written as a function: its statements are the forward body, and a `fn`
            # among them is a local function of it
            stmts = [i for i in d.body if isinstance(i, A.Stmt | A.FnDef)]
            kept = {id(x) for x in self.body(stmts, names | _binders(stmts), types, d.name)}
            d.body = [i for i in d.body if not isinstance(i, A.Stmt | A.FnDef) or id(i) in kept]
            return
        _inline_helpers(d)
        for i in d.body:
            if isinstance(i, A.FnDef):
                self.function(i, names, types, f"{d.name}_{i.name}")

    def function(self, fn: A.FnDef, outer: set[str], outer_types: dict, prefix: str) -> None:
        types = dict(outer_types)
        for p in fn.params:
            if p.type is not None:
                types[p.name] = p.type
        bound = outer | {p.name for p in fn.params} | _binders(fn.body)
        fn.body = self.body(fn.body, bound, types, prefix, fn.type_params)

    def body(self, stmts: list, bound: set[str], types: dict, prefix: str,
             tparams: list | None = None) -> list:
        """Lift the local functions of one function body; returns the rewritten body.
        `tparams`: the type parameters of the generic function around it, which a lifted
        function whose signature names them takes too."""
        locals_: dict[str, _Local] = {}
        anon: dict[int, _Local] = {}
        kept_ids: set[int] = set()

        def collect(n) -> bool | None:
            if isinstance(n, list):
                return None
            if isinstance(n, A.FnExpr):
                fn = A.FnDef("", n.params, n.ret, n.body, n.span)
                loc = _Local(None, fn, self.fresh(f"{prefix}__fn"))
                fn.name = loc.lifted
                anon[id(n)] = loc
                return False        # its own body is lifted on its own
            return None

        # local definitions: `fn g(…) { … }` statements and `let g = fn(…) { … }`
        def find(ss: list) -> None:
            for s in ss:
                if isinstance(s, A.FnDef):
                    if s.name in locals_:
                        self.diags.append(Diagnostic(
                            "E0206", f"the local function `{s.name}` is defined more than "
                                     f"once", s.span, label="second definition",
                            secondary=[Label(locals_[s.name].fn.span, "first defined here")]))
                        continue
                    loc = _Local(s.name, s, self.fresh(f"{prefix}__{s.name}"))
                    locals_[s.name] = loc
                elif isinstance(s, A.Let) and isinstance(s.value, A.FnExpr) \
                        and s.name not in locals_:
                    fe = s.value
                    fn = A.FnDef(s.name, fe.params, fe.ret, fe.body, fe.span)
                    loc = _Local(s.name, fn, self.fresh(f"{prefix}__{s.name}"))
                    locals_[s.name] = loc
                    kept_ids.add(id(s))
                if not isinstance(s, A.FnDef):   # its own locals are lifted with it
                    for sub in _child_bodies(s):
                        find(sub)
        find(stmts)
        _walk([s for s in stmts], lambda n: self._anon_visit(n, anon, kept_ids, collect))
        every = list(locals_.values()) + list(anon.values())
        if not every:
            return stmts
        # each lifted function's own local functions first (their captures become reads)
        for loc in every:
            own = {p.name for p in loc.fn.params} | _binders(loc.fn.body)
            inner_types = dict(types)
            for p in loc.fn.params:
                if p.type is not None:
                    inner_types[p.name] = p.type
            loc.fn.body = self.body(loc.fn.body, bound | own, inner_types,
                                    loc.lifted, loc.fn.type_params or tparams)
        # what each reads from the outer body, through the local functions it calls too
        reads: dict[int, set[str]] = {}
        calls: dict[int, set[str]] = {}
        for loc in every:
            own = {p.name for p in loc.fn.params} | _binders(loc.fn.body)
            used = _reads(loc.fn)
            calls[id(loc)] = {n for n in used if n in locals_ and n not in own}
            reads[id(loc)] = {n for n in used if n in bound and n not in own
                              and n not in locals_}
        changed = True
        while changed:
            changed = False
            for loc in every:
                own = {p.name for p in loc.fn.params} | _binders(loc.fn.body)
                for c in calls[id(loc)]:
                    extra = reads[id(locals_[c])] - own - reads[id(loc)]
                    if extra:
                        reads[id(loc)] |= extra
                        changed = True
        for loc in every:
            loc.captures = sorted(reads[id(loc)])
        # the lifted definitions
        for loc in every:
            fn = loc.fn
            params = list(fn.params) + [
                A.ParamSpec(c, copy.deepcopy(types[c]) if c in types else None, None, fn.span)
                for c in loc.captures]
            own_tps = fn.type_params
            if own_tps is None and tparams and _mentions_any(
                    [p.type for p in params if p.type is not None]
                    + ([fn.ret] if fn.ret is not None else []), {t.name for t in tparams}):
                own_tps = copy.deepcopy(tparams)
            lifted = A.FnDef(loc.lifted, params, fn.ret, fn.body, fn.span, own_tps,
                             fn.broken)
            self.rename(lifted.body, locals_, set(p.name for p in fn.params)
                        | _binders(fn.body))
            self.new.append(lifted)
        # the body without them, calls passing what they read
        out = self.strip(stmts, kept_ids)
        self.rename(out, locals_, set())
        self.replace_anon(out, anon)
        return out

    @staticmethod
    def _anon_visit(n, anon: dict, kept_ids: set, collect: Callable) -> bool | None:
        if isinstance(n, A.Let) and id(n) in kept_ids:
            # `let g = fn(…) {…}`: a local function, not an anonymous value
            return False
        if isinstance(n, A.FnDef):
            return False   # a local definition: lifted with its own body
        return collect(n)

    def strip(self, stmts: list, kept_ids: set) -> list:
        out = []
        for s in stmts:
            if isinstance(s, A.FnDef) or id(s) in kept_ids:
                continue
            for f in ("then", "other", "body"):
                v = getattr(s, f, None)
                if isinstance(v, list):
                    setattr(s, f, self.strip(v, kept_ids))
            out.append(s)
        return out

    def rename(self, tree, locals_: dict[str, _Local], shadowed: set[str]) -> None:
        """Calls of local functions pass what they read; other uses name the lifted function
        (E0963 when it reads outer names)."""
        live = {k: v for k, v in locals_.items() if k not in shadowed}
        if not live:
            return

        def visit(n) -> bool | None:
            if isinstance(n, A.FnDef | A.FnExpr):
                return False
            for f in _fields(n):
                v = getattr(n, f)
                if isinstance(v, A.Call) and isinstance(v.func, A.Name) and v.func.id in live:
                    self.call(v, live[v.func.id])
                elif isinstance(v, A.Name) and v.id in live:
                    setattr(n, f, self.value(v, live[v.id]))
                elif isinstance(v, list):
                    for k, x in enumerate(v):
                        if isinstance(x, A.Call) and isinstance(x.func, A.Name) \
                                and x.func.id in live:
                            self.call(x, live[x.func.id])
                        elif isinstance(x, A.Name) and x.id in live:
                            v[k] = self.value(x, live[x.id])
            return None
        _walk(tree, visit)

    def call(self, c: A.Call, loc: _Local) -> None:
        c.func = A.Name(loc.lifted, c.func.span)
        values = [A.Name(n, c.span) for n in loc.captures]
        if not append_captured(c, loc.fn.params, loc.captures, values):
            c.args = list(c.args) + [A.Arg(v, None, c.span) for v in values]

    def value(self, n: A.Name, loc: _Local) -> A.Expr:
        if loc.captures:   # a closure: the values it reads, bound here
            return A.Closure(loc.lifted, [A.Name(c, n.span) for c in loc.captures], n.span)
        return A.Name(loc.lifted, n.span)

    def replace_anon(self, tree, anon: dict[int, _Local]) -> None:
        if not anon:
            return

        def visit(n) -> bool | None:
            for f in _fields(n):
                v = getattr(n, f)
                if isinstance(v, A.FnExpr) and id(v) in anon:
                    setattr(n, f, self.anon_value(v, anon[id(v)]))
                elif isinstance(v, list):
                    for k, x in enumerate(v):
                        if isinstance(x, A.FnExpr) and id(x) in anon:
                            v[k] = self.anon_value(x, anon[id(x)])
            return None
        _walk(tree, visit)

    def anon_value(self, e: A.FnExpr, loc: _Local) -> A.Expr:
        if loc.captures:   # a closure: the values it reads, bound here
            return A.Closure(loc.lifted, [A.Name(c, e.span) for c in loc.captures], e.span)
        return A.Name(loc.lifted, e.span)


def _function_layer(d) -> bool:
    """A layer written as a function (`layer L(w, x) -> T { … return y }`): no `forward`,
    and a `return` in its body; any other `fn` in it is a local function."""
    return isinstance(d, A.LayerDef) and d.params is not None \
        and not any(isinstance(i, A.FnDef) and i.name == "forward" for i in d.body) \
        and any(isinstance(i, A.Return) for i in d.body)


def _child_bodies(s) -> list[list]:
    out = []
    for f in ("then", "other", "body"):
        v = getattr(s, f, None)
        if isinstance(v, list):
            out.append(v)
    return out


def _binders(stmts: list) -> set[str]:
    """The names a body binds (not inside its local functions)."""
    out: set[str] = set()

    def visit(n) -> bool | None:
        if isinstance(n, A.FnDef):
            out.add(n.name)
            return False
        if isinstance(n, A.FnExpr):
            return False
        if isinstance(n, A.Let):
            out.add(n.name)
        elif isinstance(n, A.Assign) and isinstance(n.target, A.Name):
            out.add(n.target.id)
        elif isinstance(n, A.Unpack):
            out.update(n.targets)
        elif isinstance(n, A.For):
            out.update(n.vars or [n.var])
        elif isinstance(n, A.ListComp):
            out.update(n.vars or [n.var])
        return None
    _walk(stmts, visit)
    return out


def _reads(fn: A.FnDef) -> set[str]:
    """The names a function's body and defaults read."""
    out: set[str] = set()

    def visit(n) -> bool | None:
        if isinstance(n, A.Name):
            out.add(n.id)
        return None
    _walk(fn.body, visit)
    _walk([p.default for p in fn.params if p.default is not None], visit)
    return out
