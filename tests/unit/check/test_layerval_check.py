"""Checker: layers and models as values (issue 13, helper seedc)."""

from __future__ import annotations

import pytest

from tritium.check import check_source


def codes(src: str) -> list[str]:
    return [d.code for d in check_source(src).errors]


def ok(src: str) -> None:
    r = check_source(src)
    assert r.ok, [(d.code, d.message, d.span.line if d.span else None) for d in r.errors]


def first(src: str):
    errs = check_source(src).errors
    assert errs, "expected an error"
    return errs[0]


# ----------------------------------------------------------------------------- layer values

SEQUENTIAL = """
fn sequential(layers: [Layer]) -> fn(Tensor) -> Tensor {
    return fn(input: Tensor) {
        let output = input
        for layer in layers {
            output = layer(output)
        }
        return output
    }
}
"""

PROGRESSIVE = """
fn progressive_quantize(x: Tensor<float32, [?, ?]>, epoch: int32,
                        warmup_epochs: int32 = 10) -> Tensor<float32, [?, ?]> {
    if epoch < warmup_epochs {
        let alpha = epoch / warmup_epochs
        return (1 - alpha) * x + alpha * ste_quantize(x)
    }
    return ste_quantize(x)
}

fn train_epoch(model: Model, epoch: int32) {
    for layer in model.layers {
        layer.weights = progressive_quantize(layer.weights, epoch)
    }
}

fn by_index(model: Model, epoch: int32) {
    let n = length(model.layers)
    for (idx, layer) in enumerate(model.layers) {
        let e = max(0, epoch - idx * 2)
        layer.weights = progressive_quantize(layer.weights, e)
    }
}
"""

ITERATOR = """
fn apply_to_layers(model: Model, transform_fn: fn(Layer) -> Layer) -> Model {
    let transformed = []
    for layer in model.layers {
        transformed.append(transform_fn(layer))
    }
    return Model(transformed)
}
"""

DENSE = """
layer DenseBlock(
    layers: [TernaryLayer],
    input: Tensor<float32, [batch, features]>
) -> Tensor<float32, [batch, features]> {
    let outputs = [input]
    for layer in layers {
        let combined = concat(outputs, axis=1)
        let output = layer(combined)
        outputs.append(output)
    }
    return concat(outputs, axis=1)
}
"""


@pytest.mark.parametrize("src", [SEQUENTIAL, PROGRESSIVE, ITERATOR, DENSE],
                         ids=["sequential", "progressive", "iterator", "dense"])
def test_layer_value_programs_check(src):
    ok(src)


def test_a_layer_passed_to_a_function_is_checked_with_its_shapes():
    src = """
model Net {
    layer fc: TernaryLinear { in_features: 4, out_features: 2 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 3] {
        return twice(fc, x)
    }
}
fn twice(l: Layer, x: Tensor) -> Tensor {
    return l(x) * 2.0
}
"""
    # the actual layer gives [b, 2]; the declared result is [b, 3]
    assert "E0504" in codes(src)


def test_layer_value_call_with_two_arguments_is_E1011():
    e = first("fn f(l: Layer, x: Tensor) -> Tensor { return l(x, x) }")
    assert e.code == "E1011" and "one tensor" in e.message


def test_layer_value_call_by_name_is_E1011():
    assert codes("fn f(l: Layer, x: Tensor) -> Tensor { return l(input=x) }") == ["E1011"]


def test_layer_value_called_on_an_int_is_E1012():
    e = first("fn f(l: Layer) -> Tensor { return l(3) }")
    assert e.code == "E1012" and "int" in e.message


def test_an_int_passed_as_a_layer_is_E1010():
    src = """
fn f(l: Layer, x: Tensor) -> Tensor { return l(x) }
fn g() {
    let n = 3
    let y = f(n, ones([2, 2]))
}
"""
    e = first(src)
    assert e.code == "E1010" and "Layer" in e.message


def test_calling_an_int_is_still_E0310():
    assert "E0310" in codes("fn f() -> int {\n let n = 3\n return n(2)\n}")


def test_unknown_attribute_of_a_layer_is_E1013():
    e = first("fn f(l: Layer) -> Tensor { return l.bias }")
    assert e.code == "E1013" and "`bias`" in e.message and ".weights" in e.help


def test_assigning_weights_a_number_is_E1014():
    assert codes("fn f(l: Layer) { l.weights = 3 }") == ["E1014"]


def test_assigning_another_attribute_is_E1013():
    assert codes("fn f(l: Layer) { l.layers = [] }") == ["E1013"]


def test_model_of_ints_is_E1015():
    assert codes("fn f() -> Model { return Model([1, 2]) }") == ["E1015"]
    assert codes("fn f() -> Model { return Model(3) }") == ["E1015"]


def test_a_layer_fits_a_function_type_of_one_parameter():
    src = """
fn apply(f: fn(Tensor) -> Tensor, x: Tensor) -> Tensor { return f(x) }
fn g(l: Layer, x: Tensor) -> Tensor { return apply(l, x) }
"""
    ok(src)
    bad = """
fn apply(f: fn(Tensor, Tensor) -> Tensor, x: Tensor) -> Tensor { return f(x, x) }
fn g(l: Layer, x: Tensor) -> Tensor { return apply(l, x) }
"""
    assert "E1010" in codes(bad)


def test_model_layers_items_are_layers():
    # an item of model.layers is a layer: calling it on an int is reported
    assert "E1012" in codes("fn f(m: Model) {\n for l in m.layers { let y = l(1) }\n}")
    ok("fn f(m: Model, x: Tensor) -> Tensor {\n let y = x\n for l in m.layers { y = l(y) }\n"
       " return m.layers[0](y)\n}")


def test_a_user_defined_Model_definition_still_wins():
    src = """
model Model {
    layer fc: Linear { in_features: 2, out_features: 2 }
    forward(x: Tensor[b, 2]) -> Tensor[b, 2] { return fc(x) }
}
"""
    ok(src)


def test_returning_a_tensor_where_a_model_is_declared_is_E1010():
    assert codes("fn f(x: Tensor) -> Model { return x }") == ["E1010"]
