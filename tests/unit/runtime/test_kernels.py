"""Ternary kernels against plain PyTorch references, on every ISA path this CPU runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.backends import cpu
from tritium.backends.cpu import build as build_mod
from tritium.backends.cpu import isa as isa_mod
from tritium.runtime import kernels
from tritium.runtime.kernels import (
    kernel_info,
    native_available,
    quantize_activations_int8,
    ternary_conv2d,
    ternary_linear,
    ternary_matmul_int8,
)
from tritium.runtime.packing import PackedDataError, PackedTernary, pack_ternary, unpack_ternary

FORMATS = ["t2", "t1.6"]
SHAPES = [(3, 1), (37, 130), (257, 1000)]
ACTS = [None, "relu", "relu6", "gelu", "silu", "sigmoid", "tanh"]
ISAS = isa_mod.supported_isas()


def _rand_trits(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)


def _reference(x, trits, scale, bias=None, residual=None, activation=None, act_quant="none"):
    """Independent reference: dequantized float weights and F.linear."""
    x = x.float()
    w = trits.float()
    if act_quant == "int8":
        s = x.abs().amax(-1, keepdim=True) / 127
        s = torch.where(s == 0, torch.ones_like(s), s)
        xq = torch.clamp(torch.round(x / s), -127, 127)
        y = (xq.double() @ w.double().t()).float() * s
    else:
        y = F.linear(x.double(), w.double()).float()
    y = y * scale.reshape(-1)
    if bias is not None:
        y = y + bias
    if residual is not None:
        y = y + residual
    return {
        None: lambda t: t,
        "relu": F.relu,
        "relu6": F.relu6,
        "gelu": F.gelu,
        "silu": F.silu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
    }[activation](y)


def _close(y, ref, rtol=1e-4):
    tol = rtol * (1.0 + ref.abs().max().item())
    err = (y.float() - ref).abs().max().item() if ref.numel() else 0.0
    assert err <= tol, f"max abs error {err} > {tol}"


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Every ISA path this CPU can run (scalar always), selected via $TRITIUM_CPU_ISA."""
    monkeypatch.setenv("TRITIUM_CPU_ISA", request.param)
    if cpu.load() is None:
        pytest.skip(f"native kernels unavailable: {cpu.load_error()}")
    assert kernel_info()["isa"] == request.param
    return request.param


@pytest.mark.native
def test_native_builds_and_reports():
    assert native_available(), cpu.load_error()
    info = kernel_info()
    assert info["native"] is True
    assert info["isa"] in isa_mod.ISA_ORDER
    assert os.path.isfile(info["cache_path"])
    assert info["threads"] >= 1
    assert "-O3" in info["flags"]


@pytest.mark.native
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("m", [1, 3, 19])  # 19 = 4 x 4 + 3: the padded 4-token tile
@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_linear_matches_reference(isa, fmt, n, k, m, act_quant):
    trits = _rand_trits(n, k, seed=n * 1000 + k)
    p = pack_ternary(trits, fmt)
    x = torch.randn(m, k)
    scale = torch.rand(n) + 0.5
    bias = torch.randn(n)
    y = ternary_linear(x, p, scale, bias, act_quant=act_quant)
    assert y.shape == (m, n) and y.dtype == torch.float32
    _close(y, _reference(x, trits, scale, bias, act_quant=act_quant))


@pytest.mark.native
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("m", [1, 3])
def test_fp32_gemv_sums_near_the_float_range_stay_finite(isa, fmt, m):
    # the AVX2 fp32 GEMV multiplies x by +-2.0 (float bit patterns made by byte shuffles) and
    # halves the sum at the end: a sum above half the float range must take the plain kernel
    k = 1000
    trits = torch.ones(4, k, dtype=torch.int8)
    trits[1] = -1
    trits[2, ::2] = 0
    x = torch.full((m, k), 2.5e35)
    x[0, 1] = -1.0   # and a small value in a row that decides for the others
    y = ternary_linear(x, pack_ternary(trits, fmt), torch.ones(4), None, act_quant="none")
    ref = _reference(x, trits, torch.ones(4))
    assert torch.isfinite(ref).all() and torch.isfinite(y).all(), y
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=0)


