"""A definition's `forward` as a small dataflow program: the fact a frozen model needs to fuse
the residual blocks that are no chain (`tritium.runtime.graph`).

`forward_chain` covers forwards that thread one value through their steps. Residual blocks
keep two values alive (`identity = x; out = conv2(relu(conv1(x))); return relu(out +
identity)`), often behind an `if` on a hyperparameter or an optional layer. When a forward of
one tensor parameter is made only of

- assignments `v = E`, `let v = E` and `v += E` to local names,
- `if C { ... } else { ... }` around such assignments, where `C` is `layer is not None`
  (`is None`) for an optional layer, a comparison of hyperparameters and integer constants,
  `and`/`or`/`not` of those, or `true`/`false`,
- and a last `return E`,

with every `E` a nest of declared-layer calls, the chain builtins (`relu`, ..., `flatten`)
and `+` of two such nests, the generator writes it into the module as data
(`self.tritium_graph`), a list of ops in program order:

- first `["input", name]`: the parameter's name;
- `["apply", dest, src, steps]`: `dest` = the chain `steps` (`forward_chain`'s format)
  applied to `src` (no steps: a copy of the reference);
- `["add", dest, a, b]`: `dest = a + b`;
- `["if", cond, then_ops, else_ops]`, `cond` one of `["present", layer]`,
  `["cmp", op, lhs, rhs]` (operands `["attr", name]` or `["const", int]`),
  `["and", c, c]`, `["or", c, c]`, `["not", c]`, `["const", bool]`;
- `["return", src]`.

Values are the program's local names (and `%n` for the intermediate values of an
expression, names no program can spell).
"""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.names import py_attr
from .chain import chain_step, unary_forward

_CMP = frozenset({"==", "!=", "<", "<=", ">", ">="})


class _NoGraph(Exception):
    """The forward is outside the grammar of the module docstring."""


class _Lowering:
    def __init__(self, var: str, layers: set[str], optional: set[str], scalars: set[str],
                 shadowed: set[str]) -> None:
        self.var = var
        self.layers, self.optional, self.scalars = layers, optional, scalars
        self.shadowed = shadowed
        self.defined = {var}
        self.temps = 0

    def temp(self) -> str:
        self.temps += 1
        return f"%{self.temps}"

    def value(self, e: A.Expr, ops: list) -> str:
        """Lower `e` into `ops`; the name of its value."""
        if isinstance(e, A.Name):
            if e.id not in self.defined:
                raise _NoGraph
            return e.id
        if isinstance(e, A.Binary) and e.op == "+":
            a, b = self.value(e.left, ops), self.value(e.right, ops)
            t = self.temp()
            ops.append(["add", t, a, b])
            return t
        if isinstance(e, A.Call) and e.args and e.args[0].name is None:
            step = chain_step(e, self.layers, self.shadowed)
            if step is None:
                raise _NoGraph
            src = self.value(e.args[0].value, ops)
            last = ops[-1] if ops else None
            if src.startswith("%") and last is not None and last[0] == "apply" and last[1] == src:
                last[3].append(step)        # the nest goes on: one apply of all its steps
                return src
            t = self.temp()
            ops.append(["apply", t, src, [step]])
            return t
        raise _NoGraph

    def assign(self, target: str, e: A.Expr, ops: list) -> None:
        src = self.value(e, ops)
        last = ops[-1] if ops else None
        if src.startswith("%") and last is not None and last[1] == src and last[0] != "if":
            last[1] = target                # the expression's last op writes the local
        else:
            ops.append(["apply", target, src, []])
        self.defined.add(target)

    def cond(self, e: A.Expr) -> list:
        if isinstance(e, A.Bool):
            return ["const", bool(e.value)]
        if isinstance(e, A.Unary) and e.op == "not":
            return ["not", self.cond(e.operand)]
        if isinstance(e, A.Binary):
            if e.op in ("and", "or"):
                return [e.op, self.cond(e.left), self.cond(e.right)]
            if e.op in ("is", "is not") and isinstance(e.left, A.Name) \
                    and e.left.id in self.optional and isinstance(e.right, A.NoneLit):
                present = ["present", py_attr(e.left.id)]
                return present if e.op == "is not" else ["not", present]
            if e.op in _CMP:
                return ["cmp", e.op, self.operand(e.left), self.operand(e.right)]
        raise _NoGraph

    def operand(self, e: A.Expr) -> list:
        if isinstance(e, A.Num) and not e.is_float and isinstance(e.value, int):
            return ["const", e.value]
        if isinstance(e, A.Unary) and e.op == "-" and isinstance(e.operand, A.Num) \
                and not e.operand.is_float and isinstance(e.operand.value, int):
            return ["const", -e.operand.value]
        if isinstance(e, A.Name) and e.id in self.scalars and e.id not in self.defined:
            return ["attr", py_attr(e.id)]
        raise _NoGraph

    def block(self, stmts: list, ops: list, top: bool) -> None:
        for i, st in enumerate(stmts):
            if isinstance(st, A.Assign) and isinstance(st.target, A.Name) \
                    and st.target.id not in self.shadowed - {self.var}:
                if st.op == "=":
                    self.assign(st.target.id, st.value, ops)
                elif st.op == "+=" and st.target.id in self.defined:
                    self.assign(st.target.id, A.Binary("+", st.target, st.value), ops)
                else:
                    raise _NoGraph
            elif isinstance(st, A.Let) and st.value is not None and st.name not in self.shadowed:
                self.assign(st.name, st.value, ops)
            elif isinstance(st, A.If):
                cond = self.cond(st.cond)
                then: list = []
                other: list = []
                self.block(st.then, then, False)
                self.block(st.other or [], other, False)
                ops.append(["if", cond, then, other])
            elif isinstance(st, A.Return) and top and i == len(stmts) - 1 \
                    and st.value is not None:
                ops.append(["return", self.value(st.value, ops)])
            else:
                raise _NoGraph


def forward_graph(body: list, fns: list[A.FnDef], defined: set[str],
                  scalars: set[str]) -> list | None:
    """The dataflow ops of the definition's `forward` (see the module docstring), or None.

    `body`: the definition's items; `fns`: its methods; `defined`: the program's top-level
    definitions; `scalars`: its hyperparameters and config entries (what a condition may
    read)."""
    fn = unary_forward(fns)
    if fn is None:
        return None
    var = fn.params[0].name
    decls = [item for item in body if isinstance(item, A.LayerDecl)]
    layers = {item.name for item in decls} - {var}
    optional = {item.name for item in decls if item.cond is not None or item.orelse} - {var}
    shadowed = {getattr(item, "name", None) for item in body} | set(defined) | {var}
    low = _Lowering(var, layers, optional, scalars - layers - {var}, shadowed)
    ops: list = [["input", var]]
    try:
        low.block(fn.body, ops, True)
    except _NoGraph:
        return None
    if not ops or ops[-1][0] != "return":
        return None

    def has_layer(ops: list) -> bool:
        return any(op[0] == "apply" and any(s[0] == "layer" for s in op[3])
                   or op[0] == "if" and (has_layer(op[2]) or has_layer(op[3])) for op in ops)

    return ops if has_layer(ops) else None
