"""Measurement you can trust: correctness against a reference, then careful timing.

For each trial :func:`measure_config`

1. prepares the config (a build or AOT check that fails makes the trial ``invalid``; any other
   exception makes it ``error``),
2. draws fresh random inputs (a new seed per trial) and computes the reference output,
3. poisons the output buffer (NaN for floats, the byte pattern 0x7f for integers), runs the
   kernel once and compares the *whole* buffer with the reference (``wrong`` on a mismatch: a
   kernel that skips work or writes only part of the output fails here),
4. warms up, then takes ``samples`` timings, each the mean of enough back-to-back calls to
   last ``min_sample_s`` (so the clock's resolution does not matter);
   a runner, or an fp32 baseline callable, may carry a ``timer`` attribute with the
   signature of :func:`time_calls` that takes the samples instead (the Triton problems time
   GPU kernels with CUDA events this way),
5. reports the median and a distribution-free confidence interval on it (order statistics of
   the binomial), measures again once when the interval is wider than ``max_rel_ci`` of the
   median (the second batch alone, else both pooled, may decide it), and marks the trial
   ``noisy`` if it still is (the default-config baseline gets more batches),
6. poisons and checks once more after timing (a kernel that is only right the first time).

:func:`compare_speedup` decides whether a config beats the default config: both timed side
by side in interleaved rounds, the speedup judged by the confidence interval of the per-round
ratio (the noise of both configs is in it), rounds added until the interval is clear of the
margin :data:`MIN_SPEEDUP` or a cap is reached.

What is measured is described by a :class:`Problem`; :mod:`tritium.tune.cpu` implements it for
the CPU kernels, tests implement it with fakes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tritium.tune.space import Config, SearchSpace, Trial

Runner = Callable[[Any, Any], None]  # runner(inputs, out): compute into ``out``

# a tuned config runs instead of the default only where, side by side, it was faster by at least
# this factor at the lower end of the 95% interval of the paired speedup (compare_speedup)
MIN_SPEEDUP = 1.05


class InvalidConfig(Exception):
    """A config this problem cannot run (build failure, AOT limit...): the trial is invalid."""


class Problem(Protocol):
    """One kernel on one problem shape: what the loop needs to check and time configs."""

    kernel: str
    shape: tuple[int, ...]
    fmt: str

    def space(self) -> SearchSpace: ...

    def inputs(self, seed: int) -> Any:
        """Fresh random inputs for one trial."""
        ...

    def reference(self, inputs: Any) -> Any:
        """The expected output for ``inputs`` (a torch tensor)."""
        ...

    def output(self, inputs: Any) -> Any:
        """A new output buffer (poisoned by the caller before each checked run)."""
        ...

    def runner(self, config: Config) -> Runner:
        """A callable that runs ``config`` into an output buffer; InvalidConfig if it cannot.
        It may carry a ``timed`` attribute with the same signature: what is timed instead."""
        ...

    def check(self, got: Any, expected: Any) -> str | None:
        """Why ``got`` is not an acceptable result (None when it is)."""
        ...

    def fp32_runner(self, inputs: Any) -> Callable[[], Any]:
        """The torch fp32 baseline on the same problem (no output buffer)."""
        ...


@dataclass(frozen=True)
class Settings:
    warmup: int = 3
    samples: int = 15
    min_sample_s: float = 0.004
    max_rel_ci: float = 0.25
    confidence: float = 0.95
    max_calls_per_sample: int = 10_000

    @classmethod
    def quick(cls) -> Settings:
        """Fewer, shorter samples (tests, smoke runs)."""
        return cls(warmup=1, samples=7, min_sample_s=0.0005, max_rel_ci=0.5)


def poison(out: Any) -> None:
    """Fill a tensor with a value no correct kernel produces (NaN, or bytes 0x7f)."""
    import torch

    if out.dtype.is_floating_point:
        out.fill_(float("nan"))
    else:
        out.view(torch.uint8).fill_(0x7F)


def median_ci(samples: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval on the median: order statistics x_(r), x_(n+1-r)
    with the largest r such that P(Binomial(n, 1/2) <= r - 1) <= (1 - confidence) / 2."""
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples")
    alpha = (1.0 - confidence) / 2
    cdf, r = 0.0, 0
    for i in range(n):
        cdf += math.comb(n, i) / 2.0**n
        if cdf > alpha:
            break
        r = i + 1
    r = max(r, 1)
    return xs[r - 1], xs[n - r]


