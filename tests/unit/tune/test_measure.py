"""Measurement: correctness against the reference with poisoned outputs, timing statistics."""

from __future__ import annotations

import itertools

import pytest
import torch

from tritium.tune import measure
from tritium.tune.measure import InvalidConfig, Settings, measure_config, median_ci, poison
from tritium.tune.space import Param, SearchSpace

FAST = Settings(warmup=1, samples=5, min_sample_s=0.0, max_rel_ci=10.0)


class FakeMatmul:
    """y = x @ w.T in int32 (a stand-in for a kernel); ``mode`` picks how the kernel cheats."""

    kernel, shape, fmt = "fake.matmul", (4, 8, 16), "t2"

    def __init__(self, mode: str = "honest") -> None:
        self.mode = mode

    def space(self) -> SearchSpace:
        return SearchSpace(self.kernel, (Param("mode", ("honest",), "honest"),))

    def inputs(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        return (torch.randint(-127, 128, (4, 16), generator=g, dtype=torch.int32),
                torch.randint(-1, 2, (8, 16), generator=g, dtype=torch.int32))

    def reference(self, inputs):
        x, w = inputs
        return x @ w.t()

    def output(self, inputs):
        return torch.empty((4, 8), dtype=torch.int32)

    def runner(self, config):
        if self.mode == "invalid":
            raise InvalidConfig("needs more shared memory than the target has")
        if self.mode == "crash":
            raise RuntimeError("segfault-ish")
        calls = itertools.count()

        def run(inputs, out):
            x, w = inputs
            if self.mode == "skip":
                return  # returns without writing: the poisoned buffer stays as it was
            if self.mode == "partial":
                out[:-1] = (x @ w.t())[:-1]
                return
            if self.mode == "first-only" and next(calls) > 0:
                return
            out.copy_(x @ w.t())
            if self.mode == "off-by-one":
                out[0, 0] += 1

        return run

    def check(self, got, expected):
        return None if torch.equal(got, expected) else "differs"

    def fp32_runner(self, inputs):
        x, w = (t.float() for t in inputs)
        return lambda: x @ w.t()


def test_an_honest_kernel_is_ok_with_a_median_and_interval():
    t = measure_config(FakeMatmul(), {"mode": "honest"}, "grid", seed=1, settings=FAST)
    assert t.status == "ok" and t.ok
    assert t.ci_ms[0] <= t.median_ms <= t.ci_ms[1]
    assert len(t.times_ms) == FAST.samples


@pytest.mark.parametrize("mode", ["skip", "partial", "off-by-one"])
def test_a_kernel_that_skips_or_botches_work_is_wrong(mode):
    t = measure_config(FakeMatmul(mode), {"mode": "honest"}, "grid", seed=1, settings=FAST)
    assert t.status == "wrong" and not t.ok and t.median_ms is None


def test_a_kernel_right_only_on_its_first_call_is_caught_after_timing():
    t = measure_config(FakeMatmul("first-only"), {"mode": "honest"}, "grid", 1, FAST)
    assert t.status == "wrong" and t.reason.startswith("after timing")


def test_invalid_and_crashing_configs_are_recorded_not_raised():
    t = measure_config(FakeMatmul("invalid"), {"mode": "honest"}, "grid", 1, FAST)
    assert t.status == "invalid" and "shared memory" in t.reason
    t = measure_config(FakeMatmul("crash"), {"mode": "honest"}, "grid", 1, FAST)
    assert t.status == "error" and "segfault-ish" in t.reason


def test_poison_fills_floats_with_nan_and_integers_with_0x7f():
    f = torch.zeros(3)
    poison(f)
    assert torch.isnan(f).all()
    i = torch.zeros(2, dtype=torch.int32)
    poison(i)
    assert i.tolist() == [0x7F7F7F7F] * 2


def test_median_ci_uses_binomial_order_statistics():
    xs = [float(v) for v in range(1, 16)]  # n = 15: the 95% interval is x_(4)..x_(12)
    assert median_ci(xs) == (4.0, 12.0)
    assert median_ci([5.0, 1.0, 3.0]) == (1.0, 5.0)  # too few samples: the whole range
    with pytest.raises(ValueError):
        median_ci([])


def _fake_clock(monkeypatch, durations):
    """perf_counter returning a clock that advances by the next duration on every other call
    (start, stop pairs), so timing statistics are deterministic."""
    state = {"t": 0.0, "n": 0}
    it = iter(durations)

    def clock():
        state["n"] += 1
        if state["n"] % 2 == 0:
            state["t"] += next(it)
        return state["t"]

    monkeypatch.setattr(measure.time, "perf_counter", clock)


def test_a_noisy_trial_is_remeasured_once_then_marked_noisy(monkeypatch):
    settings = Settings(warmup=0, samples=7, min_sample_s=0.0, max_rel_ci=0.2)
    spread = [0.001, 0.001, 0.005, 0.001, 0.009, 0.001, 0.004, 0.0095]  # calibration + 7
    _fake_clock(monkeypatch, spread * 4)
    t = measure_config(FakeMatmul(), {"mode": "honest"}, "grid", 1, settings)
    assert t.status == "noisy" and t.median_ms is not None and "wider than 20%" in t.reason


def test_a_steady_trial_after_a_noisy_first_measurement_is_ok(monkeypatch):
    settings = Settings(warmup=0, samples=7, min_sample_s=0.0, max_rel_ci=0.2)
    noisy = [0.001, 0.001, 0.005, 0.001, 0.009, 0.001, 0.004, 0.0095]
    steady = [0.002] * 8
    _fake_clock(monkeypatch, noisy + steady + steady)
    t = measure_config(FakeMatmul(), {"mode": "honest"}, "grid", 1, settings)
    assert t.status == "ok" and t.median_ms == pytest.approx(2.0)


def test_more_attempts_extend_a_noisy_measurement_until_it_is_decided(monkeypatch):
    """The baseline's rule: batches are added (and pooled) until the interval is decided; a
    batch with a few samples hit by a neighbour stops mattering once there are enough."""
    settings = Settings(warmup=0, samples=7, min_sample_s=0.0, max_rel_ci=0.2)
    # every batch: 5 steady samples and 2 inflated ones (calibration first)
    batch = [0.002, 0.002, 0.002, 0.009, 0.002, 0.002, 0.0095, 0.002]
    _fake_clock(monkeypatch, batch * 8)
    t = measure_config(FakeMatmul(), {"mode": "honest"}, "baseline", 1, settings)
    assert t.status == "noisy"   # two batches (a trial's rule): 4 outliers in 14 samples
    _fake_clock(monkeypatch, batch * 8)
    t = measure_config(FakeMatmul(), {"mode": "honest"}, "baseline", 1, settings, attempts=4)
    assert t.status == "ok" and t.median_ms == pytest.approx(2.0)
    assert len(t.times_ms) in (21, 28)   # pooled over the batches it took


class Timed:
    """A problem whose two configs ("default", "fast") have prescribed per-sample times."""

    kernel, shape, fmt = "fake.timed", (1, 2, 3), "t2"

    def __init__(self, times: dict[str, list[float]]) -> None:
        self.times = {k: iter(v) for k, v in times.items()}

    def space(self):
        return SearchSpace(self.kernel, (Param("c", ("default", "fast"), "default"),))

    def inputs(self, seed):
        return torch.zeros(2)

    def reference(self, x):
        return x + 1

    def output(self, x):
        return torch.empty(2)

    def runner(self, config):
        def run(x, out):
            torch.add(x, 1, out=out)

        def timer(fn, settings, name=config["c"]):
            return [next(self.times[name])]

        run.timer = timer
        return run

    def check(self, got, want):
        return None if torch.equal(got, want) else "differs"

    def fp32_runner(self, x):
        return lambda: x + 1


def test_compare_speedup_judges_the_paired_ratio_and_extends_until_decided():
    # a clear win: every round 1.25x
    c = measure.compare_speedup(Timed({"default": [1.25] * 20, "fast": [1.0] * 20}),
                                {"c": "default"}, {"c": "fast"}, 0)
    assert c.wins and c.decided and c.rounds == 5 and c.speedup == pytest.approx(1.25)
    # a 1.25x median win with one round where the load made the tuned config slower: the
    # interval straddles 1.05 at 5 rounds, so rounds are added; at 9 rounds the interval
    # drops the worst round and the win is decided
    d = [1.25, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25]
    f = [1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    c = measure.compare_speedup(Timed({"default": d, "fast": f}), {"c": "default"},
                                {"c": "fast"}, 0)
    assert c.rounds == 9 and c.wins and c.low == pytest.approx(1.25)
    # within the noise: never decided as a win, so it is not one (capped at max_rounds)
    d = [1.0, 1.1] * 10
    f = [1.05, 1.0] * 10
    c = measure.compare_speedup(Timed({"default": d, "fast": f}), {"c": "default"},
                                {"c": "fast"}, 0, max_rounds=11)
    assert not c.wins and c.rounds == 11
    # slower: decided at once
    c = measure.compare_speedup(Timed({"default": [1.0] * 5, "fast": [1.2] * 5}),
                                {"c": "default"}, {"c": "fast"}, 0)
    assert c.decided and not c.wins and c.rounds == 5
