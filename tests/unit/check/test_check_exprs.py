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
