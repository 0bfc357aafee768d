"""Search spaces of the Triton kernels, and pruning by ahead-of-time compilation (no GPU:
`triton.compile` for a `GPUTarget`, as in tests/unit/backends/triton and tests/e2e/test_triton_aot.py;
in a process that imported Triton for its interpreter the compile runs in a helper process)."""

from __future__ import annotations

import importlib.util

import pytest

from tritium.tune import triton_space as ts
from tritium.tune.triton_space import (
    SHARED_MEMORY_LIMIT,
    default_config,
    device_description,
    kernel_source,
    prune,
    triton_kernels,
    triton_space,
)

# Not importorskip: importing triton while collecting would fix its mode before
# tests/unit/backends/triton/conftest.py asks for the interpreter.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="needs triton")


@pytest.fixture(autouse=True)
def _cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- spaces


def test_linear_spaces_and_their_legal_values():
    t2 = triton_space("triton.linear_t2", (256, 1024, 4096), "cuda:sm_80")
    assert t2.names == ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")
    assert t2.param("BLOCK_K").values == (128, 256, 512)
    assert t2.param("BLOCK_M").values == (16, 32, 64, 128)
    assert t2.param("GROUP_M").values == (1, 4, 8)
    t16 = triton_space("triton.linear_t16", (256, 1024, 4096))
    assert t16.param("BLOCK_K").values == (160, 320, 640)
    assert all(v % 160 == 0 for v in t16.param("BLOCK_K").values)
    for space in (t2, t16):
        assert space.validate(space.default()) is None
        size = space.size()
        assert 100 < size <= 4 * 4 * 3 * 3 * 3 * 4
        assert all(space.validate(c) is None for c in space.grid())


def test_fused_and_quantizer_kernels():
    assert {"triton.linear_t2", "triton.linear_t16", "triton.linear_t2_q8",
            "triton.linear_t16_rmsw_q8", "triton.quantize_int8"} <= set(triton_kernels())
    q = triton_space("triton.quantize_int8", (64, 1, 4096))
    assert q.names == ("BLOCK_M", "BLOCK_K", "num_warps", "num_stages")
    assert q.validate(q.default()) is None
    assert "def tri_quantize_int8(" in kernel_source("triton.quantize_int8")
    src = kernel_source("triton.linear_t2_q8_relu_bias")
    assert "def tri_linear_t2_q8_relu_bias(" in src and "GROUP_M: tl.constexpr = 1" in src


def test_constraint_rejects_blocks_far_larger_than_the_shape():
    space = triton_space("triton.linear_t2", (1, 40, 200), "cuda:sm_90")
    d = space.default()
    # two packed K blocks: the 16 x 64 autotuning config (3 stages) is too deep, 16 x 32 fits
    assert (d["BLOCK_M"], d["BLOCK_N"], d["num_stages"]) == (16, 32, 2)
    assert "BLOCK_M=64 is far larger than M=1" in space.validate({**d, "BLOCK_M": 64})
    assert "BLOCK_N=128 is far larger than N=40" in space.validate({**d, "BLOCK_N": 128})
    assert "more packed blocks than K=200" in space.validate({**d, "BLOCK_K": 512})
    # K = 200 is two packed blocks: BLOCK_K=256 leaves one K step, num_stages 3 is too deep
    assert "num_stages=3 is deeper than the 1 K step(s)" in space.validate(
        {**d, "BLOCK_K": 256, "num_stages": 3})
    assert "GROUP_M=4 orders the 1 row tile(s) like GROUP_M=1" in space.validate(
        {**d, "GROUP_M": 4})
    big = triton_space("triton.linear_t2", (64, 256, 1024))
    c = {**big.default(), "BLOCK_M": 16}  # 4 row tiles: GROUP_M 4 and 8 give the same order
    assert big.validate({**c, "GROUP_M": 4}) is None
    assert "like GROUP_M=4" in big.validate({**c, "GROUP_M": 8})
    # every grid config obeys the tile rules
    for cfg in space.grid():
        assert cfg["BLOCK_M"] == 16 and cfg["BLOCK_N"] <= 64 and cfg["BLOCK_K"] <= 256


def test_default_config_is_what_the_aot_build_picks():
    from tritium.backends.triton import aot
    from tritium.backends.triton.codegen import runtime_source
    from tritium.backends.triton.loader import load_source
    from tritium.backends.triton.specs import BLOCK_TRITS

    for kernel, spec_fmt in (("triton.linear_t2", "t2"), ("triton.linear_t16", "t1.6")):
        mod = load_source(runtime_source(ts.kernel_spec(kernel)), interpret=False)
        for shape in ((1, 10, 64), (64, 4096, 4096), (17, 130, 300), (128, 64, 100)):
            fit = mod.fitting_gemm_configs(mod.GEMM_CONFIGS, *shape, BLOCK_TRITS[spec_fmt])
            best = max(fit, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])
            assert default_config(kernel, shape) == {
                **best.kwargs, "BLOCK_K": BLOCK_TRITS[spec_fmt], "GROUP_M": 1,
                "num_warps": best.num_warps, "num_stages": best.num_stages}
    for m, k in ((64, 4096), (3, 100), (1, 7)):
        req = aot.quant_request(m, k)
        assert default_config("triton.quantize_int8", (m, 1, k)) == {
            **dict(req.constexprs), "num_warps": req.num_warps, "num_stages": req.num_stages}


