"""The formatter's exact output on small inputs."""

from __future__ import annotations

import pytest

from tritium.frontend import ast as A
from tritium.frontend.diagnostics import DiagnosticError
from tritium.frontend.formatter import format_number, format_program, format_source, quote_string
from tritium.frontend.parser import parse


def fmt(text: str) -> str:
    return format_source(text)


def expr_of(text: str) -> str:
    """Format `text` as the value of a `let` and return the formatted value."""
    out = fmt(f"fn f() {{\n    let v = {text}\n}}\n")
    line = out.split("\n")[1]
    assert line.startswith("    let v = ")
    return line[len("    let v = "):]


def test_design_model_canonical_layout() -> None:
    src = """// mlp.tri
model DigitsMLP {
  hidden: 128
  layer fc1: TernaryLinear { in_features: 64, out_features: hidden, quantizer: "twn" }
  layer fc2: TernaryLinear {in_features: hidden
     out_features: 10}

  forward(x: Tensor[batch, 64]) -> Tensor[batch, 10] {
      x = relu(fc1(x))   // hidden layer
      return fc2(x)
  }
  training { optimizer: "sgd"  learning_rate: 0.1  lr_schedule: { type: "multistep", milestones: [5, 8] } }
}
"""
    assert fmt(src) == """// mlp.tri
model DigitsMLP {
    hidden: 128
    layer fc1: TernaryLinear { in_features: 64, out_features: hidden, quantizer: "twn" }
    layer fc2: TernaryLinear { in_features: hidden, out_features: 10 }

    forward(x: Tensor[batch, 64]) -> Tensor[batch, 10] {
        x = relu(fc1(x))  // hidden layer
        return fc2(x)
    }
    training {
        optimizer: "sgd"
        learning_rate: 0.1
        lr_schedule: { type: "multistep", milestones: [5, 8] }
    }
}
"""


def test_blank_lines_between_items_are_exactly_one() -> None:
    src = "import \"a.tri\"\nfn f() { return 1 }\n\n\n\nfn g() {\n\n\n  return 2\n}"
    assert fmt(src) == ('import "a.tri"\n\nfn f() {\n    return 1\n}\n\n'
                        "fn g() {\n    return 2\n}\n")


def test_blank_lines_inside_bodies_are_kept_once() -> None:
    src = "fn f() {\n  let a = 1\n\n\n  let b = 2\n  let c = 3\n}\n"
    assert fmt(src) == "fn f() {\n    let a = 1\n\n    let b = 2\n    let c = 3\n}\n"


def test_long_config_goes_one_entry_per_line() -> None:
    src = ("block B { layer conv: TernaryConv2d { in_channels: c_in, out_channels: c_out, "
           "kernel_size: 3, stride: stride, padding: 1 } }")
    assert fmt(src) == """block B {
    layer conv: TernaryConv2d {
        in_channels: c_in
        out_channels: c_out
        kernel_size: 3
        stride: stride
        padding: 1
    }
}
"""


def test_comment_inside_config_forces_one_entry_per_line() -> None:
    src = "model M { layer fc: TernaryLinear { in_features: 4, /* why */ out_features: 2 } }"
    assert fmt(src) == """model M {
    layer fc: TernaryLinear {
        in_features: 4  /* why */
        out_features: 2
    }
}
"""


def test_comments_in_every_position() -> None:
    src = """# header

model M {   // after the brace
    // before a layer
    layer fc: TernaryLinear  // trailing a layer
    fn forward(x: Tensor) -> Tensor {
        /* block before */ let y = x
        if y is not None { // after if brace
            y = y * 2 // trailing
        } else {
            y = x
            // end of else
        }
        return y
    }
    // end of model
} // after model
// end of file
"""
    assert fmt(src) == """# header

model M {  // after the brace
    // before a layer
    layer fc: TernaryLinear  // trailing a layer
    forward(x: Tensor) -> Tensor {
        /* block before */
        let y = x
        if y is not None {  // after if brace
            y = y * 2  // trailing
        } else {
            y = x
            // end of else
        }
        return y
    }
    // end of model
}  // after model

// end of file
"""


def test_multiline_block_comment_is_verbatim() -> None:
    src = "fn f() {\n    /* one\n       two */\n    return 1\n}\n"
    assert fmt(src) == src


