"""The fp32 implicit-GEMM conv (`tritium_conv.h`: output channels as lanes, positions read in
place from the padded stride phases, the weight's int8 panel layout made once per plan) for
convolutions with many channels on small planes, on every ISA path this CPU runs: the same
values as the flat conv and patch GEMM it replaces there, and torch's conv2d within fp32
rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tritium.runtime import kernels
from tritium.runtime.layers import TernaryConv2d
from tritium.runtime.packing import pack_ternary
from tritium.runtime.plan import linear_plan, pool_plan

pytestmark = pytest.mark.usefixtures("every_isa")


def _reference(x, trits, shape, scale, bias, stride, padding, dilation, act, res):
    o, c, kh, kw = shape
    y = F.conv2d(x.double(), trits.double().reshape(o, c, kh, kw), None, stride, padding,
                 dilation)
    y = y * scale.double().reshape(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.double().reshape(1, -1, 1, 1)
    if res is not None:
        y = y + res.double()
    if act == "relu":
        y = torch.relu(y)
    elif act == "silu":
        y = F.silu(y)
    return y.float()


def _panel_bytes(plan, x, kernel, stride, padding, dilation) -> int:
    plan.conv2d(x, kernel, stride, padding, dilation, None, None)
    (hit,) = plan.geoms.values()
    return hit[4]


# (batch, C, O, H, W, kernel, stride, padding, dilation): planes of at most 64 positions, O
# from under one panel of channels (64 on AVX-512, 16 on AVX2) to several panels with a
# partial last one
CASES = [
    (1, 64, 64, 8, 8, 3, 1, 1, 1),
    (3, 40, 70, 5, 7, 3, 2, 1, 1),
    (2, 8, 33, 6, 5, 3, 1, 2, 2),
    (1, 512, 64, 4, 4, 3, 1, 1, 1),
    (2, 24, 48, 9, 9, 2, 3, 0, 1),
    (65, 16, 32, 4, 4, 3, 1, 1, 1),   # positions across several chunks and images
    (1, 6, 40, 3, 8, (1, 3), 1, (0, 1), 1),
    (2, 20, 130, 7, 6, 3, 2, 1, 1),   # AVX-512: two 64-channel panels and a partial one
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_implicit_gemm_conv_matches_torch(case, fmt: str) -> None:
    b, c, o, h, w, k, s, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    stride, padding, dilation = (s, s), (p, p) if isinstance(p, int) else p, (d, d)
    gen = torch.Generator().manual_seed(b * 1000 + c + o)
    trits = torch.randint(-1, 2, (o, c * kh * kw), generator=gen, dtype=torch.int8)
    wp = pack_ternary(trits, fmt)
    x = torch.randn(b, c, h, w, generator=gen)
    for per_channel, with_bias, act, with_res in [(True, True, "relu", True),
                                                 (False, False, None, False),
                                                 (True, False, "silu", False)]:
        scale = torch.rand(o if per_channel else 1, generator=gen) + 0.1
        bias = torch.randn(o, generator=gen) if with_bias else None
        ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        res = torch.randn(b, o, ho, wo, generator=gen) if with_res else None
        plan = linear_plan(wp.data, o, c * kh * kw, fmt, scale, bias, "none")
        if plan is None:
            pytest.skip("no native kernels")
        with torch.no_grad():
            got = plan.conv2d(x, (kh, kw), stride, padding, dilation, act, res)
        want = _reference(x, trits, (o, c, kh, kw), scale, bias, stride, padding, dilation,
                          act, res)
        assert got.shape == want.shape and got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_the_panel_layout_is_made_once_and_only_where_the_kernels_use_it() -> None:
    info = kernels.kernel_info()
    if not info.get("native"):
        pytest.skip("no native kernels")
    isa = info.get("isa")
    gen = torch.Generator().manual_seed(3)
    trits = torch.randint(-1, 2, (64, 64 * 9), generator=gen, dtype=torch.int8)
    wp = pack_ternary(trits, "t2")
    scale = torch.rand(1, generator=gen) + 0.1
    small = torch.randn(2, 64, 8, 8, generator=gen)
    args = ((3, 3), (1, 1), (1, 1), (1, 1))
    plan = linear_plan(wp.data, 64, 64 * 9, "t2", scale, None, "none")
    nbytes = _panel_bytes(plan, small, *args)
    if isa in ("avx512", "avx2"):
        assert nbytes == 64 * 64 * 9 and plan.cpanel is not None
        first = plan.cpanel.data_ptr()
        plan.conv2d(small, *args, "relu", None)
        assert plan.cpanel.data_ptr() == first   # kept with the plan
        # the layout: trit kk of channel r of panel q at (q * K + kk) * NR + r
        nr = 64 if isa == "avx512" else 16
        lay = plan.cpanel.reshape(64 // nr, 64 * 9, nr)
        torch.testing.assert_close(lay.permute(0, 2, 1).reshape(64, 64 * 9), trits)
    else:
        assert nbytes == 0 and plan.cpanel is None
    # a plane of more than 64 positions, a 1x1 window, int8 activations: no layout
    big = linear_plan(wp.data, 64, 64 * 9, "t2", scale, None, "none")
    assert _panel_bytes(big, torch.randn(1, 64, 12, 12), *args) == 0 and big.cpanel is None
    w1 = pack_ternary(trits[:, :64].contiguous(), "t2")
    one = linear_plan(w1.data, 64, 64, "t2", scale, None, "none")
    assert _panel_bytes(one, small, (1, 1), (1, 1), (0, 0), (1, 1)) == 0
    q = linear_plan(wp.data, 64, 64 * 9, "t2", scale, None, "int8")
    assert _panel_bytes(q, small, *args) == 0 and q.cpanel is None


def test_a_frozen_resnet_style_conv_agrees_with_training_mode_and_pools() -> None:
    torch.manual_seed(5)
    conv = TernaryConv2d(96, 64, 3, padding=1, bias=True, per_channel=True)
    x = torch.randn(3, 96, 8, 8)
    res = torch.randn(3, 64, 8, 8)
    with torch.no_grad():
        want = conv(x, "relu", res)
        conv.freeze()
        got = conv(x, "relu", res)
        again = conv(x, "relu", res)
    torch.testing.assert_close(again, got, rtol=0, atol=0)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # a pooling after it runs on the NCHW result in the same call
    with torch.no_grad():
        plan = conv._frozen_plan(x, None)
        pool = pool_plan(torch.nn.MaxPool2d(2))
        if plan is None or pool is None:
            pytest.skip("no native plan")
        pooled = plan.conv2d(x, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                             "relu", None, pool)
        plain = plan.conv2d(x, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                            "relu", None)
    torch.testing.assert_close(pooled, F.max_pool2d(plain, 2), rtol=0, atol=0)
