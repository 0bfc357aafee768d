"""The kernels' thread pools: OpenMP (shared with PyTorch) and the pthread fallback.

Thread counts are honoured exactly, a call nested in a parallel region runs serially, two
Python threads may call at once, a forked child (DataLoader workers) can still call the
kernels, and a compiler without OpenMP falls back to the pthread pool with a reason.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from tritium.backends import cpu
from tritium.backends.cpu import build as build_mod
from tritium.backends.cpu import isa as isa_mod
from tritium.backends.cpu.build import KernelConfig
from tritium.runtime import kernels
from tritium.runtime.packing import pack_ternary

pytestmark = pytest.mark.native

BEST = isa_mod.supported_isas()[0]
POOLS = build_mod.POOLS
TORCH_GOMP = Path(torch.__file__).parent / "lib" / "libgomp.so.1"


def _lib(pool: str):
    lib = cpu.load(config=KernelConfig(isa=BEST, pool=pool))
    if lib is None:
        pytest.skip(f"the {pool} kernels do not build here: {cpu.load_error()}")
    if lib.pool != pool:
        pytest.skip(f"the {pool} pool is unavailable: {lib.built.pool_fallback}")
    return lib


def _problem(m=16, n=512, k=4096, seed=0):
    """Big enough (m * n * k > 262144) that the kernels run it on the thread pool."""
    g = torch.Generator().manual_seed(seed)
    trits = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
    w = pack_ternary(trits, "t2")
    x = torch.randn(m, k, generator=g)
    scale = torch.rand(n, generator=g) + 0.5
    return w, x, scale


@pytest.fixture
def fixed_team():
    """``_lib`` with the team-size adaptation off for the test: a test that counts threads
    must not see a back-off that another process on this machine triggered."""
    libs = []

    def get(pool: str):
        lib = _lib(pool)
        lib.configure_pool(adaptive=False)
        libs.append(lib)
        return lib

    yield get
    for lib in libs:
        lib.configure_pool(adaptive=cpu._env_flag("TRITIUM_POOL_ADAPTIVE", True))


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_a_call_runs_on_exactly_the_requested_threads(pool, threads, fixed_team):
    lib = fixed_team(pool)
    assert lib.lib.tri_pool_threads(threads, 0) == threads


def test_a_call_inside_a_parallel_region_runs_serially(fixed_team):
    lib = fixed_team("openmp")
    # each thread of an enclosing 2-thread OpenMP region asks for 4 threads: both run serially
    assert lib.lib.tri_pool_threads(4, 1) == 1
    # and the pool is still usable afterwards
    assert lib.lib.tri_pool_threads(2, 0) == 2


def test_the_openmp_kernels_share_torchs_libgomp():
    if not TORCH_GOMP.is_file():
        pytest.skip(f"this torch build has no {TORCH_GOMP.name} of its own")
    # a fresh process, importing torch first as the runtime always does
    code = textwrap.dedent("""
        import json, torch
        from tritium.runtime import kernels
        info = kernels.kernel_info()
        print(json.dumps({k: info.get(k) for k in
                          ("pool", "omp_library", "openmp_runtimes", "omp_shared_with_torch")}))
    """)
    env = {**os.environ, "TRITIUM_CPU_ISA": BEST}
    env.pop("TRITIUM_CPU_POOL", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["pool"] == "openmp"
    assert info["omp_library"] == os.path.realpath(TORCH_GOMP)
    assert info["openmp_runtimes"] == [os.path.realpath(TORCH_GOMP)]
    assert info["omp_shared_with_torch"] is True


def test_kernels_loaded_before_torch_still_leave_one_openmp_runtime():
    # the library's libgomp.so.1 comes from the system search path; torch's libtorch then
    # needs the same soname and the dynamic linker reuses the already loaded one
    code = textwrap.dedent("""
        import json, sys
        from tritium.backends import cpu
        assert "torch" not in sys.modules
        lib = cpu.load()
        import torch
        torch.relu(torch.randn(256, 4096))  # a parallel torch op
        from tritium.runtime import kernels
        info = kernels.kernel_info()
        print(json.dumps([lib.pool, info["openmp_runtimes"], info["omp_library"]]))
    """)
    env = {**os.environ, "TRITIUM_CPU_ISA": BEST}
    env.pop("TRITIUM_CPU_POOL", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    pool, runtimes, omp_library = json.loads(out.stdout.strip().splitlines()[-1])
    assert pool == "openmp"
    assert runtimes == [omp_library]


@pytest.fixture
def adaptive_pool():
    """``_lib`` with the adaptation on and its counters and back-off cleared; reset after."""
    libs = []

    def get(pool: str):
        lib = _lib(pool)
        lib.configure_pool(adaptive=True, debug=False)
        libs.append(lib)
        return lib

    yield get
    for lib in libs:
        lib.configure_pool(adaptive=cpu._env_flag("TRITIUM_POOL_ADAPTIVE", True),
                           debug=cpu._env_flag("TRITIUM_POOL_DEBUG", False))


def _drain_back_off(lib) -> None:
    """Run out the back-off: capped calls for its time (5 ms calls), then its calls."""
    while lib.pool_stats()["backoff_left_ns"] > 0:
        assert lib.lib.tri_pool_spin(2, 5000) == 1   # capped: serial, no wait for the worker
    for _ in range(lib.pool_stats()["backoff_calls_left"]):
        assert lib.lib.tri_pool_threads(2, 0) == 1
    assert lib.pool_stats()["backoff_calls_left"] == 0


@pytest.mark.parametrize("pool", POOLS)
def test_a_late_worker_shrinks_the_team_for_a_back_off_then_the_team_returns(
        pool, adaptive_pool):
    lib = adaptive_pool(pool)
    # the worker holds a claimed task for 20 ms: the caller has to wait for it (most of it:
    # on a loaded machine the caller itself can lose its CPU for a few ms before it waits,
    # which shortened a 5 ms hold to a 3.9 ms wait in one CI-sized run)
    assert lib.lib.tri_pool_stall_probe(2, 20_000) == 2
    st = lib.pool_stats()
    assert st["stalls"] == 1 and st["max_wait_ns"] >= 10_000_000 and st["streak"] == 1
    assert st["cap"] == 1 and st["backoff_left_ns"] > 0  # one thread for the back-off
    # which lasts until capped calls ran 32 times the wait (at least 10 ms, at most 8 s) and
    # made at least 8 calls
    first = st["backoff_ns"]
    assert min(max(32 * st["max_wait_ns"], 10_000_000), 8_000_000_000) == first
    assert st["backoff_left_ns"] == first
    assert st["backoff_calls"] == st["backoff_calls_left"] == 8
    assert lib.lib.tri_pool_threads(2, 0) == 1  # capped: serial, no wait for the worker
    st = lib.pool_stats()
    assert st["capped"] == 1 and st["backoff_calls_left"] == 7
    # its calls made, the back-off still holds for its time; the clock's time does not run
    # it down (calls in bursts with other work between them do not each probe the full
    # team), the capped calls' own time does
    for _ in range(7):
        assert lib.lib.tri_pool_threads(2, 0) == 1
    assert lib.pool_stats()["backoff_calls_left"] == 0
    time.sleep(0.03)
    assert lib.pool_stats()["backoff_left_ns"] > first - 10_000_000
    assert lib.lib.tri_pool_spin(2, 5000) == 1
    assert lib.pool_stats()["backoff_left_ns"] <= first - 5_000_000
    _drain_back_off(lib)
    # the probe after it stalls again (the machine stays loaded): twice as long, twice the calls
    assert lib.lib.tri_pool_stall_probe(2, 20_000) == 2
    st = lib.pool_stats()
    assert st["stalls"] == 2 and st["streak"] == 2
    assert st["backoff_ns"] >= min(2 * first, 8_000_000_000) and st["backoff_calls"] == 16
    # once it is over, the full team runs again (on a loaded machine the worker can be late
    # again and start a new back-off: then the team returns when that one ends)
    deadline = time.monotonic() + 60
    while True:
        _drain_back_off(lib)
        if lib.lib.tri_pool_threads(2, 0) == 2:
            break
        assert time.monotonic() < deadline, lib.pool_stats()


@pytest.mark.parametrize("pool", POOLS)
def test_a_short_wait_in_a_short_call_is_a_stall(pool, adaptive_pool):
    """A wait of some microseconds loses in a call that is itself that short (a 15 us wait
    in every 60 us call of a small layer beside a busy neighbour made 2 threads 1.25x slower
    than 1): the worker holds its task for ~12 us (spinning) in a call whose caller worked
    for little more than the worker took to arrive (a wait of 5-10 us on an idle machine), and
    that is a stall. Alone among the recent calls it is a hiccup (an interrupt, the host
    preempting the worker's vCPU: one backed-off call cost a thousand serial calls for a 30 us
    loss): counted, the team kept; the next one right after it backs off. On a loaded machine
    (the other test worker beside this one) the caller itself can be preempted in the middle
    of its share, after the worker is done: that call then waited for nobody and is no stall,
    and the pair is tried again (at most five times)."""
    lib = adaptive_pool(pool)
    lib.lib.tri_pool_threads(2, 0)  # the team exists (a first call creates or wakes it)
    for _ in range(5):
        lib.configure_pool(adaptive=True, debug=False)  # counters and back-off cleared
        assert lib.lib.tri_pool_stall_probe(2, 14) == 2
        st = lib.pool_stats()
        if st["stalls"] == 0:   # the caller was preempted after the worker's task: try again
            continue
        assert st["stalls"] == 1, st
        if st["max_wait_ns"] >= 4_000_000:   # the worker lost a time slice (a loaded CI machine)
            assert st["lone"] == 0 and st["cap"] == 1, st
            return
        # alone among the recent calls, a short stall is a hiccup: counted, the team kept
        assert st["lone"] == 1 and st["cap"] == 0, st
        # the next one right after it is a loaded machine: the back-off starts
        assert lib.lib.tri_pool_stall_probe(2, 14) == 2
        st = lib.pool_stats()
        if st["stalls"] == 1:   # the caller was preempted after the worker's task: try again
            continue
        assert st["stalls"] == 2 and st["lone"] == 1 and st["cap"] == 1, st
        return
    pytest.fail(f"no second probe in five waited for its worker: {st}")


@pytest.mark.parametrize("pool", POOLS)
def test_a_wait_of_a_vcpu_wake_up_is_a_hiccup(pool, adaptive_pool):
    """A worker whose vCPU the host had idled or preempted (a 2-core KVM guest) may be 1-2 ms
    late, in a call that found the team cold (its last call ended long before) or warm: alone
    among the recent calls, a wait under 4 ms is a hiccup, counted, the team kept (each one
    started a back-off of 35-70 ms of serial calls before); the same wait in the call right
    after it backs off. A wait of 4 ms or more (a time slice: a loaded machine) backs off at
    once."""
    lib = adaptive_pool(pool)
    lib.lib.tri_pool_threads(2, 0)
    for _ in range(5):
        lib.configure_pool(adaptive=True, debug=False)
        time.sleep(0.01)                                 # the team goes cold
        assert lib.lib.tri_pool_stall_probe(2, 2000) == 2  # the worker holds its task 2 ms
        st = lib.pool_stats()
        if st["stalls"] != 1:   # the caller was preempted past the worker's hold: again
            continue
        if st["max_wait_ns"] >= 4_000_000:
            assert st["lone"] == 0 and st["cap"] == 1, st
            return
        assert st["max_wait_ns"] >= 1_000_000 and st["lone"] == 1 and st["cap"] == 0, st
        assert lib.lib.tri_pool_stall_probe(2, 2000) == 2   # warm now: a loaded machine
        st = lib.pool_stats()
        if st["stalls"] == 1:
            continue
        assert st["stalls"] == 2 and st["lone"] == 1 and st["cap"] == 1, st
        return
    pytest.fail(f"no probe pair in five waited for its worker: {st}")


def _team_of(lib, m, n, k, act_quant):
    """The team a linear of M x N x K asks the pool for (0: the calling thread alone), with the
    adaptation off and 2 threads asked for."""
    w, x, scale = _problem(m, n, k)
    plan = kernels.LinearPlan(lib, w.data, n, k, "t2", scale, None, act_quant,
                              config=lib.built.config)
    plan(x, None, None)   # one-time layouts (the G2 panels, packing) run outside the count
    lib.configure_pool(adaptive=False)
    plan(x, None, None)
    st = lib.pool_stats()
    return st["last_team"] if st["calls"] else 0


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("m, n, k, act_quant, team", [
    # int8 multiply-adds cost about a quarter of fp32 ones: a 512x1024 GEMV (about 10 us on
    # one AVX2 core) is not worth waking a thread, a 1024x1024 one (about 20 us) is
    (1, 512, 1024, "int8", 0), (1, 1024, 1024, "int8", 2), (1, 4096, 4096, "int8", 2),
    (64, 1024, 1024, "int8", 2), (2, 512, 512, "int8", 0),
    # fp32 activations: from 2 x 2^17 multiply-adds
    (1, 512, 512, "none", 2), (1, 256, 512, "none", 0), (64, 1024, 1024, "none", 2),
])
def test_the_team_a_product_is_worth(pool, fixed_team, monkeypatch, m, n, k, act_quant, team):
    monkeypatch.setenv("TRITIUM_NUM_THREADS", "2")
    lib = fixed_team(pool)
    assert _team_of(lib, m, n, k, act_quant) == team
@pytest.mark.parametrize("pool", POOLS)
def test_without_adaptation_stalls_are_counted_but_the_team_is_kept(pool, fixed_team):
    lib = fixed_team(pool)
    assert lib.lib.tri_pool_stall_probe(2, 20_000) == 2
    st = lib.pool_stats()
    assert st["stalls"] == 1 and st["adaptive"] == 0 and st["cap"] == 0
    assert lib.lib.tri_pool_threads(2, 0) == 2


def test_pool_stats_and_debug_reports_are_observable():
    code = textwrap.dedent("""
        import json
        from tritium.backends import cpu
        from tritium.backends.cpu.build import KernelConfig
        from tritium.runtime import kernels
        lib = cpu.load()
        assert lib.lib.tri_pool_stall_probe(2, 20000) == 2
        assert lib.lib.tri_pool_threads(2, 0) == 1
        print(json.dumps(kernels.kernel_info()["pool_stats"]))
    """)
    env = {**os.environ, "TRITIUM_CPU_ISA": BEST, "TRITIUM_POOL_DEBUG": "1"}
    env.pop("TRITIUM_POOL_ADAPTIVE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["debug"] == 1 and stats["adaptive"] == 1
    assert stats["stalls"] >= 1 and stats["capped"] >= 1
    assert "tritium pool: waited" in out.stderr and "running on 1 thread(s)" in out.stderr


@pytest.mark.parametrize("pool", POOLS)
def test_two_python_threads_call_parallel_kernels_at_once(pool):
    _lib(pool)
    cfg = KernelConfig(isa=BEST, pool=pool, threads=2)
    problems = [_problem(m=m, seed=m) for m in (8, 33)]
    want = [kernels.run_linear(cfg, x, w.data, *w.shape, w.format, s, act_quant="int8")
            for w, x, s in problems]
    errors: list[str] = []

    def worker(i):
        w, x, s = problems[i]
        for _ in range(8):
            got = kernels.run_linear(cfg, x, w.data, *w.shape, w.format, s, act_quant="int8")
            if not torch.equal(got, want[i]):
                errors.append(f"thread {i}: wrong result")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
def test_each_thread_keeps_its_scratch_and_frees_it_when_it_exits():
    """The buffers a call needs while it runs (the quantized activations: here 0.98 MB, under
    the size a thread keeps) stay with the calling thread between its calls and are freed
    when it exits: calls from many threads at once each see only their own, and 300 threads
    that called once and exited hold nothing (kept and never freed, they would hold 290 MB)."""
    cfg = KernelConfig(isa=BEST, threads=1)
    problems = [_problem(m=m, n=64, k=1024, seed=m) for m in (900, 700, 301)]
    want = [kernels.run_linear(cfg, x, w.data, *w.shape, w.format, s, act_quant="int8")
            for w, x, s in problems]
    errors: list[str] = []

    def worker(i):
        w, x, s = problems[i % len(problems)]
        for _ in range(5):
            got = kernels.run_linear(cfg, x, w.data, *w.shape, w.format, s, act_quant="int8")
            if not torch.equal(got, want[i % len(problems)]):
                errors.append(f"thread {i}: wrong result")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    w, x, s = problems[0]

    def once():
        kernels.run_linear(cfg, x, w.data, *w.shape, w.format, s, act_quant="int8")

    for _ in range(20):             # the allocator's steady state
        t = threading.Thread(target=once)
        t.start()
        t.join()
    before = _rss_bytes()
    for _ in range(300):
        t = threading.Thread(target=once)
        t.start()
        t.join()
    assert _rss_bytes() - before < 64 << 20


def _child(cfg, w, x, scale, queue):
    y = kernels.run_linear(cfg, x, w.data, *w.shape, w.format, scale, act_quant="int8")
    queue.put(y.numpy().tobytes())


@pytest.mark.parametrize("pool", POOLS)
def test_a_forked_child_can_call_the_kernels(pool):
    _lib(pool)
    cfg = KernelConfig(isa=BEST, pool=pool, threads=2)
    w, x, scale = _problem()
    # the parent runs the pool first (its workers exist when the fork happens)
    want = kernels.run_linear(cfg, x, w.data, *w.shape, w.format, scale, act_quant="int8")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(cfg, w, x, scale, queue))
    proc.start()
    proc.join(120)
    hung = proc.is_alive()
    if hung:
        proc.kill()
        proc.join()
    assert not hung, "the kernel call in the forked child never returned"
    assert proc.exitcode == 0
    assert queue.get(timeout=10) == want.numpy().tobytes()


def _failing_openmp_cc(tmp_path: Path) -> str:
    """A C compiler without OpenMP: the real one, except that -fopenmp fails."""
    real = build_mod.find_compiler()
    if real is None:
        pytest.skip("no C compiler")
    script = tmp_path / "cc-no-openmp"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        for a in "$@"; do
          if [ "$a" = "-fopenmp" ]; then echo "fake-cc: OpenMP is not supported" >&2; exit 1; fi
        done
        exec {real} "$@"
    """))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_a_compiler_without_openmp_builds_the_pthread_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", _failing_openmp_cc(tmp_path))
    cache = tmp_path / "cache"
    built = build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert built.config.pool == "pthread"
    assert "OpenMP is not supported" in built.pool_fallback
    assert "-fopenmp" not in built.flags
    # the failure is remembered: the next build does not run the failing compile again
    assert len(list(cache.glob("*.failed"))) == 1
    again = build_mod.build(KernelConfig(isa="scalar"), cache_dir=cache)
    assert again.path == built.path and not again.built_now
    assert "OpenMP is not supported" in again.pool_fallback
    # asking for the pthread pool itself is no fallback
    direct = build_mod.build(KernelConfig(isa="scalar", pool="pthread"), cache_dir=cache)
    assert direct.path == built.path and direct.pool_fallback == ""