@pytest.mark.native
@pytest.mark.parametrize("m", [1, 2, 5, 69])
def test_t1_6_kernels_decode_every_byte_value(isa, m):
    """Rows holding every valid t1.6 byte (0..242) in shuffled orders, through this ISA
    path's direct GEMV (m <= 3), its decoded tiles and its fp32-activation path: the int8
    product is exact and the fp32 one matches the trits the bytes spell. Nine blocks: the
    AVX-512 VBMI loop takes two at a time and leaves the ninth to the AVX2 decode."""
    gen = torch.Generator().manual_seed(m)
    data = torch.stack([torch.cat([torch.randperm(243, generator=gen), torch.full((45,), 121)])
                        for _ in range(5)]).to(torch.uint8)          # 5 rows x 9 blocks
    v = data.view(5, 9, 32).to(torch.int64)
    digits = torch.stack([(v // 3 ** (4 - i)) % 3 - 1 for i in range(5)], dim=2)  # r, b, i, j
    trits = digits.reshape(5, 9 * 160).to(torch.int8)
    p = PackedTernary("t1.6", data, (5, 9 * 160))
    assert torch.equal(unpack_ternary(p), trits)
    xq = torch.randint(-128, 128, (m, 9 * 160), dtype=torch.int8, generator=gen)
    assert torch.equal(ternary_matmul_int8(xq, p), xq.to(torch.int32) @ trits.to(torch.int32).t())
    x = torch.randn(m, 9 * 160, generator=gen)
    scale = torch.rand(5, generator=gen) + 0.5
    y = ternary_linear(x, p, scale, None, act_quant="none")
    _close(y, _reference(x, trits, scale, None, act_quant="none"))


@pytest.mark.native
@pytest.mark.parametrize("fmt", FORMATS)
# (5, 1100), (9, 2200): the direct GEMV's steps of 8 blocks, a tail of 1-2 blocks and a last
# tile padded with zero rows
@pytest.mark.parametrize("n,k", [(1, 1), (67, 700), (4, 4096), (5, 1100), (9, 2200)])
@pytest.mark.parametrize("m", [1, 2, 69])  # direct GEMV; 69 = chunk of 64 + 5: tiles 4x4 and 4x1
def test_int8_gemm_is_bit_exact(isa, fmt, n, k, m):
    trits = _rand_trits(n, k, seed=k + m)
    xq = torch.randint(-128, 128, (m, k), dtype=torch.int8)
    xq[0, 0] = -128
    y = ternary_matmul_int8(xq, pack_ternary(trits, fmt))
    assert y.dtype == torch.int32
    assert torch.equal(y, xq.to(torch.int32) @ trits.to(torch.int32).t())


@pytest.mark.native
def test_extreme_int8_values_do_not_saturate(isa):
    # all +1 weights against all 127 activations: 4096 * 127 per output, far above int16
    k = 4096
    trits = torch.ones((5, k), dtype=torch.int8)
    trits[1] = -1
    xq = torch.full((3, k), 127, dtype=torch.int8)
    xq[2] = -128
    y = ternary_matmul_int8(xq, pack_ternary(trits))
    assert torch.equal(y, xq.to(torch.int32) @ trits.to(torch.int32).t())
    # one token at a time: the direct GEMV, whose AVX2 loop sums 8 blocks in int16 before
    # widening, four times the codes of half the fields in a second int16 sum over 4 blocks
    # (all +1 against -128: 4 x 2 x 2048 = 16384 there, 16384 in the first after adding it)
    for row in xq:
        one = row.unsqueeze(0)
        assert torch.equal(ternary_matmul_int8(one, pack_ternary(trits)),
                           one.to(torch.int32) @ trits.to(torch.int32).t())


@pytest.mark.native
def test_native_activation_quantizer_matches_torch(isa):
    lib = cpu.load()
    x = torch.randn(9, 333) * torch.logspace(-3, 3, 9).unsqueeze(1)
    x[4] = 0.0  # all-zero row: scale 1
    x[5, :7] = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 127.0, -127.0])  # ties round to even
    xq = torch.empty_like(x, dtype=torch.int8)
    s = torch.empty(9)
    lib.lib.tri_quantize_rows(x.data_ptr(), 9, 333, xq.data_ptr(), s.data_ptr(), 2)
    ref_q, ref_s = quantize_activations_int8(x)
    assert torch.equal(xq, ref_q)
    assert torch.equal(s, ref_s.squeeze(1))


@pytest.mark.native
@pytest.mark.parametrize("k", [8, 31, 32, 64, 100, 128, 333])
def test_the_quantizer_treats_nan_and_inf_alike_on_every_isa_path(isa, k):
    """NaN and infinite activations (a diverged model) give every ISA path the scalar loop's
    bytes: the codes are those of the largest |x| that is not NaN over 127, a NaN lane is 0,
    and a row with an infinity has every lane x / inf rounded (0; inf / inf is NaN: 0). The
    scale of a row holding a NaN or an infinity is NaN, so that the whole token's output is
    NaN as the fake quantization's is (a frozen model once turned a NaN input into finite
    outputs). The AVX-512 path once clamped NaN lanes to -127. Rows go in pairs (their
    latencies interleaved): a NaN row beside a finite one changes neither."""
    gen = torch.Generator().manual_seed(k)
    rows = []
    for case in range(6):
        x = torch.randn(k, generator=gen) * 3
        if case == 1:
            x[k // 3] = float("nan")
        elif case == 2:
            x[k // 2] = float("inf")
        elif case == 3:
            x[0], x[-1] = float("-inf"), float("nan")
        elif case == 4:
            x[:] = float("nan")
        elif case == 5:
            x[1::5] = float("nan")
        rows.append(x)
    x = torch.stack(rows).contiguous()
    xq = torch.empty_like(x, dtype=torch.int8)
    s = torch.empty(len(rows))
    cpu.load().lib.tri_quantize_rows(x.data_ptr(), len(rows), k, xq.data_ptr(), s.data_ptr(), 1)
    a = torch.where(x.isnan(), torch.zeros_like(x), x.abs()).amax(dim=1, keepdim=True) / 127
    a = torch.where(a == 0, torch.ones_like(a), a)
    want = torch.round(x / a)
    want = torch.where(want.isnan(), torch.zeros_like(want), want).clamp(-127, 127)
    bad = ~x.isfinite().all(dim=1)
    assert bad.tolist() == [False] + [True] * 5
    want_s = torch.where(bad, torch.full_like(s, float("nan")), a.squeeze(1))
    torch.testing.assert_close(s, want_s, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(xq, want.to(torch.int8)), (xq != want.to(torch.int8)).nonzero()


@pytest.mark.native
@pytest.mark.parametrize("kind", ["linear", "conv_patch", "conv_image", "linear_g2"])
def test_frozen_int8_layers_give_nan_where_the_fake_quantization_does(isa, kind):
    """A NaN or an infinity in an input token makes that token's output NaN in the frozen
    int8 layers, as in the fake-quantized model they were frozen from (its absmax is NaN),
    on every ISA path; the other tokens are untouched."""
    from tritium.runtime import TernaryConv2d, TernaryLinear, freeze_model

    torch.manual_seed(0)
    if kind.startswith("linear"):
        m = 16 if kind == "linear_g2" else 4   # batches that take the GEMV and the GEMM
        layer = TernaryLinear(40, 24, act_quant="int8").eval()
        x = torch.randn(m, 40)
        x[1, 7], x[2, 0] = float("nan"), float("inf")
    else:
        aq = "int8" if kind == "conv_patch" else "int8_image"
        layer = TernaryConv2d(3, 8, 3, padding=1, act_quant=aq).eval()
        x = torch.randn(3, 3, 6, 6)
        x[1, 0, 2, 2], x[2, 1, 0, 5] = float("nan"), float("inf")
    with torch.no_grad():
        fake = layer(x)
        freeze_model(layer)
        got = layer(x)
    assert fake.isnan().any()
    assert torch.equal(got.isnan(), fake.isnan())
    ok = ~fake.isnan()
    _close(got[ok], fake[ok], rtol=1e-3)


@pytest.mark.native
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 300), exp=st.integers(-140, 120), seed=st.integers(0, 2**31 - 1),
       kinds=st.lists(st.sampled_from(["tie", "below", "above", "any", "amax"]),
                      min_size=1, max_size=8))
def test_the_division_free_quantizer_is_exact_at_ties_and_any_scale(isa, k, exp, seed, kinds):
    """The SIMD quantizers multiply by 1/s and redo a register by division when a lane is near
    a half-integer (or the scale is too small for a normal reciprocal): rows full of exact and
    near ties x = (n + 1/2) s, at scales from subnormal to 2^120, match round(x / s) exactly."""
    gen = torch.Generator().manual_seed(seed)
    amax = torch.tensor(2.0 ** exp, dtype=torch.float32) * (1 + torch.rand((), generator=gen))
    sc = amax / 127
    n = torch.randint(-127, 127, (k,), generator=gen).float()
    tie = (n + 0.5) * sc
    pick = torch.randint(0, len(kinds), (k,), generator=gen)
    choices = {"tie": tie, "below": torch.nextafter(tie, torch.zeros(())),
               "above": torch.nextafter(tie, tie * 2), "amax": amax.expand(k),
               "any": (torch.rand(k, generator=gen) * 2 - 1) * amax}
    x = torch.stack([choices[kd] for kd in kinds])[pick, torch.arange(k)]
    x = torch.maximum(torch.minimum(x, amax), -amax).reshape(1, k).contiguous()
    x[0, seed % k] = amax
    # three rows: the first two are quantized as a pair (interleaved), the third alone
    x = torch.cat([x, x.flip(1) * 0.5, x]).contiguous()
    xq = torch.empty_like(x, dtype=torch.int8)
    s = torch.empty(3)
    cpu.load().lib.tri_quantize_rows(x.data_ptr(), 3, k, xq.data_ptr(), s.data_ptr(), 1)
    ref_q, ref_s = quantize_activations_int8(x)
    assert torch.equal(s, ref_s.squeeze(1))
    assert torch.equal(xq, ref_q), (x[xq != ref_q], xq[xq != ref_q], ref_q[xq != ref_q])


@pytest.mark.native
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_fused_epilogue(fmt, activation, act_quant):
    n, k, m = 19, 300, 6
    trits = _rand_trits(n, k, seed=3)
    p = pack_ternary(trits, fmt)
    x = torch.randn(m, k)
    residual = torch.randn(m, n)
    for scale, bias, res in ((torch.rand(n) + 0.1, torch.randn(n), residual), (torch.tensor([0.37]), None, None)):
        y = ternary_linear(x, p, scale, bias, activation, act_quant, res)
        _close(y, _reference(x, trits, scale, bias, res, activation, act_quant))


@pytest.mark.native
def test_int8_path_uses_per_token_scales():
    # rows of wildly different magnitude: per-token scaling keeps each row accurate
    n, k = 16, 256
    trits = _rand_trits(n, k)
    x = torch.randn(3, k) * torch.tensor([[1e-3], [1.0], [1e3]])
    y = ternary_linear(x, pack_ternary(trits), torch.ones(1), act_quant="int8")
    exact = x.double() @ trits.double().t()
    rel = ((y.double() - exact).abs().amax(1) / exact.abs().amax(1)).max().item()
    assert rel < 0.05


@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_bf16_leading_dims_and_noncontiguous(act_quant):
    n, k = 33, 200
    trits = _rand_trits(n, k, seed=5)
    p = pack_ternary(trits, "t2")
    scale = torch.rand(n) + 0.5
    base = torch.randn(k, 2, 7)
    x = base.permute(1, 2, 0)  # [2, 7, k], non-contiguous
    assert not x.is_contiguous()
    y = ternary_linear(x, p, scale, act_quant=act_quant)
    assert y.shape == (2, 7, n)
    _close(y.reshape(-1, n), _reference(x.reshape(-1, k), trits, scale, act_quant=act_quant))
    yb = ternary_linear(x.to(torch.bfloat16), p, scale, act_quant=act_quant)
    assert yb.dtype == torch.bfloat16
    refb = _reference(x.to(torch.bfloat16).float().reshape(-1, k), trits, scale, act_quant=act_quant)
    _close(yb.reshape(-1, n), refb, rtol=1e-2)


def test_argument_errors():
    p = pack_ternary(_rand_trits(4, 10))
    x = torch.randn(2, 10)
    with pytest.raises(ValueError, match="K=10"):
        ternary_linear(torch.randn(2, 11), p, torch.ones(4))
    with pytest.raises(ValueError, match="activation"):
        ternary_linear(x, p, torch.ones(4), activation="swish")
    with pytest.raises(ValueError, match="act_quant"):
        ternary_linear(x, p, torch.ones(4), act_quant="int4")
    with pytest.raises(ValueError, match="scale"):
        ternary_linear(x, p, torch.ones(3))
    with pytest.raises(TypeError):
        ternary_linear(x, torch.zeros(4, 10), torch.ones(4))


@pytest.mark.native
def test_corrupt_weights_are_rejected_even_after_first_use():
    trits = _rand_trits(8, 256)
    p = pack_ternary(trits)
    x = torch.randn(2, 256)
    ternary_linear(x, p, torch.ones(8))  # validated and cached
    p.data[5, 3] = 0xFF  # in-place change bumps the tensor version: revalidated
    with pytest.raises(PackedDataError, match=r"\(row 5, byte 3\)"):
        ternary_linear(x, p, torch.ones(8))
    bad = PackedTernary("t1.6", torch.full((2, 32), 250, dtype=torch.uint8), (2, 160))
    with pytest.raises(PackedDataError):
        ternary_linear(torch.randn(1, 160), bad, torch.ones(2), act_quant="int8")


@pytest.mark.native
def test_thread_count_does_not_change_results(monkeypatch):
    trits = _rand_trits(61, 999)
    p = pack_ternary(trits, "t1.6")
    x = torch.randn(9, 999)
    s = torch.rand(61)
    monkeypatch.setenv("TRITIUM_NUM_THREADS", "1")
    a = ternary_linear(x, p, s, act_quant="int8")
    b = ternary_linear(x, p, s)
    monkeypatch.setenv("TRITIUM_NUM_THREADS", "2")
    assert torch.equal(a, ternary_linear(x, p, s, act_quant="int8"))
    assert torch.equal(b, ternary_linear(x, p, s))


class _TinyNet(torch.nn.Module):
    def __init__(self, act_quant):
        super().__init__()
        self.p1 = pack_ternary(_rand_trits(24, 40, seed=1))
        self.p2 = pack_ternary(_rand_trits(10, 24, seed=2), "t1.6")
        self.register_buffer("s1", torch.rand(24) + 0.5)
        self.register_buffer("s2", torch.tensor([0.25]))
        self.act_quant = act_quant

    def forward(self, x):
        h = ternary_linear(x, self.p1, self.s1, activation="relu", act_quant=self.act_quant)
        return ternary_linear(h, self.p2, self.s2, act_quant=self.act_quant)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_torch_compile_traces_through(backend, act_quant):
    torch._dynamo.reset()
    net = _TinyNet(act_quant)
    x = torch.randn(5, 40)
    want = net(x)
    compiled = torch.compile(net, backend=backend, fullgraph=True)
    with torch.no_grad():
        got = compiled(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("warm", [False, True])
def test_torch_jit_trace_of_a_frozen_model_records_its_ternary_ops(warm):
    """torch.jit.trace sees no ctypes call: a frozen model that had already run (its layers
    then run as cached native plans and chains) traced to a graph that only allocated the
    output, and the traced model returned uninitialized memory. Under tracing the layers
    take the custom op."""
    from tritium.runtime import TernaryConv2d, TernaryLinear, freeze_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        TernaryConv2d(3, 8, 3, padding=1, act_quant="int8_image"), torch.nn.ReLU(),
        TernaryConv2d(8, 8, 3, stride=2, act_quant="none"), torch.nn.Flatten(),
        TernaryLinear(8 * 3 * 3, 32, act_quant="int8"), torch.nn.ReLU(),
        TernaryLinear(32, 5, act_quant="int8")).eval()
    freeze_model(net)
    x, x2 = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        if warm:
            net(x), net(x)
        traced = torch.jit.trace(net, x, check_trace=False)
        want = net(x2)
        got = traced(x2)
    assert "tritium::ternary_linear" in {n.kind() for n in traced.inlined_graph.nodes()}
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_custom_op_is_registered_with_fake_kernel():
    op = torch.ops.tritium.ternary_linear.default
    p = pack_ternary(_rand_trits(6, 20))
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fx = mode.from_tensor(torch.randn(3, 20))
        fd = mode.from_tensor(p.data)
        fs = mode.from_tensor(torch.ones(6))
        out = op(fx, fd, 6, 20, "t2", fs, None, None, "", "none")
    assert tuple(out.shape) == (3, 6)


def test_autograd_through_the_op():
    n, k = 7, 50
    trits = _rand_trits(n, k)
    p = pack_ternary(trits)
    x = torch.randn(4, k, requires_grad=True)
    scale = (torch.rand(n) + 0.5).requires_grad_()
    bias = torch.randn(n, requires_grad=True)
    y = ternary_linear(x, p, scale, bias, activation="gelu")
    y.square().sum().backward()
    x2, s2, b2 = (t.detach().clone().requires_grad_() for t in (x, scale, bias))
    ref = F.gelu(F.linear(x2, trits.float()) * s2 + b2)
    ref.square().sum().backward()
    for a, b in ((x, x2), (scale, s2), (bias, b2)):
        assert torch.allclose(a.grad, b.grad, atol=1e-4, rtol=1e-4)
    # under no_grad nothing records a graph
    with torch.no_grad():
        assert not ternary_linear(x, p, scale, bias).requires_grad


# ------------------------------------------------------------------------------------ conv2d


def _conv_reference(x, trits, weight_shape, scale, bias, stride, padding, dilation, groups, act_quant):
    w = trits.float().reshape(weight_shape)
    if act_quant == "none":
        y = F.conv2d(x.double(), w.double(), None, stride, padding, dilation, groups).float()
    else:
        o, ig, kh, kw = weight_shape
        cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
        b, _, L = cols.shape
        cg = cols.reshape(b, groups, ig * kh * kw, L).transpose(2, 3)
        xq, s = quantize_activations_int8(cg)
        yi = torch.einsum("bglk,gok->bgol", xq.double(), w.reshape(groups, o // groups, -1).double())
        ho = (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        y = (yi.float() * s.transpose(2, 3)).reshape(b, o, ho, -1)
    y = y * scale.reshape(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y


@pytest.mark.parametrize(
    "cin,cout,ksize,stride,padding,dilation,groups",
    [
        (3, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (4, 6, (3, 2), (2, 1), (0, 1), (1, 2), 1),
        (6, 4, (3, 3), (1, 2), (2, 2), (2, 1), 2),
        (8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 8),  # depthwise
        (5, 10, (5, 5), (2, 2), (2, 2), (1, 1), 5),  # depthwise, multiplier 2
        (12, 6, (1, 1), (1, 1), (0, 0), (1, 1), 3),
    ],
)
@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_conv2d_matches_reference(cin, cout, ksize, stride, padding, dilation, groups, act_quant):
    kh, kw = ksize
    ig = cin // groups
    shape = (cout, ig, kh, kw)
    trits = _rand_trits(cout, ig * kh * kw, seed=cin + cout)
    p = pack_ternary(trits, "t2" if groups % 2 else "t1.6")
    x = torch.randn(2, cin, 11, 9)
    scale = torch.rand(cout) + 0.5
    bias = torch.randn(cout)
    y = ternary_conv2d(x, p, shape, scale, bias, stride, padding, dilation, groups, act_quant=act_quant)
    ref = _conv_reference(x, trits, shape, scale, bias, stride, padding, dilation, groups, act_quant)
    assert y.shape == ref.shape
    _close(y, ref)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv2d_fused_residual_and_activation(groups):
    cin, cout = 4, 8
    shape = (cout, cin // groups, 3, 3)
    trits = _rand_trits(cout, cin // groups * 9)
    p = pack_ternary(trits)
    x = torch.randn(1, cin, 7, 7)
    res = torch.randn(1, cout, 7, 7)
    scale = torch.tensor([0.5])
    y = ternary_conv2d(x, p, shape, scale, None, 1, 1, 1, groups, activation="relu6", residual=res)
    ref = F.relu6(F.conv2d(x, trits.float().reshape(shape), None, 1, 1, 1, groups) * 0.5 + res)
    _close(y, ref)


def test_conv2d_argument_errors():
    p = pack_ternary(_rand_trits(4, 27))
    with pytest.raises(ValueError, match="weight_shape"):
        ternary_conv2d(torch.randn(1, 3, 5, 5), p, (4, 3, 3, 2), torch.ones(4))
    with pytest.raises(ValueError, match="channels"):
        ternary_conv2d(torch.randn(1, 4, 5, 5), p, (4, 3, 3, 3), torch.ones(4))
    with pytest.raises(ValueError, match="too small"):
        ternary_conv2d(torch.randn(1, 3, 2, 2), p, (4, 3, 3, 3), torch.ones(4))


# ------------------------------------------------------------------------- fallback and build

_FALLBACK_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import torch
    import torch.nn.functional as F
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from tritium.runtime import kernels
        from tritium.runtime.packing import pack_ternary, unpack_ternary
        t = torch.randint(-1, 2, (9, 70), dtype=torch.int8)
        p = pack_ternary(t, "t1.6")
        ok = torch.equal(unpack_ternary(p), t)
        x = torch.randn(3, 70)
        y = kernels.ternary_linear(x, p, torch.ones(9), activation="relu")
        y2 = kernels.ternary_linear(x, p, torch.ones(9), act_quant="int8")
        ok = ok and torch.allclose(y, F.relu(x @ t.float().t()), atol=1e-5)
        xq = torch.randint(-127, 128, (3, 70), dtype=torch.int8)
        ok = ok and torch.equal(kernels.ternary_matmul_int8(xq, p), xq.int() @ t.int().t())
        info = kernels.kernel_info()
    msgs = [str(w.message) for w in caught if "tritium" in str(w.message)]
    print(json.dumps({"ok": bool(ok), "native": info["native"], "warnings": msgs}))
    """
)


def test_fallback_without_native_warns_once(tmp_path):
    # both ways of losing the native kernels, in fresh processes run side by side
    envs = [{"TRITIUM_DISABLE_NATIVE": "1"}, {"CC": "/nonexistent/cc"}]
    procs = []
    for i, env in enumerate(envs):
        cache = tmp_path / f"cache{i}"
        run_env = dict(os.environ, TRITIUM_CACHE_DIR=str(cache), **env)
        run_env.pop("TRITIUM_CPU_ISA", None)
        procs.append(
            (cache, subprocess.Popen([sys.executable, "-c", _FALLBACK_SCRIPT], env=run_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        )
    for cache, proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        res = json.loads(stdout.strip().splitlines()[-1])
        assert res["ok"] and res["native"] is False
        assert len(res["warnings"]) == 1, res["warnings"]
        assert "pure-PyTorch" in res["warnings"][0]
        assert not list(cache.rglob("*.so"))


@pytest.mark.native
def test_build_cache_reuses_verifies_and_rebuilds(tmp_path):
    cfg = build_mod.KernelConfig(isa="scalar")
    first = build_mod.build(cfg, cache_dir=tmp_path)
    assert first.built_now and first.path.is_file()
    assert first.path.with_suffix(".sha256").read_text().strip()
    again = build_mod.build(cfg, cache_dir=tmp_path)
    assert not again.built_now and again.path == first.path
    # corruption (truncated binary) is detected by the sidecar hash and rebuilt
    first.path.write_bytes(first.path.read_bytes()[:100])
    fixed = build_mod.build(cfg, cache_dir=tmp_path)
    assert fixed.built_now and fixed.path == first.path
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.native
def test_concurrent_builds_are_safe(tmp_path):
    cfg = build_mod.KernelConfig(isa="scalar", tok_chunk=16)
    results, errors = [], []

    def worker():
        try:
            results.append(build_mod.build(cfg, cache_dir=tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.path for r in results}) == 1
    assert sum(r.built_now for r in results) == 1
    assert build_mod._verified(results[0].path)


def test_rendered_source_is_specialized():
    src = build_mod.render_source(build_mod.KernelConfig(isa="avx2", tok_chunk=32))
    assert "#define TRI_ISA_AVX2 1" in src
    assert "#define TRI_ISA_SCALAR 0" in src
    assert "#define TRI_TOK_CHUNK 32" in src
    assert "tri_linear" in src


def test_isa_selection(monkeypatch):
    assert isa_mod.supported_isas()[-1] == "scalar"
    monkeypatch.setenv("TRITIUM_CPU_ISA", "scalar")
    assert isa_mod.select_isa() == "scalar"
    monkeypatch.setenv("TRITIUM_CPU_ISA", "bogus")
    with pytest.warns(RuntimeWarning, match="bogus"):
        assert isa_mod.select_isa() == isa_mod.supported_isas()[0]
    assert isa_mod.supported_isas(frozenset()) in (["scalar"],)


def test_unpack_and_kernels_agree_on_the_torch_path(monkeypatch):
    monkeypatch.setattr(kernels, "_lib", lambda: None)
    trits = _rand_trits(13, 77)
    p = pack_ternary(trits, "t2")
    assert torch.equal(unpack_ternary(p), trits)
    x = torch.randn(4, 77)
    _close(ternary_linear(x, p, torch.ones(13), act_quant="int8"),
           _reference(x, trits, torch.ones(13), act_quant="int8"))


@pytest.mark.native
def test_concurrent_calls_from_python_threads():
    # ctypes releases the GIL: several threads share the native pool (or run serially beside it)
    trits = _rand_trits(96, 700, seed=9)
    p = pack_ternary(trits, "t1.6")
    xs = [torch.randn(m, 700) for m in (1, 2, 5, 33)]
    scale = torch.rand(96) + 0.5
    want = [_reference(x, trits, scale, act_quant="int8") for x in xs]
    errors = []

    def worker(i):
        for _ in range(10):
            got = ternary_linear(xs[i], p, scale, act_quant="int8")
            if not torch.allclose(got, want[i], atol=1e-4, rtol=1e-4):
                errors.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