def test_if_else_if_chain_and_for() -> None:
    src = ("fn f(n: int) -> int {\n for i in 0..n { if i == 0 { return 1 } else if i > 2 "
           "{ return 2 } else { return 3 } }\n return 0\n}")
    assert fmt(src) == """fn f(n: int) -> int {
    for i in 0..n {
        if i == 0 {
            return 1
        } else if i > 2 {
            return 2
        } else {
            return 3
        }
    }
    return 0
}
"""


def test_canonical_spellings() -> None:
    src = """model M {
    forward(x: Tensor[float16, batch, 64], y: TernaryTensor<[2, 3]>) -> Tensor<float32, [?, n]> {
        x = flatten(x, start_dim=1)
        return c ? x : y
    }
}
"""
    assert fmt(src) == """model M {
    forward(x: Tensor<float16, [batch, 64]>, y: TernaryTensor[2, 3]) -> Tensor<float32, [?, n]> {
        x = flatten(x, start_dim: 1)
        return x if c else y
    }
}
"""


def test_explicit_layer_forms() -> None:
    src = ("layer Head { param w: TernaryTensor[256, 10]\n param b: Tensor[10] = zeros([10]) }\n"
           "layer Affine(w: TernaryTensor<trit, [n_in, n_out]>, b: Tensor<float32, [n_out]>,\n"
           "  x: Tensor<float32, [?, n_in]>) -> Tensor<float32, [?, n_out]> { return x @ w + b }\n")
    assert fmt(src) == """layer Head {
    param w: TernaryTensor[256, 10]
    param b: Tensor[10] = zeros([10])
}

layer Affine(
    w: TernaryTensor<trit, [n_in, n_out]>,
    b: Tensor<float32, [n_out]>,
    x: Tensor<float32, [?, n_in]>,
) -> Tensor<float32, [?, n_out]> {
    return x @ w + b
}
"""


def test_block_params_repetition_and_conditional_layer() -> None:
    src = """block Down {
    params {
        c_in: int
        stride: int = 2
    }
    layer skip: if (stride != 1 or c_in != c_out) { TernaryConv2d { in_channels: c_in } BatchNorm2d { num_features: c_out } }
    layer stage: Down[2] { c_in: 64 }
    layer act: ReLU
    layer proj: Proj(64, 10)
    repeat { c_in: c_out, stride: 1 }
}
"""
    assert fmt(src) == """block Down {
    params { c_in: int, stride: int = 2 }
    layer skip: if stride != 1 or c_in != c_out {
        TernaryConv2d { in_channels: c_in }
        BatchNorm2d { num_features: c_out }
    }
    layer stage: Down[2] { c_in: 64 }
    layer act: ReLU
    layer proj: Proj(64, 10)
    repeat { c_in: c_out, stride: 1 }
}
"""


@pytest.mark.parametrize(("src", "expected"), [
    ("(a + b) * c", "(a + b) * c"),
    ("a + (b * c)", "a + b * c"),
    ("(a - b) - c", "a - b - c"),
    ("a - (b - c)", "a - (b - c)"),
    ("a ** (b ** c)", "a ** b ** c"),
    ("(a ** b) ** c", "(a ** b) ** c"),
    ("(-x) ** 2", "(-x) ** 2"),
    ("-x ** 2", "-x ** 2"),
    ("(-2) ** x", "(-2) ** x"),
    ("2 ** -x", "2 ** -x"),
    ("- -3", "--3"),
    ("not (a == b)", "not a == b"),
    ("(not a) == b", "(not a) == b"),
    ("not a and b", "not a and b"),
    ("not (a and b)", "not (a and b)"),
    ("a * (not b)", "a * (not b)"),
    ("-(not b)", "-(not b)"),
    ("a is (not b)", "a is (not b)"),
    ("a is not b", "a is not b"),
    ("a not in b", "a not in b"),
    ("(a < b) == c", "(a < b) == c"),
    ("a < (b == c)", "a < (b == c)"),
    ("(a or b) and c", "(a or b) and c"),
    ("a or (b and c)", "a or b and c"),
    ("(a if c else b) + 1", "(a if c else b) + 1"),
    ("a if (c if d else e) else b", "a if (c if d else e) else b"),
    ("a if c else (b if d else e)", "a if c else b if d else e"),
    ("(0..n)", "0..n"),
    ("(0..n) + 1", "(0..n) + 1"),
    ("(a + b)[0].shape(1)", "(a + b)[0].shape(1)"),
    ("(-1).x", "(-1).x"),
    ("x[1:2, ::2, :, a:]", "x[1:2, ::2, :, a:]"),
    ("(1, 2)", "[1, 2]"),
    ("()", "[]"),
    ("{a: 1, 'if': 2, \"b c\": 3}", '{ a: 1, "if": 2, "b c": 3 }'),
    ("{}", "{}"),
    ("TernaryTensor[2, 2](1, 0, -1, 1)", "TernaryTensor[2, 2](1, 0, -1, 1)"),
    ("f(a, k=1, j: 2)", "f(a, k: 1, j: 2)"),
    ("True and False or None", "true and false or None"),
    ("-1t", "-1t"),
    ("1_000 + 0.5 + 1e-3 + 2.5E+4 + .5 + 1e999", "1000 + 0.5 + 0.001 + 25000.0 + 0.5 + 1e999"),
])
def test_expression_parentheses(src: str, expected: str) -> None:
    assert expr_of(src) == expected


