"""The int8 GEMM for batches (the G2 path on AVX-512, the decoded-tile path elsewhere): exact
int32 products and the fused epilogue on shapes that are and are not multiples of every block
size, for the default specialization of every ISA path and for tuned G2 specializations."""

from __future__ import annotations

import pytest
import torch

from tritium.backends import cpu
from tritium.backends.cpu import KernelConfig
from tritium.backends.cpu import isa as isa_mod
from tritium.runtime import kernels
from tritium.runtime.packing import FORMAT_CODE, pack_ternary, unpack_ternary

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")

ISAS = isa_mod.supported_isas()
HAS_G2 = "avx512" in ISAS

# (m, n, k): batches around the micro-kernel heights (1, 2, 3, 7, 8, 9, 17, 65, 130), channel
# counts around the 16-channel panels, K around the 4-element groups and both block sizes
# (t2: 128, t1.6: 160), K not a multiple of 5, and K below one group.
SHAPES = [
    (2, 16, 128), (3, 17, 160), (7, 1, 5), (8, 33, 161), (9, 15, 3), (17, 100, 321),
    (65, 48, 1000), (130, 31, 127), (24, 64, 4), (1, 40, 257), (5, 96, 1),
]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    monkeypatch.setenv("TRITIUM_CPU_ISA", request.param)
    return request.param


def _weights(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)


def _acts(m, k, seed, extreme=False):
    g = torch.Generator().manual_seed(seed + 1)
    if extreme:  # all +-127: the largest products the exact path must hold
        return (torch.randint(0, 2, (m, k), generator=g) * 254 - 127).to(torch.int8)
    return torch.randint(-127, 128, (m, k), generator=g).to(torch.int8)


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize(("m", "n", "k"), SHAPES)
def test_int8_gemm_is_exact_on_every_isa(isa, fmt, m, n, k):
    w = _weights(n, k, m + n + k)
    p = pack_ternary(w, fmt)
    for extreme in (False, True):
        xq = _acts(m, k, n, extreme)
        got = kernels.ternary_matmul_int8(xq, p)
        assert got.dtype == torch.int32
        torch.testing.assert_close(got, (xq.long() @ w.long().t()).int(), rtol=0, atol=0)


G2_CONFIGS = [
    {},
    {"gemm_mr": 1, "gemm_nrv": 1, "gemm_mc": 8, "gemm_kc": 256},
    {"gemm_mr": 6, "gemm_nrv": 3, "gemm_mc": 16, "gemm_kc": 512, "gemm_unpack": 0,
     "gemm_pf": 256},
    {"gemm_mr": 12, "gemm_nrv": 4, "gemm_min_m": 1, "gemm_unpack": 1, "gemm_pf": 0, "threads": 1},
    {"gemm_mr": 10, "gemm_nrv": 2, "gemm_mc": 256, "gemm_kc": 2048, "gemm_min_m": 16},
]


def _epilogue_case(seed, n):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g) + 0.5, torch.randn(n, generator=g)


@pytest.mark.skipif(not HAS_G2, reason="the G2 GEMM needs AVX-512")
@pytest.mark.parametrize("params", G2_CONFIGS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_g2_specializations_match_the_reference(params, fmt):
    cfg = KernelConfig.from_params("avx512", params)
    for i, (m, n, k) in enumerate(SHAPES):
        w = _weights(n, k, i)
        p = pack_ternary(w, fmt)
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(i)) * (i + 1)
        scale, bias = _epilogue_case(i, n)
        res = torch.randn(m, n)
        act = kernels.ACTIVATIONS[i % len(kernels.ACTIVATIONS)]
        per_tensor = scale[:1] if i % 3 == 0 else scale
        got = kernels.run_linear(cfg, x, p.data, n, k, fmt, per_tensor,
                                 bias if i % 2 else None, act, "int8", res if i % 4 == 1 else None)
        ref = kernels._reference_linear(x, w, per_tensor, bias if i % 2 else None,
                                        res if i % 4 == 1 else None, act, "int8")
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5, msg=f"{(m, n, k)} {act}")


@pytest.mark.skipif(not HAS_G2, reason="the G2 GEMM needs AVX-512")
def test_g2_layout_is_the_documented_one():
    """byte [p][g][c] = codes of channel 16p + c at k = 4g..4g+3, k = 4g in the low bits."""
    lib = cpu.load("avx512")
    for fmt in ("t2", "t1.6"):
        n, k = 37, 171
        w = _weights(n, k, 5)
        p = pack_ternary(w, fmt)
        nbytes = lib.lib.tri_g2_bytes(FORMAT_CODE[fmt], n, k)
        n16, k4 = (n + 15) // 16, (k + 3) // 4
        assert nbytes == n16 * k4 * 16
        out = torch.empty(nbytes, dtype=torch.uint8)
        assert lib.lib.tri_g2_pack(FORMAT_CODE[fmt], p.data.data_ptr(), n, k, p.data.shape[1],
                                   out.data_ptr(), 2) == 0
        codes = torch.ones(n16 * 16, k4 * 4, dtype=torch.int64)  # padding: trit 0 = code 1
        codes[:n, :k] = unpack_ternary(p).long() + 1
        c = codes.reshape(n16, 16, k4, 4)
        expect = c[..., 0] | c[..., 1] << 2 | c[..., 2] << 4 | c[..., 3] << 6  # (p, c, g)
        assert torch.equal(out.reshape(n16, k4, 16).long(), expect.transpose(1, 2))


