"""`with CONTEXT { … }`: the contexts the language knows. Only `no_grad()` (also written
`torch.no_grad()`): the body runs with gradients off. The body shares the scope around it,
as in Python. The code generator writes `with torch.no_grad():`; the IR is the inference
computation, where gradients are off anyway, so the lowering runs the body as it is."""

from __future__ import annotations

from ..frontend import ast as A

CONTEXTS = frozenset({"no_grad"})


def context_name(e: A.Expr) -> str | None:
    """The context a `with` names (`no_grad()`, `torch.no_grad()`), or None."""
    if not isinstance(e, A.Call) or e.args:
        return None
    f = e.func
    if isinstance(f, A.Name) and f.id in CONTEXTS:
        return f.id
    if isinstance(f, A.Attr) and isinstance(f.value, A.Name) and f.value.id == "torch" \
            and f.attr in CONTEXTS:
        return f.attr
    return None


def check_with(checker, s: A.With, scope) -> None:
    """Check the context (E0964 unless `no_grad()`), then the body in the same scope."""
    name = context_name(s.ctx)
    if name is None or name in scope.vars:
        checker.report("E0964", "`with` takes only `no_grad()` here", s.ctx.span,
                       label="not a context the language knows",
                       help="write `with no_grad() { … }`: the body runs without gradients")
    checker.exec_block(s.body, scope)
