"""Layers and models as values end to end (issue 13, helper seedc):
programs check, compile to PyTorch, run, and compute what a hand-written PyTorch reference
computes; models agree with the IR interpreter where the IR expresses them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_source
from tritium.driver import compile_program
from tritium.ir.lowering import LoweringError, lower

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import agree_with_ir, run_main  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- layer values

LAYERS = """
layer Net {
    layer fc1: Linear { in_features: 4, out_features: 8 }
    layer fc2: Linear { in_features: 8, out_features: 2 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 2] {
        return twice(fc2, relu(fc1(x)))
    }
}

fn twice(layer: Layer, x: Tensor) -> Tensor {
    return layer(x) * 2.0
}

fn sequential(layers: [Layer]) -> fn(Tensor) -> Tensor {
    return fn(input: Tensor) {
        let output = input
        for layer in layers {
            output = layer(output)
        }
        return output
    }
}

fn scale_weights(model: Model, k: float) {
    for (i, layer) in enumerate(model.layers) {
        layer.weights = layer.weights * (k + i)
    }
}
"""


def test_a_layer_passed_to_a_function_agrees_with_the_ir(tmp_path):
    ref, got, model, x = agree_with_ir(tmp_path, LAYERS, (3, 4))
    with torch.no_grad():
        expect = model.fc2(torch.relu(model.fc1(x))) * 2.0
    np.testing.assert_allclose(ref, expect.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_layer_values_in_statements(tmp_path):
    src = LAYERS + """
let net = Net()
let x = ones([3, 4])
let run = sequential(net.layers)
let a = run(x)
let w1 = net.layers[0].weights
let before = w1 * 1.0
scale_weights(net, 0.5)
let m2 = Model(net.layers)
let b = m2(x)
print(a.shape, b.shape, length(net.layers))
print((net.layers[0].weights - before * 0.5).abs().max() < 1e-6)
"""
    out, module = run_main(tmp_path, src)
    lines = out.splitlines()
    assert lines[0] == "[3, 2] [3, 2] 2"
    assert lines[1] == "tensor(True)"


def test_runtime_layer_values_match_torch():
    from tritium import runtime as trt
    seq = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    layers = trt.model_layers(seq)
    assert layers == list(seq)
    w = trt.layer_weights(layers[0])
    assert w is seq[0].weight
    new = torch.full((4, 3), 0.25)
    trt.set_layer_weights(layers[0], new)
    assert seq[0].weight is w and torch.equal(w, new)
    with pytest.raises(ValueError, match="shape"):
        trt.set_layer_weights(layers[0], torch.zeros(2, 2))
    with pytest.raises(AttributeError, match="no weights"):
        trt.layer_weights(layers[1])
    m = trt.sequential_model(layers)
    x = torch.randn(5, 3)
    assert torch.equal(m(x), seq(x))
    with pytest.raises(TypeError):
        trt.sequential_model([1])


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


def test_a_list_of_layers_hyperparameter_registers_them(tmp_path):
    f = tmp_path / "d.tri"
    f.write_text(DENSE)
    result = compile_program(str(f))
    assert "nn.ModuleList(layers)" in result.python
    cls = result.module.DenseBlock
    l1, l2 = torch.nn.Linear(2, 3), torch.nn.Linear(5, 1)
    block = cls(layers=[l1, l2])
    assert {id(p) for p in block.parameters()} == {id(p) for p in [*l1.parameters(),
                                                                   *l2.parameters()]}
    x = torch.randn(4, 2)
    h1 = l1(x)
    expect = torch.cat([x, h1, l2(torch.cat([x, h1], 1))], 1)
    torch.testing.assert_close(block(x), expect)


def test_weights_of_a_layer_value_have_no_ir_form(tmp_path):
    src = """
model M {
    layer fc: Linear { in_features: 2, out_features: 2 }
    forward(x: Tensor[b, 2]) -> Tensor {
        return x @ fc.weights
    }
}
"""
    f = tmp_path / "w.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.errors]
    model = tritium.load(f)
    x = torch.randn(3, 2)
    torch.testing.assert_close(model(x), x @ model.fc.weight)
    with pytest.raises(LoweringError):
        lower(result, None, None)
