"""The builtins of the model2 forms (tritium.check.builtins.model2): result types and shapes,
and the diagnostics for bad arguments."""

from __future__ import annotations

import pytest

from tritium.check import check_source


def result(expr: str, decl: str = "x: Tensor<float32, [?, 3]>, i: Tensor<int64, [5]>"):
    src = f"fn f({decl}) -> Tensor {{\n    let y = {expr}\n    return y\n}}\n"
    r = check_source(src)
    return r


@pytest.mark.parametrize("expr, want", [
    ("zeros_like(x)", "[?, 3]"),
    ("full_like(x, 2.0, dtype: \"int8\")", "int8"),
    ("argmax(x, dim: 1)", "shape [?]"),
    ("argmin(x)", "shape []"),
    ("one_hot(i, 4)", "[5, 4]"),
    ("gumbel_softmax(x, temperature: 0.5, hard: true)", "[?, 3]"),
    ("repeat(x, 2, dim: 1)", "[?, 6]"),
    ("repeat(i, [2, 3])", "[2, 15]"),
    ("concatenate([x, x], dim: 1)", "[?, 6]"),
])
def test_result_types(expr, want):
    src = (f"fn f(x: Tensor<float32, [?, 3]>, i: Tensor<int64, [5]>) -> int {{\n"
           f"    let y: Tensor<int8, [1, 1, 1, 1, 1, 1]> = {expr}\n    return 0\n}}\n")
    errs = check_source(src).errors
    # the declared type never fits: the message names the type the call has
    assert errs and want in errs[0].message, errs


@pytest.mark.parametrize("expr, code", [
    ("one_hot(i, 0)", "E0508"),
    ("one_hot(x, 3)", "E0404"),
    ("gumbel_softmax(x, temperature: 0.0)", "E0820"),
    ("gumbel_softmax(x, dim: 2)", "E0508"),
    ("repeat(x, 0)", "E0508"),
    ("repeat(x, [2])", "E0508"),
    ("repeat(x, \"b n -> b n n\")", "E0309"),
    ("argmax(x, dim: 5)", "E0508"),
    ("zeros_like(x, dtype: \"float7\")", "E0309"),
    ("zeros_like(\"s\")", "E0404"),
    ("argmax(x, foo: 1)", "E0307"),
])
def test_bad_arguments_are_diagnostics(expr, code):
    codes = [d.code for d in result(expr).errors]
    assert code in codes, codes


def test_exact_types_check():
    src = """fn f(x: Tensor<float32, [?, 3]>, i: Tensor<int64, [5]>) -> int {
    let a: Tensor<int64, [?]> = argmax(x, dim: 1)
    let b: Tensor<float32, [5, 4]> = one_hot(i, 4)
    let c: Tensor<float32, [?, 3]> = zeros_like(x) + full_like(x, 1.5)
    let d: Tensor<int64, [5]> = ones_like(i)
    let e: Tensor<float32, [?, 3]> = gumbel_softmax(x)
    return 0
}
"""
    assert not check_source(src).errors
