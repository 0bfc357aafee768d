"""Form 15 of issue 13: forms with no meaning for a tensor compiler are rejected once each
(E0900) and skipped, `//` that reads like floor division warns (W0900/W0901), and a
function whose body had a syntax error gets no further diagnostics (no cascades)."""

from __future__ import annotations

import pytest

from tritium.check import check_source
from tritium.frontend.parser import parse

MODEL = """
model M {
    layer fc: TernaryLinear { in_features: 4, out_features: 2 }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
        return fc(x)
    }
}
"""


def codes(src: str) -> list[str]:
    return [d.code for d in check_source(src).diagnostics]


@pytest.mark.parametrize("form, word", [
    ("struct Point {\n    x: float\n    y: float\n}\n", "struct"),
    ("trait Shape {\n    fn area(self) -> float\n}\n", "trait"),
    ("impl Shape for Point {\n    fn area(self) -> float { return 1.0 }\n}\n", "impl"),
    ("impl<T> Wrapper<T> {\n    fn get(self) -> T { return self.x }\n}\n", "impl"),
    ("enum Mode { Int8, Fp16 }\n", "enum"),
    ("class Net {\n  def f(self) { return 1 }\n}\n", "class"),
    ("global counter = 0\n", "global"),
])
def test_foreign_declaration_one_diagnostic_and_the_rest_is_checked(form, word):
    _, diags, _ = parse(form + MODEL)
    assert [d.code for d in diags] == ["E0900"]
    assert f"`{word}`" in diags[0].message and diags[0].help
    # checking continues: an error in the model after the foreign form is still found
    bad = MODEL.replace("return fc(x)", "return fc(y)")
    got = codes(form + bad)
    assert got.count("E0900") == 1 and "E0304" in got


def test_foreign_words_as_names_still_work():
    src = MODEL.replace("return fc(x)", "let impl = fc(x)\n        let global = impl\n"
                        "        return global")
    assert codes(src) == []


def test_foreign_form_inside_a_body():
    src = MODEL.replace("    layer fc", "    struct Cfg { a: int }\n    layer fc")
    assert codes(src) == ["E0900"]


def test_extends_is_reported_and_the_body_is_read():
    src = MODEL.replace("model M {", "model M extends nn.Module {")
    _, diags, _ = parse(src)
    assert [d.code for d in diags] == ["E0900"]
    assert "layer base: nn.Module" in diags[0].help
    assert codes(src.replace("return fc(x)", "return fc(q)")) == ["E0900", "E0304"]


@pytest.mark.parametrize("sig", [
    "fn f(x: Tensor<float32, [?, 4]>) throws IO -> Tensor<float32, [?, 4]> {",
    "fn f(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> throws IO, ValueError {",
])
def test_effect_annotation_is_reported_once_and_the_function_checked(sig):
    src = f"{sig}\n    return x\n}}\n"
    assert codes(src) == ["E0900"]
    assert codes(src.replace("return x", "return zz")) == ["E0900", "E0304"]


def test_spread_is_one_diagnostic():
    src = "fn g(a: int, b: int) -> int { return a }\nfn h(xs: int) -> int { return g(...xs) }\n"
    d = check_source(src).diagnostics
    assert [x.code for x in d] == ["E0900"] and "spread" in d[0].message


def test_syntax_error_in_a_function_body_does_not_cascade():
    src = ("fn helper(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> {\n"
           "    let y = x +\n    return undefined_name\n}\n"
           + MODEL.replace("return fc(x)", "return fc(helper(x))"))
    # one syntax error; no "undefined function helper", no "never returns", no unused `fc`
    assert codes(src) == ["E0201"]


def test_syntax_error_in_forward_does_not_cascade():
    src = MODEL.replace("return fc(x)", "let h = (x +\n        return fc(h)")
    got = codes(src)
    assert got and all(c.startswith("E02") for c in got)


def test_floordiv_comment_warns():
    src = MODEL.replace("    layer fc", "    in_channels: 8\n    groups: 2\n    layer fc").replace(
        "return fc(x)", "let g = in_channels // groups\n        return fc(x)")
    d = [x for x in check_source(src).diagnostics if x.code == "W0900"]
    assert len(d) == 1 and "floordiv(in_channels, groups)" in d[0].help
    assert d[0].span.line == 7


@pytest.mark.parametrize("line", [
    "return fc(x)  // the classifier",
    "return fc(x) // output",            # `output` is not a name of the program
    "return fc(x) // TODO: use the other head",
])
def test_ordinary_trailing_comments_do_not_warn(line):
    assert codes(MODEL.replace("return fc(x)", line)) == []


def test_comment_hiding_a_closer_is_reported_at_the_bracket():
    src = "fn f(a: int) -> int {\n    let k = floordiv(a // 2, 1)\n    return k\n}\n"
    d = check_source(src).diagnostics
    w = [x for x in d if x.code == "W0901"]
    assert len(w) == 1 and (w[0].span.line, w[0].span.col) == (2, 21)
    assert any(x.code == "W0900" for x in d) and any(x.is_error for x in d)


@pytest.mark.parametrize("left, expr", [
    ("(H + 2*p - k)", "H + 2*p - k"), ("x.shape[0]", "x.shape[0]"), ("f(a, 3)", "f(a, 3)")])
def test_floordiv_help_names_a_bracketed_left_operand(left, expr):
    # the seed's type_system: `(H + 2*padding - kernel_size)//stride + 1`
    src = (f"fn f(H: int, p: int, k: int, a: int, x: Tensor[4, 2]) -> int {{\n"
           f"    let s = {left} // a\n    return s\n}}\n")
    d = [x for x in check_source(src).diagnostics if x.code == "W0900"]
    assert len(d) == 1 and f"`floordiv({expr}, a)`" in d[0].help


def test_comment_hiding_the_closer_of_a_bracket_opened_lines_before():
    # `[B, (H - k)//s + 1,` / `(W - k)//s + 1, C]> {`: the `]` is hidden on the second line
    src = ("fn g(H: int, W: int, k: int, s: int, B: int, C: int,\n"
           "      x: Tensor[B, C]) -> Tensor<float32, [B, (H - k)//s + 1,\n"
           "                       (W - k)//s + 1, C]> {\n    return x\n}\n")
    d = check_source(src).diagnostics
    w = [x for x in d if x.code == "W0901"]
    assert len(w) == 1 and (w[0].span.line, w[0].span.col) == (2, 43)
    assert "line 3" in w[0].message and any(x.is_error for x in d)


def test_a_quantified_type_is_one_e0900_and_its_alias_not_reported_again():
    # the seed's type_system: `type SomeLayer = exists Shape. Layer<…>`
    src = ("type SomeLayer = exists Shape. Layer<Tensor<float32, Shape>>\n"
           "fn f(x: SomeLayer) -> SomeLayer {\n    return x\n}\n")
    d = check_source(src).diagnostics
    assert [x.code for x in d] == ["E0900"] and "quantified types" in d[0].message
    assert (d[0].span.line, d[0].span.col) == (1, 18)


def test_a_higher_kinded_type_parameter_is_one_e0900():
    d = check_source("type Container<F<_>> = Tensor\nlet x = 1\n").diagnostics
    assert [x.code for x in d] == ["E0900"] and "higher-kinded" in d[0].message
    assert "`<F>`" in d[0].help
