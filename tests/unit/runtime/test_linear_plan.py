"""The frozen layers' cached native call (LinearPlan): same results as the general path,
rebuilt when the weights change, never used where autograd needs the custom op."""

from __future__ import annotations

import pytest
import torch

from tritium import runtime as trt
from tritium.runtime import kernels

# runs once per ISA path of this CPU (tests/conftest.py)
pytestmark = [pytest.mark.skipif(not kernels.native_available(), reason="no native kernels"),
              pytest.mark.usefixtures("every_isa")]


def _frozen(seed: int, bias: bool = True, act_quant: str = "none") -> trt.TernaryLinear:
    torch.manual_seed(seed)
    layer = trt.TernaryLinear(70, 33, bias=bias, act_quant=act_quant).eval()
    return layer.freeze()


@pytest.mark.parametrize("act_quant", ["none", "int8"])
@pytest.mark.parametrize("bias", [True, False])
def test_plan_matches_the_general_path(act_quant, bias):
    layer = _frozen(0, bias, act_quant)
    x = torch.randn(5, 70)
    with torch.no_grad():
        got = layer(x)
        assert layer._plan is not None
        ref = kernels.ternary_linear(x, layer.packed_weight(), layer.weight_scale, layer.bias,
                                     act_quant=act_quant)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_plan_follows_weight_changes():
    a, b = _frozen(1), _frozen(2)
    x = torch.randn(3, 70)
    with torch.no_grad():
        ya = a(x)
        a.load_state_dict(b.state_dict())          # in-place copies bump the versions
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
        assert not torch.equal(a(x), ya)
        a.weight_scale = a.weight_scale * 2         # a new tensor object
        torch.testing.assert_close(a(x), 2 * b(x) - b.bias, rtol=1e-5, atol=1e-5)


def test_plan_is_not_used_when_autograd_needs_the_op():
    layer = _frozen(3)
    x = torch.randn(2, 70, requires_grad=True)
    y = layer(x)
    assert layer._plan is None and y.requires_grad
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("act_quant", ["none", "int8"])
@pytest.mark.parametrize("m", [1, 3, 40])
def test_plan_writes_every_element_of_a_given_out(act_quant, m):
    layer = _frozen(3, True, act_quant)
    x = torch.randn(m, 70)
    with torch.no_grad():
        ref = layer(x)
        plan = layer._plan
        out = torch.full((m, 33), float("nan"))
        got = plan(x.contiguous(), None, None, out=out)
    assert got is out
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [
    torch.empty(4, 33, dtype=torch.float64),
    torch.empty(3, 33),
    torch.empty(33, 4).t(),
])
def test_plan_rejects_an_out_it_cannot_write(bad):
    layer = _frozen(4)
    x = torch.randn(4, 70)
    with torch.no_grad():
        layer(x)
        with pytest.raises(ValueError, match="out must be a contiguous float32"):
            layer._plan(x, None, None, out=bad)
