"""Printer/parser: exact round trips, errors with line:column, builder output."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.ir import (
    Dense,
    LayerDef,
    Module,
    ParamDef,
    ParseError,
    QuantSpec,
    ScalarType,
    SubLayer,
    TensorType,
    new_function,
    parse_module,
    print_module,
    structurally_equal,
    tensor,
    verify,
)

MODEL = '''\
model @DigitsMLP {hidden = 128, lr = 0.01, name = "mlp \\"v1\\"", sizes = [1, 2], cfg = {a = true, b = none}} {
  param @fc1.weight : tensor<[128, 64], f32> {init = "kaiming_uniform", quantizer = "twn", per_channel = false, format = "t2"}
  param @fc1.bias : tensor<[128], f32> {init = "zeros"}
  sublayer @fc1 : @TernaryLinear {in_features = 64, out_features = 128, quantizer = "twn"}
  sublayer @head : @Head
  func @forward(%x: tensor<[batch, 64], f32>) -> (tensor<[batch, 10], f32>) {
    %0 = param() {name = "fc1.weight"} : () -> tensor<[128, 64], f32>
    %1 = param() {name = "fc1.bias"} : () -> tensor<[128], f32>
    %2 = linear(%x, %0, %1) : (tensor<[batch, 64], f32>, tensor<[128, 64], f32>, tensor<[128], f32>) -> tensor<[batch, 128], f32>
    %3 = call(%2) {callee = "forward", instance = "head"} : (tensor<[batch, 128], f32>) -> tensor<[batch, 10], f32>
    return(%3) : (tensor<[batch, 10], f32>) -> ()
  }
}

layer @Head {} {
  param @w : tensor<[10, 128], trit>
  func @forward(%x: tensor<[N, 128], f32>) -> (tensor<[N, 10], f32>) {
    %0 = param() {name = "w"} : () -> tensor<[10, 128], trit>
    %1 = constant() {value = dense<[0.5, -1.0, inf, -inf, 1e-07, 3.0, 2.0, 1.0, 0.0, -0.0]>} : () -> tensor<[10], f32>
    %2 = fused_linear(%x, %0, %1) {has_scale = true} : (tensor<[N, 128], f32>, tensor<[10, 128], trit>, tensor<[10], f32>) -> tensor<[N, 10], f32>
    return(%2) : (tensor<[N, 10], f32>) -> ()
  }
}

func @pick(%c: bool, %a: tensor<[?], f32>) -> (tensor<[?], f32>, i64) {
  %0 = if(%c) : (bool) -> (tensor<[?], f32>, i64) {
    %1 = constant() {value = 1} : () -> i64
    yield(%a, %1) : (tensor<[?], f32>, i64) -> ()
  } {
    %2 = neg(%a) : (tensor<[?], f32>) -> tensor<[?], f32>
    %3 = dim(%a) {dim = 0} : (tensor<[?], f32>) -> i64
    yield(%2, %3) : (tensor<[?], f32>, i64) -> ()
  }
  return(%0, %0) : (tensor<[?], f32>, i64) -> ()
}
'''


def test_roundtrip_exact() -> None:
    text = MODEL.replace("%0 = if(%c) : (bool) -> (tensor<[?], f32>, i64)", "%0, %4 = if(%c) : (bool) -> (tensor<[?], f32>, i64)")
    text = text.replace("return(%0, %0)", "return(%0, %4)")
    m = parse_module(text)
    verify(m)
    out = print_module(m)
    # results are renumbered in definition order
    assert "%0, %1 = if(%c)" in out and "%2 = constant() {value = 1}" in out
    assert print_module(parse_module(out)) == out
    assert structurally_equal(parse_module(out), m)
    layer = m.layers[0]
    assert layer.hparams["name"] == 'mlp "v1"' and layer.hparams["cfg"] == {"a": True, "b": None}
    assert layer.params[0].quant == QuantSpec("twn", False, "t2")
    assert layer.sublayers[1] == SubLayer("head", "Head", {})


def test_structural_inequality() -> None:
    text = MODEL.replace("%0 = if(%c) : (bool) -> (tensor<[?], f32>, i64)", "%0, %4 = if(%c) : (bool) -> (tensor<[?], f32>, i64)")
    text = text.replace("return(%0, %0)", "return(%0, %4)")
    a = parse_module(text)
    assert not structurally_equal(a, parse_module(text.replace("{value = 1}", "{value = 2}")))
    assert not structurally_equal(a, parse_module(text.replace("yield(%2, %3)", "yield(%a, %3)")))
    assert not structurally_equal(a, parse_module(text.replace("N, 128", "M, 128")))


@pytest.mark.parametrize("text,where,message", [
    ("func @f() -> () {\n  %0 = relu(%1) : (f32) -> f32\n}", (2, 13), "use of undefined value %1"),
    ("func @f() -> () {\n  return() : () -> ()\n", (3, 1), "expected an attribute|expected a"),
    ("func @f(%x: tensor<[2], f8>) -> () {}", (1, 25), "unknown tensor dtype"),
    ("func @f(%x: f32) -> () {\n  %0 = neg(%x) : (i64) -> f32\n}", (2, 3), "operand type i64 does not match"),
    ("func @f(%x: f32) -> () {\n  %0 = neg(%x) : (f32) -> f32\n  %0 = neg(%x) : (f32) -> f32\n}", (3, 3), "defined twice"),
    ("layer @L {} {\n  wibble\n}", (2, 3), "expected 'param', 'sublayer' or 'func'"),
    ("func @f(%0: f32) -> () {}", (1, 9), "must not be numbers"),
    ("func @f() -> () {\n  %0 = constant() {value = 1, value = 2} : () -> i64\n}", (2, 31), "duplicate attribute"),
    ("$", (1, 1), "unexpected character"),
])
def test_parse_errors(text: str, where: tuple[int, int], message: str) -> None:
    with pytest.raises(ParseError, match=message) as e:
        parse_module(text)
    if "|" not in message:
        assert (e.value.line, e.value.col) == where


def test_builder_builds_verified_ir() -> None:
    f, b = new_function("main", [("x", tensor(["batch", 64])), ("flag", ScalarType("bool"))])
    x, flag = f.args
    w = b.constant(np.ones((10, 64), dtype=np.float32), tensor([10, 64]))
    t, s = b.quantize_ternary(w, per_channel=True)
    y = b.linear(x, b.dequantize(t, s))
    op, then, other = b.if_(flag, [y.type])
    then.yield_(then.relu(y))
    other.yield_(y)
    b.ret(op.result)
    f.result_types = [op.result.type]
    m = Module([f])
    verify(m)
    assert isinstance(w.op.attrs["value"], Dense)
    text = print_module(m)
    assert "%1, %2 = quantize_ternary(%0) {per_channel = true}" in text
    assert print_module(parse_module(text)) == text
    with pytest.raises(AttributeError):
        b.not_an_op  # noqa: B018


def test_layer_module_api() -> None:
    f, b = new_function("forward", [("x", tensor([2]))])
    b.ret(b.add(f.args[0], b.param("w", tensor([2]))))
    f.result_types = [tensor([2])]
    layer = LayerDef("layer", "L", {"k": 1}, [ParamDef("w", tensor([2]), "ones")], [], [f])
    m = Module([layer])
    verify(m)
    assert m.function("L.forward") is f and m.function("forward") is None
    assert print_module(m).startswith('layer @L {k = 1} {\n  param @w : tensor<[2], f32> {init = "ones"}')
    assert TensorType((2,), "f32") == f.arg_types[0]