def test_the_default_library_warns_and_reports_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", _failing_openmp_cc(tmp_path))
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TRITIUM_CPU_ISA", "scalar")
    monkeypatch.setattr(cpu, "_warned", False)
    with pytest.warns(RuntimeWarning, match="OpenMP build failed"):
        lib = cpu.load()
    assert lib is not None and lib.pool == "pthread" and lib.omp_library is None
    assert "OpenMP is not supported" in cpu.load_error()
    info = kernels.kernel_info()
    assert info["pool"] == "pthread"
    assert "OpenMP is not supported" in info["pool_fallback"]
    w, x, scale = _problem(m=4, n=64, k=512)
    torch.testing.assert_close(
        kernels.ternary_linear(x, w, scale, act_quant="int8"),
        kernels.run_linear(KernelConfig(isa="scalar", pool="pthread"), x, w.data, *w.shape,
                           w.format, scale, act_quant="int8"), rtol=0, atol=0)


def test_the_pool_can_be_chosen_by_environment(monkeypatch):
    monkeypatch.setenv("TRITIUM_CPU_ISA", BEST)
    monkeypatch.setenv("TRITIUM_CPU_POOL", "pthread")
    lib = cpu.load()
    assert lib is not None and lib.pool == "pthread"
    assert kernels.kernel_info()["threading"] == "pthread work-claiming pool"
    monkeypatch.setenv("TRITIUM_CPU_POOL", "bogus")
    with pytest.warns(RuntimeWarning, match="TRITIUM_CPU_POOL='bogus'"):
        assert cpu.select_pool() == "openmp"


def test_bad_pool_is_a_clear_error():
    with pytest.raises(ValueError, match=r"KernelConfig.pool='tbb' is not one of"):
        KernelConfig(isa="scalar", pool="tbb")


def test_the_tuner_does_not_time_a_fallback_as_openmp(tmp_path, monkeypatch):
    from tritium.tune.cpu import CpuLinearProblem
    from tritium.tune.measure import InvalidConfig

    monkeypatch.setenv("CC", _failing_openmp_cc(tmp_path))
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    problem = CpuLinearProblem("cpu.linear", (4, 64, 512), isa="scalar")
    with pytest.raises(InvalidConfig, match="openmp pool is unavailable"):
        problem.runner_for(KernelConfig(isa="scalar", pool="openmp"))
    assert callable(problem.runner_for(KernelConfig(isa="scalar", pool="pthread")))
