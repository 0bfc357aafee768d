"""$TRITIUM_CPU_MAX_ISA: an AVX-512 machine seen as an AVX2-only one (or a scalar one)."""

from __future__ import annotations

import pytest

from tritium.backends.cpu import isa as isa_mod

# The flags of an AVX-512 x86-64 CPU with VNNI, VBMI and AMX (a Sapphire Rapids Xeon, cut).
SPR = frozenset("sse4_2 avx avx2 fma f16c bmi2 avx_vnni avx512f avx512dq avx512bw avx512vl "
                "avx512_vnni avx512vbmi avx512_vbmi2 avx512_bf16 avx512_fp16 amx_tile "
                "amx_int8".split())


@pytest.fixture
def avx512_host(monkeypatch):
    monkeypatch.setattr(isa_mod, "host_cpu_flags", lambda: SPR)
    monkeypatch.setattr(isa_mod.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("TRITIUM_CPU_ISA", raising=False)
    monkeypatch.delenv("TRITIUM_CPU_MAX_ISA", raising=False)
    return monkeypatch


def test_without_a_cap_the_host_is_what_it_is(avx512_host):
    assert isa_mod.max_isa() is None
    assert isa_mod.supported_isas() == ["avx512", "avx2", "scalar"]
    assert isa_mod.select_isa() == "avx512"
    assert isa_mod.optional_flags("avx512") == ["-mavx512vbmi"]


def test_an_avx2_cap_is_an_avx2_only_cpu(avx512_host):
    avx512_host.setenv("TRITIUM_CPU_MAX_ISA", "AVX2")
    flags = isa_mod.cpu_flags()
    assert not any(f.startswith(("avx512", "amx")) for f in flags)
    assert {"avx", "avx2", "fma", "f16c", "bmi2"} <= flags
    assert isa_mod.supported_isas() == ["avx2", "scalar"]
    assert isa_mod.select_isa() == "avx2"
    assert isa_mod.optional_flags("avx512") == []   # no VBMI table decode either
    assert isa_mod.compile_flags("avx2") == ["-mavx2", "-mfma"]
    with pytest.warns(RuntimeWarning, match="TRITIUM_CPU_MAX_ISA=avx2 caps"):
        assert isa_mod.select_isa("avx512") == "avx2"
    # a CPU described by its flags is not this one: the cap does not apply to it
    assert isa_mod.supported_isas(SPR, machine="x86_64")[0] == "avx512"
    assert isa_mod.host_cpu_flags() == SPR


def test_a_scalar_cap_leaves_the_portable_path(avx512_host):
    avx512_host.setenv("TRITIUM_CPU_MAX_ISA", "scalar")
    assert isa_mod.supported_isas() == ["scalar"]
    assert not any(f.startswith(("avx", "fma")) for f in isa_mod.cpu_flags())
    with pytest.warns(RuntimeWarning, match="caps this CPU below the avx2 kernels"):
        assert isa_mod.select_isa("avx2") == "scalar"


def test_a_cap_at_or_above_the_host_changes_nothing(avx512_host):
    avx512_host.setenv("TRITIUM_CPU_MAX_ISA", "avx512")
    assert isa_mod.supported_isas() == ["avx512", "avx2", "scalar"]
    assert isa_mod.cpu_flags() == SPR
    # an AVX2-only host capped at avx512 stays AVX2-only
    avx512_host.setattr(isa_mod, "host_cpu_flags", lambda: frozenset({"avx", "avx2", "fma"}))
    assert isa_mod.supported_isas() == ["avx2", "scalar"]


def test_a_cap_of_the_other_architecture_changes_nothing(monkeypatch):
    monkeypatch.setattr(isa_mod, "host_cpu_flags", lambda: frozenset({"fp", "asimd", "asimddp"}))
    monkeypatch.setattr(isa_mod.platform, "machine", lambda: "aarch64")
    monkeypatch.delenv("TRITIUM_CPU_ISA", raising=False)
    monkeypatch.setenv("TRITIUM_CPU_MAX_ISA", "avx2")
    assert isa_mod.supported_isas() == ["neon", "scalar"]
    assert isa_mod.optional_flags("neon") == ["-march=armv8.2-a+dotprod"]
    monkeypatch.setenv("TRITIUM_CPU_MAX_ISA", "scalar")
    assert isa_mod.supported_isas() == ["scalar"]
    assert isa_mod.optional_flags("neon") == []


def test_an_unknown_cap_warns_once_and_is_ignored(avx512_host):
    avx512_host.setenv("TRITIUM_CPU_MAX_ISA", "sse9")
    avx512_host.setattr(isa_mod, "_warned_caps", set())
    with pytest.warns(RuntimeWarning, match="'sse9' is not one of"):
        assert isa_mod.supported_isas()[0] == "avx512"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isa_mod.max_isa() is None
