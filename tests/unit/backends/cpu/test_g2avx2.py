"""The AVX2 int8 batch GEMM (csrc/tritium_g2avx2.h): its documented weight layout, exact int32
sums against a PyTorch integer reference on odd shapes (every K tail, channel tails of the
32-channel panels and of their 16-channel halves, token tails of the 4-token micro-kernel,
i16 sums widened after 63 groups), and the fused epilogue against the reference and the
decoded-tile path of the portable kernels, with 1 and 2 threads, with and without the layout
the runtime caches."""

from __future__ import annotations

import itertools

import pytest
import torch

from tritium.backends import cpu
from tritium.backends.cpu import KernelConfig
from tritium.backends.cpu import isa as isa_mod
from tritium.runtime import kernels
from tritium.runtime.packing import FORMAT_CODE, pack_ternary, unpack_ternary

pytestmark = [
    pytest.mark.skipif(not kernels.native_available(), reason="no native kernels"),
    pytest.mark.skipif("avx2" not in isa_mod.supported_isas(), reason="needs an AVX2 CPU"),
]

MS = (2, 3, 5, 17, 64)
NS = (1, 10, 31, 128, 130)
KS = (3, 64, 100, 128, 257, 1024)


def _weights(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)


def _acts(m, k, seed, extreme):
    g = torch.Generator().manual_seed(seed + 7)
    if extreme:  # all -128 / +127: the largest i16 pair sums the kernel must hold
        return (torch.randint(0, 2, (m, k), generator=g) * 255 - 128).to(torch.int8)
    return torch.randint(-128, 128, (m, k), generator=g).to(torch.int8)


@pytest.fixture(params=["avx2", "native"])
def isa(request, monkeypatch):
    if request.param == "avx2":
        monkeypatch.setenv("TRITIUM_CPU_ISA", "avx2")
    else:
        monkeypatch.delenv("TRITIUM_CPU_ISA", raising=False)
    return request.param


def test_the_avx2_layout_is_the_documented_one():
    """Group g of panel p is 32 bytes; bits 2j of byte 4d + i: code (trit + 1) of channel
    32p + 8j + d at k = 4g + i; padding channels and k are code 1 (trit 0)."""
    lib = cpu.load("avx2")
    for fmt, (n, k) in itertools.product(("t2", "t1.6"), ((37, 171), (1, 3), (64, 160))):
        w = _weights(n, k, n + k)
        p = pack_ternary(w, fmt)
        n32, k4 = (n + 31) // 32, (k + 3) // 4
        nbytes = lib.lib.tri_g2_bytes(FORMAT_CODE[fmt], n, k)
        assert nbytes == n32 * k4 * 32
        out = torch.empty(nbytes, dtype=torch.uint8)
        assert lib.lib.tri_g2_pack(FORMAT_CODE[fmt], p.data.data_ptr(), n, k, p.data.shape[1],
                                   out.data_ptr(), 2) == 0
        codes = torch.ones(n32 * 32, k4 * 4, dtype=torch.int64)
        codes[:n, :k] = unpack_ternary(p).long() + 1
        c = codes.reshape(n32, 4, 8, k4, 4)  # (p, j, d, g, i)
        expect = c[:, 0] | c[:, 1] << 2 | c[:, 2] << 4 | c[:, 3] << 6  # (p, d, g, i)
        assert torch.equal(out.reshape(n32, k4, 8, 4).long(), expect.permute(0, 2, 1, 3))


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("k", KS)
def test_int32_sums_are_exact(isa, fmt, k):
    for m, n in itertools.product(MS, NS):
        w = _weights(n, k, m * 1000 + n)
        p = pack_ternary(w, fmt)
        for extreme in (False, True):
            xq = _acts(m, k, m + n + k, extreme)
            got = kernels.ternary_matmul_int8(xq, p)
            ref = (xq.long() @ w.long().t()).int()
            assert torch.equal(got, ref), (m, n, k, fmt, extreme)


def test_sums_past_the_i16_block_are_exact():
    """K of 1024 with every product at its largest: 63-group i16 blocks widened and summed."""
    lib = cpu.load("avx2")
    m, n, k = 5, 40, 1024
    w = torch.ones(n, k, dtype=torch.int8)
    w[1::2] = -1
    p = pack_ternary(w, "t2")
    xq = torch.full((m, k), 127, dtype=torch.int8)
    xq[1::2] = -128
    y = torch.empty(m, n, dtype=torch.int32)
    assert lib.lib.tri_gemm_i8(xq.data_ptr(), m, k, p.data.data_ptr(), n, p.data.shape[1],
                               FORMAT_CODE["t2"], y.data_ptr(), 1) == 0
    assert torch.equal(y, (xq.long() @ w.long().t()).int())


