"""Fuzzing the forms of issue 13 added with generic binding: generic functions bound at each call,
`masked_fill`, Python's `sum` of a list, `unbind`, dict items, `state` specs, sub-layer
methods, a layer name reassigned in `forward`, `pass`-only bodies, top-level `while`/`assert`.

* generic calls: a generic function of random type parameters, bounds and parameter types,
  called with random arguments; the checker's verdict agrees with an independent model of
  the binding rule (one kind per parameter: int, float, bool, a tensor of one dtype kind and
  shape), and what checks runs and gives the value Python computes;
* dict programs: random item sets and reads with known keys; what checks prints what a
  Python dict gives, and a missing key is E1042;
* token soup of all these forms: diagnostics with known codes, never a traceback; what checks
  formats back to the same AST, generates a module the validator accepts, and lowers or
  gives a LoweringError.

The number of examples comes from TRITIUM_FUZZ_EXAMPLES (`make fuzz` runs 20,000 per target),
like tests/property/test_fuzz_hostile.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.check import check_source

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz, soup_check  # noqa: E402
from fuzzing import known_codes as _known
from fuzzing import round_trip as _round_trip
from fuzzing import run_main as _run_main

# ----------------------------------------------------------------------------- generic calls

# an argument: (source, kind for the binding rule, value as Python computes it)
ARGS = {
    "int": [("1", 1), ("2", 2), ("-3", -3), ("7", 7)],
    "float": [("0.5", 0.5), ("2.0", 2.0), ("float(3)", 3.0)],
    "bool": [("true", True), ("false", False)],
    "f2": [("ones([2])", 2.0), ("zeros([2])", 0.0)],          # float tensors of shape [2]
    "f3": [("ones([3])", 3.0)],                               # float tensor of shape [3]
    "i2": [("ones([2], dtype=int32)", 2)],                    # int tensor of shape [2]
}
BOUNDS = {"": set(ARGS), "Numeric": {"int", "float", "f2", "f3", "i2"},
          "Float": {"float", "f2", "f3"}, "Integer": {"int", "i2"},
          "Tensor": {"f2", "f3", "i2"}, "Scalar": {"int", "float", "bool"}}


@st.composite
def generic_calls(draw):
    bound = draw(st.sampled_from(sorted(BOUNDS)))
    n = draw(st.integers(1, 3))
    kinds = [draw(st.sampled_from(sorted(ARGS))) for _ in range(n)]
    args = [draw(st.sampled_from(ARGS[k])) for k in kinds]
    where = draw(st.booleans()) and bound != ""
    tp = f"T: {bound}" if bound and not where else "T"
    params = ", ".join(f"a{i}: T" for i in range(n))
    clause = f"\nwhere T: {bound}" if where else ""
    src = (f"fn g<{tp}>({params}) -> T{clause} {{\n    return a0\n}}\n"
           f"let r = g({', '.join(s for s, _ in args)})\nprint(sum(r))\n")
    # the binding rule: one kind of number (int with int, float with float), one tensor
    # dtype kind and one shape; then the bound
    one = len({k for k in kinds}) == 1
    ok = one and kinds[0] in BOUNDS[bound]
    return src, ok, args[0][1]


@fuzz(300)
@given(generic_calls())
def test_fuzz_generic_calls_bind_one_type(case) -> None:
    src, ok, first = case
    result = check_source(src)
    _known(result)
    codes = {d.code for d in result.errors}
    assert result.ok == ok, (src, [(d.code, d.message) for d in result.errors])
    if not ok:
        assert codes <= {"E0842", "E0843"}, (src, codes)
        return
    _round_trip(src)
    out = _run_main(generate(result)).strip()
    assert float(out.removeprefix("tensor(").rstrip(".)")) == float(first), (src, out)


# ----------------------------------------------------------------------------- dicts

KEYS = ["a", "b", "c"]


@st.composite
def dict_programs(draw):
    lines = ['let d = {"a": 0}']
    model = {"a": 0}
    missing = None
    for _ in range(draw(st.integers(1, 8))):
        k = draw(st.sampled_from(KEYS))
        op = draw(st.sampled_from(["set", "add", "read"]))
        v = draw(st.integers(-5, 5))
        if op == "set":
            lines.append(f'd["{k}"] = {v}')
            model[k] = v
        elif k not in model:
            missing = missing or k
            break
        elif op == "add":
            lines.append(f'd["{k}"] += {v}' if v >= 0 else f'd["{k}"] -= {-v}')
            model[k] += v
        else:
            lines.append(f'print(d["{k}"])')
    if missing is not None:
        lines.append(f'print(d["{missing}"])')
    lines.append("print(d)")
    return "\n".join(lines) + "\n", model, missing


@fuzz(300)
@given(dict_programs())
def test_fuzz_dict_items_are_pythons(case) -> None:
    src, model, missing = case
    result = check_source(src)
    _known(result)
    if missing is not None:
        assert [d.code for d in result.errors] == ["E1042"], (src, result.errors)
        return
    assert result.ok, (src, [(d.code, d.message) for d in result.errors])
    out = _run_main(generate(result)).strip().splitlines()
    assert out[-1] == str(model), (src, out)


# ----------------------------------------------------------------------------- soup

SOUP = [
    "fn g<T: Numeric>(x: T, y: T) -> T {", "fn h<T>(x: Tensor<T, [n]>) -> T", "where T: Float",
    "fn s<S>(x: Tensor<float32, S>) -> Tensor<float32, S> {", "return x", "}", "{", "(", ")",
    "g(1, 2.0)", "g(1, 2)", "h(ones([2]))", "s(ones([2, 3]))", "masked_fill(", "ones([2, 3])",
    "ones([3]) > 0.0", "0.0", ",", "x.masked_fill(", "sum([", "])", "sum(", "unbind(", "dim: 1",
    "let", "d", "=", "{\"k\": 1}", "d[\"k\"]", "d[\"z\"]", "+=", "[", "]", "\n",
    "layer L {", "state m: Tensor { shape: [4], init: \"zeros\" }",
    "state v: Tensor { shape: [4], init: \"constant\", value: 1.0 }", "requires_grad: true",
    "forward(x: Tensor[b, 4]) -> Tensor[b, 4] {", "qkv = qkv(x)",
    "layer qkv: Linear { in_features: 4, out_features: 4 }", "method m() -> Tensor {", "pass",
    "\"\"\"doc\"\"\"", "stage[0].m()", "layer stage: Sequential { L {} ReLU {} }",
    "model M {", "while", "assert", "x", "<", "3", "break", "print(", "f\"{x}\"",
]


@fuzz(500)
@given(st.lists(st.sampled_from(SOUP), max_size=30))
def test_fuzz_seede_soup_gives_diagnostics_never_tracebacks(parts: list[str]) -> None:
    soup_check(" ".join(parts))
