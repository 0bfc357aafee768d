"""The dtype of an elementwise operation on tensors and numbers, as torch computes it (and the
IR types it, tritium.ir.infer): tensors with dims decide, then 0-d tensors (`sum(x)`), then
numbers, each only when it is of a higher kind (bool < integer < float) than what decided
before; a number of a higher kind gives its default dtype (an int: int64, a float: float32).
Within a kind the later dtype wins (`int8(x) + int32(x)` is int32). Trits are int8 at run
time when cast (`trit(x)`) but a `TernaryTensor` argument holds the caller's floats, so
arithmetic on trits (with anything but a float, which decides) is float32. `/` of integers is
float32; comparisons are bool."""

from __future__ import annotations

from ..types import FLOAT_TYPES, ScalarT, TensorT

_ORDER = ("bool", "trit", "uint8", "int8", "int16", "int32", "int64", "bfloat16", "float16",
          "float32", "float64")
_RANK = {d: i for i, d in enumerate(_ORDER)}
_DEFAULT = {0: "bool", 1: "int64", 2: "float32"}
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")


def kind(dtype: str) -> int:
    """0 for bool, 2 for a float, 1 for an integer or a trit."""
    return 0 if dtype == "bool" else 2 if dtype in FLOAT_TYPES or dtype == "float" else 1


def _promote(a: str, b: str) -> str:
    return a if _RANK.get(a, _RANK["float32"]) >= _RANK.get(b, _RANK["float32"]) else b


def elementwise_dtype(op: str, ta, tb) -> str:
    """The dtype of `ta op tb` (each a TensorT or a ScalarT)."""
    if op in _COMPARISONS:
        return "bool"
    tensors = [t for t in (ta, tb) if isinstance(t, TensorT)]
    if not tensors and all(isinstance(t, ScalarT) for t in (ta, tb)):
        # numbers only (`where(c, 0, 1)`): torch makes them tensors of the default dtype of
        # their kind (int64 for ints, float32 for floats, bool for bools)
        return _DEFAULT[max(kind(ta.name), kind(tb.name))]
    if not tensors or any(t.dtype is None for t in tensors):
        return "float32"   # not known: a float, as before
    result: str | None = None
    for group in ([t.dtype for t in tensors if t.shape != ()],
                  [t.dtype for t in tensors if t.shape == ()]):
        if group:
            g = group[0] if len(group) == 1 else _promote(*group)
            if result is None or kind(g) > kind(result):
                result = g
    for n in (t.name for t in (ta, tb) if isinstance(t, ScalarT)):
        if kind(n) > kind(result):
            result = _DEFAULT[kind(n)]
    names = [t.dtype if isinstance(t, TensorT) else t.name for t in (ta, tb)]
    if "trit" in names and kind(result) < 2:
        # a trit tensor is int8 when cast (`trit(x)`) but holds the caller's floats when it is
        # a `TernaryTensor` argument: arithmetic on it is typed float32, which both give the
        # same values as, and never takes the integer forms (a clip's truncated bounds)
        result = "float32"
    if op == "/" and kind(result) < 2:
        result = "float32"
    return result


def bool_tensor_refused(ck, op: str, ta, tb, e) -> bool:
    """`m - 1`, `m % m`, `m ** m` of a bool tensor `m` (a mask): PyTorch refuses them (E0405,
    with what to write); True when reported."""
    bools = [isinstance(t, TensorT) and t.dtype == "bool" for t in (ta, tb)]
    if not (op == "-" and any(bools) or op in ("%", "**") and all(bools)):
        return False
    ck.report("E0405", f"`{op}` of a bool tensor has no value (PyTorch refuses it)", e.span,
              label="a bool tensor (a mask)",
              help="convert the mask to numbers first: `int32(m)`, `float32(m)` (`1 - "
                   "int32(m)` inverts it)")
    return True
