"""The depthwise and pointwise convolutions (csrc/tritium_dw.h) on every ISA path: fp32
activations, NCHW, with the scale/bias/residual/activation epilogue, on odd shapes (planes
whose length is not a multiple of the register runs, channel counts that are not multiples of
the output blocks, stride 2 phases, dilation, zero rows of trits)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tritium.runtime import kernels, pack_ternary
from tritium.runtime.kernels import ternary_conv2d

pytestmark = pytest.mark.usefixtures("every_isa")


def _trits(*shape: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(-1, 2, shape, generator=gen, dtype=torch.int8)


def _reference(x, trits, shape, scale, bias, stride, padding, dilation, groups, act, res):
    w = trits.double().reshape(shape) * scale.double().reshape(-1, 1, 1, 1)
    y = F.conv2d(x.double(), w, None if bias is None else bias.double(), stride, padding,
                 dilation, groups)
    if res is not None:
        y = y + res.double()
    if act == "relu":
        y = torch.relu(y)
    elif act == "relu6":
        y = F.relu6(y)
    elif act == "gelu":
        y = F.gelu(y)
    return y.float()


def _check(y, ref):
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("c,h,w,k,stride,padding,dilation,batch", [
    (1, 1, 1, 3, 1, 1, 1, 1),
    (5, 7, 9, 3, 1, 1, 1, 2),
    (13, 32, 32, 3, 1, 1, 1, 1),
    (24, 16, 16, 3, 2, 1, 1, 3),
    (17, 9, 11, 3, 2, 1, 1, 2),
    (40, 4, 4, 3, 1, 1, 1, 2),
    (9, 10, 10, 5, 2, 2, 1, 1),
    (8, 12, 13, 3, 1, 2, 2, 1),
    (6, 8, 8, 3, 1, 0, 1, 2),
    (3, 6, 5, (3, 1), (1, 2), (1, 0), 1, 2),
])
@pytest.mark.parametrize("act", [None, "relu6", "gelu"])
def test_depthwise_matches_reference(c, h, w, k, stride, padding, dilation, batch, act):
    gen = torch.Generator().manual_seed(c * 131 + h * 7 + w)
    kh, kw = (k, k) if isinstance(k, int) else k
    shape = (c, 1, kh, kw)
    trits = _trits(c, kh * kw, gen=gen)
    trits[0] = 0   # a channel without taps
    x = torch.randn(batch, c, h, w, generator=gen)
    scale = torch.rand(c, generator=gen) + 0.5
    bias = torch.randn(c, generator=gen)
    for fmt in ("t2", "t1.6"):
        y = ternary_conv2d(x, pack_ternary(trits, fmt), shape, scale, bias, stride, padding,
                           dilation, c, activation=act)
        ref = _reference(x, trits, shape, scale, bias, stride, padding, dilation, c, act, None)
        _check(y, ref)


@pytest.mark.parametrize("c,o,hw,batch", [
    (1, 1, (1, 1), 1), (3, 7, (5, 5), 2), (16, 96, (32, 32), 1), (24, 144, (16, 16), 2),
    (320, 13, (4, 4), 3), (96, 24, (9, 7), 2), (7, 6, (8, 8), 1), (160, 960, (2, 3), 1),
])
@pytest.mark.parametrize("act", [None, "relu", "relu6"])
def test_pointwise_matches_reference(c, o, hw, batch, act):
    gen = torch.Generator().manual_seed(c * 17 + o)
    shape = (o, c, 1, 1)
    trits = _trits(o, c, gen=gen)
    x = torch.randn(batch, c, *hw, generator=gen)
    scale = torch.rand(o, generator=gen) + 0.5
    for fmt, bias, per_channel in (("t2", torch.randn(o, generator=gen), True),
                                   ("t1.6", None, False)):
        s = scale if per_channel else scale[:1]
        y = ternary_conv2d(x, pack_ternary(trits, fmt), shape, s, bias, 1, 0, 1, 1,
                           activation=act)
        ref = _reference(x, trits, shape, s.expand(o), bias, 1, 0, 1, 1, act, None)
        _check(y, ref)


@pytest.mark.parametrize("depthwise", [True, False])
def test_fused_residual(depthwise):
    gen = torch.Generator().manual_seed(3)
    c, h, w, batch = 19, 11, 13, 2
    shape = (c, 1, 3, 3) if depthwise else (c, c, 1, 1)
    groups, padding = (c, 1) if depthwise else (1, 0)
    trits = _trits(c, shape[1] * shape[2] * shape[3], gen=gen)
    x = torch.randn(batch, c, h, w, generator=gen)
    res = torch.randn(batch, c, h, w, generator=gen)
    scale = torch.rand(c, generator=gen) + 0.5
    bias = torch.randn(c, generator=gen)
    y = ternary_conv2d(x, pack_ternary(trits), shape, scale, bias, 1, padding, 1, groups,
                       activation="relu6", residual=res)
    _check(y, _reference(x, trits, shape, scale, bias, 1, padding, 1, groups, "relu6", res))


def test_nan_and_infinity_pass_through_the_epilogue():
    """relu/relu6 let NaN through as torch's do, on the vector lanes and the scalar tails."""
    c, h, w = 4, 5, 7
    x = torch.randn(1, c, h, w)
    x[0, 1, 2, 3] = float("nan")
    x[0, 2, 0, 0] = float("inf")
    trits = torch.ones(c, c, dtype=torch.int8)
    y = ternary_conv2d(x, pack_ternary(trits), (c, c, 1, 1), torch.ones(c), None, 1, 0, 1, 1,
                       activation="relu6")
    ref = F.relu6(F.conv2d(x, trits.float().reshape(c, c, 1, 1)))
    torch.testing.assert_close(y, ref, equal_nan=True)
    dtr = torch.ones(c, 9, dtype=torch.int8)
    y = ternary_conv2d(x, pack_ternary(dtr), (c, 1, 3, 3), torch.ones(c), None, 1, 1, 1, c,
                       activation="relu")
    ref = torch.relu(F.conv2d(x, dtr.float().reshape(c, 1, 3, 3), None, 1, 1, 1, c))
    torch.testing.assert_close(y, ref, equal_nan=True)


