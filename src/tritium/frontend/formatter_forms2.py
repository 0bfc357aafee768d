"""Formatting the forms parsed by `parser_forms2`: `type Name = T`, `with ctx { … }` and
anonymous functions `fn(params) -> R { … }` (written on one line, statements joined by
`; `, as block values are). Local functions and typed body constants are printed by the
formatter's own `fn` and config-entry rules. Also the table of a table-driven repetition,
`layer b: Kind[] { [1, 16] { t: 6, c: 24 } }` (rows by position or by name)."""

from __future__ import annotations

from . import ast as A


def format_forms2_statement(p, node, indent: str) -> list[str]:
    if isinstance(node, A.TypeAlias):
        params = f"<{', '.join(node.params)}>" if node.params else ""
        return [f"{indent}type {node.name}{params} = {p.type(node.type)}"]
    if isinstance(node, A.With):
        return p._braced(f"with {p.expr(node.ctx)} ", node, node.body, indent, p.statement)
    raise TypeError(f"cannot format {type(node).__name__}")


def format_forms2_expr(p, e) -> str:
    """An anonymous function: an atom (the formatter's `_ATOM` level)."""
    if isinstance(e, A.FnExpr):
        head = f"fn({p.param_specs(e.params)})"
        if e.ret is not None:
            head += f" -> {p.type(e.ret)}"
        parts: list[str] = []
        for s in e.body:
            text = ""
            for ln in (x.strip() for x in p.statement(s, "")):
                if text and not text.endswith("{") and not ln.startswith("}"):
                    text += ";"
                text += (" " if text else "") + ln
            parts.append(text.rstrip(";"))
        return head + (" { " + "; ".join(parts) + " }" if parts else " {}")
    raise TypeError(f"cannot format expression {type(e).__name__}")


def format_table(p, node: A.LayerDecl, indent: str, key) -> list[str] | None:
    """`layer b: Kind[] { rows }` when every kind of the declaration is a row of one kind's
    table (`A.LayerKind.row`); None for any other layer declaration. ``key`` prints a config
    key (the formatter's, handed in: this module never imports the formatter)."""
    if node.cond is not None or not node.kinds or not all(k.row for k in node.kinds) or len(
            {k.kind for k in node.kinds}) != 1:
        return None
    def row(k: A.LayerKind, ind: str) -> list[str]:
        args = k.args or []
        if args and all(a.name is not None for a in args):
            return [f"{ind}{{ {', '.join(f'{key(a.name)}: {p.expr(a.value)}' for a in args)} }}"]
        return [f"{ind}[{', '.join(p.expr(a.value) for a in args)}]"]

    return p._braced(f"layer {node.name}: {node.kinds[0].kind}[] ", node, node.kinds, indent, row)
