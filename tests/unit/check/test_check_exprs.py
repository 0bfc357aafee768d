"""Checking the statement and expression forms of the earlier DSL (issue 13, form 13)."""

from __future__ import annotations

import pytest

from tritium.check import check_source


def _fn(body: str, sig: str = "(x: Tensor[2, 4]) -> Tensor") -> list[str]:
    text = f"fn f{sig} {{\n" + "".join(f"    {ln}\n" for ln in body.strip().splitlines()) + "}\n"
    return [d.code for d in check_source(text, "t.tri").errors]


def test_operators_and_radix_literals_check():
    assert _fn("let m = 0xFF\nlet ok = !(m == 1) && m > 0 || false\n"
               "if ok { return x * m }\nreturn x") == []


def test_chained_comparison_is_known_at_compile_time():
    # 0 < 1 < 0 is false: the loop never runs and the bad matmul is never checked
    assert _fn("if 0 < 1 < 0 { return x @ x }\nreturn x") == []
    assert _fn("if 0 < 1 < 2 { return x @ x }\nreturn x") == ["E0502"]


@pytest.mark.parametrize("loop,count", [
    ("0..=3", 4), ("0..10 step 3", 4), ("(10..=0).step_by(-5)", 3), ("range(1, 8, 2)", 4),
    ("range(4)", 4), ("range(5, 1)", 0), ("2..=1", 0), ("(0..=7).step_by(2)", 4),
])
def test_range_trip_counts(loop, count):
    # the inner dimension of the matmul must be 4: the checker knows the trip count
    body = f"let n = 0\nfor i in {loop} {{ n += 1 }}\nreturn x @ zeros([n, 3])"
    assert _fn(body) == ([] if count == 4 else ["E0502"])


@pytest.mark.parametrize("loop,last", [
    ("3..=4", 4), ("5..=6", 6), ("1..9 step 3", 7), ("range(4, 5)", 4), ("(8..=0).step_by(-4)", 0),
])
def test_loop_variable_takes_the_range_values(loop, last):
    body = f"let s = 0\nfor i in {loop} {{ s = i }}\nreturn x @ zeros([s, 3])"
    assert _fn(body) == ([] if last == 4 else ["E0502"])


def test_zero_step_is_reported():
    assert _fn("for i in 0..4 step 0 { }\nreturn x") == ["E0860"]
    assert _fn("for i in (0..4).step_by(0) { }\nreturn x") == ["E0860"]
    assert _fn("for i in range(0, 4, 0) { }\nreturn x") == ["E0860"]


def test_non_int_step_is_reported():
    assert _fn('for i in 0..4 step "a" { }\nreturn x') == ["E0404"]
    assert _fn("for i in 0..4 step 0.5 { }\nreturn x") == ["E0404"]


def test_too_large_literals_are_diagnostics():
    assert _fn("let a = 0x10000000000000000\nreturn x * a") == ["E0106"]
    assert _fn("let a = 0x7FFFFFFFFFFFFFFF + 1\nreturn x * a") == ["E0312"]


def test_infinite_while_stops_with_a_diagnostic():
    assert _fn("while true { }\nreturn x") == ["E0861"]
    assert _fn("let i = 0\nwhile i < 10 { i = i * 1 }\nreturn x") == ["E0861"]
    assert _fn("let i = 0\nwhile i < 10 {\n    while true { }\n    i += 1\n}\nreturn x") == []


def test_while_with_a_known_condition_runs_exactly():
    # 3 iterations: s is 4 after the loop, the matmul needs 4
    body = "let s = 1\nlet i = 0\nwhile i < 3 { s += 1\n i += 1 }\nreturn x @ zeros([s, 2])"
    assert _fn(body) == []
    assert _fn(body.replace("i < 3", "i < 4")) == ["E0502"]


def test_break_and_continue_at_compile_time():
    body = "let s = 0\nfor i in 0..10 {\n    if i == 4 { break }\n    s += 1\n}\nreturn x @ zeros([s, 2])"
    assert _fn(body) == []
    body = ("let s = 0\nfor i in 0..8 {\n    if i % 2 == 0 { continue }\n    s += 1\n}\n"
            "return x @ zeros([s, 2])")
    assert _fn(body) == []
    body = "let s = 0\nwhile true {\n    s += 1\n    if s == 4 { break }\n}\nreturn x @ zeros([s, 2])"
    assert _fn(body) == []


def test_while_with_a_runtime_condition_forgets_what_it_changes():
    # n is the batch, unknown: after the loop s is an int of unknown value, not 1
    sig = "(x: Tensor[n, 4]) -> Tensor"
    body = "let s = 1\nlet i = 0\nwhile i < n { s += 1\n i += 1 }\nreturn zeros([s, 2])"
    assert _fn(body, sig) == []
    body = ("let s = 0\nwhile true {\n    if s > n { break }\n    s += 1\n}\n"
            "return x @ zeros([4, s])")
    assert _fn(body, sig) == []


def test_break_outside_a_loop():
    assert _fn("break\nreturn x") == ["E0862"]
    assert _fn("if true { continue }\nreturn x") == ["E0862"]