def time_calls(fn: Callable[[], Any], settings: Settings) -> list[float]:
    """Per-call times in milliseconds, one per sample (each the mean over a batch of calls)."""
    for _ in range(max(settings.warmup, 0)):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, min(settings.max_calls_per_sample, math.ceil(settings.min_sample_s / once)))
    out = []
    for _ in range(settings.samples):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) * 1e3 / calls)
    return out


def _decided(times: list[float], settings: Settings) -> tuple[float, tuple[float, float], bool]:
    """(median, CI, whether the CI is within ``max_rel_ci`` of the median)."""
    med = statistics.median(times)
    lo, hi = median_ci(times, settings.confidence)
    return med, (lo, hi), med > 0 and (hi - lo) / med <= settings.max_rel_ci


def _timed(fn: Callable[[], Any], settings: Settings,
           timer: Callable[[Callable[[], Any], Settings], list[float]] | None = None,
           attempts: int = 2) -> tuple[float, tuple[float, float], list[float], bool]:
    """(median, CI, samples, noisy): up to ``attempts`` batches of samples until one is
    decided (its CI within ``max_rel_ci``). After each batch that is not decided on its own,
    the batches so far are pooled: more samples narrow the distribution-free interval (with 15
    samples it spans the 4th to the 12th, with 45 the 16th to the 30th), so a few samples that
    a neighbour's time slice inflated no longer decide it. Noisy: the pooled samples' result."""
    pooled: list[float] = []
    for _attempt in range(max(1, attempts)):
        times = (timer or time_calls)(fn, settings)
        med, ci, ok = _decided(times, settings)
        if ok:
            return med, ci, times, False
        pooled += times
        if len(pooled) > len(times):
            med, ci, ok = _decided(pooled, settings)
            if ok:
                return med, ci, pooled, False
    med, ci, _ok = _decided(pooled, settings)
    return med, ci, pooled, True


def measure_config(problem: Problem, config: Config, strategy: str, seed: int,
                   settings: Settings | None = None, attempts: int = 2) -> Trial:
    """Check and time one config; never raises for a problem of the config itself.
    ``attempts``: batches of samples taken until the timing is decided (see :func:`_timed`;
    the loop's default-config baseline takes more than a trial)."""
    settings = settings or Settings()
    trial = Trial(config=dict(config), strategy=strategy)
    try:
        run = problem.runner(config)
    except InvalidConfig as e:
        trial.status, trial.reason = "invalid", str(e) or "rejected before timing"
        return trial
    except Exception as e:  # noqa: BLE001 - a crashing config is a result, not a tuner crash
        trial.status, trial.reason = "error", f"{type(e).__name__}: {e}"
        return trial
    try:
        inputs = problem.inputs(seed)
        expected = problem.reference(inputs)
        out = problem.output(inputs)
        poison(out)
        run(inputs, out)
        why = problem.check(out, expected)
        if why is not None:
            trial.status, trial.reason = "wrong", why
            return trial
        timed = getattr(run, "timed", run)  # a runner may time a leaner call than it checks
        med, ci, times, noisy = _timed(lambda: timed(inputs, out), settings,
                                       getattr(run, "timer", None), attempts)
        poison(out)
        run(inputs, out)
        why = problem.check(out, expected)
        if why is not None:
            trial.status, trial.reason = "wrong", f"after timing: {why}"
            return trial
    except InvalidConfig as e:
        trial.status, trial.reason = "invalid", str(e) or "rejected at run time"
        return trial
    except Exception as e:  # noqa: BLE001
        trial.status, trial.reason = "error", f"{type(e).__name__}: {e}"
        return trial
    trial.median_ms, trial.ci_ms, trial.times_ms = med, ci, times
    if noisy:
        trial.status = "noisy"
        trial.reason = (f"confidence interval {ci[0]:.4g}..{ci[1]:.4g} ms is wider than "
                        f"{settings.max_rel_ci:.0%} of the median {med:.4g} ms")
    return trial


def measure_fp32(problem: Problem, seed: int, settings: Settings | None = None) -> float:
    """Median time of the torch fp32 baseline on the same problem, in milliseconds."""
    settings = settings or Settings()
    fn = problem.fp32_runner(problem.inputs(seed))
    med, _ci, _times, _noisy = _timed(fn, settings, getattr(fn, "timer", None))
    return med


