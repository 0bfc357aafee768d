"""Fuzzing the statement and expression forms of issue 13 (form 13): random function bodies
built from `&&`/`||`/`!`, radix literals, chained comparisons, inclusive and stepped ranges,
`while`/`break`/`continue`/`assert`/`pass`, destructuring, `enumerate`/`zip`, and random
token soup of the same words. Whatever the program: no traceback, only known diagnostic
codes, no hang (a `while` the checker runs is bounded), the formatter's output re-parses to
the same tree, and what checks compiles to Python that validate.py accepts and lowers to IR
or fails with a LoweringError (E0701). TRITIUM_FUZZ_EXAMPLES sets the count (`make fuzz`)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source
from tritium.frontend.diagnostics import CODES
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse
from tritium.ir.lowering import LoweringError, lower

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402

NAMES = ["i", "n", "s", "a", "b", "pass", "step", "while"]
INTS = ["0", "1", "2", "3", "0x1F", "0b101", "0o7", "1_0", "0xFFFF_FFFF_FFFF_FFFF", "-2",
        "9223372036854775807", "0x8000000000000000"]


@st.composite
def int_expr(draw, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return draw(st.sampled_from(INTS + ["i", "n", "s"]))
    op = draw(st.sampled_from(["+", "-", "*", "%"]))
    return f"({draw(int_expr(depth + 1))} {op} {draw(int_expr(depth + 1))})"


@st.composite
def bool_expr(draw, depth: int = 0) -> str:
    k = draw(st.integers(0, 4 if depth < 2 else 1))
    if k == 0:
        return draw(st.sampled_from(["true", "false"]))
    if k == 1:
        ops = draw(st.lists(st.sampled_from(["<", "<=", "==", "!=", ">", ">="]),
                            min_size=1, max_size=3))
        parts = [draw(int_expr(2)) for _ in range(len(ops) + 1)]
        return " ".join(p for pair in zip(parts, ops + [""]) for p in pair).strip()
    if k == 2:
        return f"!{draw(bool_expr(depth + 1))}" if draw(st.booleans()) \
            else f"!({draw(bool_expr(depth + 1))})"
    op = draw(st.sampled_from(["&&", "||", "and", "or"]))
    return f"({draw(bool_expr(depth + 1))} {op} {draw(bool_expr(depth + 1))})"


@st.composite
def range_expr(draw) -> str:
    lo, hi = draw(int_expr(2)), draw(int_expr(2))
    dots = draw(st.sampled_from(["..", "..="]))
    form = draw(st.integers(0, 3))
    if form == 0:
        return f"{lo}{dots}{hi}"
    if form == 1:
        return f"{lo}{dots}{hi} step {draw(int_expr(2))}"
    if form == 2:
        return f"({lo}{dots}{hi}).step_by({draw(int_expr(2))})"
    return f"range({lo}, {hi}, {draw(int_expr(2))})"


@st.composite
def statement(draw, depth: int = 0) -> str:
    k = draw(st.integers(0, 11 if depth < 2 else 6))
    if k == 0:
        return f"s = {draw(int_expr())}"
    if k == 1:
        return f"s += {draw(int_expr())}"
    if k == 2:
        return draw(st.sampled_from(["break", "continue", "pass"]))
    if k == 3:
        msg = draw(st.sampled_from(["", ', "msg"', ", s"]))
        return f"assert {draw(bool_expr())}{msg}"
    if k == 4:
        return f"y = y * {draw(int_expr(2))}"
    if k == 5:
        return draw(st.sampled_from(["let (a, b) = (s, i)", "a, b = b, a", "(a, b) = [1, 2, 3]",
                                     "let a, b = x", '"doc"']))
    if k == 6:
        val = draw(st.sampled_from(["a", "b", "i", "n", "{ a }", "{ let t = 2; t * a }",
                                    "if a > b { 1 } else { 2 }",
                                    "if n > 1 { let q = 3; q } else if true { 2 } else { 1 }"]))
        return draw(st.sampled_from([f"y = y + {val}", f"s = {val}", f"let v = y * ({val})"]))
    body = "\n".join(draw(st.lists(statement(depth + 1), max_size=3)))
    if k == 7:
        return f"while {draw(bool_expr())} {{\n{body}\n}}"
    if k == 8:
        return f"for i in {draw(range_expr())} {{\n{body}\n}}"
    if k == 9:
        lst = draw(st.sampled_from(["[1, 2]", "enumerate([3, 4])", "zip([1, 2], [5])",
                                    "enumerate(zip([1], [2]))", "[1] * 3",
                                    "[v * 2 for v in 0..4 if v != 1]",
                                    "[(i, v) for (i, v) in enumerate([1, 2])]"]))
        var = draw(st.sampled_from(["i", "(i, n)", "i, n", "(a, b, i)"]))
        return f"for {var} in {lst} {{\n{body}\n}}"
    return f"if {draw(bool_expr())} {{\n{body}\n}} else {{\n{body}\n}}"


@st.composite
def program(draw) -> str:
    stmts = draw(st.lists(statement(), min_size=1, max_size=6))
    body = "\n".join(stmts)
    return (f"fn f(x: Tensor[2, 4], n: int) -> Tensor {{\n"
            f"let i = 0\nlet s = 1\nlet a = 1\nlet b = 2\nlet y = x\n{body}\nreturn y\n}}\n")


SOUP = ["{ a }", "if", "{", "else {", "&&", "||", "!", "..=", "..", "step", "while", "break", "continue", "pass", "assert",
        "0x", "0xZ", "0b2", "0o9", "(", ")", "{", "}", ",", "=", "let", "for", "in", "if",
        "else", "a", "b", "1", "\n", "<", "<", ".step_by", "enumerate", "zip", ";"]


def _check_all(src: str) -> None:
    prog, diags, _ = parse(src, "f.tri")
    for d in diags:
        assert d.code in CODES, d
    if not diags:
        out = format_source(src, "f.tri")
        assert parse(out, "f.tri")[0] == prog, out
    result = check_source(src, "f.tri")
    for d in result.diagnostics:
        assert d.code in CODES, d
    if result.ok:
        validate(generate(result))
        try:
            lower(result, "f", None)
        except LoweringError:
            pass


@fuzz(150)
@given(program())
def test_random_statement_programs(src):
    _check_all(src)


@fuzz(150)
@given(st.lists(st.sampled_from(SOUP), max_size=30))
def test_token_soup(words):
    _check_all("fn f(n: int) {\n" + " ".join(words) + "\n}\n")
