"""The int8 activation quantizer on rows built to catch an inexact quotient (values on and a
few ulps around every rounding tie and quotient midpoint, absmax 2^-120..2^100) and the
int8_image conv's vectorized layout and epilogue (`tritium_conv8.h`: 16 pixels of 4 channels
interleaved at once, the float tile transposed 8 x 8 into NCHW with the residual and
relu/relu6), on every ISA path this CPU runs: bit for bit what PyTorch's fake quantization
computes, and still the integer conv."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tritium.backends import cpu
from tritium.runtime import kernels
from tritium.runtime.kernels import _conv2d_int8_image
from tritium.runtime.packing import pack_ternary
from tritium.runtime.plan import linear_plan
from tritium.runtime.quant import quantize_activations_int8

pytestmark = pytest.mark.usefixtures("every_isa")


def _near_ties(amax: float, k: int, gen: torch.Generator) -> torch.Tensor:
    """A row of absmax ``amax`` whose other values sit on, and a few ulps around, the points
    where x / s is a half-integer (the rounding ties of round-half-even) and a float midpoint
    of the quotient: where a quotient off by one ulp would change the int8 value."""
    s = torch.tensor(amax, dtype=torch.float32) / 127.0
    n = torch.randint(0, 127, (k,), generator=gen).double()
    frac = torch.where(torch.rand(k, generator=gen) < 0.5, torch.full((k,), 0.5, dtype=torch.float64),
                       torch.rand(k, generator=gen, dtype=torch.float64))
    x = ((n + frac) * s.double()).float()
    bits = x.view(torch.int32) + torch.randint(-3, 4, (k,), generator=gen, dtype=torch.int32)
    bits = bits.clamp(min=0)   # never below +0's bits (that would be a NaN)
    x = bits.view(torch.float32)
    x = torch.where(torch.rand(k, generator=gen) < 0.5, x, -x)
    x = x.clamp(-amax, amax)
    x[0] = amax if k % 2 else -amax
    return x


@pytest.mark.native
@pytest.mark.parametrize("k", [7, 64, 333, 1000])
def test_quantizer_on_near_ties_is_torchs_fake_quantization(k: int) -> None:
    lib = cpu.load()
    if lib is None:
        pytest.skip("no native kernels")
    gen = torch.Generator().manual_seed(k)
    # absmax from 2^-120 to 2^100, odd mantissas
    amaxes = [math.ldexp(1.0 + i / 37.0, e) for i, e in enumerate(range(-120, 101, 5))]
    rows = [_near_ties(a, k, gen) for a in amaxes]
    rows.append(torch.zeros(k))                               # scale 1
    rows.append(torch.randn(k, generator=gen) * 1e-3)
    tie = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 127.0, -127.0, 126.5])[:k]
    rows.append(torch.cat([tie, torch.zeros(k - tie.numel())]))
    x = torch.stack(rows).contiguous()
    m = x.shape[0]
    xq = torch.empty(m, k, dtype=torch.int8)
    s = torch.empty(m)
    lib.lib.tri_quantize_rows(x.data_ptr(), m, k, xq.data_ptr(), s.data_ptr(), 1)
    ref_q, ref_s = quantize_activations_int8(x)
    assert torch.equal(s, ref_s.squeeze(1))
    bad = (xq != ref_q).nonzero()
    assert bad.numel() == 0, f"{bad.shape[0]} values differ, first at {bad[0].tolist()}"


# (batch, C, O, H, W, kernel, stride, padding): rows of 16 pixels and more (the interleaving),
# C a multiple of 4 and not, runs of positions of 8 and more with tails (the transposed
# epilogue), MobileNetV2's pointwise shapes scaled down
CASES = [
    (2, 24, 40, 16, 16, 1, 1, 0),
    (1, 16, 20, 17, 35, 3, 1, 1),
    (3, 6, 18, 18, 16, 1, 1, 0),
    (2, 32, 16, 20, 19, 3, 2, 1),
]


@pytest.mark.native
@pytest.mark.parametrize("case", CASES)
def test_int8_image_conv_on_wide_rows_is_the_integer_conv(case) -> None:
    b, c, o, h, w, k, s, p = case
    gen = torch.Generator().manual_seed(h * w + c)
    trits = torch.randint(-1, 2, (o, c, k, k), generator=gen, dtype=torch.int8)
    x = torch.randint(-127, 128, (b, c, h, w), generator=gen).float()
    x.view(b, -1)[:, 0] = 127.0   # absmax 127 in every image: the scale is exactly 1
    y = kernels.ternary_conv2d(x, pack_ternary(trits.reshape(o, -1)), (o, c, k, k),
                               torch.ones(1), None, stride=s, padding=p,
                               act_quant="int8_image")
    assert torch.equal(y.double(), F.conv2d(x.double(), trits.double(), None, s, p))


@pytest.mark.native
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("act", [None, "relu", "relu6", "silu"])
@pytest.mark.parametrize("with_res", [False, True])
def test_int8_image_epilogue_matches_the_pytorch_path(case, act, with_res: bool) -> None:
    b, c, o, h, w, k, s, p = case
    gen = torch.Generator().manual_seed(3 * h + w)
    trits = torch.randint(-1, 2, (o, c, k, k), generator=gen, dtype=torch.int8)
    x = torch.randn(b, c, h, w, generator=gen) * 3
    scale = torch.rand(o, generator=gen) + 0.5
    bias = torch.randn(o, generator=gen) + 2.0   # values around 0 and 6: both clamps of relu6
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    res = torch.randn(b, o, ho, wo, generator=gen) if with_res else None
    pk = pack_ternary(trits.reshape(o, -1))
    plan = linear_plan(pk.data, o, c * k * k, "t2", scale, bias, "int8_image")
    if plan is None:
        pytest.skip("no native kernels")
    got = plan.conv2d(x, (k, k), (s, s), (p, p), (1, 1), act, res)
    want = _conv2d_int8_image(x, pk, (o, c, k, k), scale, bias, (s, s), (p, p), (1, 1), 1,
                              act, res)
    torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-5)
    if act in ("relu", "relu6"):
        assert bool((got >= 0).all()) and (act == "relu" or bool((got <= 6).all()))