def test_strings_are_reescaped() -> None:
    assert expr_of(r"'it\'s \"q\" \u00e9\u{1F600} tab\t nl\n nul\0 bs\\'") == \
        '"it\'s \\"q\\" é😀 tab\\t nl\\n nul\\0 bs\\\\"'
    assert quote_string("\x85\u2028") == '"\\u{85}\\u{2028}"'


def test_numbers_round_trip_and_stay_floats() -> None:
    for value in (1.0, 1e-05, 0.1, 1e16, 123456789.125, 2.5e-300):
        text = format_number(A.Num(value, True))
        assert float(text) == value and ("." in text or "e" in text)
    assert format_number(A.Num(42)) == "42"


def test_statement_ending_in_a_continuing_token_gets_a_semicolon() -> None:
    src = "layer H {\n    param w: Tensor<float32, [2]>; param b: Tensor[2]\n}\n"
    out = fmt(src)
    assert out == "layer H {\n    param w: Tensor<float32, [2]>;\n    param b: Tensor[2]\n}\n"
    assert parse(out)[0] == parse(src)[0]


def test_syntax_error_raises_diagnostic_error() -> None:
    with pytest.raises(DiagnosticError) as info:
        fmt("model M { layer fc: }")
    assert info.value.diagnostics and info.value.diagnostics[0].code.startswith("E02")


def test_format_program_matches_format_source() -> None:
    src = "model M {\n  a: 1  # one\n}\n"
    program, diagnostics, comments = parse(src)
    assert not diagnostics
    assert format_program(program, comments) == format_source(src) == \
        "model M {\n    a: 1  # one\n}\n"


def test_empty_program() -> None:
    assert fmt("") == ""
    assert fmt("// only a comment") == "// only a comment\n"


def test_crlf_and_tabs_are_normalized() -> None:
    src = "model M {\r\n\tlayer fc: TernaryLinear { in_features: 4 }  // c\r\n\t/* x */\r\n}\r\n"
    assert fmt(src) == ("model M {\n    layer fc: TernaryLinear { in_features: 4 }  // c\n"
                        "    /* x */\n}\n")


def test_several_trailing_comments_keep_one_per_line_end() -> None:
    src = "fn f() {\n    let x = g(1,  // one\n              2)  // two\n}\n"
    assert fmt(src) == "fn f() {\n    // one\n    let x = g(1, 2)  // two\n}\n"


def test_extra_trailing_comments_of_a_braced_node_stay_after_its_inner_comments() -> None:
    src = "fn f() {\n    if a { x = 1 } else if b { y = 2 } /* x */ // y\n    return 1\n}\n"
    assert fmt(src) == """fn f() {
    if a {
        x = 1
    } else {
        if b {
            y = 2
        }
        /* x */
    }  // y
    return 1
}
"""


def test_examples_are_in_canonical_layout() -> None:
    from pathlib import Path
    root = Path(__file__).resolve().parents[3] / "examples"
    for path in sorted(root.glob("*.tri")):
        text = path.read_text()
        assert fmt(text) == text, f"{path.name} is not formatted: run `tritium fmt --write`"
