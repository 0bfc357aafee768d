"""The guards of a frozen model's cached native plans (runtime.plan, runtime.chain): after any
legal change a PyTorch user makes to the model, the frozen model's output is what the general
path (the generated forward, the layers' PyTorch paths) gives, never a stale or freed plan's."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.utils.parametrize
from torch import nn

from tritium.runtime import freeze_model, kernels
from tritium.runtime.layers import BitLinear, TernaryConv2d, TernaryLinear

from .test_chain import CNN, MLP, _build
from .test_float_conv import _lenet

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")


def _general(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output the general way: a copy with the generated forwards, run with
    autograd on (no plan serves a call whose input needs a gradient)."""
    plain = copy.deepcopy(model)
    for mod in plain.modules():
        mod.__dict__.pop("forward", None)
    with torch.enable_grad():
        return plain(x.clone().requires_grad_()).detach()


@pytest.mark.parametrize("attr", ["weight_packed", "weight_scale", "bias"])
def test_a_tensor_given_new_data_rebuilds_the_layers_plan(attr):
    # `t.data = other` keeps the tensor object and its version counter: a plan that checked
    # only those read the old (freed) storage
    torch.manual_seed(0)
    layer = TernaryLinear(24, 8).freeze()
    x = torch.randn(3, 24)
    with torch.no_grad():
        layer(x)
        t = getattr(layer, attr)
        t.data = torch.roll(t.data, 1, 0).contiguous() if attr == "weight_packed" \
            else t.data * 3 + 1
        want = kernels.ternary_linear(x, layer.packed_weight(), layer.weight_scale,
                                      layer.bias)
        torch.testing.assert_close(layer(x), want, rtol=0, atol=0)


@pytest.mark.parametrize("attr", ["weight_packed", "weight_scale", "bias"])
def test_a_tensor_given_new_data_rebuilds_the_chain(tmp_path, attr):
    model = freeze_model(_build(tmp_path, MLP, AQ="none", ACT="relu"))
    x = torch.randn(5, 70)
    with torch.no_grad():
        model(x)
        t = getattr(model.fc2, attr)
        t.data = torch.roll(t.data, 1, 0).contiguous() if attr == "weight_packed" \
            else t.data * 3 + 1
        torch.testing.assert_close(model(x), _general(model, x), rtol=0, atol=0)


def test_a_float_conv_or_norm_tensor_given_new_data_refolds(tmp_path):
    model = _lenet(tmp_path)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        model(x)
        model.bn1.running_var.data = model.bn1.running_var.data * 2
        model.conv1.weight.data = model.conv1.weight.data * -1
        torch.testing.assert_close(model(x), _general(model, x), rtol=1e-5, atol=1e-5)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = BitLinear(32, 16), BitLinear(32, 16), BitLinear(32, 8)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(h), self.k(h), self.v(h)], -1)


def _ungrouped(model: nn.Module) -> nn.Module:
    plain = copy.deepcopy(model)
    for mod in plain.modules():
        mod.__dict__.pop("_group", None)
    return plain


def test_a_shared_input_group_member_with_another_eps_runs_alone():
    # the group's one call normalizes the input once, with the first member's eps
    torch.manual_seed(0)
    model = freeze_model(_Attention().eval())
    assert model.q.__dict__.get("_group") is not None
    x = torch.randn(1, 32)
    with torch.no_grad():
        for _ in range(3):
            model(x)
        model.k.eps = 0.5
        torch.testing.assert_close(model(x), _ungrouped(model)(x), rtol=0, atol=0)


def test_a_float_conv_given_a_weight_of_another_kernel_size_runs_torchs_conv(tmp_path):
    # torch's conv follows the weight's shape; the plan's geometry was kept for the old one
    # (it read a 3x3 weight as 5x5: past its end)
    model = _lenet(tmp_path)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        model(x)
        model.conv1.weight = nn.Parameter(torch.randn(6, 1, 3, 3))
        with pytest.raises(ValueError, match="200 features"):   # as the generated forward
            model(x)
        model.conv1.padding = (1, 1)    # 3x3 with padding 1: the same plane, a valid model
        torch.testing.assert_close(model(x), _general(model, x), rtol=1e-5, atol=1e-5)


def test_a_frozen_conv_on_a_plane_too_small_says_so():
    # the plan's own check said only "input (...) does not fit this convolution"
    conv = TernaryConv2d(3, 4, kernel_size=5).freeze()
    with torch.no_grad(), pytest.raises(ValueError, match="too small for kernel 5x5"):
        conv(torch.randn(1, 3, 4, 4))


def test_a_fused_layer_given_another_class_runs_that_class(tmp_path):
    # `mod.__class__ = Sub` keeps the module object: the chain ran the old class's product
    class Doubled(TernaryLinear):
        def forward(self, x, activation=None, residual=None):
            return super().forward(x, activation, residual) * 2

    model = freeze_model(_build(tmp_path, MLP, AQ="none", ACT="relu"))
    x = torch.randn(3, 70)
    with torch.no_grad():
        model(x)
        model.fc2.__class__ = Doubled
        torch.testing.assert_close(model(x), type(model).forward(model, x), rtol=0, atol=0)


