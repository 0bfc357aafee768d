"""The native conv2d (`tri_conv2d_planned`: patches gathered, and in int8 mode quantized one by
one, in C; NCHW written with the residual and activation fused) against the im2col route it
replaces (F.unfold, one GEMM row per output position through `ternary_linear`): the same
numbers, on every ISA path this CPU runs, for any geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.runtime import kernels
from tritium.runtime.layers import TernaryConv2d
from tritium.runtime.packing import PackedTernary, pack_ternary

pytestmark = pytest.mark.usefixtures("every_isa")


def _im2col(x, w: PackedTernary, shape, scale, bias, stride, padding, dilation, act, aq, res):
    """The route before the native conv: unfold, one row per position, ternary_linear."""
    o, c, kh, kw = shape
    b, _, h, wd = x.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    rows = cols.transpose(1, 2).reshape(b * ho * wo, c * kh * kw).contiguous()
    r2 = None if res is None else res.permute(0, 2, 3, 1).reshape(b * ho * wo, o).contiguous()
    with torch.no_grad():
        y = kernels.ternary_linear(rows, w, scale, bias, act, aq, r2)
    return y.reshape(b, ho, wo, o).permute(0, 3, 1, 2)


geometry = st.fixed_dictionaries({
    "b": st.integers(1, 3), "c": st.integers(1, 9), "o": st.integers(1, 20),
    "h": st.integers(1, 11), "w": st.integers(1, 11), "kh": st.integers(1, 5),
    "kw": st.integers(1, 5), "s": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "p": st.tuples(st.integers(0, 3), st.integers(0, 3)),
    "d": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "aq": st.sampled_from(["none", "int8"]), "fmt": st.sampled_from(["t2", "t1.6"]),
    "act": st.sampled_from([None, "relu", "silu"]), "bias": st.booleans(),
    "res": st.booleans(), "per_channel": st.booleans(), "seed": st.integers(0, 2**31 - 1),
})


@settings(max_examples=60, deadline=None)
@given(geometry)
def test_native_conv_matches_the_im2col_route(g) -> None:
    kh_ext = g["d"][0] * (g["kh"] - 1) + 1
    kw_ext = g["d"][1] * (g["kw"] - 1) + 1
    if g["h"] + 2 * g["p"][0] < kh_ext or g["w"] + 2 * g["p"][1] < kw_ext:
        return  # no output position
    gen = torch.Generator().manual_seed(g["seed"])
    shape = (g["o"], g["c"], g["kh"], g["kw"])
    trits = torch.randint(-1, 2, (g["o"], g["c"] * g["kh"] * g["kw"]), generator=gen,
                          dtype=torch.int8)
    w = pack_ternary(trits, g["fmt"])
    scale = torch.rand(g["o"] if g["per_channel"] else 1, generator=gen) + 0.1
    bias = torch.randn(g["o"], generator=gen) if g["bias"] else None
    x = torch.randn(g["b"], g["c"], g["h"], g["w"], generator=gen) * 3
    ho = (g["h"] + 2 * g["p"][0] - kh_ext) // g["s"][0] + 1
    wo = (g["w"] + 2 * g["p"][1] - kw_ext) // g["s"][1] + 1
    res = torch.randn(g["b"], g["o"], ho, wo, generator=gen) if g["res"] else None
    want = _im2col(x, w, shape, scale, bias, g["s"], g["p"], g["d"], g["act"], g["aq"], res)
    with torch.no_grad():
        got = kernels.ternary_conv2d(x, w, shape, scale, bias, g["s"], g["p"], g["d"], 1,
                                     g["act"], g["aq"], res)
    assert got.shape == want.shape and got.is_contiguous()
    if g["aq"] == "int8":   # the same quantized rows, the same exact integer GEMM
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:                   # fp32 sums in another order
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_a_frozen_conv_layer_uses_its_plan_and_agrees_with_training_mode(act_quant: str) -> None:
    torch.manual_seed(0)
    layer = TernaryConv2d(3, 8, 3, stride=2, padding=1, act_quant=act_quant).eval()
    x = torch.randn(2, 3, 9, 9)
    res = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        want = layer(x, activation="relu", residual=res)
        layer.freeze()
        got = layer(x, activation="relu", residual=res)
        again = layer(x, activation="relu", residual=res)
    assert layer._plan is not None and layer._plan.geoms   # the cached native call ran
    torch.testing.assert_close(again, got, rtol=0, atol=0)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
