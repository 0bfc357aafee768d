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


def _strided(t: torch.Tensor) -> torch.Tensor:
    """The same values as ``t`` (2-D) in a view with a longer row stride (not contiguous)."""
    wide = torch.full((t.shape[0], 2 * t.shape[1]), 0x55, dtype=t.dtype)
    wide[:, : t.shape[1]] = t
    return wide[:, : t.shape[1]]


def _default_config():
    """The kernel config of the default library of this ISA path (already built)."""
    from tritium.backends.cpu import KernelConfig
    from tritium.runtime.native import _lib

    return KernelConfig(isa=_lib().isa)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_packed_bytes_in_a_strided_view_are_read_as_the_values(kind):
    """A frozen layer whose packed bytes are a view with other strides (what
    ``load_state_dict(assign=True)`` installs from such a tensor) computes with the values:
    the plan read them as contiguous rows from the data pointer (silently wrong outputs)."""
    torch.manual_seed(6)
    if kind == "linear":
        layer, x = trt.TernaryLinear(100, 8).eval().freeze(), torch.randn(3, 100)
        skeleton = trt.TernaryLinear.frozen_skeleton(100, 8)
    else:
        layer, x = trt.TernaryConv2d(4, 8, 3).eval().freeze(), torch.randn(2, 4, 6, 6)
        skeleton = trt.TernaryConv2d.frozen_skeleton(4, 8, 3)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state["weight_packed"] = _strided(state["weight_packed"])
    skeleton.load_state_dict(state, assign=True)
    assert not skeleton.weight_packed.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(skeleton(x), layer(x), rtol=0, atol=0)
    w = layer.packed_weight()
    scale = layer.weight_scale.expand(8).contiguous()
    if kind == "linear":
        got = kernels.run_linear(_default_config(), x, _strided(w.data), *w.shape, w.format, scale)
        torch.testing.assert_close(got, kernels.ternary_linear(x, w, scale), rtol=0, atol=0)


def test_a_scale_or_bias_of_the_wrong_size_is_an_error_not_a_read_past_it():
    """A frozen layer given a scale of other than 1 or N values, or a bias of other than N
    (assigned by hand), and ternary_conv2d given such a bias, raise ValueError: the native
    call read N of them (other memory in the outputs)."""
    layer, x = _frozen(7), torch.randn(3, 70)
    with torch.no_grad():
        layer.weight_scale = torch.ones(5)
        with pytest.raises(ValueError, match="scale must have 1 or N=33"):
            layer(x)
        layer.weight_scale = torch.ones(33)
        layer.bias = torch.nn.Parameter(torch.zeros(3), requires_grad=False)
        with pytest.raises(ValueError, match="bias must have N=33"):
            layer(x)
    w = trt.pack_ternary(torch.randint(-1, 2, (8, 36), dtype=torch.int8))
    with pytest.raises(ValueError, match="bias must have O=8"):
        kernels.ternary_conv2d(torch.randn(1, 4, 5, 5), w, (8, 4, 3, 3), torch.ones(1),
                               torch.zeros(3))
