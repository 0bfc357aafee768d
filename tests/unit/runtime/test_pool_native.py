"""Max and average pooling run natively (`tritium.runtime.plan.PoolPlan`: `tri_pool2d` alone,
`tri_conv2d_pool_planned` fused after a frozen conv) give torch's values bit for bit, NaN,
infinities and signed zeros included, for any window torch takes, on every ISA path this CPU
runs; windows torch rejects raise torch's error. The register-blocked flat convolution that
serves stride-1 fp32 convs is checked against the reference conv on larger planes and more
channels than test_conv_native draws."""

from __future__ import annotations

import ctypes
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tritium.backends.cpu import POOL_MAX, PoolGeomArgs
from tritium.runtime import kernels
from tritium.runtime.layers import TernaryConv2d
from tritium.runtime.native import _lib
from tritium.runtime.packing import pack_ternary
from tritium.runtime.plan import PoolPlan, pool_plan

pytestmark = [pytest.mark.usefixtures("every_isa"),
              pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")]

_SPECIALS = torch.tensor([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.0, -1.0])


def _input(gen: torch.Generator, shape: tuple[int, ...], specials: bool) -> torch.Tensor:
    """Values with many ties (halves in [-2, 2]) and, optionally, NaN, +-inf and +-0 sprinkled
    in: where max pooling's choice among equal values or NaNs shows."""
    x = torch.randint(-4, 5, shape, generator=gen).float() / 2
    if specials:
        mask = torch.rand(shape, generator=gen) < 0.15
        pick = torch.randint(0, len(_SPECIALS), shape, generator=gen)
        x = torch.where(mask, _SPECIALS[pick], x)
    return x


def _same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.equal(got.contiguous().view(torch.int32), want.contiguous().view(torch.int32))


window = st.fixed_dictionaries({
    "avg": st.booleans(), "b": st.integers(1, 3), "c": st.integers(1, 4),
    "h": st.integers(1, 19), "w": st.integers(1, 37),
    "k": st.tuples(st.integers(1, 4), st.integers(1, 4)),
    "s": st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    "p": st.tuples(st.integers(0, 2), st.integers(0, 2)),
    "d": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "ceil": st.booleans(), "cip": st.booleans(),
    "div": st.one_of(st.none(), st.integers(1, 7)),
    "specials": st.booleans(), "seed": st.integers(0, 2**31 - 1),
})


def _module(g) -> nn.Module:
    if g["avg"]:
        return nn.AvgPool2d(g["k"], g["s"], g["p"], g["ceil"], g["cip"], g["div"])
    return nn.MaxPool2d(g["k"], g["s"], g["p"], g["d"], ceil_mode=g["ceil"])


@settings(max_examples=150, deadline=None)
@given(window)
def test_native_pooling_is_torchs_bit_for_bit(g):
    gen = torch.Generator().manual_seed(g["seed"])
    x = _input(gen, (g["b"], g["c"], g["h"], g["w"]), g["specials"])
    mod = _module(g)
    plan = pool_plan(mod)
    assert isinstance(plan, PoolPlan)
    try:
        want = mod(x)
    except RuntimeError as exc:          # a window torch rejects: the same error
        with pytest.raises(RuntimeError, match=re.escape(str(exc)[:40])):
            plan(x)
        return
    got = plan(x)
    if g["avg"]:   # the same sums in the same order
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    else:
        _same_bits(got, want)
    if plan.geom(g["h"], g["w"]) is not None:   # it ran natively
        assert want.numel() == 0 or got.data_ptr() != want.data_ptr()


def test_lenet_windows_with_every_special_value_in_every_position():
    """2x2/2 max pool (LeNet-5's, the vectorized path): each window of four holds every
    arrangement of two values drawn from NaN, +-inf, +-0 and 1."""
    vals = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.0]
    wins = [(a, b, c, d) for a in vals for b in vals for c in vals[:3] for d in vals[3:]]
    wins += [(d, c, b, a) for a, b, c, d in wins]
    n = len(wins)
    x = torch.empty(1, 1, 2, 2 * n)
    for i, (a, b, c, d) in enumerate(wins):
        x[0, 0, 0, 2 * i], x[0, 0, 0, 2 * i + 1] = a, b
        x[0, 0, 1, 2 * i], x[0, 0, 1, 2 * i + 1] = c, d
    mod = nn.MaxPool2d(2)
    for planes in (1, 3):                # the last plane has no slack after it; others do
        xs = x.expand(planes, 1, 2, 2 * n).reshape(1, planes, 2, 2 * n).contiguous()
        _same_bits(pool_plan(mod)(xs), mod(xs))


