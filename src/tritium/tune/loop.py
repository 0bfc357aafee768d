"""The tuning loop: suggest, validate, claim, build, check, time, record, until done.

:func:`tune` runs one strategy on one problem against one archive study:

- the baselines first (the default config and torch fp32, measured in this run; the default
  gets up to :data:`BASELINE_ATTEMPTS` batches of samples until its time is decided, and is
  recorded as not measured, ``default_ms`` None, when even that stays noisy),
- then repeatedly: refresh the study's history from the archive (trials of every worker),
  ask the strategy, validate the config (space + optional prune hook), claim it in the
  archive (a config another worker already claimed makes the strategy ask again), measure it
  (:func:`tritium.tune.measure.measure_config`) and record the result,
- until ``budget`` trials (rejected configs do not count, but at most ``4 * budget + 20``
  suggestions are made), ``time_s`` seconds, early stopping (the last ``patience`` trials did
  not improve the best by more than ``min_improvement``) or an exhausted strategy,
- then the default and the winner re-timed side by side
  (:func:`tritium.tune.measure.compare_speedup`): the study's ``confirmed_speedup`` is the
  lower end of the 95% interval of the paired speedup, which is what the runtime's dispatch
  trusts (a config runs only where it is at least ``MIN_SPEEDUP``); 1.0 when the default config
  was the best; None when the comparison could not run. Then the stability check: the
  winner and the default config on neighbouring sizes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tritium.tune.archive import Archive
from tritium.tune.measure import (
    Problem,
    Settings,
    compare_speedup,
    measure_config,
    measure_fp32,
)
from tritium.tune.space import Config, SearchSpace, Trial
from tritium.tune.strategy import Strategy, TuneContext

Prune = Callable[[SearchSpace, Config], "str | None"]

# batches of samples the default-config baseline may take until its timing is decided
BASELINE_ATTEMPTS = 6


@dataclass
class TuneResult:
    kernel: str
    shape: tuple[int, ...]
    fmt: str
    strategy: str
    study_id: int
    trials: list[Trial]
    history: list[Trial]
    default: Trial | None
    fp32_ms: float | None
    best: Trial | None
    stopped: str
    elapsed_s: float
    device: dict[str, Any] = field(default_factory=dict)
    stability: list[dict[str, Any]] = field(default_factory=list)
    # the default and the best config re-timed side by side after the search: default_ms,
    # tuned_ms, speedup (median of the paired ratios), low/high (its 95% interval), rounds
    confirmed: dict[str, float | None] | None = None

    @property
    def default_ms(self) -> float | None:
        return self.default.median_ms if self.default is not None else None

    def speedup(self, ms: float | None, baseline: float | None) -> float | None:
        return baseline / ms if ms and baseline else None


def stalled(trials: list[Trial], patience: int, min_improvement: float) -> bool:
    """True when the last ``patience`` measured trials did not beat the best before them by
    more than ``min_improvement`` (a fraction)."""
    measured = [t for t in trials if t.status != "invalid"]
    if patience <= 0 or len(measured) <= patience:
        return False
    before = [t.median_ms for t in measured[:-patience] if t.ok]
    recent = [t.median_ms for t in measured[-patience:] if t.ok]
    if not before:
        return False
    best_before = min(before)  # type: ignore[type-var]
    return not recent or min(recent) > best_before * (1 - min_improvement)  # type: ignore[type-var,operator]


def tune(
    problem: Problem,
    strategy: Strategy,
    archive: Archive,
    *,
    budget: int | None = None,
    time_s: float | None = None,
    patience: int | None = None,
    min_improvement: float = 0.01,
    seed: int = 0,
    settings: Settings | None = None,
    prune: Prune | None = None,
    baseline: bool = True,
    stability: bool = True,
    device: dict[str, Any] | None = None,
    device_fingerprint: str = "",
    source_hash: str = "",
    source: str = "",
    worker: str | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuneResult:
    """Tune ``problem`` with ``strategy``, recording every trial in ``archive``."""
    settings = settings or Settings()
    start = time.monotonic()
    space = problem.space()
    device = device or {}
    study = archive.study(problem.kernel, source_hash, problem.shape, problem.fmt,
                          device_fingerprint, device)
    prior = [(s["shape"], cfg, ms) for s, cfg, ms in archive.best_per_study(
        problem.kernel, device_fingerprint, problem.fmt, source_hash) if s["id"] != study]
    ctx = TuneContext(kernel=problem.kernel, shape=tuple(problem.shape), device=device,
                      prior=prior, source=source,
                      extra={"format": problem.fmt})

    default: Trial | None = None
    fp32_ms: float | None = None
    if baseline:
        default = measure_config(problem, space.default(), "baseline", seed * 7919 + 1, settings,
                                 attempts=BASELINE_ATTEMPTS)
        fp32_ms = measure_fp32(problem, seed * 7919 + 2, settings)
        archive.set_baseline(study, default.median_ms if default.ok else None, fp32_ms)

    trials: list[Trial] = []
    max_suggestions = 4 * budget + 20 if budget else None
    suggestions = conflicts = 0
    stopped = "exhausted"
    while True:
        measured = sum(1 for t in trials if t.status != "invalid")
        if budget is not None and measured >= budget:
            stopped = "budget"
            break
        if max_suggestions is not None and suggestions >= max_suggestions:
            stopped = "budget"
            break
        if time_s is not None and time.monotonic() - start >= time_s:
            stopped = "time"
            break
        if patience and stalled(trials, patience, min_improvement):
            stopped = "stalled"
            break
        history = archive.history(study)
        config = strategy.suggest(space, history, ctx)
        suggestions += 1
        if config is None:
            stopped = "exhausted"
            break
        reason = space.validate(config)
        if reason is None and prune is not None:
            reason = prune(space, config)
        tid = archive.claim(study, config, strategy.name, worker)
        if tid is None:
            conflicts += 1
            if conflicts >= 50:  # every suggestion is taken: the others cover the space
                stopped = "exhausted"
                break
            continue
        conflicts = 0
        try:
            if reason is not None:
                trial = Trial(config=config, strategy=strategy.name, status="invalid",
                              reason=reason)
            else:
                trial = measure_config(problem, config, strategy.name,
                                       seed * 7919 + 100 + len(trials), settings)
        except BaseException:
            archive.release(tid)
            raise
        trial.number = len(trials)
        archive.record(tid, trial)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)

    # an archived row outside the space (a corrupt or planted archive) is never the winner,
    # nor shown among the results
    history = [t for t in archive.history(study)
               if space.validate(t.config, constraint=False) is None]
    ok = [t for t in history if t.ok]
    best = min(ok, key=lambda t: t.median_ms) if ok else None  # type: ignore[arg-type,return-value]
    result = TuneResult(
        kernel=problem.kernel, shape=tuple(problem.shape), fmt=problem.fmt,
        strategy=strategy.name, study_id=study, trials=trials, history=history,
        default=default, fp32_ms=fp32_ms, best=best, stopped=stopped,
        elapsed_s=time.monotonic() - start, device=device,
    )
    if baseline and best is not None and best.config != space.default():
        c = compare_speedup(problem, space.default(), best.config, seed * 7919 + 3, settings)
        result.confirmed = {"default_ms": c.default_ms, "tuned_ms": c.tuned_ms,
                            "speedup": c.speedup, "low": c.low, "high": c.high,
                            "rounds": c.rounds, "wins": c.wins}
        # None (the comparison did not run) clears an earlier run's value: never trusted
        archive.set_confirmed_speedup(study, c.low)
    elif baseline and best is not None:
        archive.set_confirmed_speedup(study, 1.0)  # the default config is the best
    if stability and best is not None:
        result.stability = stability_check(problem, best.config, space.default(), seed,
                                           settings)
    return result


def stability_check(problem: Any, config: Config, default: Config, seed: int,
                    settings: Settings) -> list[dict[str, Any]]:
    """The tuned and the default config on the problem's neighbouring sizes (when it has
    ``neighbour_shapes()`` and ``at(shape)``): does the win carry over?"""
    if not hasattr(problem, "neighbour_shapes") or not hasattr(problem, "at"):
        return []
    rows = []
    for i, shape in enumerate(problem.neighbour_shapes()):
        near = problem.at(shape)
        tuned = measure_config(near, config, "stability", seed * 7919 + 50_000 + 2 * i, settings)
        base = measure_config(near, default, "stability", seed * 7919 + 50_001 + 2 * i,
                              settings)
        speedup = (base.median_ms / tuned.median_ms
                   if tuned.median_ms and base.median_ms else None)
        rows.append({
            "shape": list(shape), "tuned_ms": tuned.median_ms, "default_ms": base.median_ms,
            "speedup": speedup, "tuned_status": tuned.status, "default_status": base.status,
        })
    return rows
