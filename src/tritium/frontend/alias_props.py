"""Properties of a type alias, as the seed writes them (`type InputTensor = Tensor<float32,
[784, 128]>` then `InputTensor.shape`, `InputTensor.dtype`, `InputTensor.rank`): compile-time
constants, replaced by their literal while the aliases are expanded (frontend.lift), so every
stage sees a list, a string or an int. `.shape` is the list of dims, `.dtype` the element type
(`trit` for a `TernaryTensor` without one, the type's name for a scalar), `.rank` (and
`.ndim`) the number of dims, `.numel` (and `.size`) their product. A property the alias does
not fix (a `?` or named dim in `.shape`, a tensor type without a shape) is E0991, and the
property stands as `None` from there on."""

from __future__ import annotations

from .. import vocab
from . import ast as A
from .diagnostics import Diagnostic

PROPERTIES = ("shape", "dtype", "rank", "ndim", "numel", "size")
_TENSORS = ("Tensor", "TernaryTensor")
_SCALARS = frozenset(vocab.DTYPES) | {"int", "float", "bool", "trit"}


def alias_property(e: A.Attr, env: dict[str, A.TypeExpr],
                   diags: list[Diagnostic]) -> A.Expr | None:
    """The literal of `Alias.prop` when `e` is one (an alias in scope, a known property),
    else None (the attribute stays for the checker)."""
    if not isinstance(e.value, A.Name) or e.attr not in PROPERTIES or e.value.id not in env:
        return None
    ty = env[e.value.id]
    name = e.value.id
    if ty.name in _SCALARS and not ty.args:
        dims: list[int] | None = []
        dtype = ty.name
    elif ty.name in _TENSORS and not ty.args:
        dtype = ty.dtype or ("trit" if ty.name == "TernaryTensor" else "float32")
        dims = None if ty.shape is None else [
            d.value if isinstance(d.value, int) and not isinstance(d.value, bool) else None
            for d in ty.shape]
    else:
        return _bad(e, diags, f"the type alias `{name}` is {_show(ty)}, which has no "
                              f"`.{e.attr}`", "only a tensor or number type has one")
    if e.attr == "dtype":
        return A.Str(dtype, e.span)
    if dims is None:
        return _bad(e, diags, f"`{name}.{e.attr}` is not known: the type has no shape",
                    f"give the alias a shape, as `type {name} = {ty.name}<{dtype}, [4, 4]>`")
    if e.attr in ("rank", "ndim"):
        return A.Num(len(dims), False, e.span)
    if None in dims:
        k = dims.index(None)
        return _bad(e, diags, f"`{name}.{e.attr}` is not known when compiling: dim {k} of "
                              f"the alias is not a number", "read it from a value instead "
                              "(`x.shape`), or give the alias numbers for every dim")
    if e.attr == "shape":
        return A.ListLit([A.Num(d, False, e.span) for d in dims], e.span)
    total = 1
    for d in dims:
        total *= d
    return A.Num(total, False, e.span)


def _bad(e: A.Attr, diags: list[Diagnostic], message: str, help: str) -> A.Expr:
    diags.append(Diagnostic("E0991", message, e.span, label="not a compile-time constant",
                            help=help))
    return A.NoneLit(e.span)


def _show(ty: A.TypeExpr) -> str:
    return {"list": "a list type", "tuple": "a tuple type", "Union": "a union type",
            "dict": "a dict type", "fn": "a function type"}.get(ty.name, f"`{ty.name}`")