def test_pool_modules_followed_in_place_and_others_left_to_torch():
    mod = nn.MaxPool2d(2)
    plan = pool_plan(mod)
    x = torch.randn(2, 3, 9, 9)
    _same_bits(plan(x), mod(x))
    mod.kernel_size, mod.stride = 3, 1                   # changed in place: followed
    _same_bits(plan(x), mod(x))
    assert plan(x).shape == (2, 3, 7, 7)
    assert pool_plan(nn.MaxPool2d(2, return_indices=True)) is None
    assert pool_plan(nn.AdaptiveAvgPool2d(1)) is None
    x3 = torch.randn(3, 9, 9)                             # unbatched: the module's forward
    _same_bits(plan(x3), mod(x3))
    xd = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    assert plan(xd).dtype == torch.float64
    xg = torch.randn(1, 2, 6, 6, requires_grad=True)
    plan(xg).sum().backward()
    assert xg.grad is not None
    xt = torch.randn(2, 6, 6, 3).permute(0, 3, 1, 2)     # not contiguous
    _same_bits(plan(xt), mod(xt))


def test_a_pool_geometry_without_output_is_refused():
    lib = _lib()
    g = PoolGeomArgs(POOL_MAX, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1, 0, 2, 1, 0)
    assert lib.call.tri_pool2d(ctypes.addressof(g), None, 1, None, 1) == 2


conv_pool = st.fixed_dictionaries({
    "b": st.integers(1, 3), "c": st.integers(1, 7), "o": st.integers(1, 19),
    "h": st.integers(3, 30), "w": st.integers(3, 40), "k": st.integers(1, 5),
    "s": st.sampled_from([(1, 1), (1, 1), (2, 2), (2, 1)]),
    "p": st.tuples(st.integers(0, 2), st.integers(0, 2)),
    "d": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "aq": st.sampled_from(["none", "none", "int8"]), "act": st.sampled_from([None, "relu"]),
    "pool": st.sampled_from(["max2", "max3s2p1", "avg2", "avg3s1p1"]),
    "seed": st.integers(0, 2**31 - 1),
})
_POOLS = {"max2": lambda: nn.MaxPool2d(2), "max3s2p1": lambda: nn.MaxPool2d(3, 2, 1),
          "avg2": lambda: nn.AvgPool2d(2), "avg3s1p1": lambda: nn.AvgPool2d(3, 1, 1, True, False)}


@settings(max_examples=60, deadline=None)
@given(conv_pool)
def test_conv_then_pool_in_one_call_pools_the_convs_own_output(g):
    torch.manual_seed(g["seed"])
    layer = TernaryConv2d(g["c"], g["o"], g["k"], g["s"], g["p"], g["d"],
                          act_quant=g["aq"]).eval()
    layer.freeze()
    kh_ext = g["d"][0] * (g["k"] - 1) + 1
    kw_ext = g["d"][1] * (g["k"] - 1) + 1
    if g["h"] + 2 * g["p"][0] < kh_ext or g["w"] + 2 * g["p"][1] < kw_ext:
        return
    x = torch.randn(g["b"], g["c"], g["h"], g["w"])
    mod = _POOLS[g["pool"]]()
    with torch.no_grad():
        conv = layer(x, g["act"])
        try:
            want = mod(conv)
        except RuntimeError:
            return                                     # too small an output to pool
        plan = layer._frozen_plan(x, None)
        got = plan.conv2d(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                          g["act"], None, pool_plan(mod))
    if g["pool"].startswith("max"):
        _same_bits(got, want)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("o,c,k,h,w,pad", [
    (6, 1, 5, 32, 32, 0),      # LeNet-5's conv1: one block of 6 (AVX-512), many chunks
    (16, 6, 5, 14, 14, 0),     # LeNet-5's conv2: blocks of 6, 5, 5 / 4 x 4
    (23, 9, 3, 33, 41, 1),     # ragged blocks and chunks, padding
    (7, 113, 3, 6, 5, 1),      # K = 1017: every plane takes the flat conv
    (9, 130, 3, 10, 9, 1),     # K = 1170, a plane long enough for the flat conv
    (5, 130, 3, 4, 4, 1),      # K = 1170, a 4x4 plane: the patch GEMM
    (5, 2, 1, 70, 3, 0),       # 1x1, narrow plane
])
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_flat_conv_matches_the_reference(o, c, k, h, w, pad, fmt):
    gen = torch.Generator().manual_seed(o * 100 + c)
    trits = torch.randint(-1, 2, (o, c * k * k), generator=gen, dtype=torch.int8)
    wq = trits.float().reshape(o, c, k, k)
    scale = torch.rand(o, generator=gen) + 0.5
    bias = torch.randn(o, generator=gen)
    x = torch.randn(2, c, h, w, generator=gen)
    res = torch.randn(2, o, h + 2 * pad - k + 1, w + 2 * pad - k + 1, generator=gen)
    want = F.conv2d(x, wq, None, 1, pad) * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
    with torch.no_grad():
        got = kernels.ternary_conv2d(x, pack_ternary(trits, fmt), (o, c, k, k), scale, bias,
                                     1, pad, 1, 1, "relu6", "none", res)
    torch.testing.assert_close(got, F.relu6(want + res), rtol=1e-5, atol=1e-4)


