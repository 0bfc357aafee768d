"""The layer forms of the earlier Triton DSL (issue 13), end to end: each program checks,
compiles to PyTorch, loads, runs, and agrees with the IR interpreter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import lower


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def _load(tmp_path, src: str, entry: str | None = None, **hyper):
    f = tmp_path / "m.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [(d.code, d.message) for d in result.diagnostics]
    model = tritium.load(f, entry, **hyper)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
    model.eval()
    return result, model


def _agree(result, model, inputs, entry=None, hyper=None):
    low = lower(result, entry, hyper)
    state = model.state_dict()
    params = {n: state[n].detach().numpy() for n in low.params}
    with torch.no_grad():
        ref = model(*inputs)
    got = interpret(low.module, low.entry, [x.numpy() for x in inputs], params=params)
    got = got[0] if isinstance(got, list | tuple) else got
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref.double().numpy(),
                               rtol=1e-4, atol=1e-4)
    return ref


# ----------------------------------------------------------------------------- form 3

LAYER_FN_LETS = """
layer L(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>, scale: float = 2.0) -> Tensor<float32, [?, 2]> {
    x = relu(x)
    let y = x @ w
    let z: Tensor<float32, [?, 2]> = y * scale
    z = z + 1.0
    return z
}
"""


def test_lets_of_a_layer_function_are_its_forward_in_order(tmp_path):
    result, model = _load(tmp_path, LAYER_FN_LETS, "L")
    assert [n for n, _ in model.named_parameters()] == ["w"]   # the lets are not state
    x = torch.randn(3, 4)
    out = _agree(result, model, [x], "L")
    wq = tritium.runtime.ternary_weight(model.w, quantizer="twn", per_channel=False,
                                        threshold=None, training=False)
    # `x = relu(x)` runs before `let y = x @ w` (the lets keep their place)
    torch.testing.assert_close(out, (torch.relu(x) @ wq) * 2.0 + 1.0)


# ----------------------------------------------------------------------------- form 11

DIRECT_CALL = """
layer FC(w: TernaryTensor<trit, [n_in, n_out]>, x: Tensor<float32, [?, n_in]>, alpha: float) -> Tensor<float32, [?, n_out]> {
    let y = x @ w
    return relu(y) * alpha + float(n_out)
}
layer Net {
    param w1: TernaryTensor[4, 3]
    param w2: TernaryTensor[3, 2]
    fn forward(x: Tensor[N, 4]) -> Tensor[N, 2] {
        let h = FC(w1, x, 0.5)
        return FC(w2, h, 2.0)
    }
}
"""


def test_a_layer_function_called_by_name_is_a_pure_function(tmp_path):
    result, model = _load(tmp_path, DIRECT_CALL, "Net")
    x = torch.randn(5, 4)
    out = _agree(result, model, [x], "Net")
    q = [tritium.runtime.ternary_weight(w, quantizer="twn", per_channel=False, threshold=None,
                                        training=False) for w in (model.w1, model.w2)]
    h = torch.relu(x @ q[0]) * 0.5 + 3.0
    torch.testing.assert_close(out, torch.relu(h @ q[1]) * 2.0 + 2.0)
    # the weights passed in get the gradient (the call is a function of its arguments)
    model.train()
    model(x).sum().backward()
    assert model.w1.grad is not None and model.w1.grad.abs().sum() > 0
    # the definition still makes instances with their own weight
    fc = tritium.load(tmp_path / "m.tri", "FC", n_in=4, n_out=3, alpha=1.0)
    assert fc(x).shape == (5, 3)


# ----------------------------------------------------------------------------- form 12

BENCHMARK = """
layer TinyNet(weights: TernaryTensor[10, 5]) {
    forward(x: TernaryTensor[5]) -> TernaryTensor[10] {
        return weights @ x
    }
}
layer Scaled(w: TernaryTensor[n_out, n_in], scale: Tensor[n_out], gain: float = 1.0) {
    fn forward(x: Tensor[B, n_in]) -> Tensor[B, n_out] {
        return (x @ transpose(w, 0, 1)) * scale * gain
    }
}
"""


def test_benchmark_form_signature_tensors_are_learned_weights(tmp_path):
    result, model = _load(tmp_path, BENCHMARK, "TinyNet")
    assert dict((n, tuple(p.shape)) for n, p in model.named_parameters()) == {"weights": (10, 5)}
    x = torch.tensor([1.0, 0.0, -1.0, 1.0, 1.0])
    out = _agree(result, model, [x], "TinyNet")
    wq = tritium.runtime.ternary_weight(model.weights, quantizer="twn", per_channel=False,
                                        threshold=None, training=False)
    torch.testing.assert_close(out, wq @ x)
    result, scaled = _load(tmp_path, BENCHMARK, "Scaled", n_out=3, n_in=4, gain=0.5)
    assert {n for n, _ in scaled.named_parameters()} == {"w", "scale"}
    _agree(result, scaled, [torch.randn(2, 4)], "Scaled", {"n_out": 3, "n_in": 4, "gain": 0.5})
    # a weight of the signature learns: it gets a gradient through its ternary view
    scaled.train()
    scaled(torch.randn(2, 4)).sum().backward()
    assert scaled.w.grad is not None and scaled.scale.grad is not None


# ----------------------------------------------------------------------------- form 10

EXPLICIT = """
layer MyLinear {
    params {
        in_features: int
        out_features: int
        use_bias: bool = true
    }
    param weight: TernaryTensor[out_features, in_features] { init: "xavier", gain: 1.0 }
    param scale: Tensor[out_features] { init: "normal", mean: 1.0, std: 0.02 }
    param bias: if (use_bias) Tensor { shape: [out_features], init: "zeros" }
    state steps: int = 0
    state ema: float = 1.0
    layer norm: LayerNorm { normalized_shape: out_features }
    forward(x: Tensor[B, in_features]) -> Tensor[B, out_features] {
        let y = x @ transpose(weight, 0, 1)
        if bias is not None {
            y = y + bias
        }
        steps += 1
        ema = ema * 0.5 + 0.25
        return norm(y * scale) * ema
    }
}
"""


@pytest.mark.parametrize("use_bias", [True, False])
def test_explicit_layer_params_block_inits_conditional_params_and_state(tmp_path, use_bias):
    hyper = {"in_features": 16, "out_features": 8, "use_bias": use_bias}
    f = tmp_path / "m.tri"
    f.write_text(EXPLICIT)
    torch.manual_seed(0)
    fresh = tritium.load(f, "MyLinear", **hyper)
    # the init specs: Glorot-uniform bound, normal(1.0, 0.02), zeros
    bound = (6.0 / (16 + 8)) ** 0.5
    assert fresh.weight.abs().max() <= bound and fresh.weight.std() > bound / 4
    scale = fresh.scale.detach()
    assert abs(float(scale.mean()) - 1.0) < 0.05 and float(scale.std()) < 0.1
    assert (fresh.bias is None) != use_bias
    if use_bias:
        assert torch.equal(fresh.bias.detach(), torch.zeros(8))
    # state: registered buffers, not learned
    assert set(dict(fresh.named_buffers())) == {"steps", "ema"}
    assert "steps" not in dict(fresh.named_parameters())
    assert fresh.steps.item() == 0 and fresh.steps.dtype == torch.int64
    result, model = _load(tmp_path, EXPLICIT, "MyLinear", **hyper)
    x = torch.randn(3, 16)
    with torch.no_grad():
        model.ema.fill_(2.0)
    _agree(result, model, [x], "MyLinear", hyper)
    _agree(result, model, [x], "MyLinear", hyper)   # evaluation leaves the state unchanged
    assert model.ema.item() == 2.0
    model.train()
    model.steps.zero_()
    model(x)
    model(x)
    assert model.steps.item() == 2 and model.ema.item() == pytest.approx((2.0 * 0.5 + 0.25) * 0.5 + 0.25)
