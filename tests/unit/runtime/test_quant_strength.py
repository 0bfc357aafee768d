"""Progressive QAT in the runtime: `quantization_strength(lam)` makes every fake quantizer
return (1 - lam) * x + lam * q(x): the float forward at 0, the quantized one at 1 (and
outside any block), in between a blend; freezing never sees it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tritium import runtime as trt
from tritium.driver.models import build_model
from tritium.runtime.quant import blend_quantized, current_strength, quantization_strength


def _linear(**kw) -> trt.TernaryLinear:
    torch.manual_seed(0)
    return trt.TernaryLinear(8, 4, **kw)


def test_the_context_nests_restores_and_checks_its_value():
    assert current_strength() == 1.0
    with quantization_strength(0.25):
        assert current_strength() == 0.25
        with quantization_strength(0):
            assert current_strength() == 0.0
        assert current_strength() == 0.25
    assert current_strength() == 1.0
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="strength"), quantization_strength(bad):
            pass
    x, q = torch.zeros(3), torch.ones(3)
    assert blend_quantized(x, q) is q
    with quantization_strength(0.25):
        assert torch.equal(blend_quantized(x, q), torch.full((3,), 0.25))


@pytest.mark.parametrize("kw", [{}, {"ste": "clipped"}, {"quantizer": "absmean"},
                                {"act_quant": "int8"}])
def test_linear_warm_up_is_the_float_forward_and_full_strength_the_quantized(kw):
    layer = _linear(**kw)
    x = torch.randn(5, 8)
    quantized = layer(x)
    with quantization_strength(0.0):
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    with quantization_strength(1.0):
        assert torch.equal(layer(x), quantized)
    assert not torch.allclose(quantized, F.linear(x, layer.weight, layer.bias))


def test_linear_in_between_blends_the_weight_and_keeps_the_gradient():
    layer = _linear()
    x = torch.randn(5, 8)
    q = layer.ternary_weight()
    w_q = q.trits.float() * q.scale
    with quantization_strength(0.25):
        y = layer(x)
        expect = F.linear(x, 0.75 * layer.weight + 0.25 * w_q, layer.bias)
        torch.testing.assert_close(y, expect)
        y.sum().backward()
    # identity STE: d(0.75 w + 0.25 STE(w))/dw = 1, as at full strength
    grad = layer.weight.grad.clone()
    layer.weight.grad = None
    layer(x).sum().backward()
    torch.testing.assert_close(grad, layer.weight.grad)


def test_conv_and_activation_follow_the_strength():
    torch.manual_seed(1)
    conv = trt.TernaryConv2d(2, 3, 3, padding=1)
    act = trt.TernaryActivation(threshold=0.5)
    x = torch.randn(2, 2, 5, 5)
    with quantization_strength(0.0):
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
        assert torch.equal(act(x), x)
    assert set(act(x).unique().tolist()) <= {-1.0, 0.0, 1.0}
    with quantization_strength(0.5):
        torch.testing.assert_close(act(x), 0.5 * x + 0.5 * _ternary(x, 0.5))


def _ternary(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.sign(x) * (x.abs() > t).float()


@pytest.mark.parametrize("fn", [
    lambda x: trt.threshold_quantize(x, 0.5),
    lambda x: trt.adaptive_threshold_quantize(x),
    lambda x: trt.stochastic_quantize(x, seed=3),
    lambda x: trt.learned_quantize(x, torch.tensor(1.5), 0.5),
    lambda x: trt.soft_quantize(x, 0.1),
    lambda x: trt.gumbel_softmax_quantize(x, 1.0, True, seed=2),
    lambda x: trt.xnor_quantize(x),
    lambda x: trt.ste_quantize(x, 0.5),
    lambda x: trt.clipped_ste_quantize(x, 0.5, 1.0),
    lambda x: trt.ternary_weight(x, "twn"),
    lambda x: trt.fake_quant_int8(x),
])
def test_functional_quantizers_are_off_in_the_warm_up_and_blend_in_between(fn):
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    full = fn(x)
    assert not torch.equal(full, x)
    with quantization_strength(0.0):
        assert torch.equal(fn(x), x)
    with quantization_strength(0.4):
        torch.testing.assert_close(fn(x), 0.6 * x + 0.4 * full)


def test_freezing_is_exactly_ternary_whatever_the_strength():
    a, b = _linear(), _linear()
    with quantization_strength(0.0):
        a.freeze()
    b.freeze()
    assert torch.equal(a.weight_packed, b.weight_packed)
    assert torch.equal(a.weight_scale, b.weight_scale)


PROGRAM = """model Net {
    layer fc1: TernaryLinear { in_features: 8, out_features: 6 }
    layer fc2: TernaryLinear { in_features: 6, out_features: 3 }
    forward(x: Tensor[batch, 8]) -> Tensor[batch, 3] {
        let h = relu(fc1(x))
        let q = ste_quantize(h, threshold: 0.3)
        return fc2(h + q)
    }
}
"""


def test_a_generated_model_runs_float_in_the_warm_up_and_quantized_after(tmp_path: Path):
    path = tmp_path / "net.tri"
    path.write_text(PROGRAM)
    torch.manual_seed(0)
    model = build_model(path).model.train()
    x = torch.randn(7, 8)
    fc1, fc2 = model.fc1, model.fc2
    h = F.relu(F.linear(x, fc1.weight, fc1.bias))
    float_forward = F.linear(h + h, fc2.weight, fc2.bias)
    with quantization_strength(0.0):      # a warm-up epoch: every quantizer off
        torch.testing.assert_close(model(x), float_forward)
    quantized = model(x)
    with quantization_strength(1.0):      # after the schedule: ordinary QAT
        assert torch.equal(model(x), quantized)
    with quantization_strength(0.5):      # in between: neither
        mid = model(x)
    assert not torch.allclose(mid, quantized) and not torch.allclose(mid, float_forward)
    # the fully quantized training forward is what the frozen model computes
    frozen = trt.freeze_model(model.eval())
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), quantized.detach(), atol=1e-4, rtol=1e-4)