def test_assertions():
    assert _fn('assert 1 + 1 == 2, "math"\nreturn x') == []
    assert _fn('assert 1 + 1 == 3, "math"\nreturn x') == ["E0863"]
    assert _fn("assert(1 > 2)\nreturn x") == ["E0863"]
    assert _fn('assert x, "a tensor"\nreturn x') == ["E0406"]
    assert _fn("assert n > 0\nreturn x",
               "(x: Tensor[n, 4]) -> Tensor") == []


def test_docstrings_and_pass_in_bodies():
    assert _fn('"the docstring"\npass\nreturn x') == []
    text = 'model M {\n    "a model docstring"\n    forward(x: Tensor[b, 4]) -> Tensor {\n' \
           '        "a method docstring"\n        return x\n    }\n}\n'
    assert [d.code for d in check_source(text, "m.tri").errors] == []


def test_destructuring():
    assert _fn("let (a, b) = (x, 2)\nreturn a @ zeros([4, b])") == []
    assert _fn("let a, b = [1, 2, 3]\nreturn x") == ["E0864"]
    assert _fn("let (a, b) = x\nreturn x") == ["E0864"]
    assert _fn("let a = 1\nlet b = 4\na, b = b, a\nreturn x @ zeros([a, 2])") == []
    assert _fn("let a = 1\nlet b = 4\na, b = b, a\nreturn x @ zeros([b, 2])") == ["E0502"]


def test_for_over_lists_enumerate_and_zip():
    # the items are exact: the last one decides the shape
    assert _fn("let n = 0\nfor v in [1, 2, 4] { n = v }\nreturn x @ zeros([n, 2])") == []
    assert _fn("let n = 0\nfor (i, v) in enumerate([7, 4]) { n = i + v }\n"
               "return x @ zeros([n, 2])") == ["E0502"]
    assert _fn("let n = 0\nfor (i, v) in enumerate([7, 3]) { n = i + v }\n"
               "return x @ zeros([n, 2])") == []
    assert _fn("let n = 0\nfor a, b in zip([1, 2], [2, 2, 9]) { n = a * b }\n"
               "return x @ zeros([n, 2])") == []
    assert _fn("for (a, b, c) in zip([1], [2]) { }\nreturn x") == ["E0864"]
    # a list of tensors: each item is a tensor
    assert _fn("let ys = [x, x * 2.0]\nlet t = x\nfor y in ys { t = t + y }\nreturn t") == []


def test_if_and_block_values():
    assert _fn("let n = if 1 < 2 { 4 } else { 3 }\nreturn x @ zeros([n, 2])") == []
    assert _fn("let n = if 1 > 2 { 4 } else { 3 }\nreturn x @ zeros([n, 2])") == ["E0502"]
    assert _fn("let n = { let a = 2; a * 2 }\nreturn x @ zeros([n, 2])") == []
    # a tail expression is the function's value, also in both branches of a final if
    assert _fn("x * 2.0") == []
    assert _fn("if 1 < 2 { x } else { x * 2.0 }") == []
    assert _fn("let y = x", "(x: Tensor[2, 4]) -> Tensor") == ["E0407"]
    # an `if` value with a run-time condition: both blocks are checked
    assert _fn("let y = if n > 2 { x } else { x @ x }\nreturn y",
               "(x: Tensor[2, 4], n: int) -> Tensor") == ["E0502"]


def test_block_values_with_statements_only_as_a_whole_value():
    assert _fn("return x * { let a = 2.0; a }") == ["E0865"]
    assert _fn("return x * { 2.0 }") == []
    assert _fn("let y = x * if true { 1.0 } else { 2.0 }\nreturn y") == []
    assert _fn("for i in 0..2 {\n    let y = { break; x }\n}\nreturn x") == ["E0865"]
    assert _fn("let y = { let a = 1 }\nreturn x") == ["E0202"]
    assert _fn("let y = if true { x }\nreturn y") == ["E0202"]


def test_list_repetition():
    assert _fn("let n = 0\nfor v in [1] * 4 { n += v }\nreturn x @ zeros([n, 2])") == []
    assert _fn("let n = 0\nfor v in 3 * [1, 0] { n += 1 }\nreturn x @ zeros([n, 2])") == ["E0502"]
    assert _fn('let l = [0] * 100000\nreturn x') == ["E0312"]
    assert _fn('let l = [0] * 2.5\nreturn x') == ["E0405"]
    assert _fn("let ys = [x] * 3\nlet t = x\nfor y in ys { t = t + y }\nreturn t") == []


def test_list_comprehensions():
    assert _fn("let l = [v * 2 for v in 0..4 if v != 1]\nreturn x @ zeros([len(l) + 1, 2])") == []
    assert _fn("let l = [v for v in [1, 2, 3] if v > 1]\nreturn x @ zeros([l[0] * l[1] - 2, 2])") \
        == []
    assert _fn("let l = [i * v for (i, v) in enumerate([5, 4])]\nreturn x @ zeros([l[1], 2])") \
        == []
    assert _fn("let ys = [x * s for s in [1.0, 2.0]]\nreturn ys[0] + ys[1]") == []
    assert _fn("let l = [v for v in 2.5]\nreturn x") == ["E0404"]
    assert _fn("let l = [v for v in [1] if v]\nreturn x") == []
    assert _fn("let l = [v for v in [1] if x]\nreturn x") == ["E0406"]
