"""Checking the model2 forms of issue 13: `adaptive_ternary`, a symbolic int hyperparameter
passed on to an explicit layer, a tensor passed as a block parameter."""

from __future__ import annotations

from tritium.check import check_source

ADAPTIVE = """
model M {
    quantization { method: "adaptive_ternary" }
    layer fc: TernaryLinear { in_features: 8, out_features: 4 }
    layer own: TernaryLinear { in_features: 4, out_features: 4, quantizer: "twn" }
    forward(x: Tensor<float32, [?, 8]>) -> Tensor<float32, [?, 4]> { return own(fc(x)) }
}
"""


def test_adaptive_ternary_is_twn_per_output_channel():
    r = check_source(ADAPTIVE)
    assert not r.errors, r.errors
    from tritium.check.checker import Checker
    ck = Checker(r.definitions, [])
    q = ck.quant_section_defaults(r.definitions["M"].node)
    assert q["quantizer"] == "adaptive_ternary" and q["per_channel"] is True


def test_adaptive_ternary_as_a_layer_key_and_an_explicit_per_channel():
    src = ADAPTIVE.replace('quantizer: "twn"', 'quantizer: "adaptive_ternary"')
    assert not check_source(src).errors
    src = ADAPTIVE.replace('method: "adaptive_ternary"',
                           'method: "adaptive_ternary", per_channel: false')
    from tritium.check.checker import Checker
    r = check_source(src)
    assert Checker(r.definitions, []).quant_section_defaults(
        r.definitions["M"].node)["per_channel"] is False
    bad = ADAPTIVE.replace("adaptive_ternary", "adaptive_ternery")
    assert [d.code for d in check_source(bad).errors] == ["E0309"]


SYMBOLIC = """
layer Conv {
    params { c_in: int, c_out: int, stride: int = 1, padding: int = 0 }
    param weight: Tensor { shape: [c_out, c_in, 3, 3], init: "kaiming_normal" }
    forward(x: Tensor) -> Tensor { return conv2d(x, weight, None, stride, padding) }
}
block B {
    params { c: int, stride: int }
    layer conv: Conv { c_in: c, c_out: c, stride: stride, padding: 1 }
    forward(x: Tensor) -> Tensor { return conv(x) }
}
model M {
    layer b: B { c: 4, stride: 2 }
    forward(x: Tensor[n, 4, 8, 8]) -> Tensor[n, 4, 4, 4] { return b(x) }
}
"""


def test_a_symbolic_int_passed_on_stays_an_int():
    # checking B with `stride` unknown passed `stride` to Conv as a string (E0503, "got str")
    r = check_source(SYMBOLIC)
    assert not r.errors, r.errors
    assert [d.code for d in check_source(SYMBOLIC.replace("[n, 4, 4, 4]",
                                                          "[n, 4, 8, 8]")).errors] == ["E0504"]


SHARED = """
layer Scale {
    params { n: int, alpha: Tensor }
    forward(x: Tensor) -> Tensor { return x * alpha }
}
block B {
    params { n: int }
    param alpha: Tensor[1] { init: "ones" }
    layer s1: Scale { n: n, alpha: alpha }
    layer s2: Scale { n: n, alpha: alpha }
    forward(x: Tensor) -> Tensor { return s2(s1(x)) }
}
model M {
    layer b: B { n: 4 }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> { return b(x) }
}
"""


def test_a_tensor_passed_as_a_block_parameter_checks():
    assert not check_source(SHARED).errors
    # the tensor must be declared before the layer that takes it
    moved = SHARED.replace('    param alpha: Tensor[1] { init: "ones" }\n', "").replace(
        "    forward(x: Tensor) -> Tensor { return s2", '    param alpha: Tensor[1] { init: "ones" }\n'
        "    forward(x: Tensor) -> Tensor { return s2")
    assert "E0304" in [d.code for d in check_source(moved).errors]


SHAPED = """
layer L {
    params { n: int = 4, per_channel: bool = false }
    param s: Tensor { shape: SHAPE, init: "ones" }
    forward(x: Tensor) -> Tensor { return x * s }
}
model M {
    layer l: L { n: 4, per_channel: PC }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> { return l(x) }
}
"""


def shaped(shape: str, pc: str = "true") -> list[str]:
    return [d.code for d in check_source(SHAPED.replace("SHAPE", shape)
                                         .replace("PC", pc)).errors]


def test_a_conditional_shape_in_the_spec():
    assert shaped("[n] if per_channel else [1]") == []
    assert shaped("[n] if per_channel else [1]", "false") == []
    assert shaped("per_channel ? [n] : [1]") == []
    assert shaped("if per_channel { [n] } else { [1] }") == []
    # [2] broadcasts with neither [?, 4] when chosen
    assert shaped("[2] if per_channel else [1]") == ["E0505"]
    assert shaped("[2] if per_channel else [1]", "false") == []


def test_a_conditional_shape_of_two_ranks_is_refused():
    assert "E0881" in shaped("[n] if per_channel else [1, 1]")
    assert "E0881" in shaped("n")


def test_model_and_lowering_of_a_conditional_shape():
    from tritium.check.checker.model import param_type, shape_items
    from tritium.frontend.parser import parse
    prog, diags, _ = parse(SHAPED.replace("SHAPE", "[n, 2] if per_channel else [1, 2]"))
    assert not diags
    item = prog.items[0].body[1]
    te = param_type(item)
    assert len(te.shape) == 2 and te.shape[1].value == 2
    assert type(te.shape[0].value).__name__ == "CondExpr"
    assert shape_items(prog.items[0].body[1].spec[0].value) is not None
