"""Fuzzing the seed's declaration and list forms (issue 13, `decl`): declarations without a
value, tensors constructed by their type, spread items and rest patterns, `shuffle`, `Result`,
`Ok`/`Err`/`panic`.

* spread and rest: random list literals of numbers and `...` spreads of lists and ranges, and
  random destructurings with a `...rest` among their names, in a program with a later type
  error: exactly one E0900 per refused statement, the later error still reported, never a
  traceback; the same list joined with `+` and indexed instead checks and runs;
* declarations: a random tensor type declared without a value; used before any assignment
  it is E0840 (with no traceback), assigned its constructed zeros first the generated module
  computes with zeros of the declared shape;
* token soup of these forms: diagnostics with known codes, never a traceback; what checks
  formats back to the same AST and generates a module the validator accepts.

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
from tritium.frontend.diagnostics import CODES

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz, soup_check  # noqa: E402
from fuzzing import round_trip as _round_trip
from fuzzing import run_main as _run_main

# ----------------------------------------------------------------------------- spread and rest

@st.composite
def list_items(draw, depth: int = 0) -> tuple[str, str, list, bool]:
    """A list literal that may hold spreads, the same list written with `+`, its items, and
    whether a spread was written."""
    src: list[str] = []
    joined: list[str] = []
    val: list = []
    spread = False
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["num", "list", "range", "repeat"] if depth < 2 else ["num"]))
        if kind == "num":
            v = draw(st.integers(-5, 9))
            src.append(str(v))
            joined.append(f"[{v}]")
            val.append(v)
        elif kind == "list":
            s, j, v, _ = draw(list_items(depth + 1))
            src.append(f"...{s}")
            joined.append(f"({j})")
            val.extend(v)
            spread = True
        elif kind == "range":
            a, n = draw(st.integers(0, 3)), draw(st.integers(1, 3))
            src.append(f"...({a}..{a + n})")
            joined.append(f"[{', '.join(str(i) for i in range(a, a + n))}]")
            val.extend(range(a, a + n))
            spread = True
        else:
            v, n = draw(st.integers(-1, 1)), draw(st.integers(0, 3))
            src.append(f"...([{v}] * {n})")
            joined.append(f"[{v}] * {n}")
            val.extend([v] * n)
            spread = True
    return f"[{', '.join(src)}]", " + ".join(joined) or "[]", val, spread


@fuzz(200)
@given(list_items(), st.integers(0, 3), st.integers(0, 3), st.sampled_from(["[]", "()", ""]))
def test_fuzz_spread_and_rest_are_one_e0900_each(case, before: int, after: int,
                                                 brackets: str) -> None:
    src_list, joined, items, spread = case
    names = [f"a{i}" for i in range(before)] + ["...rest"] + [f"b{i}" for i in range(after)]
    pattern = ", ".join(names)
    if brackets:
        pattern = f"{brackets[0]}{pattern}{brackets[1]}"
    src = (f"let xs = {src_list}\n"
           f"let {pattern} = [1, 2, 3, 4, 5, 6]\n"
           f"let bad: int = \"s\"\n")
    result = check_source(src)   # never a traceback
    assert all(d.code in CODES for d in result.diagnostics), result.diagnostics
    got = [(d.code, d.span.line) for d in result.errors]
    assert got == [("E0900", 1)] * spread + [("E0900", 2), ("E0401", 3)], (src, got)
    assert "rest pattern" in result.errors[int(spread)].message
    # what to write instead: `+` joins, indexing takes the rest
    fixed = (f"let xs = {joined}\n"
             f"let rest = xs[{before}:]\n"
             f"print(xs, rest)\n")
    result = check_source(fixed)
    assert result.ok, (fixed, [d.message for d in result.errors])
    _round_trip(fixed)
    assert _run_main(generate(result)) == f"{items} {items[before:]}\n", fixed


# ----------------------------------------------------------------------------- declarations

@fuzz(100)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.sampled_from(
    ["float32", "int32", "trit"]), st.booleans(), st.booleans())
def test_fuzz_declarations_are_assigned_before_use(dims: list[int], dtype: str, ternary: bool,
                                                  assigned: bool) -> None:
    kind = "TernaryTensor" if dtype == "trit" and ternary else "Tensor"
    ty = f"{kind}<{dtype}, [{', '.join(str(d) for d in dims)}]>"
    src = (f"let a: {ty}\n"
           + (f"a = {ty}()\n" if assigned else "")
           + f"let b = {ty}()\n"
           f"print(a.shape, (a + b).abs().sum())\n")
    result = check_source(src)
    assert all(d.code in CODES for d in result.diagnostics), result.diagnostics
    _round_trip(src)
    if not assigned:
        assert [(d.code, d.span.line) for d in result.errors] == [("E0840", 3)] * 2, src
        return
    assert result.ok, (src, [d.message for d in result.errors])
    assert [d.code for d in result.diagnostics] == []
    import torch

    td = {"float32": torch.float32, "int32": torch.int32, "trit": torch.int8}[dtype]
    zero = (torch.zeros(dims, dtype=td) + torch.zeros(dims, dtype=td)).abs().sum()
    assert _run_main(generate(result)) == f"{dims} {zero!s}\n", src


# ----------------------------------------------------------------------------- soup

SOUP = ["let", "a", "b", ":", "=", "Tensor<float32, [2, 3]>", "TernaryTensor<trit, [3]>",
        "Tensor<int32, [?, 2]>", "()", "(", ")", "[", "]", "...", "...xs", ",", "xs", "1",
        "[1, 2]", "let [x, ...rest] =", "let (p, ...q) =", "shuffle(", "seed=3", "Ok(",
        "Err(\"e\")", "panic(\"p\")", "Result<Tensor<float32, [?]>, Error>", "fn f() ->",
        "{", "}", "return", "+", "*", "/", "<", ">", "\n", ".reshape([2, 1])", "print(",
        "if", "else", "x", "float32", "int8", "let t: Tensor<float32, [2, 2]>"]


@fuzz(500)
@given(st.lists(st.sampled_from(SOUP), max_size=30))
def test_fuzz_decl_soup_gives_diagnostics_never_tracebacks(parts: list[str]) -> None:
    soup_check(" ".join(parts))
