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
   the binomial), re-measures once when the interval is wider than ``max_rel_ci`` of the
   median, and marks the trial ``noisy`` if it still is,
6. poisons and checks once more after timing (a kernel that is only right the first time).

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


def _timed(fn: Callable[[], Any], settings: Settings,
           timer: Callable[[Callable[[], Any], Settings], list[float]] | None = None
           ) -> tuple[float, tuple[float, float], list[float], bool]:
    """(median, CI, samples, noisy) with one re-measurement when the first CI is too wide."""
    times: list[float] = []
    for _attempt in range(2):
        times = (timer or time_calls)(fn, settings)
        med = statistics.median(times)
        lo, hi = median_ci(times, settings.confidence)
        if med > 0 and (hi - lo) / med <= settings.max_rel_ci:
            return med, (lo, hi), times, False
    return med, (lo, hi), times, True


def measure_config(problem: Problem, config: Config, strategy: str, seed: int,
                   settings: Settings | None = None) -> Trial:
    """Check and time one config; never raises for a problem of the config itself."""
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
                                       getattr(run, "timer", None))
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


def compare_configs(problem: Problem, configs: list[Config], seed: int,
                    settings: Settings | None = None, rounds: int = 5) -> list[float | None]:
    """Median times of several configs measured side by side: ``rounds`` rounds, each timing
    every config once (in a rotated order), on the same inputs; each config's result is the
    median of its per-round medians. Load that drifts during a search affects all of them
    alike, so their ratios are fairer than those of trials measured minutes apart. A config
    that does not run or is wrong gets None."""
    settings = settings or Settings()
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
    per_round: list[list[float]] = [[] for _ in configs]
    for r in range(rounds):
        order = list(range(len(configs)))
        order = order[r % len(order):] + order[: r % len(order)] if order else order
        for i in order:
            fn = calls[i]
            if fn is not None:
                per_round[i].append(statistics.median(timers[i](fn, settings)))
    return [statistics.median(ts) if ts else None for ts in per_round]
