"""benchmarks/_timing.py, the benchmarks' shared timing and tables, on fake clocks and fake
implementations that record their calls: rounds are interleaved (every implementation once a
round, in the round's order), the sampler's call count, the statistics and the ratios."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="module")
def timing(benchmark_module):
    return benchmark_module("_timing")


class FakeClock:
    """A clock that only the fake implementations move."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def recorder(log: list, name: str, value: float = 0.0):
    def sample() -> float:
        log.append(name)
        return value
    return sample


def test_rounds_are_interleaved_in_a_fixed_order(timing):
    log: list = []
    samples = timing.interleave({n: recorder(log, n, v) for n, v in
                                 (("a", 1.0), ("b", 2.0), ("c", 3.0))}, 3)
    assert log == ["a", "b", "c"] * 3
    assert samples == {"a": [1.0] * 3, "b": [2.0] * 3, "c": [3.0] * 3}


def test_shuffled_rounds_run_each_implementation_once_per_round(timing):
    names = [f"impl{i}" for i in range(6)]
    log: list = []
    slept: list = []

    def sleep(s: float) -> None:
        slept.append(s)
        log.append("sleep")

    rounds = []
    timing.interleave({n: recorder(log, n) for n in names}, 4,
                      shuffle=random.Random(5).shuffle, settle=0.25, sleep=sleep,
                      on_round=lambda i, s: rounds.append(i))
    assert rounds == [0, 1, 2, 3] and slept == [0.25] * 24
    # a pause before every sample, and every implementation once in each round
    assert log[0::2] == ["sleep"] * 24
    order = log[1::2]
    blocks = [order[i:i + 6] for i in range(0, 24, 6)]
    assert all(sorted(b) == names for b in blocks)
    assert len({tuple(b) for b in blocks}) > 1, "the order must change between rounds"
    again: list = []
    timing.interleave({n: recorder(again, n) for n in names}, 4,
                      shuffle=random.Random(5).shuffle)
    assert again == order  # the same seed, the same orders


def test_timed_is_the_mean_call_time_of_its_reps(timing):
    clock, calls = FakeClock(), []

    def fn() -> None:
        calls.append(clock.now)
        clock.now += 0.5 + len(calls)  # 1.5, 2.5, 3.5, ...

    assert timing.timed(fn, 4, clock)() == (1.5 + 2.5 + 3.5 + 4.5) / 4
    assert len(calls) == 4
    assert timing.timed(fn, 1, clock)() == 5.5
    with pytest.raises(ValueError, match="reps must be >= 1"):
        timing.timed(fn, 0, clock)


def test_sampler_sizes_a_sample_to_min_time(timing):
    clock, calls = FakeClock(), []

    def fn() -> None:
        calls.append(1)
        clock.now += 0.25

    # one warm call, then calls until a quarter of min_time (2.0) has passed: 8 of them
    assert timing.reps_for(fn, 8.0, clock=clock) == 32 and len(calls) == 1 + 8
    calls.clear()
    assert timing.reps_for(fn, 8.0, probe=0.0, clock=clock) == 32 and len(calls) == 2
    calls.clear()
    sample = timing.sampler(fn, 8.0, clock=clock)
    calls.clear()
    assert sample() == 0.25 and len(calls) == 32


def test_per_call_warms_then_times_one_call_each(timing):
    clock, log = FakeClock(), []

    def impl(name: str, cost: float):
        def fn() -> None:
            log.append(name)
            clock.now += cost
        return fn

    fns = {"fast": impl("fast", 1.0), "slow": impl("slow", 3.0)}
    samplers = {n: timing.timed(fn, 1, clock) for n, fn in fns.items()}
    med = timing.summarize(timing.interleave(samplers, 3))
    assert med == {"fast": 1.0, "slow": 3.0} and log == ["fast", "slow"] * 3
    log.clear()
    timing.per_call(fns, 2, warmup=3)
    assert log == ["fast", "slow"] * 5


def test_statistics_and_ratios(timing):
    samples = {"a": [3.0, 1.0, 2.0], "b": [4.0, 1.0, 3.0, 2.0]}
    assert timing.summarize(samples) == {"a": 2.0, "b": 2.5}
    assert timing.summarize(samples, "min") == {"a": 1.0, "b": 1.0}
    assert timing.summarize(samples, scale=1e3) == {"a": 2000.0, "b": 2500.0}
    with pytest.raises(ValueError, match="unknown statistic 'mean'"):
        timing.summarize(samples, "mean")
    times = {"base": 2.0, "x": 1.0, "y": 4.0}
    assert timing.speedups(times, "base") == {"base": 1.0, "x": 2.0, "y": 0.5}
    assert timing.speedups(times, "y", ["x"]) == {"x": 4.0}


def test_text_table(timing):
    lines = timing.text_table(["name", "n", "ms"], [["a", "1", "0.125"], ["long", "10", "2"]])
    assert lines == ["name   n     ms",
                     "   a   1  0.125",
                     "long  10      2"]
    lines = timing.text_table(["name", "ms"], [["a", "1.5"]], left=1, rule=True)
    assert lines == ["name   ms", "----  ---", "a     1.5"]
    assert timing.text_table(["x"], []) == ["x"]
    with pytest.raises(ValueError, match="row 0 has 1 cells, the header 2"):
        timing.text_table(["a", "b"], [["1"]])


def test_paired_ratio_cancels_what_moves_a_whole_round(timing):
    # the machine slows down 3x in the middle rounds: the medians of all rounds differ by
    # more than the implementations do, the ratio within each round stays 1.1
    slow = [1.0, 1.0, 3.0, 3.0, 3.0, 1.0, 1.0]
    samples = {"tuned": [1.1 * s for s in slow], "default": slow}
    mid, lo, hi = timing.paired_ratio(samples, "tuned", "default")
    assert mid == pytest.approx(1.1) and lo == pytest.approx(1.1) and hi == pytest.approx(1.1)
    shuffled = {"tuned": samples["tuned"], "default": slow[::-1][:3] + [1.0] * 4}
    mid, lo, hi = timing.paired_ratio(shuffled, "tuned", "default")
    assert mid == pytest.approx(1.1) and hi > 2   # rounds that do not pair up: a spread
    assert timing.paired_ratio({"a": [2.0], "b": [4.0]}, "a", "b") == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="as many samples"):
        timing.paired_ratio({"a": [1.0, 2.0], "b": [1.0]}, "a", "b")