def test_a_parametrized_ternary_layer_is_not_fused(tmp_path):
    # a parametrization moves the tensor out of the layer's own buffers and parameters, where
    # the chain's plan reads them
    class Doubled(nn.Module):
        def forward(self, t):
            return t * 2

    model = freeze_model(_build(tmp_path, MLP, AQ="none", ACT="relu"))
    with torch.no_grad():
        model(torch.randn(3, 70))
    torch.nn.utils.parametrize.register_parametrization(model.fc2, "bias", Doubled())
    ops = model.forward._program()[0]
    assert model.fc2 in ops and not any(model.fc2 in getattr(op, "layers", ()) for op in ops)


def test_a_fused_conv_given_another_class_runs_that_class(tmp_path):
    # the conv's pooling runs in its native call: the subclass's forward was never called
    class Doubled(TernaryConv2d):
        def forward(self, x, activation=None, residual=None):
            return super().forward(x, activation, residual) * 2

    model = freeze_model(_build(tmp_path, CNN, AQ="none"))
    x = torch.randn(2, 2, 12, 12)
    with torch.no_grad():
        model(x)
        model.conv1.__class__ = Doubled
        torch.testing.assert_close(model(x), type(model).forward(model, x), rtol=0, atol=0)


def test_a_parametrized_frozen_layer_with_a_plan_deep_copies():
    # a parametrized module's deepcopy copies its __dict__ as is: the plan's ctypes pointers
    # could not be copied ("ctypes objects containing pointers cannot be pickled")
    class Doubled(nn.Module):
        def forward(self, t):
            return t * 2

    layer = TernaryLinear(16, 4).freeze()
    with torch.no_grad():
        layer(torch.randn(2, 16))
    assert layer._plan is not None
    torch.nn.utils.parametrize.register_parametrization(layer, "bias", Doubled())
    copied = copy.deepcopy(layer)
    assert copied._plan is None and torch.equal(copied.weight_packed, layer.weight_packed)


class _Cast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def test_a_linear_run_after_a_module_that_changes_the_dtype_runs_the_layers(tmp_path):
    # the run's kernels read its input as float32 whatever it is: a bfloat16 one corrupted
    # the heap, a float64 one gave garbage
    model = freeze_model(_build(tmp_path, MLP, AQ="none", ACT="relu"))
    x = torch.randn(3, 70)
    with torch.no_grad():
        model(x)
        model.bn1 = _Cast()
        got = model(x)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, type(model).forward(model, x), rtol=0, atol=0)


@pytest.mark.parametrize("bad", ["mean_2d", "bias_short"])
def test_a_float_conv_with_a_tensor_not_one_per_channel_raises_torchs_error(tmp_path, bad):
    # the fold broadcast a (6, 1) mean silently, and a short bias into a shape error
    model = _lenet(tmp_path)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        model(x)
        if bad == "mean_2d":
            model.bn1.running_mean = torch.zeros(6, 1)
        else:
            model.conv1.bias = nn.Parameter(torch.zeros(3))
        with pytest.raises(RuntimeError) as want:
            type(model).forward(model, x)
        with pytest.raises(RuntimeError) as got:
            model(x)
    assert str(got.value) == str(want.value)


def test_a_frozen_layer_given_another_activation_mode_runs_it():
    # the cached plan quantized the activations as the layer did when it was built
    torch.manual_seed(0)
    layer = TernaryLinear(24, 8, act_quant="int8").freeze()
    x = torch.randn(3, 24)
    with torch.no_grad():
        layer(x)
        layer.act_quant = "none"
        want = kernels.ternary_linear(x, layer.packed_weight(), layer.weight_scale, layer.bias)
        torch.testing.assert_close(layer(x), want, rtol=0, atol=0)


def test_a_chain_layer_given_another_activation_mode_runs_it(tmp_path):
    model = freeze_model(_build(tmp_path, MLP, AQ="int8", ACT="relu"))
    x = torch.randn(5, 70)
    with torch.no_grad():
        model(x)
        model.fc1.act_quant = "none"
        torch.testing.assert_close(model(x), _general(model, x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["bias", "weight_scale"])
def test_a_frozen_layer_parametrized_after_freezing_runs_the_parametrization(name):
    class Doubled(nn.Module):
        def forward(self, t):
            return t * 2

    torch.manual_seed(0)
    layer = TernaryLinear(24, 8).freeze()
    x = torch.randn(3, 24)
    with torch.no_grad():
        layer(x)
        torch.nn.utils.parametrize.register_parametrization(layer, name, Doubled(),
                                                            unsafe=True)
        want = kernels.ternary_linear(x, layer.packed_weight(), layer.weight_scale, layer.bias)
        torch.testing.assert_close(layer(x), want, rtol=0, atol=0)
