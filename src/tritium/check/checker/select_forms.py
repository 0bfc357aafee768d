"""`if` used as a value whose condition is a tensor (the seed's
`return if abs(x) < t { trit(0) } else if x > 0 { trit(1) } else { trit(-1) }`): an
elementwise selection (torch.where). The branches are values (a block with statements is
E0993 here: both are computed for every element) that broadcast with the condition: tensors,
numbers and `trit(…)` literals; the result is the joined type of the branches broadcast to
the condition's shape, ternary (`trit`, int8 in PyTorch) when every branch is a trit. An
`else if` chain nests the selections; a scalar `bool` condition keeps its meaning (one branch
is taken). The checker records the form of the `if`'s span in `CheckResult.call_forms`:
`where`, or `where_trit` for a trit result (the code generator casts to int8)."""

from __future__ import annotations

from ...frontend import ast as A
from ..types import ANY, FLOAT_TYPES, INT_TYPES, AnyT, ScalarT, TensorT, Value

WHERE = "where"
WHERE_TRIT = "where_trit"


def tensor_condition(c: Value) -> bool:
    """A condition that selects elementwise: a tensor that is not 0-d."""
    return isinstance(c.ty, TensorT) and c.ty.shape != ()


def elementwise_if(ck, e: A.IfExpr, c: Value, scope) -> Value:
    if c.ty.dtype not in (None, "bool"):
        ck.report("E0993", f"an elementwise `if` needs a bool tensor condition, got {c.ty}",
                  e.cond.span, label="not a comparison",
                  help="compare it, e.g. `if x > 0 { … } else { … }`")
        return Value(ANY)
    branches = []
    for block in (e.then, e.other):
        if isinstance(block, A.BlockExpr) and A.block_has_statements(block):
            ck.report("E0993", "the branches of an `if` over a tensor condition must be values "
                               "(no statements): both are computed for every element",
                      block.span, label="has statements",
                      help="compute the values with `let` before the `if`")
            return Value(ANY)
        v = ck.eval_block_value(block, scope)
        if isinstance(v.ty, AnyT):
            return Value(ANY)
        if not (isinstance(v.ty, TensorT) or isinstance(v.ty, ScalarT) and v.ty.name in
                FLOAT_TYPES | INT_TYPES | {"trit", "bool"}):
            ck.report("E0993", f"a branch of an `if` over a tensor condition must be a tensor "
                               f"or a number, got {v.ty}", block.span)
            return Value(ANY)
        branches.append(v.ty)
    shape = c.ty.shape
    for t in branches:
        shape = ck.broadcast(shape, t.shape if isinstance(t, TensorT) else (), e.span)
    kinds = [t.dtype if isinstance(t, TensorT) else t.name for t in branches]
    if all(k == "trit" for k in kinds):
        ck.call_forms[e.span] = WHERE_TRIT
        return Value(TensorT("trit", shape, True))
    ck.call_forms[e.span] = WHERE
    floats = [k for k in kinds if k in FLOAT_TYPES]
    tensor_floats = [t.dtype for t in branches if isinstance(t, TensorT) and t.dtype in FLOAT_TYPES]
    dtype = (tensor_floats[0] if tensor_floats else "float32") if floats else \
        None if None in kinds else "int64"
    ternary = all(isinstance(t, TensorT) and t.ternary or k == "trit"
                  for t, k in zip(branches, kinds))
    return Value(TensorT(dtype, shape, ternary))