def test_bad_names_shapes_and_targets():
    with pytest.raises(ValueError, match="unknown Triton kernel 'triton.linear_t3'"):
        triton_space("triton.linear_t3", (1, 2, 3))
    with pytest.raises(ValueError, match=r"three positive integers \(M, N, K\), got \(1, 0, 3\)"):
        triton_space("triton.linear_t2", (1, 0, 3))
    with pytest.raises(ValueError, match="unknown target 'cuda:sm_75'"):
        triton_space("triton.linear_t2", (1, 2, 3), "cuda:sm_75")
    with pytest.raises(ValueError, match="unknown target"):
        device_description("cpu")
    assert device_description("cuda:sm_80")["shared_memory_per_block_bytes"] == 166912
    assert SHARED_MEMORY_LIMIT == {"cuda:sm_80": 166912, "cuda:sm_90": 232448}


# ----------------------------------------------------------------------------- AOT pruning


def test_prune_accepts_the_default_and_caches_the_verdict(monkeypatch):
    from tritium.backends.triton import aot

    space = triton_space("triton.linear_t2", (16, 64, 256), "cuda:sm_80")
    assert prune(space, space.default(), "cuda:sm_80") is None

    def no_compile(*args, **kwargs):
        raise AssertionError("prune compiled again instead of using the cached verdict")

    monkeypatch.setattr(aot, "build", no_compile)
    assert prune(space, space.default(), "cuda:sm_80") is None


def test_prune_rejects_a_config_over_sm80_shared_memory(monkeypatch):
    from tritium.backends.triton import aot

    space = triton_space("triton.linear_t2", (64, 256, 1024), "cuda:sm_80")
    config = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 256, "GROUP_M": 1, "num_warps": 4,
              "num_stages": 4}
    assert space.validate(config) is None
    why = prune(space, config, "cuda:sm_80")
    assert why is not None and "cuda:sm_80 allows at most 166912 bytes" in why
    needed = int(why.split("needs ")[1].split(" bytes")[0])
    assert needed > 166912
    # the compiled kernel in the compile cache records the same figure
    built = aot.compile_request(ts.aot_request(space, config), "cuda:sm_80")
    assert built.cached and built.shared == needed
    monkeypatch.setattr(aot, "build", lambda *a, **k: pytest.fail("recompiled"))
    assert prune(space, config, "cuda:sm_80") == why


def test_prune_reports_a_compile_failure():
    from tritium.tune.space import Param, SearchSpace

    # a hand-made space whose BLOCK_K is not a multiple of the t2 block: the kernel's
    # static_assert stops the compile
    space = SearchSpace("triton.linear_t2", (
        Param("BLOCK_M", (16,), 16), Param("BLOCK_N", (32,), 32), Param("BLOCK_K", (96,), 96),
        Param("GROUP_M", (1,), 1), Param("num_warps", (2,), 2), Param("num_stages", (2,), 2)))
    why = prune(space, space.default(), "cuda:sm_90")
    assert why == ("does not compile for cuda:sm_90: CompileTimeAssertionFailure: at 25:4: "
                   "BLOCK_K must be a multiple of 128")


def test_prune_of_an_illegal_config_needs_no_compile():
    space = triton_space("triton.linear_t16", (8, 32, 160), "cuda:sm_90")
    assert "BLOCK_M=128 is far larger than M=8" in prune(
        space, {**space.default(), "BLOCK_M": 128}, "cuda:sm_90")
    with pytest.raises(ValueError, match="unknown target"):
        prune(space, space.default(), "cuda:sm_70")


def test_the_records_file_refuses_triton_values_the_tuner_never_chooses(tmp_path):
    # the records file (untrusted) was checked for names and for integers up to 65536: a
    # record of BLOCK_M = 65536 or num_warps = 65536 would have the first CUDA call compile it
    import warnings

    from tritium.runtime import tuned
    from tritium.tune.triton_space import default_config, triton_kernels, triton_space

    src = tuned.RecordsFile(tmp_path / "records.json")
    for kernel in triton_kernels():
        shape = (64, 256, 1024)
        space = triton_space(kernel, shape)
        for p in space.params:     # every value the tuner may write is taken
            for v in p.values:
                config = {**default_config(kernel, shape), p.name: v}
                assert src.check_triton(kernel, shape, config) == config
    kernel = triton_kernels()[0]
    good = default_config(kernel, (64, 256, 1024))
    for bad in ({"BLOCK_M": 1 << 16}, {"num_warps": 1 << 16}, {"num_warps": 3},
                {"BLOCK_K": 100}, {"num_stages": 0}, {"tile": 4}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert src.check_triton(kernel, (64, 256, 1024), {**good, **bad}) is None, bad
