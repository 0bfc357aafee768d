"""Where tuned configs apply: the exact shape and machine they were measured on, with a
thread count that never exceeds the user's, and a record of which ones ran."""

from __future__ import annotations

import json

import pytest
import torch

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu import KernelConfig
from tritium.cli import main
from tritium.runtime import kernels
from tritium.runtime.packing import pack_ternary
from tritium.tune import cpu, dispatch
from tritium.tune.archive import Archive

native = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_TUNE_STORAGE", f"sqlite:///{tmp_path / 'tune.db'}")
    kernels.set_config_resolver(None)
    dispatch.reset()
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    kernels.set_config_resolver(None)
    dispatch.reset()


@pytest.mark.parametrize("shape", [(1, 64, 64), (64, 128, 64), (3, 40, 70)])
@pytest.mark.parametrize("delta", [(0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 64, 0), (0, 0, -1)])
def test_a_config_applies_to_its_own_shape_only(shape, delta, monkeypatch):
    tuned = {"threads": 1, "tok_chunk": 16}
    rows = [(shape, tuned, 0.01)]
    monkeypatch.setattr(dispatch, "_table", lambda kernel, fmt, isa: rows)
    assert dispatch.lookup(*shape, "t2", "int8", "avx2") == tuned
    near = tuple(max(1, s + d) for s, d in zip(shape, delta, strict=True))
    if near != shape:
        assert dispatch.lookup(*near, "t2", "int8", "avx2") is None


def test_of_several_studies_of_one_shape_the_fastest_wins(monkeypatch):
    rows = [((1, 8, 8), {"threads": 2}, 0.5), ((1, 8, 8), {"threads": 1}, 0.2),
            ((2, 8, 8), {"threads": 4}, 0.1)]
    monkeypatch.setattr(dispatch, "_table", lambda kernel, fmt, isa: rows)
    assert dispatch.lookup(1, 8, 8, "t2", "none", "scalar") == {"threads": 1}


def _problem(m=16, n=512, k=4096):
    g = torch.Generator().manual_seed(0)
    w = pack_ternary(torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8), "t2")
    return w, torch.randn(m, k, generator=g), torch.rand(n, generator=g) + 0.5


@native
@pytest.mark.parametrize("tuned_threads, user_threads, parallel", [
    (2, 1, False),   # the user asked for one thread: a tuned 2 does not override it
    (1, 2, False),   # a tuned 1 lowers the user's 2
    (2, 2, True),
])
def test_a_tuned_thread_count_is_a_cap_on_the_users(tuned_threads, user_threads, parallel,
                                                      monkeypatch):
    monkeypatch.delenv("TRITIUM_NUM_THREADS", raising=False)
    isa = cpu_backend.load().isa
    config = KernelConfig(isa=isa, threads=tuned_threads)
    lib = cpu_backend.load(config=config)
    assert lib is not None, cpu_backend.load_error(config)
    lib.configure_pool(adaptive=False)  # count the team asked for, whatever the machine load
    try:
        torch.set_num_threads(user_threads)
        kernels.set_config_resolver(lambda *key: config)
        w, x, scale = _problem()
        kernels.ternary_linear(x, w, scale, act_quant="int8")  # one-time weight re-layout
        lib.configure_pool(adaptive=False)  # counters from zero
        got = kernels.ternary_linear(x, w, scale, act_quant="int8")
        stats = lib.pool_stats()
        assert (stats["parallel"] > 0) is parallel, stats
        if parallel:
            assert stats["last_team"] == 2
        (used,) = kernels.tuned_configs_used()
        assert (used["m_bucket"], used["n"], used["k"]) == (16, 512, 4096)
        assert used["config"]["threads"] == tuned_threads
        kernels.set_config_resolver(None)
        assert kernels.tuned_configs_used() == []
        torch.testing.assert_close(got, kernels.ternary_linear(x, w, scale, act_quant="int8"),
                                   rtol=0, atol=0)
    finally:
        lib.configure_pool(adaptive=cpu_backend._env_flag("TRITIUM_POOL_ADAPTIVE", True))


@native
def test_a_model_tune_leaves_untuned_shapes_on_the_defaults(tmp_path, monkeypatch):
    """The issue's case: after `tritium tune --model ... --batch 1`, a batch-64 layer (never
    tuned) must run the default config, not a neighbour's."""
    from tritium.runtime import TernaryLinear, freeze_model

    assert main(["tune", "--kernel", "cpu.linear", "--shape", "1,128,64", "--budget", "2",
                 "--quick", "--max-ci", "1000", "--no-stability", "-q"]) == 0
    assert Archive().find_studies("cpu.linear")
    assert dispatch.install_if_tuned()
    layer = TernaryLinear(64, 128, act_quant="int8").eval()
    freeze_model(layer)
    with torch.no_grad():
        layer(torch.randn(64, 64))
    isa = cpu.default_isa()
    assert dispatch.resolve(64, 128, 64, "t2", "int8", isa) is None
    assert all(u["m_bucket"] == 1 for u in kernels.tuned_configs_used())


