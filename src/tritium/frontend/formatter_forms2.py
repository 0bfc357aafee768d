"""Formatting the forms parsed by `parser_forms2`: `type Name = T`, `with ctx { … }` and
anonymous functions `fn(params) -> R { … }` (written on one line, statements joined by
`; `, as block values are). Local functions and typed body constants are printed by the
formatter's own `fn` and config-entry rules."""

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
