"""Fuzzing the forms given to `stmt2` (issue 13): integer division stored into an int, `if`
over a tensor condition, `with_gradient_from`, alias properties, quantizers that return a
pair, `print(label=)` and layers constructed by calling their type.

* int division: `let n: int = <ints with />` of random known values; a program that checks
  prints what exact integer arithmetic gives, and an inexact division is E0990 (a zero
  divisor E0309), as Python's `divmod` says;
* selections: random `if`/`else if` chains over tensor conditions with tensor, number and
  trit branches, wrapped in `with_gradient_from`; they check, format back to the same AST,
  and the generated module computes what `torch.where` computes;
* token soup of these forms: diagnostics with known codes, never a traceback; what checks
  formats back to the same AST and generates a module the validator accepts.

The number of examples comes from TRITIUM_FUZZ_EXAMPLES (`make fuzz` runs 20,000 per target),
like tests/property/test_fuzz_hostile.py.
"""

from __future__ import annotations

import contextlib
import io
import sys
import types
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source
from tritium.frontend.diagnostics import CODES
from tritium.frontend.parser import parse

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz, soup_check  # noqa: E402
from fuzzing import round_trip as _round_trip


def _module(python: str) -> types.ModuleType:
    validate(python)
    mod = types.ModuleType("tritium_fuzz_stmt2")
    exec(compile(python, "<fuzz>", "exec"), mod.__dict__)
    return mod


def _run_main(python: str) -> str:
    mod = _module(python)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        mod.main()
    return buf.getvalue()


# ----------------------------------------------------------------------------- int division

@st.composite
def int_expressions(draw, depth: int = 0) -> tuple[str, object]:
    """An int expression of `+ - * /` over small literals, and its value under the seed's
    rule (exact division of ints), or the code the first bad division gets."""
    if depth >= 2 or draw(st.booleans()):
        v = draw(st.integers(-6, 12))
        return (str(v) if v >= 0 else f"({v})"), v
    op = draw(st.sampled_from(["+", "-", "*", "/"]))
    (ls, lv), (rs, rv) = draw(int_expressions(depth + 1)), draw(int_expressions(depth + 1))
    src = f"({ls} {op} {rs})"
    if isinstance(lv, str) or isinstance(rv, str):
        return src, lv if isinstance(lv, str) else rv
    if op == "/":
        if rv == 0:
            return src, "E0309"
        q, r = divmod(lv, rv)
        return src, ("E0990" if r else q)
    return src, {"+": lv + rv, "-": lv - rv, "*": lv * rv}[op]


@fuzz(300)
@given(int_expressions())
def test_fuzz_int_division_is_exact_integer_arithmetic(case) -> None:
    expr, want = case
    src = f"let n: int = {expr}\nprint(n)\n"
    result = check_source(src)
    assert all(d.code in CODES for d in result.diagnostics), result.diagnostics
    if isinstance(want, str):
        assert want in [d.code for d in result.errors], (src, result.diagnostics)
        return
    assert result.ok, (src, [d.message for d in result.errors])
    _round_trip(src)
    assert _run_main(generate(result)) == f"{want}\n", src


# ----------------------------------------------------------------------------- selections

BRANCHES = ["x", "x * 0.5", "2.0", "0", "trit(1)", "trit(0)", "trit(-1)", "bias", "-x"]
CONDS = ["x > 0", "abs(x) < 0.5", "x < bias", "x >= 0.25", "x != 0"]


@st.composite
def selections(draw, depth: int = 0) -> str:
    cond = draw(st.sampled_from(CONDS))
    then = draw(st.sampled_from(BRANCHES))
    if depth < 2 and draw(st.booleans()):
        other = draw(selections(depth + 1))
        return f"if {cond} {{ {then} }} else {other}"
    return f"if {cond} {{ {then} }} else {{ {draw(st.sampled_from(BRANCHES))} }}"


def _torch_value(expr: str, x, bias):
    """The value of a selection by torch.where (the reference, parsed back from the AST)."""
    import torch

    from tritium.frontend import ast as A

    def ev(e):
        if isinstance(e, A.IfExpr):
            return torch.where(ev(e.cond), ev(e.then), ev(e.other))
        if isinstance(e, A.BlockExpr):
            return ev(e.value)
        if isinstance(e, A.Name):
            return {"x": x, "bias": bias}[e.id]
        if isinstance(e, A.Num):
            return torch.tensor(float(e.value))
        if isinstance(e, A.Unary):
            return -ev(e.operand)
        if isinstance(e, A.Call):   # trit(k), abs(x)
            arg = ev(e.args[0].value)
            return arg.abs() if e.func.id == "abs" else arg
        ops = {"*": lambda a, b: a * b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
               ">=": lambda a, b: a >= b, "!=": lambda a, b: a != b}
        return ops[e.op](ev(e.left), ev(e.right))

    program = parse(f"let v = {expr}\n")[0]
    return ev(program.items[0].value)


@fuzz(150)
@given(selections(), st.booleans())
def test_fuzz_elementwise_if_is_torch_where(expr: str, ste: bool) -> None:
    import torch

    value = f"({expr}) with_gradient_from x" if ste else expr
    src = ("fn sel(x: Tensor<float32, [?, 4]>, bias: Tensor<float32, [4]>) -> Tensor {\n"
           f"    return {value}\n"
           "}\n")
    result = check_source(src)
    assert all(d.code in CODES for d in result.diagnostics), result.diagnostics
    assert result.ok, (src, [d.message for d in result.errors])
    _round_trip(src)
    mod = _module(generate(result))
    gen = torch.Generator().manual_seed(0)
    x, bias = torch.randn(3, 4, generator=gen), torch.randn(4, generator=gen)
    got = mod.sel(x, bias)
    want = _torch_value(expr, x, bias)
    torch.testing.assert_close(got.float(), want.float().expand_as(got), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- soup

SOUP = ["let", "n", ":", "int", "=", "4", "/", "2", "3", "(", ")", "{", "}", "if", "else",
        "x", ">", "0", "trit(1)", "with_gradient_from", "type", "A", "Tensor<float32, [2, 3]>",
        "A.shape", "A.rank", "A.dtype", "xnor_quantize(x)", "let (q, s) =", "print(",
        "label=\"L\"", ",", ")", "\n", "fn f(x: Tensor<float32, [?, 3]>) -> Tensor {",
        "return", "layer L(w: TernaryTensor<trit, [3, 2]>, x: Tensor<float32, [?, 3]>) -> "
        "Tensor<float32, [?, 2]> { return x @ w }", "L()", "L(w: ones([3, 2]))", "m(x)",
        "let m =", "randn([2, 3])", "*", "+"]


@fuzz(500)
@given(st.lists(st.sampled_from(SOUP), max_size=30))
def test_fuzz_stmt2_soup_gives_diagnostics_never_tracebacks(parts: list[str]) -> None:
    soup_check(" ".join(parts))
