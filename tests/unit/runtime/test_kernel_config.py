"""The tuning contract of the CPU kernels: KernelConfig's search space, loading one
specialization, running exactly one config, and the per-problem config resolver."""

from __future__ import annotations

import warnings

import pytest
import torch

from tritium import runtime as trt
from tritium.backends import cpu
from tritium.backends.cpu import KernelConfig, build
from tritium.backends.cpu import isa as isa_mod
from tritium.runtime import kernels, plan
from tritium.runtime.packing import pack_ternary
from tritium.tune.space import Param, SearchSpace

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")

ISAS = isa_mod.supported_isas()
BEST = ISAS[0]


@pytest.fixture(autouse=True)
def _no_resolver(monkeypatch):
    monkeypatch.setattr(plan, "_resolver_warned", False)
    kernels.set_config_resolver(None)
    yield
    kernels.set_config_resolver(None)


def _problem(n=37, k=170, m=9, fmt="t1.6", seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
    x = torch.randn(m, k, generator=g)
    scale = torch.rand(n, generator=g) + 0.5
    bias = torch.randn(n, generator=g)
    return pack_ternary(w, fmt), x, scale, bias


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_search_params_are_legal_params_with_the_dataclass_defaults(isa):
    from tritium.tune.cpu import search_params

    params = search_params(isa)
    assert params and all(isinstance(p, Param) for p in params)
    assert [p.name for p in params] == [p.name for p in KernelConfig.search_params(isa)]
    space = SearchSpace("cpu.linear", params)
    default = space.default()
    assert KernelConfig.from_params(isa, default) == KernelConfig(isa=isa)
    for p in params:
        for v in p.values:
            cfg = KernelConfig.from_params(isa, {p.name: v})
            assert getattr(cfg, p.name) == v and cfg.isa == isa


def test_every_listed_parameter_changes_the_code_or_the_run():
    for isa in ("avx512", "avx2", "scalar"):
        base = KernelConfig(isa=isa)
        for p in KernelConfig.search_params(isa):
            for v in p.values:
                if v == p.default:
                    continue
                cfg = KernelConfig.from_params(isa, {p.name: v})
                if p.name == "threads":
                    assert build.render_source(cfg) == build.render_source(base)
                    assert cfg.build_config() == base
                else:
                    assert build.render_source(cfg) != build.render_source(base), (isa, p.name, v)


def test_bad_params_are_clear_errors():
    with pytest.raises(ValueError, match="unknown kernel parameter"):
        KernelConfig.from_params("avx2", {"bogus": 1})
    with pytest.raises(ValueError, match="tok_chunk=7 is not one of"):
        KernelConfig.from_params("avx2", {"tok_chunk": 7})
    with pytest.raises(ValueError, match="unknown kernel ISA"):
        KernelConfig.search_params("mips")
    with pytest.raises(ValueError, match="unknown kernel ISA"):
        KernelConfig(isa="mips")
    with pytest.raises(TypeError, match="KernelConfig"):
        cpu.load(config={"tok_chunk": 16})
    with pytest.raises(ValueError, match="disagrees"):
        cpu.load("scalar", config=KernelConfig(isa=BEST))


def test_load_caches_one_library_per_specialization():
    a = cpu.load(config=KernelConfig(isa="scalar", tok_chunk=16))
    b = cpu.load(config=KernelConfig(isa="scalar", tok_chunk=16, threads=1))
    c = cpu.load(config=KernelConfig(isa="scalar", tok_chunk=32))
    assert a is not None and a is b and a.isa == "scalar"
    assert c is not None and c.path != a.path
    assert a.lib.tri_isa() == b"scalar"


def test_a_config_for_an_isa_this_cpu_lacks_does_not_load(monkeypatch):
    monkeypatch.setattr(isa_mod, "supported_isas", lambda flags=None: ["scalar"])
    cfg = KernelConfig(isa="avx2", tok_chunk=128)
    assert cpu.load(config=cfg) is None
    assert "cannot run" in cpu.load_error(cfg)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_run_linear_runs_each_config_and_matches(isa, act_quant):
    w, x, scale, bias = _problem()
    ref = kernels.ternary_linear(x, w, scale, bias, "relu", act_quant)
    for params in ({}, {p.name: p.values[0] for p in KernelConfig.search_params(isa)},
                   {p.name: p.values[-1] for p in KernelConfig.search_params(isa)}):
        cfg = KernelConfig.from_params(isa, params)
        got = kernels.run_linear(cfg, x, w.data, *w.shape, w.format, scale, bias, "relu",
                                 act_quant)
        tol = 0 if act_quant == "int8" else 1e-4
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def test_run_linear_errors():
    w, x, scale, _ = _problem()
    with pytest.raises(TypeError, match="KernelConfig"):
        kernels.run_linear({"isa": "avx2"}, x, w.data, *w.shape, w.format, scale)
    with pytest.raises(ValueError, match="x must be"):
        kernels.run_linear(KernelConfig(isa=BEST), x[:, :5], w.data, *w.shape, w.format, scale)
    with pytest.raises(ValueError, match="activation"):
        kernels.run_linear(KernelConfig(isa=BEST), x, w.data, *w.shape, w.format, scale,
                           activation="swish")


def test_run_linear_raises_when_the_config_cannot_be_built(monkeypatch, tmp_path):
    w, x, scale, _ = _problem()
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(RuntimeError, match="could not be loaded"):
        kernels.run_linear(KernelConfig(isa="scalar", tok_chunk=128), x, w.data, *w.shape,
                           w.format, scale)


def test_m_bucket():
    assert [kernels.m_bucket(m) for m in (1, 2, 3, 4, 5, 8, 9, 64, 65, 256)] == [
        1, 2, 3, 4, 8, 8, 16, 64, 128, 256]


def test_resolver_is_asked_once_per_bucket_and_its_config_runs():
    calls = []
    chosen = KernelConfig(isa="scalar", tok_chunk=16)

    def resolver(m, n, k, fmt, act_quant, isa):
        calls.append((m, n, k, fmt, act_quant, isa))
        return chosen if m >= 8 else None

    w, x, scale, bias = _problem()
    ref = kernels.ternary_linear(x, w, scale, bias, act_quant="int8")
    kernels.set_config_resolver(resolver)
    assert kernels.get_config_resolver() is resolver
    for _ in range(3):
        got = kernels.ternary_linear(x, w, scale, bias, act_quant="int8")
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    kernels.ternary_linear(x[:1], w, scale, bias, act_quant="int8")
    default_isa = cpu.load().isa
    assert calls == [(16, 37, 170, "t1.6", "int8", default_isa),
                     (1, 37, 170, "t1.6", "int8", default_isa)]
    # the scalar specialization really ran: it is the one the bucket resolved to
    fn, _, _, _ = kernels._RESOLVED[(16, 37, 170, "t1.6", "int8", default_isa)]
    assert fn is cpu.load(config=chosen).call.tri_linear_planned


def test_frozen_layers_use_the_resolver():
    torch.manual_seed(0)
    layer = trt.TernaryLinear(70, 33, act_quant="int8").eval().freeze()
    x = torch.randn(12, 70)
    with torch.no_grad():
        ref = layer(x)
    seen = []
    kernels.set_config_resolver(lambda *a: seen.append(a) or KernelConfig(isa="scalar"))
    with torch.no_grad():
        got = layer(x)
    assert seen and seen[0][:5] == (16, 33, 70, layer.packed_weight().format, "int8")
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize("bad", ["raises", "wrong-type", "unbuildable"])
def test_a_broken_resolver_falls_back_with_one_warning(bad, monkeypatch):
    if bad == "unbuildable":
        real = cpu.load
        monkeypatch.setattr(kernels.cpu_backend, "load",
                            lambda isa=None, config=None: None if config else real(isa))

    def resolver(m, n, k, fmt, act_quant, isa):
        if bad == "raises":
            raise KeyError("boom")
        if bad == "wrong-type":
            return {"tok_chunk": 16}
        return KernelConfig(isa="scalar", tok_chunk=256, gemv_max_m=1)

    w, x, scale, bias = _problem(fmt="t2")
    ref = kernels.ternary_linear(x, w, scale, bias, act_quant="int8")
    kernels.set_config_resolver(resolver)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for m in (1, 9, 30):
            got = kernels.ternary_linear(x[:m], w, scale, bias, act_quant="int8")
            torch.testing.assert_close(got, ref[:m], rtol=0, atol=0)
    msgs = [str(r.message) for r in rec if "default kernel config" in str(r.message)]
    assert len(msgs) == 1, msgs


def test_set_config_resolver_rejects_non_callables():
    with pytest.raises(TypeError, match="callable"):
        kernels.set_config_resolver(42)
