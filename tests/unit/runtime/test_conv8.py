"""The int8-activation ternary conv (`act_quant="int8_image"`, `tritium_conv8.h`): one absmax
scale per sample, the image quantized once and an exact int32 implicit GEMM, on every ISA path
this CPU runs. The integer part is checked bit for bit against PyTorch (inputs whose scale is
exactly 1), the float result against the PyTorch path of the same mode, and the layer's QAT
forward against its frozen form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tritium
from tritium.runtime import freeze_model, kernels, load_checkpoint, save_checkpoint
from tritium.runtime.kernels import _conv2d_int8_image
from tritium.runtime.layers import TernaryConv2d, TernaryLinear
from tritium.runtime.packing import pack_ternary
from tritium.runtime.plan import linear_plan, pool_plan

pytestmark = pytest.mark.usefixtures("every_isa")

# (batch, C, O, H, W, kernel, stride, padding, dilation): ResNet-18's and MobileNetV2's
# shapes scaled down, odd channel counts (C not a multiple of 4, O not of 16 or 64), tails of
# the position blocks, several chunks of positions across images
CASES = [
    (1, 64, 64, 8, 8, 3, 1, 1, 1),
    (2, 17, 70, 9, 11, 3, 2, 1, 1),
    (3, 3, 5, 5, 7, 3, 1, 1, 1),
    (2, 33, 20, 6, 6, 1, 2, 0, 1),
    (1, 24, 144, 8, 8, 1, 1, 0, 1),
    (5, 16, 130, 7, 6, 3, 1, 1, 1),
    (2, 6, 9, 9, 10, 5, 1, 2, 2),
    (1, 1, 1, 4, 3, (1, 3), (2, 1), (0, 1), 1),
    (70, 8, 16, 4, 4, 3, 1, 1, 1),
]


def _pack(trits: torch.Tensor, fmt: str = "t2"):
    return pack_ternary(trits.reshape(trits.shape[0], -1), fmt)


def _int_inputs(b: int, c: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Integer inputs in [-127, 127] whose absmax is 127 in every image: the scale is exactly
    1, so the quantized image is the input and the output is the integer conv itself."""
    x = torch.randint(-127, 128, (b, c, h, w), generator=gen).float()
    x.view(b, -1)[:, 0] = torch.where(torch.arange(b) % 2 == 0, 127.0, -127.0)
    return x


@pytest.mark.parametrize("case,fmt", [(c, "t2") for c in CASES] + [(CASES[1], "t1.6"),
                                                                   (CASES[5], "t1.6")])
def test_integer_sums_are_exact(case, fmt: str) -> None:
    b, c, o, h, w, k, s, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    gen = torch.Generator().manual_seed(sum(map(hash, map(str, case))) % 1000)
    trits = torch.randint(-1, 2, (o, c, kh, kw), generator=gen, dtype=torch.int8)
    x = _int_inputs(b, c, h, w, gen)
    y = kernels.ternary_conv2d(x, _pack(trits, fmt), (o, c, kh, kw), torch.ones(1), None,
                               stride=s, padding=p, dilation=d, act_quant="int8_image")
    ref = F.conv2d(x.double(), trits.double(), None, s, p, d)
    assert torch.equal(y.double(), ref)


@pytest.mark.parametrize("case,act", [(CASES[0], "relu"), (CASES[1], None), (CASES[2], "relu6"),
                                      (CASES[3], "gelu"), (CASES[4], None), (CASES[5], "relu")])
def test_matches_the_pytorch_path(case, act) -> None:
    """Random float inputs (a scale per sample), per-channel scales, bias and a residual: the
    native call and the PyTorch path quantize alike and differ at most by float rounding."""
    b, c, o, h, w, k, s, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    gen = torch.Generator().manual_seed(7)
    trits = torch.randint(-1, 2, (o, c, kh, kw), generator=gen, dtype=torch.int8)
    x = torch.randn(b, c, h, w, generator=gen) * torch.rand(b, 1, 1, 1, generator=gen) * 4
    scale = torch.rand(o, generator=gen) + 0.5
    bias = torch.randn(o, generator=gen)
    ho = (h + 2 * p - d * (kh - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (kw - 1) - 1) // s + 1
    res = torch.randn(b, o, ho, wo, generator=gen)
    pk = _pack(trits)
    plan = linear_plan(pk.data, o, c * kh * kw, "t2", scale, bias, "int8_image")
    if plan is None:
        pytest.skip("no native kernels")
    got = plan.conv2d(x, (kh, kw), (s, s), (p, p), (d, d), act, res)
    want = _conv2d_int8_image(x, pk, (o, c, kh, kw), scale, bias, (s, s), (p, p), (d, d), 1,
                              act, res)
    torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-5)


