"""The tuning loop on a fake problem: budget, early stopping, pruning, baselines, records."""

from __future__ import annotations

import itertools

import torch

from tritium.tune.archive import Archive
from tritium.tune.loop import stalled, tune
from tritium.tune.measure import Settings
from tritium.tune.space import Param, SearchSpace, Trial
from tritium.tune.strategies import GridStrategy, make_strategy

FAST = Settings(warmup=0, samples=3, min_sample_s=0.0, max_rel_ci=100.0)


class Doubler:
    kernel, shape, fmt = "fake.double", (2, 3, 4), "t2"

    def __init__(self, constraint=None):
        self.constraint = constraint

    def space(self):
        return SearchSpace(self.kernel, (Param("a", (0, 1, 2, 3), 0), Param("b", (0, 1, 2), 0)),
                           constraint=self.constraint)

    def inputs(self, seed):
        return torch.full((3,), float(seed))

    def reference(self, x):
        return x * 2

    def output(self, x):
        return torch.empty(3)

    def runner(self, config):
        def run(x, out):
            torch.mul(x, 2, out=out)
        return run

    def check(self, got, want):
        return None if torch.equal(got, want) else "differs"

    def fp32_runner(self, x):
        return lambda: x * 2


def _tune(tmp_path, problem=None, strategy=None, **kw):
    ar = Archive(f"sqlite:///{tmp_path / 'a.db'}")
    kw.setdefault("settings", FAST)
    kw.setdefault("stability", False)
    return ar, tune(problem or Doubler(), strategy or GridStrategy(), ar, **kw)


def test_the_grid_runs_to_exhaustion_with_baselines_recorded(tmp_path):
    ar, r = _tune(tmp_path)
    assert r.stopped == "exhausted" and len(r.trials) == 12
    assert [t.number for t in r.trials] == list(range(12))
    assert r.default is not None and r.default.ok and r.fp32_ms > 0
    info = ar.study_info(r.study_id)
    assert info["default_ms"] == r.default_ms and info["fp32_ms"] == r.fp32_ms
    assert r.best is not None and r.best.ok
    assert len(ar.history(r.study_id)) == 12


def test_budget_counts_measured_trials_and_rejected_configs_are_recorded(tmp_path):
    problem = Doubler(constraint=lambda c: "a=3 needs b=0" if c["a"] == 3 and c["b"] else None)
    pruned = []

    def prune(space, config):
        if config["b"] == 2:
            pruned.append(config)
            return "needs more shared memory than the target has"
        return None

    ar, r = _tune(tmp_path, problem, prune=prune, budget=5, baseline=False)
    assert r.stopped == "budget"
    measured = [t for t in r.trials if t.status != "invalid"]
    assert len(measured) == 5 and pruned
    invalid = [t for t in r.trials if t.status == "invalid"]
    assert all("shared memory" in t.reason for t in invalid)
    assert {t.status for t in ar.history(r.study_id)} == {"ok", "invalid"}


def test_early_stopping_when_the_last_trials_do_not_improve():
    def trials(times):
        return [Trial({"a": i}, "x", median_ms=ms) for i, ms in enumerate(times)]

    assert not stalled(trials([3.0, 2.0, 1.0, 0.5]), patience=2, min_improvement=0.01)
    assert stalled(trials([1.0, 2.0, 1.5, 1.2]), patience=3, min_improvement=0.01)
    assert stalled(trials([1.0, 2.0, 0.995]), patience=1, min_improvement=0.01)  # < 1% better
    assert not stalled(trials([1.0, 2.0]), patience=2, min_improvement=0.01)  # too few yet


def test_the_loop_stops_on_patience_and_on_time(tmp_path):
    _, r = _tune(tmp_path, strategy=make_strategy("random", seed=0), patience=2,
                 min_improvement=10.0, baseline=False)  # nothing improves by 1000%
    assert r.stopped == "stalled" and len(r.trials) == 3
    _, r = _tune(tmp_path, strategy=make_strategy("random", seed=1), time_s=1e-9,
                 baseline=False)
    assert r.stopped == "time" and r.trials == []


class NoisyDefault(Doubler):
    """The default config (a=0) times wildly on every batch; a=1 is steady and faster."""

    kernel = "fake.noisy_default"

    def space(self):
        return SearchSpace(self.kernel, (Param("a", (0, 1), 0),))

    def runner(self, config):
        run = super().runner(config)
        if config["a"] == 0:
            spread = itertools.cycle([1.2, 2.0])   # two modes: no median to decide

            def timer(fn, settings):
                return [next(spread) for _ in range(settings.samples)]
        else:
            def timer(fn, settings):
                return [1.0] * settings.samples
        run.timer = timer
        return run


def test_a_noisy_default_baseline_is_extended_then_recorded_as_not_measured(tmp_path):
    """The default's baseline takes up to BASELINE_ATTEMPTS batches; when it stays noisy the
    study has no default time, and only the side-by-side comparison can let a config run."""
    from tritium.tune import dispatch, loop

    settings = Settings(warmup=0, samples=7, min_sample_s=0.0, max_rel_ci=0.2)
    ar, r = _tune(tmp_path, NoisyDefault(), settings=settings)
    assert r.default.status == "noisy"
    assert len(r.default.times_ms) == 7 * loop.BASELINE_ATTEMPTS   # every batch, pooled
    study = ar.study_info(r.study_id)
    assert study["default_ms"] is None
    assert r.best.config == {"a": 1}
    # side by side, the default's per-round medians (1.2 or 2.0) against a steady 1.0
    assert r.confirmed["wins"] and study["confirmed_speedup"] == r.confirmed["low"] >= 1.05
    assert dispatch.refusal(study) is None
    ar.set_confirmed_speedup(r.study_id, None)   # had the comparison not run
    assert "never measured" in dispatch.refusal(ar.study_info(r.study_id))