@pytest.mark.skipif(not HAS_G2, reason="the G2 GEMM needs AVX-512")
def test_g2_path_boundary_and_threads_agree():
    n, k = 70, 333
    w = _weights(n, k, 9)
    p = pack_ternary(w, "t1.6")
    scale, bias = _epilogue_case(9, n)
    x = torch.randn(20, k)
    ref = kernels._reference_linear(x, w, scale, bias, None, "silu", "int8")
    for cfg in (KernelConfig("avx512", gemm_min_m=8, threads=1),
                KernelConfig("avx512", gemm_min_m=8, threads=2),
                KernelConfig("avx512", gemm_min_m=512)):
        for m in (1, 7, 8, 20):  # GEMV, decoded tiles and G2 on either side of the switch
            got = kernels.run_linear(cfg, x[:m], p.data, n, k, "t1.6", scale, bias, "silu", "int8")
            torch.testing.assert_close(got, ref[:m], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAS_G2, reason="the G2 GEMM needs AVX-512")
def test_the_plan_caches_the_g2_layout_and_follows_weight_changes(monkeypatch):
    monkeypatch.setenv("TRITIUM_CPU_ISA", "avx512")
    n, k = 48, 200
    w1, w2 = _weights(n, k, 1), _weights(n, k, 2)
    p = pack_ternary(w1, "t2")
    scale = torch.ones(n)
    lib = cpu.load()
    plan = kernels.linear_plan(p.data, n, k, "t2", scale, None, "int8")
    x = torch.randn(16, k)
    ref1 = kernels._reference_linear(x, w1, scale, None, None, None, "int8")
    torch.testing.assert_close(plan(x, None, None), ref1, rtol=1e-5, atol=1e-5)
    layout = plan.g2
    assert layout is not None and kernels._g2_layout(lib, p.data, n, k, "t2") is layout
    p.data.copy_(pack_ternary(w2, "t2").data)  # in place: the version counter moves
    again = kernels._g2_layout(lib, p.data, n, k, "t2")
    assert again is not layout
    ref2 = kernels._reference_linear(x, w2, scale, None, None, None, "int8")
    got = kernels.LinearPlan(lib, p.data, n, k, "t2", scale, None, "int8")(x, None, None)
    torch.testing.assert_close(got, ref2, rtol=1e-5, atol=1e-5)
    key = id(p.data)
    del plan, p, got
    import gc

    gc.collect()
    assert key not in kernels._G2_LAYOUTS  # dropped with its weight


@pytest.mark.parametrize("m", [1, 4, 20])
def test_k_zero_gives_zero_products(isa, m):
    p = pack_ternary(torch.zeros(5, 0, dtype=torch.int8), "t1.6")
    got = kernels.ternary_matmul_int8(torch.zeros(m, 0, dtype=torch.int8), p)
    assert torch.equal(got, torch.zeros(m, 5, dtype=torch.int32))


@pytest.mark.skipif(not HAS_G2, reason="the G2 GEMM needs AVX-512")
def test_the_resolved_config_decides_whether_the_g2_layout_is_made(monkeypatch):
    monkeypatch.setenv("TRITIUM_CPU_ISA", "avx512")
    n, k = 40, 96
    w = _weights(n, k, 3)
    p = pack_ternary(w, "t2")
    scale = torch.ones(n)
    x = torch.randn(16, k)
    ref = kernels._reference_linear(x, w, scale, None, None, None, "int8")
    kernels.set_config_resolver(lambda *a: KernelConfig("avx512", gemm_min_m=512))
    try:
        plan = kernels.linear_plan(p.data, n, k, "t2", scale, None, "int8")
        torch.testing.assert_close(plan(x, None, None), ref, rtol=1e-5, atol=1e-5)
        assert plan.g2 is None and id(p.data) not in kernels._G2_LAYOUTS
    finally:
        kernels.set_config_resolver(None)
    torch.testing.assert_close(plan(x, None, None), ref, rtol=1e-5, atol=1e-5)
    assert plan.g2 is not None and kernels._G2_LAYOUTS[id(p.data)][6] is plan.g2