grouped = st.fixed_dictionaries({
    "b": st.integers(1, 3), "g": st.integers(1, 4), "cg": st.integers(1, 4),
    "og": st.integers(1, 9), "dw": st.booleans(), "h": st.integers(1, 23),
    "w": st.integers(1, 29), "kh": st.integers(1, 5), "kw": st.integers(1, 5),
    "s": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "p": st.tuples(st.integers(0, 3), st.integers(0, 3)),
    "d": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "aq": st.sampled_from(["none", "none", "none", "int8"]),
    "fmt": st.sampled_from(["t2", "t1.6"]), "seed": st.integers(0, 2**31 - 1),
})


@settings(max_examples=80, deadline=None)
@given(grouped)
def test_strided_dilated_grouped_and_depthwise_convs_match_torch(g):
    """The flat conv's stride phases and groups (depthwise: one channel per group) against
    F.conv2d; int8 activations with groups keep the general path."""
    groups = g["g"] * 3 if g["dw"] else g["g"]
    cg, og = (1, 1) if g["dw"] else (g["cg"], g["og"])
    c, o = cg * groups, og * groups
    kh_ext, kw_ext = g["d"][0] * (g["kh"] - 1) + 1, g["d"][1] * (g["kw"] - 1) + 1
    if g["h"] + 2 * g["p"][0] < kh_ext or g["w"] + 2 * g["p"][1] < kw_ext:
        return
    gen = torch.Generator().manual_seed(g["seed"])
    trits = torch.randint(-1, 2, (o, cg * g["kh"] * g["kw"]), generator=gen, dtype=torch.int8)
    scale = torch.rand(o, generator=gen) + 0.5
    bias = torch.randn(o, generator=gen)
    x = torch.randn(g["b"], c, g["h"], g["w"], generator=gen)
    shape = (o, cg, g["kh"], g["kw"])
    with torch.no_grad():
        got = kernels.ternary_conv2d(x, pack_ternary(trits, g["fmt"]), shape, scale, bias,
                                     g["s"], g["p"], g["d"], groups, "relu", g["aq"])
    if g["aq"] == "int8":   # the general path's own tests cover its values; here: it runs
        assert got.shape[:2] == (g["b"], o)
        return
    want = F.conv2d(x, trits.float().reshape(shape), None, g["s"], g["p"], g["d"], groups)
    want = torch.relu(want * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_a_frozen_depthwise_layer_runs_natively_and_agrees_with_training_mode():
    torch.manual_seed(3)
    layer = TernaryConv2d(12, 12, 3, stride=2, padding=1, groups=12).eval()
    x = torch.randn(2, 12, 15, 15)
    with torch.no_grad():
        want = layer(x, "relu6")
        layer.freeze()
        got = layer(x, "relu6")
    assert layer._plan is not None and layer._plan.geoms    # the native call ran
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
