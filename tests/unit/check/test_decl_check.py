"""The checker on the seed's declarations (issue 13, `decl`): a `let a: T` without a value
is used only after an assignment (E0840 before it, whether or not one follows; the program's
other errors are still reported) and tensor types where values stand (E1031; zeros by
`Tensor<…>()`, E1032 with arguments or no shape)."""

from __future__ import annotations

import pytest

from tritium.check import check_source
from tritium.check.checker.decl_forms import ZerosForm
from tritium.frontend.diagnostics import CODES


def codes(src: str) -> list[tuple[str, int]]:
    r = check_source(src)
    assert all(d.code in CODES for d in r.diagnostics), r.diagnostics
    return [(d.code, d.span.line) for d in r.diagnostics if d.code != "W0001"]


def forms(src: str) -> list[ZerosForm]:
    r = check_source(src)
    return [f for f in r.call_forms.values() if isinstance(f, ZerosForm)]


# ------------------------------------------------------------------- declared without a value

def test_a_use_before_any_assignment_is_e0840_with_no_assignment_following() -> None:
    src = ("let a: Tensor<float32, [3, 1]>\n"
           "let b: Tensor<float32, [1, 4]>\n"
           "let c = a + b\n"
           "print(c)\n")
    r = check_source(src)
    got = [(d.code, d.span.line) for d in r.errors]
    assert got == [("E0840", 3), ("E0840", 3)], got
    assert "`a` is used before it is assigned" in r.errors[0].message
    assert "W1030" not in CODES


def test_the_other_errors_of_the_program_are_still_reported() -> None:
    # the seed's spec_shape_constraints: E0840 for each use, and the matmul's own E0502
    src = ("let a: Tensor<float32, [128, 256]>\n"
           "let b: Tensor<float32, [256, 512]>\n"
           "let c = a @ b\n"
           "let d: Tensor<float32, [128, 100]>\n"
           "let e = a @ d\n")
    got = [(d.code, d.span.line) for d in check_source(src).errors]
    assert ("E0840", 3) in got and ("E0840", 5) in got
    assert ("E0502", 5) in got
    assert ("E0502", 3) not in got   # [128, 256] @ [256, 512] is fine


def test_an_assignment_before_the_use_is_clean_and_records_no_zeros() -> None:
    src = ("let a: Tensor<float32, [3, 1]>\n"
           "a = ones([3, 1])\n"
           "let c = a + 1.0\n"
           "print(c)\n")
    r = check_source(src)
    assert r.errors == [] and forms(src) == []


def test_a_later_assignment_keeps_use_before_assignment_an_error() -> None:
    src = ("fn f(c: bool) -> int {\n"
           "    let y: int\n"
           "    let z = y + 1\n"
           "    y = 2\n"
           "    return z\n"
           "}\n")
    assert ("E0840", 3) in codes(src)
    src = ("fn g(c: bool) -> int {\n"
           "    let y: int\n"
           "    if c {\n        y = 1\n    }\n"
           "    return y\n"
           "}\n")
    assert ("E0840", 6) in codes(src)


@pytest.mark.parametrize("ty", ["int8", "float16", "trit", "str", "[int]", "int | str",
                                "Tensor<float32, [n, 3]>"])
def test_no_type_gives_a_never_assigned_let_a_value(ty: str) -> None:
    src = (f"fn f(n: int) {{\n"
           f"    let z: {ty}\n"
           f"    print(z)\n"
           f"}}\n")
    assert ("E0840", 3) in codes(src)


# ----------------------------------------------------------------------------- type values

def test_a_bare_type_is_e1031_and_the_ternary_constraint_still_reports() -> None:
    r = check_source("let w: TernaryTensor<trit, [10]> = Tensor<float32, [10]>\n")
    got = [d.code for d in r.errors]
    assert got[0] == "E1031" and len(got) == 2, got
    d = r.errors[0]
    assert "is a type, not a value" in d.message
    assert "Tensor<float32, [10]>()" in d.help and "zeros([10])" in d.help


def test_a_constructed_tensor_has_its_type() -> None:
    src = ("let z = Tensor<int32, [10, 10]>()\n"
           "let t = TernaryTensor<trit, [4]>()\n"
           "let s: Tensor<int32, [10, 10]> = z\n"
           "let u: TernaryTensor<trit, [4]> = t\n")
    assert codes(src) == []
    assert sorted(f.dims for f in forms(src)) == [(4,), (10, 10)]
    assert codes("let z = Tensor<int32, [10, 10]>()\nlet s: Tensor<int32, [10, 9]> = z\n") != []


def test_an_int_tensor_into_a_float_parameter_is_a_dtype_error() -> None:
    src = ("fn safe_quantize<S>(x: Tensor<float32, S>) -> TernaryTensor<trit, S>\n"
           "where S: Shape {\n"
           "    return ternary_quantize(x)\n"
           "}\n"
           "let error = safe_quantize(Tensor<int32, [10, 10]>())\n")
    r = check_source(src)
    assert len(r.errors) == 1, r.errors
    d = r.errors[0]
    assert d.span.line == 5 and "int32" in d.message and "float32" in d.message


def test_arguments_or_no_shape_are_e1032() -> None:
    assert ("E1032", 1) in codes("let z = Tensor<float32, [2]>(1, 2)\n")
    assert ("E1032", 1) in codes("let z = Tensor<float32>()\n")
