"""Layers: STE gradients, learning, freezing (equivalence, state_dict, skeletons), int8/int4."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tritium.runtime import quant
from tritium.runtime.layers import (
    BitLinear,
    Int4Linear,
    Int8Linear,
    TernaryActivation,
    TernaryConv2d,
    TernaryLinear,
    freeze_model,
    tritium_layers,
)
from tritium.runtime.packing import packed_row_bytes, unpack_ternary
from tritium.runtime.ste import (
    ClippedSTE,
    IdentitySTE,
    fake_quant_int8,
    get_ste,
    ste_clipped,
    ste_identity,
    ternary_activation,
)

# runs once per ISA path of this CPU (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("every_isa")

QUANTIZERS = [
    {"quantizer": "twn"},
    {"quantizer": "absmean"},
    {"quantizer": "threshold", "threshold": 0.05},
    {"quantizer": "stochastic"},
]


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- straight-through estimators ---------------------------------------------------------


def test_identity_ste_passes_gradient() -> None:
    w = torch.tensor([0.3, -2.0, 0.7], requires_grad=True)
    w_q = torch.tensor([1.0, -1.0, 1.0])
    out = ste_identity(w, w_q)
    assert torch.equal(out.detach(), w_q)
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert w.grad is not None and w.grad.tolist() == [1.0, 2.0, 3.0]
    assert out.grad_fn is not None and "IdentitySTE" in type(out.grad_fn).__name__


def test_clipped_ste_zeroes_gradient_outside_clip() -> None:
    w = torch.tensor([0.3, -2.0, 0.7, 1.0], requires_grad=True)
    out = ste_clipped(w, torch.zeros(4), clip=0.8)
    out.sum().backward()
    assert w.grad is not None and w.grad.tolist() == [1.0, 0.0, 1.0, 0.0]
    w.grad = None
    ClippedSTE.apply(w, torch.zeros(4), 1.0).sum().backward()
    assert w.grad.tolist() == [1.0, 0.0, 1.0, 1.0]


def test_get_ste_names() -> None:
    assert get_ste("identity") is ste_identity
    w = torch.tensor([5.0], requires_grad=True)
    get_ste("clipped", clip=1.0)(w, torch.ones(1)).sum().backward()
    assert w.grad.tolist() == [0.0]
    with pytest.raises(ValueError, match="'identity', 'clipped'"):
        get_ste("tanh")
    assert issubclass(IdentitySTE, torch.autograd.Function)


def test_fake_quant_int8_forward_and_gradient() -> None:
    x = torch.tensor([[0.5, -1.0, 0.25]], requires_grad=True)
    y = fake_quant_int8(x)
    q, s = quant.quantize_activations_int8(x.detach())
    assert torch.allclose(y.detach(), q.float() * s)
    y.sum().backward()
    assert x.grad.tolist() == [[1.0, 1.0, 1.0]]


def test_ternary_activation_module() -> None:
    act = TernaryActivation()
    x = torch.tensor([-2.0, -0.6, -0.2, 0.0, 0.4, 0.9, 1.5], requires_grad=True)
    y = act(x)
    assert y.tolist() == [-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert TernaryActivation(threshold=0.1)(torch.tensor([0.2])).item() == 1.0
    assert torch.equal(ternary_activation(x.detach()), quant.ternarize_activations(x.detach()))
    with pytest.raises(ValueError):
        TernaryActivation(threshold=-1.0)


# --- gradients reach the latent weights -------------------------------------------------


@pytest.mark.parametrize("qkw", QUANTIZERS, ids=lambda d: d["quantizer"])
@pytest.mark.parametrize("ste", ["identity", "clipped"])
def test_gradients_reach_linear_and_conv_weights(qkw: dict, ste: str) -> None:
    torch.manual_seed(0)
    lin = TernaryLinear(12, 7, ste=ste, **qkw)
    conv = TernaryConv2d(3, 4, 3, padding=1, ste=ste, **qkw)
    lin(_rand(5, 12)).square().sum().backward()
    conv(_rand(2, 3, 6, 6)).square().sum().backward()
    for layer in (lin, conv):
        assert layer.weight.grad is not None
        assert layer.weight.grad.abs().sum() > 0
        assert layer.bias.grad is not None and layer.bias.grad.abs().sum() > 0
        # every latent weight gets a gradient from the STE, not only the kept ones
        assert (layer.weight.grad != 0).float().mean() > 0.9


def test_gradients_reach_bitlinear_and_int_layers() -> None:
    torch.manual_seed(0)
    for layer in (BitLinear(16, 8), Int8Linear(16, 8), Int4Linear(16, 8, group_size=4)):
        layer(_rand(4, 16)).square().sum().backward()
        assert layer.weight.grad is not None
        assert (layer.weight.grad != 0).float().mean() > 0.9, type(layer).__name__


def test_int8_act_quant_and_conv_groups_gradients() -> None:
    torch.manual_seed(0)
    conv = TernaryConv2d(4, 8, 3, groups=2, act_quant="int8", per_channel=True)
    x = _rand(2, 4, 5, 5).requires_grad_()
    conv(x).sum().backward()
    assert conv.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


# --- learning ---------------------------------------------------------------------------


def test_ternary_mlp_learns_digits() -> None:
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    features, labels = load_digits(return_X_y=True)
    x = torch.tensor(features, dtype=torch.float32) / 16.0
    y = torch.tensor(labels)
    model = nn.Sequential(TernaryLinear(64, 128), nn.ReLU(), TernaryLinear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    # 8 epochs of batch 128: about 110 steps, well under a second on an idle 2-core machine
    for _ in range(8):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
        freeze_model(model)
        frozen_acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.85, acc
    assert frozen_acc == acc


# --- freezing ---------------------------------------------------------------------------


def _check_frozen_state(layer: nn.Module, n: int, k: int, fmt: str, per_channel: bool) -> None:
    sd = layer.state_dict()
    assert "weight" not in sd and "weight" not in dict(layer.named_parameters())
    assert not hasattr(layer, "weight")
    assert sd["weight_packed"].dtype == torch.uint8
    assert sd["weight_packed"].shape == (n, packed_row_bytes(k, fmt))
    assert sd["weight_scale"].dtype == torch.float32
    assert sd["weight_scale"].shape == ((n,) if per_channel else (1,))
    assert set(sd) <= {"weight_packed", "weight_scale", "bias"}


@pytest.mark.parametrize("x_shape,r_shape", [
    ((2, 3, 16), (2, 3, 1)),   # one value per token: was read as one per feature, silently
    ((2, 3, 16), (3, 8)),
    ((2, 3, 16), (2, 1, 8)),
    ((4, 16), (4, 1)),
    ((4, 16), ()),
    ((3, 16), (2, 3, 8)),      # a residual that makes the result larger
])
@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_frozen_linear_broadcasts_the_residual_as_unfrozen(x_shape, r_shape, act_quant) -> None:
    """The fused residual broadcasts against the output as ``y + residual`` does: the frozen
    layer once flattened it to rows of N (a per-token residual [..., 1] became a per-feature
    one, other shapes raised torch's reshape/expand errors)."""
    torch.manual_seed(4)
    layer = TernaryLinear(16, 8, act_quant=act_quant).eval()
    x, r = torch.randn(x_shape), torch.randn(r_shape)
    with torch.no_grad():
        ref = layer(x, activation="relu", residual=r)
        layer.freeze()
        got = layer(x, activation="relu", residual=r)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act_quant", ["none", "int8", "int8_image"])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_of_an_empty_batch_is_empty(act_quant: str, groups: int) -> None:
    """A batch of no images gives no outputs, as nn.Conv2d does, unfrozen and frozen: the
    int8_image quantizer reshaped it to (0, -1) and raised 'cannot reshape tensor of 0
    elements'."""
    layer = TernaryConv2d(4, 8, 3, padding=1, groups=groups, act_quant=act_quant).eval()
    x = torch.randn(0, 4, 5, 5)
    with torch.no_grad():
        assert layer(x).shape == (0, 8, 5, 5)
        layer.freeze()
        assert layer(x).shape == (0, 8, 5, 5)


@pytest.mark.parametrize("act_quant,groups", [("int8_image", 1), ("int8_image", 2),
                                              ("int8", 8)])
def test_frozen_int8_convs_pass_the_ste_gradient_to_their_input(act_quant, groups) -> None:
    """The activation quantizer is identity in the backward pass of a frozen layer, as in
    its fake-quantized form: the frozen int8_image convs and the many-group int8 convs (their
    PyTorch path) gave their input no gradient at all (x.grad stayed None)."""
    torch.manual_seed(8)
    layer = TernaryConv2d(8, 8, 3, padding=1, groups=groups, act_quant=act_quant).eval()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    (ref,) = torch.autograd.grad(layer(x).sum(), x)
    layer.freeze()
    y = layer(x)
    y.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(y, layer(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("activation", ["gelu", "tanh"])
def test_frozen_int8_linear_takes_the_activation_derivative_where_its_output_is(activation):
    """The frozen int8 layer's gradient (the custom op's) is the fake-quantized layer's: the
    quantizer is identity, the activation's derivative is taken at the pre-activation of the
    quantized input. It was taken at the unquantized one's (gelu gradients off by 1e-3, a
    relu's mask wrong where quantization flips a sign)."""
    torch.manual_seed(9)
    layer = TernaryLinear(64, 32, act_quant="int8").eval()
    x = torch.randn(16, 64) * 3
    x.requires_grad_(True)
    (ref,) = torch.autograd.grad(layer(x, activation).square().sum(), x)
    layer.freeze()
    (got,) = torch.autograd.grad(layer(x, activation).square().sum(), x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape", [(1, 3, 5, 5), (3, 5, 5)])
@pytest.mark.parametrize("act_quant", ["none", "int8", "int8_image"])
def test_frozen_conv_takes_a_residual_that_enlarges_the_result(x_shape, act_quant) -> None:
    """A residual that broadcasts the output to a larger shape ((2, O, H, W) on one image) is
    added as ``y + residual`` is, unfrozen and frozen: the frozen layer raised torch's
    'expanded size of the tensor' error."""
    torch.manual_seed(10)
    layer = TernaryConv2d(3, 4, 3, padding=1, act_quant=act_quant).eval()
    x, r = torch.randn(x_shape), torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        ref = layer(x, "relu", r)
        layer.freeze()
        got = layer(x, "relu", r)
    assert got.shape == ref.shape == (2, 4, 5, 5)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("qkw", QUANTIZERS, ids=lambda d: d["quantizer"])
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_freeze_equivalence(qkw: dict, fmt: str, per_channel: bool) -> None:
    torch.manual_seed(1)
    layer = TernaryLinear(37, 11, per_channel=per_channel, **qkw).eval()
    x = _rand(6, 37, seed=3)
    with torch.no_grad():
        ref = layer(x)
        trits, scale = layer.ternary_weight()
    assert layer.freeze(format=fmt) is layer
    assert layer.frozen and layer.format == fmt
    _check_frozen_state(layer, 11, 37, fmt, per_channel)
    assert torch.equal(unpack_ternary(layer.packed_weight()), trits)
    assert torch.equal(layer.weight_scale, scale)
    with torch.no_grad():
        out = layer(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act_quant", ["none", "int8"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_freeze_equivalence_act_quant_and_3d_input(act_quant: str, bias: bool) -> None:
    torch.manual_seed(2)
    layer = TernaryLinear(20, 9, bias=bias, act_quant=act_quant).eval()
    x = _rand(2, 5, 20, seed=4)
    with torch.no_grad():
        ref = layer(x)
        layer.freeze()
        out = layer(x)
    assert out.shape == (2, 5, 9)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", [None, "relu", "relu6", "gelu", "silu", "sigmoid", "tanh"])
def test_fused_activation_and_residual(activation: str | None) -> None:
    torch.manual_seed(3)
    layer = TernaryLinear(16, 8).eval()
    x, r = _rand(4, 16, seed=5), _rand(4, 8, seed=6)
    with torch.no_grad():
        ref = layer(x, activation=activation, residual=r)
        plain = layer(x) + r
        if activation is not None:
            plain = getattr(F, activation)(plain) if activation not in ("sigmoid", "tanh") else getattr(torch, activation)(plain)
        torch.testing.assert_close(ref, plain)
        layer.freeze()
        torch.testing.assert_close(layer(x, activation=activation, residual=r), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        layer(x, activation="swish")


@pytest.mark.parametrize(
    "conv_kw",
    [
        {"kernel_size": 3, "padding": 1},
        {"kernel_size": (3, 1), "stride": 2, "padding": (1, 0)},
        {"kernel_size": 3, "dilation": 2, "padding": 2, "groups": 2},
        {"kernel_size": 1, "bias": False},
    ],
    ids=["3x3", "3x1-s2", "dilated-grouped", "1x1-nobias"],
)
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_conv_freeze_equivalence(conv_kw: dict, fmt: str) -> None:
    torch.manual_seed(4)
    layer = TernaryConv2d(4, 6, per_channel=True, **conv_kw).eval()
    x = _rand(2, 4, 9, 7, seed=7)
    with torch.no_grad():
        ref = layer(x)
        layer.freeze(fmt)
        out = layer(x)
    k = (4 // layer.groups) * layer.kernel_size[0] * layer.kernel_size[1]
    _check_frozen_state(layer, 6, k, fmt, True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "conv_kw",
    [{"padding": 1}, {"stride": 2, "groups": 2}, {"dilation": 2, "groups": 4, "padding": 1}],
    ids=["plain", "strided-grouped", "dilated-depthwise"],
)
def test_conv_int8_act_quant_freeze_equivalence(conv_kw: dict) -> None:
    torch.manual_seed(5)
    layer = TernaryConv2d(4, 8, 3, act_quant="int8", **conv_kw).eval()
    x = _rand(2, 4, 7, 6, seed=8)
    with torch.no_grad():
        ref = layer(x)
        layer.freeze()
        out = layer(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_bitlinear_matches_reference_and_freezes() -> None:
    torch.manual_seed(6)
    layer = BitLinear(24, 10, bias=True).eval()
    x = _rand(3, 24, seed=9) * 4.0
    with torch.no_grad():
        xn = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + layer.eps)
        q, s_x = quant.quantize_activations_int8(xn)
        t, gamma = quant.quantize_absmean(layer.weight)
        expected = (q.float() * s_x) @ (t.float() * gamma).T + layer.bias
        ref = layer(x)
        torch.testing.assert_close(ref, expected, rtol=1e-5, atol=1e-5)
        layer.freeze()
        torch.testing.assert_close(layer(x), ref, rtol=1e-4, atol=1e-4)
    assert set(layer.state_dict()) == {"weight_packed", "weight_scale", "bias"}
    assert "bias" not in BitLinear(8, 4).state_dict()


def test_stochastic_layer_draws_in_training_only() -> None:
    torch.manual_seed(7)
    layer = TernaryLinear(64, 32, quantizer="stochastic")
    draws = [layer.ternary_weight().trits for _ in range(2)]
    assert not torch.equal(draws[0], draws[1])
    layer.eval()
    assert torch.equal(layer.ternary_weight().trits, layer.ternary_weight().trits)
    x = _rand(3, 64)
    with torch.no_grad():
        ref = layer(x)
        layer.train()  # freezing is deterministic whatever the mode
        layer.freeze()
        torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


def test_frozen_skeleton_loads_state_dict() -> None:
    torch.manual_seed(8)
    src = TernaryConv2d(3, 5, 3, padding=1, per_channel=True).freeze("t1.6")
    dst = TernaryConv2d.frozen_skeleton(3, 5, 3, padding=1, per_channel=True, format="t1.6")
    assert dst.frozen and not hasattr(dst, "weight")
    assert unpack_ternary(dst.packed_weight()).abs().sum() == 0
    with torch.no_grad():
        assert dst(_rand(1, 3, 4, 4)).abs().sum() > 0  # the bias alone: a valid all-zero weight
    dst.load_state_dict(src.state_dict())
    x = _rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))
    lin = TernaryLinear(150, 4)
    lin.freeze_skeleton("t2")
    with pytest.raises(RuntimeError):
        lin.freeze_skeleton("t2")
    # 150 trits a row: two 128-trit t2 blocks, one 160-trit t1.6 block
    wrong = TernaryLinear.frozen_skeleton(150, 4, format="t1.6")
    with pytest.raises(RuntimeError, match="size mismatch"):
        wrong.load_state_dict(TernaryLinear(150, 4).freeze("t2").state_dict())


def test_refreeze_with_other_format_repacks() -> None:
    torch.manual_seed(9)
    layer = TernaryLinear(33, 5).freeze("t2")
    x = _rand(2, 33)
    with torch.no_grad():
        ref = layer(x)
        trits = unpack_ternary(layer.packed_weight())
        layer.freeze("t1.6")
        assert layer.format == "t1.6"
        assert layer.weight_packed.shape == (5, packed_row_bytes(33, "t1.6"))
        assert torch.equal(unpack_ternary(layer.packed_weight()), trits)
        torch.testing.assert_close(layer(x), ref)
        assert layer.freeze("t1.6") is layer


def test_freeze_model_nested() -> None:
    torch.manual_seed(10)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = TernaryConv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.head = nn.Sequential(TernaryLinear(4 * 4 * 4, 16), Int8Linear(16, 8), Int4Linear(8, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))

    net = Net().eval()
    x = _rand(2, 1, 6, 6)
    with torch.no_grad():
        ref = net(x)
        assert freeze_model(net, format="t1.6") is net
        out = net(x)
    assert all(layer.frozen for _, layer in tritium_layers(net))
    assert net.conv.format == "t1.6" and net.head[0].format == "t1.6"
    assert [p for p in net.state_dict() if p.endswith(".weight") and "bn" not in p] == []
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="packing format"):
        freeze_model(net, format="t3")


def test_int8_linear_correctness() -> None:
    torch.manual_seed(11)
    layer = Int8Linear(19, 6).eval()
    x = _rand(4, 19)
    with torch.no_grad():
        q, s = quant.quantize_int8_weights(layer.weight)
        expected = x @ (q.float() * s[:, None]).T + layer.bias
        ref = layer(x)
        torch.testing.assert_close(ref, expected)
        layer.freeze()
        out = layer(x)
    assert set(layer.state_dict()) == {"weight_int8", "weight_scale", "bias"}
    assert layer.weight_int8.dtype == torch.int8 and torch.equal(layer.weight_int8, q)
    torch.testing.assert_close(out, ref)
    # close to the float layer: int8 error is small
    float_out = x @ (q.float() * s[:, None]).T
    assert (float_out - (out - layer.bias)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="int8"):
        Int8Linear(2, 2).freeze("t2")


@pytest.mark.parametrize("group_size", [None, 4, 5])
def test_int4_linear_correctness(group_size: int | None) -> None:
    torch.manual_seed(12)
    layer = Int4Linear(13, 6, group_size=group_size).eval()
    x = _rand(3, 13)
    with torch.no_grad():
        r = quant.quantize_int4_weights(layer.weight, group_size)
        expected = x @ quant.dequantize_int(r.q, r.scale, group_size).T + layer.bias
        ref = layer(x)
        torch.testing.assert_close(ref, expected)
        layer.freeze()
        out = layer(x)
    sd = layer.state_dict()
    assert set(sd) == {"weight_packed", "weight_scale", "bias"}
    assert sd["weight_packed"].shape == (6, 7) and sd["weight_packed"].dtype == torch.uint8
    assert sd["weight_scale"].shape == (6, 1 if group_size is None else -(-13 // group_size))
    torch.testing.assert_close(out, ref)
    skeleton = Int4Linear.frozen_skeleton(13, 6, group_size=group_size)
    skeleton.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(skeleton(x), out)


def test_layers_pickle_and_deepcopy() -> None:
    torch.manual_seed(13)
    x = _rand(2, 6)
    for layer in (TernaryLinear(6, 3, ste="clipped"), TernaryLinear(6, 3).freeze("t1.6")):
        layer.eval()
        for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
            with torch.no_grad():
                torch.testing.assert_close(clone(x), layer(x))


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="needs a threshold"):
        TernaryLinear(4, 4, quantizer="deterministic")
    with pytest.raises(ValueError, match="only applies"):
        TernaryLinear(4, 4, quantizer="twn", threshold=0.1)
    with pytest.raises(ValueError, match="valid names"):
        TernaryLinear(4, 4, quantizer="xnor")
    with pytest.raises(ValueError, match="act_quant"):
        TernaryLinear(4, 4, act_quant="int4")
    with pytest.raises(ValueError, match="STE"):
        TernaryLinear(4, 4, ste="soft")
    with pytest.raises(ValueError, match="divisible"):
        TernaryConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="packing format"):
        TernaryLinear(4, 4).freeze("t3")
    layer = TernaryLinear(4, 4, quantizer="bitnet")
    assert layer.quantizer == "absmean"
    assert "quantizer='absmean'" in repr(layer)


def test_runtime_does_not_import_the_compiler() -> None:
    code = (
        "import sys, tritium.runtime\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in "
        "(['tritium','frontend'],['tritium','check'],['tritium','ir'],['tritium','passes'],"
        "['tritium','driver'])]\n"
        "bad += [m for m in sys.modules if m.startswith('tritium.backends') "
        "and not m.startswith('tritium.backends.cpu') and m != 'tritium.backends']\n"
        # Tuned configs are data the runtime reads: no tuner, database or optimizer.
        "bad += [m for m in sys.modules if m.startswith('tritium.tune')]\n"
        "bad += [m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'optuna')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_public_exports_as_generated_code_uses_them() -> None:
    import tritium.runtime as trt

    missing = [name for name in trt.__all__ if not hasattr(trt, name)]
    assert missing == []
    model = nn.Sequential(trt.TernaryLinear(8, 4, quantizer="deterministic", threshold=0.05))
    trt.freeze_model(model, format="t1.6")
    assert isinstance(model[0].packed_weight(), trt.PackedTernary)
    assert trt.unpack_ternary(model[0].packed_weight()).shape == (4, 8)


@pytest.mark.parametrize("bad", [dict(stride=0), dict(stride=(1, 0)), dict(dilation=0),
                                 dict(dilation=-1), dict(padding=-1), dict(padding=(0, -2))])
def test_a_conv_with_a_stride_dilation_or_padding_torch_refuses_is_refused(bad):
    # ternary_conv2d divided by a stride of 0 (ZeroDivisionError) and computed something for
    # a negative dilation or padding; TernaryConv2d took them too
    from tritium.runtime.kernels import ternary_conv2d
    from tritium.runtime.packing import pack_ternary
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"{name} must be at least"):
        TernaryConv2d(3, 4, 3, **bad)
    pk = pack_ternary(torch.ones(4, 2 * 3 * 3), "t2")
    args = {"stride": 1, "padding": 0, "dilation": 1, **bad}
    with pytest.raises(ValueError, match=f"{name} must be at least"):
        ternary_conv2d(torch.randn(1, 2, 6, 6), pk, (4, 2, 3, 3), torch.tensor(1.0), **args)