@pytest.mark.parametrize("confirmed, default_ms, used, why", [
    (1.20, 0.012, True, None),                     # won side by side, at the interval's low end
    (1.20, None, True, None),                      # the baseline was noisy, the comparison not
    (1.04, 0.012, False, "by only 1.04x"), (1.0, None, False, "by only 1.00x"),
    (None, 0.012, False, "never compared side by side"),   # a baseline minutes apart only
    (None, None, False, "never measured on this shape"),   # the baseline was rejected as noisy
])
def test_a_config_runs_only_where_it_won_side_by_side_by_five_percent(
        confirmed, default_ms, used, why, tmp_path):
    from tritium.runtime import tuned
    from tritium.tune.measure import Trial

    isa = cpu.default_isa()
    url = f"sqlite:///{tmp_path / 'margin.db'}"
    ar = Archive(url)
    config = {"threads": 1}
    sid = ar.study("cpu.linear", cpu.source_hash(), (1, 64, 64), "t2",
                   cpu.device_fingerprint(cpu.device_info(isa)), cpu.device_info(isa))
    ar.set_baseline(sid, default_ms, None)
    tid = ar.claim(sid, config, "grid")
    ar.record(tid, Trial(config=config, strategy="grid", status="ok", median_ms=0.01,
                         ci_ms=(0.01, 0.01), times_ms=[0.01]))
    if confirmed is not None:
        ar.set_confirmed_speedup(sid, confirmed)
    ar.close()
    dispatch.reset(url)
    got = dispatch.lookup(1, 64, 64, "t2", "int8", isa)
    assert (got is not None) is used, got
    # the runtime's resolver says why the default ran, and so do the records it reads
    assert (dispatch.resolve(1, 64, 64, "t2", "int8", isa) is not None) is used
    refused = tuned.refusals()
    if why is None:
        assert refused == []
    else:
        (r,) = refused
        assert (r["m_bucket"], r["n"], r["k"]) == (1, 64, 64) and why in r["why"], r
    records = json.loads(dispatch.write_records(url, tmp_path / "records.json").read_text())
    assert len(records["configs"]) == int(used)
    assert [why in r["why"] for r in records["refused"]] == ([] if used else [True])


@native
@pytest.mark.parametrize("env_pool", ["", "pthread"])
@pytest.mark.parametrize("tuned_pool", ["openmp", "pthread"])
def test_a_config_on_another_thread_pool_than_the_processs_keeps_the_default(
        env_pool, tuned_pool, tmp_path, monkeypatch):
    # a config timed alone on the pthread pool won its side-by-side trial, but in a model
    # its layer and the others (on the process's OpenMP team) hand the cores between two
    # teams at every layer: the digits MLP 9-11% slower at batch 64 (benchmarks/threads.py)
    from tritium.runtime import tuned
    from tritium.tune.measure import Trial

    monkeypatch.setenv("TRITIUM_CPU_POOL", env_pool)
    if cpu_backend.load() is None or cpu_backend.load().pool != (env_pool or "openmp"):
        pytest.skip(f"the {env_pool or 'openmp'} pool does not build here")
    isa = cpu.default_isa()
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    ar = Archive(url)
    config = {"threads": 1, "pool": tuned_pool}
    sid = ar.study("cpu.linear", cpu.source_hash(), (1, 64, 64), "t2",
                   cpu.device_fingerprint(cpu.device_info(isa)), cpu.device_info(isa))
    ar.set_baseline(sid, 0.012, None)
    tid = ar.claim(sid, config, "grid")
    ar.record(tid, Trial(config=config, strategy="grid", status="ok", median_ms=0.01,
                         ci_ms=(0.01, 0.01), times_ms=[0.01]))
    ar.set_confirmed_speedup(sid, 1.2)
    ar.close()
    dispatch.reset(url)
    got = dispatch.resolve(1, 64, 64, "t2", "int8", isa)
    own = (env_pool or "openmp") == tuned_pool
    assert (got is not None) is own, got
    if own:
        assert got.pool == tuned_pool and tuned.refusals() == []
    else:
        (r,) = tuned.refusals()
        assert f"its thread pool ({tuned_pool}) is not this process's" in r["why"], r
        assert f"TRITIUM_CPU_POOL={tuned_pool}" in r["why"]
