"""Parsing of the statement and expression forms of the earlier DSL (issue 13, form 13)."""

from __future__ import annotations

import pytest

from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.lexer import T, tokenize
from tritium.frontend.parser import parse


def _expr(text: str) -> A.Expr:
    prog, diags, _ = parse(f"fn f() {{\n    let v = {text}\n}}\n")
    assert not diags, [d.message for d in diags]
    return prog.items[0].body[0].value


def _same(a: str, b: str) -> None:
    assert _expr(a) == _expr(b)


@pytest.mark.parametrize("text,value", [
    ("0xFF", 255), ("0XfF", 255), ("0b1010", 10), ("0B1", 1), ("0o17", 15), ("0O7", 7),
    ("0xFF_FF", 0xFFFF), ("0x_FF", 255), ("0b1_0", 2), ("0x7FFFFFFFFFFFFFFF", 2**63 - 1),
    ("0x0000000000000000000000000000000001", 1),
])
def test_radix_literals(text, value):
    toks = tokenize(text).tokens
    assert toks[0].kind is T.INT and toks[0].value == value


@pytest.mark.parametrize("text,code", [
    ("0x", "E0105"), ("0xG", "E0105"), ("0b2", "E0105"), ("0o8", "E0105"), ("0xFF_", "E0105"),
    ("0x__F", "E0105"), ("0x8000000000000000", "E0106"), ("0b" + "1" * 64, "E0106"),
    ("0x" + "F" * 5000, "E0106"), ("9" * 5000, "E0106"),
])
def test_bad_radix_literals_are_diagnostics(text, code):
    assert [d.code for d in tokenize(text).diagnostics] == [code]


def test_c_logical_operators_are_the_keyword_nodes():
    _same("a && b || !c", "a and b or not c")
    _same("!a == b", "(not a) == b")
    _same("!!a", "not not a")
    _same("x && !(y || z)", "x and not (y or z)")


def test_logical_operators_continue_a_line():
    prog, diags, _ = parse("fn f(a: bool, b: bool) -> bool {\n    return a &&\n        b\n}\n")
    assert not diags
    assert prog.items[0].body[0].value == A.Binary("and", A.Name("a"), A.Name("b"))


def test_chained_comparisons_mean_each_pair():
    _same("a < b < c", "a < b and b < c")
    _same("0 <= i < n <= m", "0 <= i and i < n and n <= m")
    _same("a == b != c", "a == b and b != c")
    _same("not a < b < c", "not (a < b and b < c)")
    _same("a < b < c or d", "(a < b and b < c) or d")


def test_ranges_inclusive_and_stepped():
    r = _expr("0..=n")
    assert isinstance(r, A.Range) and r.inclusive and r.step is None
    r = _expr("1..n step 2")
    assert isinstance(r, A.Range) and not r.inclusive and r.step == A.Num(2)
    _same("(0..n).step_by(2)", "0..n step 2")
    _same("(0..=n).step_by(k + 1)", "0..=n step k + 1")
    # `step` is an ordinary name elsewhere
    assert _expr("step") == A.Name("step")
    assert _expr("(a..b).other(2)") == A.Call(A.Attr(A.Range(A.Name("a"), A.Name("b")), "other"),
                                             [A.Arg(A.Num(2))])


@pytest.mark.parametrize("src", [
    "fn f(a: bool, b: int) -> bool {\n    return !a && 0 < b <= 0x10 || a\n}\n",
    "fn f(n: int) {\n    for i in 0..=n step 2 {\n        print(i)\n    }\n}\n",
    "fn f(n: int) {\n    for i in (n..=0).step_by(-1) {\n        print(i)\n    }\n}\n",
    "fn f(a: int, b: bool) -> bool {\n    return a == (!b) and !(a < 2 < 3)\n}\n",
])
def test_formatter_round_trips(src):
    prog, diags, _ = parse(src)
    assert not diags
    out = format_source(src)
    again, diags2, _ = parse(out)
    assert not diags2 and again == prog
    assert format_source(out) == out


def _body(text: str) -> list:
    prog, diags, _ = parse("fn f() {\n" + text + "\n}\n")
    assert not diags, [d.message for d in diags]
    return prog.items[0].body


def test_loop_statements():
    w = _body("while i < 3 { i += 1\n break\n continue\n pass }")[0]
    assert isinstance(w, A.While) and w.cond == _expr("i < 3")
    assert [type(s) for s in w.body] == [A.Assign, A.Break, A.Continue, A.Pass]
    assert _body("while (i < 3) { }")[0] == A.While(_expr("i < 3"), [])


def test_assert_forms():
    assert _body('assert a > 0, "msg"')[0] == A.Assert(_expr("a > 0"), A.Str("msg"))
    assert _body('assert(a > 0, "msg")')[0] == A.Assert(_expr("a > 0"), A.Str("msg"))
    assert _body("assert(a > 0)")[0] == A.Assert(_expr("a > 0"), None)
    assert _body("assert a")[0] == A.Assert(A.Name("a"), None)


@pytest.mark.parametrize("text", [
    "pass = 1", "while = 2", "break.x = 3", "continue[0] = 1", "f(pass, break)", "assert",
    "while", "pass += 1",
])
def test_statement_words_are_names_elsewhere(text):
    s = _body(text)[0]
    assert isinstance(s, A.Assign | A.ExprStmt)


