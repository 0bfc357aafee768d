"""The arguments of a call of a user function bound to its parameters by name (issue 13):
`f(b: "x", a: 2)` and `process(y: 2.0, x: 1)` bind as Python binds them (and as the
generated module, which passes them by keyword, does): positional arguments first, in
order, then each named one to the parameter of its name. The checker and the IR lowering
share this one rule."""

from __future__ import annotations


class ArgOrderError(Exception):
    """`kind`: `many` (more positional arguments than parameters), `unknown` (no parameter
    of that name), `twice` (a parameter given twice), `missing` (a required parameter not
    given); `name` the argument's or parameter's name, `index` the argument's position."""

    def __init__(self, kind: str, name: str | None = None, index: int | None = None):
        super().__init__(kind)
        self.kind, self.name, self.index = kind, name, index


def order_args(params, names: list[str | None]) -> list[int | None]:
    """For each parameter (`params`: objects with `.name` and `.default`), the index of the
    call argument bound to it (`names`: each argument's name, None when positional), or None
    when it is not given and has a default. Raises ArgOrderError."""
    slots: list[int | None] = [None] * len(params)
    pos = [i for i, n in enumerate(names) if n is None]
    if len(pos) > len(params):
        raise ArgOrderError("many", None, pos[len(params)])
    for k, i in enumerate(pos):
        slots[k] = i
    index = {p.name: k for k, p in enumerate(params)}
    for i, n in enumerate(names):
        if n is None:
            continue
        k = index.get(n)
        if k is None:
            raise ArgOrderError("unknown", n, i)
        if slots[k] is not None:
            raise ArgOrderError("twice", n, i)
        slots[k] = i
    for p, s in zip(params, slots):
        if s is None and p.default is None:
            raise ArgOrderError("missing", p.name)
    return slots


def by_name(names: list[str | None]) -> bool:
    """Whether a call names any argument (else the order is the written one)."""
    return any(n is not None for n in names)