def _case(i, m, n, k, fmt):
    g = torch.Generator().manual_seed(i)
    w = _weights(n, k, i)
    p = pack_ternary(w, fmt)
    x = torch.randn(m, k, generator=g) * (i % 5 + 1)
    scale = torch.rand(n, generator=g) + 0.5
    scale = scale[:1] if i % 3 == 0 else scale
    bias = torch.randn(n, generator=g) if i % 2 else None
    res = torch.randn(m, n, generator=g) if i % 4 == 1 else None
    act = kernels.ACTIVATIONS[i % len(kernels.ACTIVATIONS)]
    return w, p, x, scale, bias, res, act


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("threads", [1, 2])
def test_epilogue_matches_the_reference_and_the_tile_path(fmt, threads):
    cfg = KernelConfig("avx2", threads=threads)
    tiles = KernelConfig("scalar", threads=threads)  # the decoded-tile GEMM
    for i, (m, n, k) in enumerate(itertools.product(MS, NS, (3, 100, 257))):
        w, p, x, scale, bias, res, act = _case(i, m, n, k, fmt)
        got = kernels.run_linear(cfg, x, p.data, n, k, fmt, scale, bias, act, "int8", res)
        ref = kernels._reference_linear(x, w, scale, bias, res, act, "int8")
        other = kernels.run_linear(tiles, x, p.data, n, k, fmt, scale, bias, act, "int8", res)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5, msg=f"{(m, n, k)} {act}")
        torch.testing.assert_close(got, other, rtol=1e-6, atol=1e-6, msg=f"{(m, n, k)} {act}")


def test_the_plan_runs_on_the_cached_avx2_layout(monkeypatch):
    monkeypatch.setenv("TRITIUM_CPU_ISA", "avx2")
    lib = cpu.load()
    assert lib.isa == "avx2"
    for i, (m, n, k) in enumerate(((2, 10, 64), (17, 130, 257), (64, 31, 1024))):
        w, p, x, scale, bias, res, act = _case(i + 1, m, n, k, "t1.6")
        plan = kernels.linear_plan(p.data, n, k, "t1.6", scale, bias, "int8")
        ref = kernels._reference_linear(x, w, scale, bias, res, act, "int8")
        torch.testing.assert_close(plan(x, act, res), ref, rtol=1e-5, atol=1e-5)
        assert plan.g2 is not None and plan.g2.numel() == ((n + 31) // 32) * ((k + 3) // 4) * 32
        assert kernels._G2_LAYOUTS[id(p.data)][6] is plan.g2
        torch.testing.assert_close(plan(x, act, res), ref, rtol=1e-5, atol=1e-5)  # reused


def test_a_layout_made_on_another_isa_is_not_reused(monkeypatch):
    if "avx512" not in isa_mod.supported_isas():
        pytest.skip("needs AVX-512 for a second layout")
    n, k = 40, 96
    w = _weights(n, k, 3)
    p = pack_ternary(w, "t2")
    a512, a2 = cpu.load("avx512"), cpu.load("avx2")
    l512 = kernels._g2_layout(a512, p.data, n, k, "t2")
    l2 = kernels._g2_layout(a2, p.data, n, k, "t2")
    assert l2 is not l512 and l2.numel() == 2 * ((k + 3) // 4) * 32
    assert kernels._g2_layout(a2, p.data, n, k, "t2") is l2


def test_the_avx2_quantizer_is_bit_identical_to_the_portable_one():
    """tritium_epilogue.h's 8-lane quantizer: the same division, rounding and clamp as the C
    loops (and torch), NaN and infinities included, on every tail length."""
    libs = [cpu.load("avx2"), cpu.load("scalar")]
    g = torch.Generator().manual_seed(0)
    for k, case in itertools.product((1, 7, 8, 9, 64, 100, 257), range(4)):
        x = torch.randn(5, k, generator=g) * 10.0 ** case
        if case == 2:
            x[2] = 0.0
        if case == 3:
            x.view(-1)[::3] = float("nan")
            x.view(-1)[1::7] = float("inf")
        outs = []
        for lib in libs:
            q, s = torch.empty(5, k, dtype=torch.int8), torch.empty(5)
            lib.lib.tri_quantize_rows(x.data_ptr(), 5, k, q.data_ptr(), s.data_ptr(), 1)
            outs.append((q, s))
        assert torch.equal(outs[0][0], outs[1][0]), (k, case)
        torch.testing.assert_close(outs[0][1], outs[1][1], rtol=0, atol=0, equal_nan=True)
