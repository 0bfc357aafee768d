"""Bodies that are only `pass` (issue 13): the seed's placeholder methods,
`method get_attention_patterns() -> Tensor { "doc" pass }`. Such a function that declares a
result is a warning where it is defined (W1040), not a missing `return` (E0407); calling it is
an error (E1040), since it would give nothing."""

from __future__ import annotations

from ...frontend import ast as A


def is_stub(fn: A.FnDef) -> bool:
    """A function whose body is only docstrings and `pass` (the seed's placeholder
    `method get_attention_patterns() -> Tensor { \"\"\"…\"\"\" pass }`)."""
    body = fn.body or []
    return any(isinstance(s, A.Pass) for s in body) and all(
        isinstance(s, A.Pass) or isinstance(s, A.ExprStmt) and isinstance(s.value, A.Str)
        for s in body)


def stub_call(ck, fn: A.FnDef, e) -> bool:
    """A call of a function whose body is only `pass` and that declares a result (W1040
    where it is defined): E1040 here, since it would give None. Returns whether it was."""
    if fn.ret is None or not is_stub(fn) or (fn.ret.name == "None" and fn.ret.args is None):
        return False
    ck.report("E1040", f"`{fn.name}` is called, but its body is only `pass`: it returns "
                       f"nothing, not the {fn.ret.name} it declares", e.span,
              label="no value", help=f"write the body of `{fn.name}`")
    return True