def _side_by_side(problem: Problem, configs: list[Config], seed: int, settings: Settings
                  ) -> tuple[list[Callable[[], Any] | None],
                             list[Callable[[Callable[[], Any], Settings], list[float]]]]:
    """Checked callables (None: the config does not run or is wrong) and their timers, all
    on the same inputs."""
    inputs = problem.inputs(seed)
    expected = problem.reference(inputs)
    calls: list[Callable[[], Any] | None] = []
    timers: list[Callable[[Callable[[], Any], Settings], list[float]]] = []
    for config in configs:
        try:
            run = problem.runner(config)
            out = problem.output(inputs)
            poison(out)
            run(inputs, out)
            ok = problem.check(out, expected) is None
        except Exception:  # noqa: BLE001 - a broken config just has no time
            ok = False
        if not ok:
            calls.append(None)
            timers.append(time_calls)
            continue
        timed = getattr(run, "timed", run)
        calls.append(lambda timed=timed, out=out: timed(inputs, out))
        timers.append(getattr(run, "timer", None) or time_calls)
    return calls, timers


def _rounds(calls, timers, settings: Settings, per_round: list[list[float]], first: int,
            count: int) -> None:
    """``count`` more rounds, each timing every config once (in a rotated order)."""
    for r in range(first, first + count):
        order = list(range(len(calls)))
        order = order[r % len(order):] + order[: r % len(order)] if order else order
        for i in order:
            fn = calls[i]
            if fn is not None:
                per_round[i].append(statistics.median(timers[i](fn, settings)))


def compare_configs(problem: Problem, configs: list[Config], seed: int,
                    settings: Settings | None = None, rounds: int = 5) -> list[float | None]:
    """Median times of several configs measured side by side: ``rounds`` rounds, each timing
    every config once (in a rotated order), on the same inputs; each config's result is the
    median of its per-round medians. Load that drifts during a search affects all of them
    alike, so their ratios are fairer than those of trials measured minutes apart. A config
    that does not run or is wrong gets None."""
    settings = settings or Settings()
    calls, timers = _side_by_side(problem, configs, seed, settings)
    per_round: list[list[float]] = [[] for _ in configs]
    _rounds(calls, timers, settings, per_round, 0, rounds)
    return [statistics.median(ts) if ts else None for ts in per_round]


@dataclass(frozen=True)
class Comparison:
    """A config against the default, side by side (:func:`compare_speedup`)."""

    default_ms: float | None   # median of the default's per-round medians
    tuned_ms: float | None
    speedup: float | None      # median of the per-round ratios default / tuned
    low: float | None          # the 95% interval of that median (order statistics)
    high: float | None
    rounds: int
    margin: float = MIN_SPEEDUP

    @property
    def wins(self) -> bool:
        """Faster than the default by the margin even at the low end of the interval."""
        return self.low is not None and self.low >= self.margin

    @property
    def decided(self) -> bool:
        """The interval lies wholly above or wholly below the margin."""
        return self.low is not None and self.high is not None and (
            self.low >= self.margin or self.high < self.margin)


def compare_speedup(problem: Problem, default: Config, config: Config, seed: int,
                    settings: Settings | None = None, *, margin: float = MIN_SPEEDUP,
                    min_rounds: int = 5, max_rounds: int = 15, step: int = 2) -> Comparison:
    """``config`` against ``default`` side by side: interleaved rounds timing each once on the
    same inputs; each round's ratio default / config is one paired sample (load that hits a
    round slows both), and the speedup is the median of those ratios with its distribution-free
    95% interval. From ``min_rounds``, ``step`` rounds are added while the interval straddles
    ``margin`` (undecided), up to ``max_rounds``. A config that does not run or is wrong (or a
    default that does not) gives a comparison without a speedup, which never wins."""
    settings = settings or Settings()
    calls, timers = _side_by_side(problem, [default, config], seed, settings)
    per_round: list[list[float]] = [[], []]
    if calls[0] is None or calls[1] is None:
        return Comparison(None, None, None, None, None, 0, margin)
    done = 0
    count = max(1, min_rounds)
    while True:
        _rounds(calls, timers, settings, per_round, done, count)
        done += count
        ratios = [d / t for d, t in zip(*per_round, strict=True) if t > 0]
        if not ratios:
            return Comparison(None, None, None, None, None, done, margin)
        lo, hi = median_ci(ratios)
        result = Comparison(statistics.median(per_round[0]), statistics.median(per_round[1]),
                            statistics.median(ratios), lo, hi, done, margin)
        if result.decided or done >= max_rounds:
            return result
        count = min(max(1, step), max_rounds - done)