@pytest.mark.parametrize("hw", [(12, 13), (5, 6)])   # the plane sweep, the lanes (<= 64)
def test_depthwise_zero_taps_see_nan_and_infinity_as_the_float_conv_does(hw):
    """A zero trit on a NaN or infinite input gives NaN (0 * x), as the convolution of the
    weights as floats (the fake-quantized layer) does: the plane sweep, which skips zero taps,
    once turned such inputs into finite outputs (a channel of all-zero trits gave its bias)."""
    c, (h, w) = 6, hw
    gen = torch.Generator().manual_seed(5)
    trits = _trits(c, 9, gen=gen)
    trits[0] = 0                      # no taps at all
    trits[1] = 0
    trits[1, 4] = 1                   # the centre tap only
    x = torch.randn(2, c, h, w, generator=gen)
    x[0, 0, 3, 4] = float("nan")
    x[0, 1, 2, 2] = float("inf")
    x[1, 2:, 1, 3] = float("-inf")
    bias = torch.randn(c, generator=gen)
    w4 = trits.float().reshape(c, 1, 3, 3)
    ref = F.conv2d(x, w4, bias, 1, 1, 1, c)
    assert ref.isnan().any()
    for fmt in ("t2", "t1.6"):
        y = ternary_conv2d(x, pack_ternary(trits, fmt), (c, 1, 3, 3), torch.ones(c), bias,
                           1, 1, 1, c)
        torch.testing.assert_close(y, ref, equal_nan=True, atol=2e-4, rtol=1e-4)


def test_native_kernels_run_them():
    """The shapes above take the native path (not the torch fallback) where kernels exist."""
    if not kernels.native_available():
        pytest.skip("no native kernels on this path")
    from tritium.runtime.plan import linear_plan

    trits = _trits(8, 9, gen=torch.Generator().manual_seed(0))
    p = pack_ternary(trits)
    plan = linear_plan(p.data, 8, 9, "t2", torch.ones(8), None, "none")
    x = torch.randn(1, 8, 6, 6)
    y = plan.conv2d(x, (3, 3), (1, 1), (1, 1), (1, 1), None, None, None, 8)
    assert y is not None
    _check(y, _reference(x, trits, (8, 1, 3, 3), torch.ones(8), None, 1, 1, 1, 8, None, None))
