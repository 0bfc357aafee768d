"""`state running_mean: Tensor { shape: [out_channels], init: "zeros", requires_grad: false }`:
a buffer declared with a spec, as the seed writes it (issue 13). It means the same as
`state running_mean: Tensor[out_channels] = zeros([out_channels])`, and the parser makes it
that: the spec's `shape:` becomes the type's shape, `init:` (`"zeros"`, the default,
`"ones"`, or `"constant"` / `"full"` with `value:`) the initial value. A state is never
learned: `requires_grad: true` is E1043 (declare a `param`), as is any other key."""

from __future__ import annotations

from . import ast as A
from .diagnostics import Diagnostic, Label

STATE_INITS = ("zeros", "ones", "constant", "full")
STATE_KEYS = ("shape", "init", "value", "requires_grad")


def _dims(e: A.Expr) -> list[A.Dim] | None:
    if not isinstance(e, A.ListLit):
        return None
    dims = []
    for x in e.items:
        if isinstance(x, A.Num) and not x.is_float:
            dims.append(A.Dim(x.value, x.span))
        elif isinstance(x, A.Name):
            dims.append(A.Dim(x.id, x.span))
        elif isinstance(x, A.Unknown):
            return None   # a buffer's shape is known
        else:
            dims.append(A.Dim(x, x.span))
    return dims


def _dim_expr(d: A.Dim) -> A.Expr:
    if isinstance(d.value, int):
        return A.Num(d.value, False, d.span)
    if isinstance(d.value, str):
        return A.Name(d.value, d.span)
    return d.value


def state_from_spec(diags: list, name: str, ty: A.TypeExpr, init: A.Expr | None,
                    spec: list[A.ConfigEntry], span) -> tuple[A.TypeExpr, A.Expr | None]:
    """The type and initial value that `state name: ty { spec }` means (see the module)."""
    def bad(e: A.ConfigEntry, msg: str, help: str) -> None:
        diags.append(Diagnostic("E1043", msg, e.span, label="in this spec", help=help))

    keys: dict[str, A.ConfigEntry] = {}
    for e in spec:
        if e.key not in STATE_KEYS:
            bad(e, f"`{e.key}` has no meaning in the spec of state `{name}`",
                "a state's spec takes " + ", ".join(f"`{k}`" for k in STATE_KEYS))
        elif e.key in keys:
            diags.append(Diagnostic("E0206", f"`{e.key}` is given twice in the spec of state "
                                             f"`{name}`", e.span,
                                    secondary=[Label(keys[e.key].span, "first given here")]))
        else:
            keys[e.key] = e
    rg = keys.get("requires_grad")
    if rg is not None and not (isinstance(rg.value, A.Bool) and not rg.value.value):
        bad(rg, f"a state is not learned: `requires_grad` of state `{name}` must be false",
            f"declare a learned tensor with `param {name}: …`")
    shape = keys.get("shape")
    if shape is not None and ty.shape is None and ty.name in ("Tensor", "TernaryTensor"):
        dims = _dims(shape.value)
        if dims is None:
            bad(shape, f"the shape of state `{name}` must be a list of sizes",
                "write e.g. `shape: [out_channels]`")
        else:
            ty = A.TypeExpr(ty.name, ty.dtype, dims, ty.span)
    kind_e = keys.get("init")
    kind = kind_e.value.value if kind_e is not None and isinstance(kind_e.value, A.Str) \
        else "zeros" if kind_e is None else None
    if kind not in STATE_INITS:
        bad(kind_e, f"`init` of state `{name}` must be one of "
                    + ", ".join(f'"{k}"' for k in STATE_INITS),
            "a buffer starts as zeros, ones or a constant (`init: \"constant\", value: 0.5`)")
        return ty, init
    value = keys.get("value")
    if kind in ("constant", "full") and value is None:
        bad(kind_e, f"`init: \"{kind}\"` of state `{name}` needs `value:`",
            "e.g. `value: 0.5`")
        return ty, init
    if init is not None or ty.name not in ("Tensor", "TernaryTensor"):
        return ty, init   # an explicit `= init`, a scalar state: the spec only checked
    if shape is not None:
        size = shape.value
    elif ty.shape is not None and all(d.value is not None for d in ty.shape):
        # `state v: Tensor[2] { init: "ones" }`: the type's own shape
        size = A.ListLit([_dim_expr(d) for d in ty.shape], ty.span)
    else:
        return ty, init   # no shape: the checker says a state needs one (E0880)
    args = [A.Arg(size, None, size.span)]
    fn = "full" if kind in ("constant", "full") else kind
    if fn == "full":
        args.append(A.Arg(value.value, None, value.value.span))
    return ty, A.Call(A.Name(fn, span), args, span)
