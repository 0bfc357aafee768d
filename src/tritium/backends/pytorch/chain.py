"""Whether a definition's `forward` is one chain of unary steps: the fact a frozen model
runs as one plan (`tritium.runtime.chain`).

A chain is a `forward` of one tensor parameter `x` whose statements are `x = E` and a last
`return E`, every `E` a nest of calls on `x` alone: declared layers called with the one
argument (`fc1(x)`), or the elementwise builtins the kernels' epilogue applies (`relu`,
`relu6`, `gelu`, `silu`, `sigmoid`, `tanh`) and `flatten` with constant dims. Each
intermediate value then has exactly one use, the next step, so nothing else can see a
layer's output before its activation: the runtime may fuse them. The steps are written into
the generated module as data (`self.tritium_chain`), in the order they run:
`["layer", name]` for a layer (its Python attribute name) and `["call", fn, *constants]`
for a builtin (`["call", "flatten", 1, -1]`).
"""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.names import py_attr

# the builtins a chain may contain, with their constant arguments (name, default) after x
CHAIN_BUILTINS: dict[str, tuple[tuple[str, int], ...]] = {
    "relu": (), "relu6": (), "gelu": (), "silu": (), "sigmoid": (), "tanh": (),
    "flatten": (("start_dim", 0), ("end_dim", -1)),
}


def _const_int(e: A.Expr) -> int | None:
    if isinstance(e, A.Num) and not e.is_float and isinstance(e.value, int):
        return e.value
    if isinstance(e, A.Unary) and e.op == "-":
        v = _const_int(e.operand)
        return None if v is None else -v
    return None


def chain_step(e: A.Call, layers: set[str], shadowed: set[str]) -> list | None:
    """The step `e` is when its first argument is the running value: `["layer", attr]` for a
    declared layer called with that one argument, `["call", fn, *constants]` for a chain
    builtin, or None."""
    if not isinstance(e.func, A.Name) or not e.args or e.args[0].name is not None:
        return None
    name = e.func.id
    rest = e.args[1:]
    if name in layers:
        return None if rest else ["layer", py_attr(name)]
    if name not in CHAIN_BUILTINS or name in shadowed:
        return None
    params = CHAIN_BUILTINS[name]
    values = dict(params)
    if len(rest) > len(params):
        return None
    for i, arg in enumerate(rest):
        key = params[i][0] if arg.name is None else arg.name
        if key not in values or (arg.name is None and any(a.name for a in rest[:i])):
            return None
        v = _const_int(arg.value)
        if v is None:
            return None
        values[key] = v
    return ["call", name, *(values[p] for p, _ in params)]


def _steps(e: A.Expr, var: str, layers: set[str], shadowed: set[str]) -> list[list] | None:
    """The steps of `e` applied to `var`, innermost first, or None when `e` is no chain."""
    if isinstance(e, A.Name):
        return [] if e.id == var else None
    if not isinstance(e, A.Call):
        return None
    step = chain_step(e, layers, shadowed)
    if step is None:
        return None
    inner = _steps(e.args[0].value, var, layers, shadowed)
    return None if inner is None else [*inner, step]


def unary_forward(fns: list[A.FnDef]) -> A.FnDef | None:
    """The definition's one `forward` when it takes one parameter without a default and has a
    body (what a chain or a dataflow forward is made of), else None."""
    forwards = [f for f in fns if f.name == "forward"]
    if len(forwards) != 1:
        return None
    fn = forwards[0]
    if len(fn.params) != 1 or fn.params[0].default is not None or not fn.body:
        return None
    return fn


def forward_chain(body: list, fns: list[A.FnDef], defined: set[str]) -> list[list] | None:
    """The chain steps of the definition's `forward` (see the module docstring), or None.

    `body`: the definition's items (its declared layers); `fns`: its methods; `defined`:
    the program's top-level definitions (a user `fn relu` is not the builtin)."""
    fn = unary_forward(fns)
    if fn is None:
        return None
    var = fn.params[0].name
    layers = {item.name for item in body
              if isinstance(item, A.LayerDecl) and item.cond is None and not item.orelse} - {var}
    shadowed = {getattr(item, "name", None) for item in body} | set(defined) | {var}
    steps: list[list] = []
    *stmts, last = fn.body
    for st in stmts:
        if not (isinstance(st, A.Assign) and st.op == "=" and isinstance(st.target, A.Name)
                and st.target.id == var):
            return None
        more = _steps(st.value, var, layers, shadowed)
        if more is None:
            return None
        steps += more
    if not isinstance(last, A.Return) or last.value is None:
        return None
    more = _steps(last.value, var, layers, shadowed)
    if more is None:
        return None
    steps += more
    return steps if any(s[0] == "layer" for s in steps) else None