@pytest.mark.parametrize("src", [
    'fn f(n: int) {\n    "doc"\n    let i = 0\n    while i < n {\n        i += 1\n'
    '        if i == 2 {\n            continue\n        }\n        break\n    }\n'
    '    assert i > 0, "positive"\n    assert true\n    pass\n}\n',
    "fn f() {\n    (pass)\n    (while) + 1\n    (assert)\n}\n",
])
def test_statement_formatter_round_trips(src):
    prog, diags, _ = parse(src)
    assert not diags
    out = format_source(src)
    assert parse(out)[0] == prog
    assert format_source(out) == out


def test_destructuring_forms():
    pair = A.ListLit([A.Name("x"), A.Name("y")])
    assert _body("let (a, b) = (x, y)")[0] == A.Unpack(["a", "b"], pair, True)
    assert _body("let a, b = x, y")[0] == A.Unpack(["a", "b"], pair, True)
    assert _body("a, b = x, y")[0] == A.Unpack(["a", "b"], pair, False)
    assert _body("(a, b) = [x, y]")[0] == A.Unpack(["a", "b"], pair, False)
    f = _body("for (i, v) in enumerate(xs) { }")[0]
    assert f.vars == ["i", "v"] and f.var == "i"
    assert _body("for i, v in zip(a, b) { }")[0].vars == ["i", "v"]
    assert _body("return a, b")[0] == A.Return(A.ListLit([A.Name("a"), A.Name("b")]))
    # not destructuring
    assert isinstance(_body("f(a, b)")[0], A.ExprStmt)
    assert isinstance(_body("(a) = 1")[0], A.Assign)


def test_destructuring_errors():
    _, diags, _ = parse("fn f() {\n    let (a, a) = (1, 2)\n}\n")
    assert [d.code for d in diags] == ["E0205"]
    _, diags, _ = parse("fn f() {\n    let (a, 1) = (1, 2)\n}\n")
    assert diags


def test_destructuring_formatter_round_trips():
    src = ("fn f(x: Tensor) {\n    let (a, b) = (x, x)\n    a, b = b, a\n"
           "    for (i, v) in enumerate([a, b]) {\n        print(i)\n    }\n    return a, b\n}\n")
    prog = parse(src)[0]
    out = format_source(src)
    assert parse(out)[0] == prog and format_source(out) == out


def test_if_and_block_values_parse():
    e = _expr("if c { a } else { b }")
    assert e == A.IfExpr(A.Name("c"), A.BlockExpr([], A.Name("a")), A.BlockExpr([], A.Name("b")))
    e = _expr("if c { a } else if d { b } else { let t = 1; t }")
    assert isinstance(e.other, A.IfExpr) and e.other.other.body == [A.Let("t", None, A.Num(1))]
    assert _expr("{ x }") == A.BlockExpr([], A.Name("x"))
    assert isinstance(_expr("{ a: 1 }"), A.DictLit)
    assert isinstance(_expr("{}"), A.DictLit)
    assert isinstance(_expr("{ \"k\": 1 }"), A.DictLit)


def test_tail_expression_is_the_return_value():
    prog, diags, _ = parse("fn f(x: int) -> int {\n    x * 2\n}\n")
    assert not diags and prog.items[0].body == [A.Return(_expr("x * 2"))]
    prog, _, _ = parse("fn f(x: int) -> int {\n    if x > 0 { x } else { 0 }\n}\n")
    branch = prog.items[0].body[0]
    assert branch.then == [A.Return(A.Name("x"))] and branch.other == [A.Return(A.Num(0))]
    # no declared type, or a print: no value
    prog, _, _ = parse("fn f(x: int) {\n    x * 2\n}\n")
    assert isinstance(prog.items[0].body[0], A.ExprStmt)
    prog, _, _ = parse("fn f(x: int) -> int {\n    print(x)\n}\n")
    assert isinstance(prog.items[0].body[0], A.ExprStmt)


@pytest.mark.parametrize("src", [
    "fn f(c: bool) -> int {\n    let k = if c { 1 } else if !c { 2 } else { 3 }\n"
    "    let y = if c {\n        let t = k * 2\n        for i in 0..2 {\n            t += i\n"
    "        }\n        t\n    } else {\n        k\n    }\n    return y + { let z = 1; z } * 2\n}\n",
])
def test_block_value_formatter_round_trips(src):
    prog, diags, _ = parse(src)
    assert not diags
    out = format_source(src)
    assert parse(out)[0] == prog, out
    assert format_source(out) == out


def test_function_is_fn():
    a, diags, _ = parse("function double(x: int) -> int {\n    return x * 2\n}\n")
    b, _, _ = parse("fn double(x: int) -> int {\n    return x * 2\n}\n")
    assert not diags and a == b
    m, diags, _ = parse("model M {\n    function f(x: int) -> int { x }\n}\n")
    assert not diags and isinstance(m.items[0].body[0], A.FnDef)
    # elsewhere `function` is a name
    assert _body("let function = 1\nfunction += 1")[1] == A.Assign(A.Name("function"), "+=",
                                                                   A.Num(1))


def test_list_comprehension_parse_and_format():
    e = _expr("[f(x) for x in xs if x > 0]")
    assert e == A.ListComp(_expr("f(x)"), "x", A.Name("xs"), _expr("x > 0"))
    e = _expr("[i * v for (i, v) in enumerate(xs)]")
    assert e.vars == ["i", "v"] and e.cond is None
    assert _expr("[x for x in 0..=3]").iter == A.Range(A.Num(0), A.Num(3), inclusive=True)
    src = ("fn f(xs: int) {\n    let a = [x * 2 for x in 0..4 if x != 1]\n"
           "    let c = [(a if a > 1 else 0) for (a, b) in zip([1], [2]) if a > 0 or b > 0]\n}\n")
    out = format_source(src)
    assert parse(out)[0] == parse(src)[0] and format_source(out) == out
