"""The fp32-activation panel GEMM (csrc/tritium_f32p.h): batches of float tokens against
packed trits, every panel width and token-group tail, K within and past its bound, every
epilogue (vector: scale, bias, relu, relu6; scalar: residual, the other activations), on
every ISA path of this CPU, against an independent float64 reference; and the direct ternary
convolution of small fp32 patches (csrc/tritium_conv.h: whole-plane and row forms)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tritium.runtime import kernels
from tritium.runtime.packing import pack_ternary

pytestmark = [pytest.mark.skipif(not kernels.native_available(), reason="no native kernels"),
              pytest.mark.usefixtures("every_isa")]

ACTS = {None: lambda y: y, "relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu,
        "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _case(m, n, k, seed, per_channel=True, bias=True):
    g = torch.Generator().manual_seed(seed)
    trits = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
    x = torch.randn(m, k, generator=g)
    scale = torch.rand(n if per_channel else 1, generator=g) + 0.5
    b = torch.randn(n, generator=g) if bias else None
    return trits, x, scale, b


def _ref(x, trits, scale, bias, residual, act):
    y = (x.double() @ trits.double().t()) * scale.double()
    if bias is not None:
        y = y + bias.double()
    if residual is not None:
        y = y + residual.double()
    return ACTS[act](y.float())


def _check(y, ref):
    tol = 1e-5 * (1.0 + ref.abs().max().item())
    assert (y - ref).abs().max().item() <= tol


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("n", [1, 6, 16, 17, 32, 33, 70])
@pytest.mark.parametrize("k", [1, 25, 150, 257, 512, 513])
def test_shapes(fmt, n, k):
    for m, seed in ((4, 0), (7, 1), (9, 2), (13, 3), (64, 4), (131, 5)):
        trits, x, scale, bias = _case(m, n, k, seed, per_channel=seed % 2 == 0,
                                      bias=seed % 3 != 2)
        y = kernels.ternary_linear(x, pack_ternary(trits, fmt), scale, bias)
        _check(y, _ref(x, trits, scale, bias, None, None))


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("with_residual", [False, True])
def test_epilogues(act, with_residual):
    trits, x, scale, bias = _case(23, 37, 90, 7)
    residual = torch.randn(23, 37) if with_residual else None
    x[3, 4] = float("nan")        # a NaN token stays NaN through relu/relu6, as in torch
    y = kernels.ternary_linear(x, pack_ternary(trits, "t2"), scale, bias, act,
                               residual=residual)
    ref = _ref(x, trits, scale, bias, residual, act)
    assert torch.equal(y.isnan(), ref.isnan())
    ok = ~ref.isnan()
    _check(y[ok], ref[ok])


@pytest.mark.parametrize("out_channels", [6, 16])
def test_conv_small_k(out_channels):
    # LeNet-5's convolutions: K = 25 and 150, 6 (the driver's tiles) and 16 (the panels)
    o, c = out_channels, 1 if out_channels == 6 else 6
    g = torch.Generator().manual_seed(3)
    trits = torch.randint(-1, 2, (o, c * 25), generator=g, dtype=torch.int8)
    x = torch.randn(3, c, 14, 14, generator=g)
    scale, bias = torch.rand(o, generator=g) + 0.5, torch.randn(o, generator=g)
    with torch.no_grad():
        y = kernels.ternary_conv2d(x, pack_ternary(trits, "t2"), (o, c, 5, 5), scale, bias,
                                   activation="relu")
    w = trits.double().reshape(o, c, 5, 5) * scale.double().reshape(o, 1, 1, 1)
    ref = F.relu(F.conv2d(x.double(), w, bias.double())).float()
    _check(y, ref)


@pytest.mark.parametrize("geom", [
    # (C, O, H, W, kernel, padding, dilation, stride): the whole-plane form (no padding),
    # the row form (padding, rows of 24 and more), and shapes that keep the patch GEMM
    (1, 6, 32, 32, 5, 0, 1, 1),
    (6, 16, 14, 14, 5, 0, 1, 1),
    (3, 5, 9, 40, 3, 0, 2, 1),
    (2, 7, 30, 30, 3, 1, 1, 1),
    (2, 7, 30, 31, 3, 2, 2, 1),
    (2, 4, 12, 12, 3, 1, 1, 1),
    (1, 3, 70, 70, 3, 0, 1, 1),
    (2, 5, 20, 20, 3, 0, 1, 2),
])
@pytest.mark.parametrize("act", [None, "relu", "silu"])
def test_direct_conv(geom, act):
    c, o, h, w, kk, pad, dil, stride = geom
    g = torch.Generator().manual_seed(sum(geom))
    trits = torch.randint(-1, 2, (o, c * kk * kk), generator=g, dtype=torch.int8)
    x = torch.randn(2, c, h, w, generator=g)
    scale, bias = torch.rand(o, generator=g) + 0.5, torch.randn(o, generator=g)
    wt = trits.double().reshape(o, c, kk, kk) * scale.double().reshape(o, 1, 1, 1)
    ref = F.conv2d(x.double(), wt, bias.double(), stride, pad, dil)
    residual = torch.randn(ref.shape, generator=g)
    for res in (None, residual):
        with torch.no_grad():
            y = kernels.ternary_conv2d(x, pack_ternary(trits, "t1.6"), (o, c, kk, kk), scale,
                                       bias, stride, pad, dil, activation=act, residual=res)
        want = ref if res is None else ref + res.double()
        _check(y, ACTS[act](want.float()))