def test_an_all_zero_image_and_the_pooled_call() -> None:
    gen = torch.Generator().manual_seed(3)
    trits = torch.randint(-1, 2, (12, 5, 3, 3), generator=gen, dtype=torch.int8)
    x = torch.randn(3, 5, 8, 8, generator=gen)
    x[1] = 0.0
    pk = _pack(trits)
    scale, bias = torch.rand(12, generator=gen) + 0.1, torch.randn(12, generator=gen)
    plan = linear_plan(pk.data, 12, 45, "t2", scale, bias, "int8_image")
    pool = pool_plan(nn.MaxPool2d(2))
    if plan is None or pool is None:
        pytest.skip("no native kernels")
    got = plan.conv2d(x, (3, 3), (1, 1), (1, 1), (1, 1), "relu", None, pool)
    want = F.max_pool2d(_conv2d_int8_image(x, pk, (12, 5, 3, 3), scale, bias, (1, 1), (1, 1),
                                           (1, 1), 1, "relu", None), 2)
    torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-5)
    assert torch.equal(got[1], F.max_pool2d(torch.relu(bias).reshape(12, 1, 1).expand(12, 8, 8)
                                            .unsqueeze(0), 2)[0])


def _layer(groups: int = 1, bias: bool = True) -> TernaryConv2d:
    torch.manual_seed(0)
    return TernaryConv2d(8, 12, 3, stride=2, padding=1, groups=groups, bias=bias,
                         act_quant="int8_image")


@pytest.mark.parametrize("groups", [1, 4])
def test_frozen_layer_equals_its_qat_forward(groups: int) -> None:
    layer = _layer(groups)
    x = torch.randn(4, 8, 11, 9) * 3
    res = torch.randn(4, 12, 6, 5)
    layer.eval()
    with torch.no_grad():
        qat = layer(x, "relu6", res)
        layer.freeze()
        frozen = layer(x, "relu6", res)
    torch.testing.assert_close(frozen, qat, rtol=1e-5, atol=1e-5)


def test_folded_batchnorm_keeps_the_function() -> None:
    model = nn.Sequential(_layer(bias=False), nn.BatchNorm2d(12), nn.ReLU())
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        want = model(x)
        frozen = freeze_model(model)
        got = frozen(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_qat_fake_quant_has_a_straight_through_gradient() -> None:
    layer = _layer()
    x = torch.randn(2, 8, 7, 7, requires_grad=True)
    y = layer(x)
    # the forward is the conv of the per-sample fake-quantized input
    s = x.detach().reshape(2, -1).abs().amax(1).reshape(2, 1, 1, 1) / 127
    xq = torch.clamp(torch.round(x.detach() / s), -127, 127) * s
    want = F.conv2d(xq, layer.quantized_weight().detach(), layer.bias.detach(), 2, 1)
    torch.testing.assert_close(y.detach(), want, rtol=1e-5, atol=1e-5)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_the_mode_is_a_convolution_mode_only() -> None:
    with pytest.raises(ValueError, match="int8_image"):
        TernaryLinear(4, 4, act_quant="int8_image")
    with pytest.raises(ValueError, match="act_quant"):
        TernaryConv2d(4, 4, 3, act_quant="int8_token")
    assert "act_quant='int8_image'" in repr(_layer())


PROGRAM = """
model Net {
    layer c1: TernaryConv2d { in_channels: 3, out_channels: 8, kernel_size: 3, padding: 1, bias: false, act_quant: "int8_image" }
    layer bn1: BatchNorm2d { num_features: 8 }
    layer pool: MaxPool2d { kernel_size: 2 }
    layer c2: TernaryConv2d { in_channels: 8, out_channels: 6, kernel_size: 1, stride: 2, act_quant: "int8_image" }
    layer fc: Linear { in_features: 24, out_features: 4 }
    forward(x: Tensor[batch, 3, 8, 8]) -> Tensor[batch, 4] {
        x = pool(relu(bn1(c1(x))))
        x = relu(c2(x))
        return fc(flatten(x, start_dim: 1))
    }
}
"""


def test_generated_module_freezes_and_round_trips_a_checkpoint(tmp_path) -> None:
    src = tmp_path / "net.tri"
    src.write_text(PROGRAM)
    torch.manual_seed(1)
    model = tritium.load(src)
    assert model.c1.act_quant == "int8_image" and model.c2.act_quant == "int8_image"
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
        frozen = freeze_model(model)
        got = frozen(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    ckpt = tmp_path / "net.safetensors"
    save_checkpoint(ckpt, frozen, float16_scales=False)
    torch.manual_seed(2)
    again = tritium.load(src)
    load_checkpoint(ckpt, again)
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x), got)
