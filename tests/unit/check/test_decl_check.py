"""The checker on the seed's declarations (issue 13, `decl`): typed placeholders (`let a: T`
never assigned: typed by T, W1030, zeros) and tensor types where values stand (E1031; zeros
by `Tensor<…>()`, E1032 with arguments or no shape)."""

from __future__ import annotations

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


# ----------------------------------------------------------------------------- placeholders

def test_placeholders_are_typed_by_their_annotation() -> None:
    src = ("let a: Tensor<float32, [3, 1]>\n"
           "let b: Tensor<float32, [1, 4]>\n"
           "let c = a + b\n"
           "let d: Tensor<float32, [3, 5]> = c\n")
    # c is [3, 4]: assigning it to [3, 5] shows the shape flowed from the annotations
    assert codes(src) == [("W1030", 1), ("W1030", 2), ("E0401", 4)]
    assert codes(src.replace("[3, 5]", "[3, 4]")) == [("W1030", 1), ("W1030", 2)]


def test_the_shape_error_of_a_placeholder_is_the_real_one() -> None:
    src = ("let a: Tensor<float32, [128, 256]>\n"
           "let b: Tensor<float32, [256, 512]>\n"
           "let c = a @ b\n"
           "let d: Tensor<float32, [128, 100]>\n"
           "let e = a @ d\n")
    r = check_source(src)
    assert [(d.code, d.span.line) for d in r.errors] == [("E0502", 5)]
    assert "E0840" not in [d.code for d in r.diagnostics]


def test_the_warning_says_what_run_binds() -> None:
    r = check_source("let x: Tensor<float32, [?, 128]>\nlet w: TernaryTensor<trit, [128, 4]>\n"
                     "let y = x @ w\n")
    assert r.ok
    w = [d for d in r.diagnostics if d.code == "W1030"]
    assert len(w) == 2 and "zeros of shape [1, 128] (float32)" in w[0].message
    assert "[128, 4] (trit)" in w[1].message and "tritium run" in (w[0].help or "")


def test_scalar_and_list_placeholders_are_zero() -> None:
    src = "let i: int8\nlet f: float16\nlet t: trit\nlet s: str\nlet xs: [int]\nprint(i, f, t, s, xs)\n"
    got = sorted((f.kind, f.dtype) for f in forms(src))
    assert got == [("list", "list"), ("scalar", "float16"), ("scalar", "int8"),
                   ("scalar", "str"), ("scalar", "trit")]


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
    assert "W1030" not in [c for c, _ in codes(src)]


def test_a_placeholder_inside_a_function_takes_dims_from_its_parameters() -> None:
    src = ("fn f(n: int) -> Tensor {\n"
           "    let z: Tensor<float32, [n, 3]>\n"
           "    return z + 1.0\n"
           "}\n")
    assert codes(src) == [("W1030", 2)]
    (form,) = forms(src)
    assert form.dims == ("n", 3)


def test_a_placeholder_without_zeros_keeps_e0840() -> None:
    src = "let u: int | str\nlet y = u\nprint(y)\n"
    assert ("E0840", 2) in codes(src)


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
