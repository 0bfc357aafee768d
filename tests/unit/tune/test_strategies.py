"""The search strategies on synthetic objectives (no kernels, no timing)."""

from __future__ import annotations

import math
import statistics

import pytest

from tritium.tune.space import Param, SearchSpace, Trial, config_key
from tritium.tune.strategies import (
    GridStrategy,
    HeuristicStrategy,
    RandomStrategy,
    TPEStrategy,
    make_strategy,
    prior_configs,
)
from tritium.tune.strategy import TuneContext

SPACE = SearchSpace("syn", (
    Param("a", (1, 2, 4, 8, 16, 32), 1),
    Param("b", (1, 2, 4, 8, 16, 32), 1),
    Param("c", (0, 1, 2, 3), 0),
    Param("d", ("x", "y", "z"), "x"),
))
CTX = TuneContext("syn", (8, 64, 64), {})


def objective(c: dict) -> float:
    """A structured, separable bowl with its optimum away from the default (1.18 at a=16,
    b=2, c=2, d=y): TPE's density model can exploit it, random search cannot."""
    return (1 + (math.log2(c["a"]) - 3.6) ** 2 + 0.5 * (math.log2(c["b"]) - 1.2) ** 2
            + 0.3 * (c["c"] - 2) ** 2 + {"x": 0.8, "y": 0.0, "z": 0.5}[c["d"]])


def drive(strategy, budget: int, space: SearchSpace = SPACE, ctx: TuneContext = CTX,
          f=objective) -> list[Trial]:
    history: list[Trial] = []
    for i in range(budget):
        config = strategy.suggest(space, history, ctx)
        if config is None:
            break
        assert space.validate(config) is None
        history.append(Trial(config, strategy.name, median_ms=f(config), number=i))
    return history


def test_grid_covers_every_config_once_then_stops():
    small = SearchSpace("s", (Param("a", (1, 2, 3), 1), Param("b", ("p", "q"), "q")),
                        constraint=lambda c: "no" if c == {"a": 3, "b": "p"} else None)
    hist = drive(GridStrategy(), 100, small, f=lambda c: 1.0)
    keys = [config_key(t.config) for t in hist]
    assert len(hist) == small.size() == 5
    assert len(set(keys)) == 5 and hist[0].config == small.default()
    assert {"a": 3, "b": "p"} not in [t.config for t in hist]


def test_random_never_repeats_and_is_seeded():
    hist = drive(RandomStrategy(seed=3), SPACE.size() + 5)
    keys = [config_key(t.config) for t in hist]
    assert len(keys) == len(set(keys)) == SPACE.size()  # exhausts the space, then None
    again = drive(RandomStrategy(seed=3), 20)
    assert [t.config for t in again] == [t.config for t in hist[:20]]
    assert [t.config for t in drive(RandomStrategy(seed=4), 20)] != [t.config for t in again]


def test_strategies_skip_configs_other_workers_measured():
    taken = [Trial(c, "other", median_ms=1.0) for c in list(SPACE.grid())[:10]]
    for name in ("grid", "random", "heuristic", "tpe"):
        config = make_strategy(name, seed=1).suggest(SPACE, taken, CTX)
        assert config_key(config) not in {config_key(t.config) for t in taken}, name


def test_heuristic_starts_from_the_nearest_shapes_priors():
    near = {"a": 16, "b": 2, "c": 2, "d": "y"}
    far = {"a": 2, "b": 32, "c": 0, "d": "z"}
    ctx = TuneContext("syn", (8, 64, 64), {}, prior=[
        ((512, 4096, 4096), far, 0.5),
        ((8, 64, 128), near, 2.0),
        ((8, 64, 64), {"a": 3, "b": 1, "c": 0, "d": "x"}, 0.1),  # illegal here: skipped
        ((32, 64, 64), {"a": 32, "zzz": 1}, 1.0),                # unknown key dropped
    ])
    assert prior_configs(SPACE, ctx) == [near, {"a": 32, "b": 1, "c": 0, "d": "x"}, far]
    hist = drive(HeuristicStrategy(), 3, ctx=ctx)
    assert [t.config for t in hist] == prior_configs(SPACE, ctx)


def test_heuristic_hill_climbs_to_the_optimum_of_a_bowl():
    hist = drive(HeuristicStrategy(seed=0), 40)
    best = min(t.median_ms for t in hist)
    assert best == pytest.approx(min(objective(c) for c in SPACE.grid()))
    # each climbing step (after the default) is one step from an earlier trial
    first = hist[1].config
    assert sum(first[n] != SPACE.default()[n] for n in SPACE.names) == 1


def test_tpe_beats_random_on_a_structured_objective():
    """Averaged over several fixed seeds (deterministic: Optuna's sampler is seeded)."""
    def mean_best(name: str) -> float:
        return statistics.mean(min(t.median_ms for t in drive(make_strategy(name, seed=s), 40))
                               for s in range(8))

    tpe, rnd = mean_best("tpe"), mean_best("random")
    assert tpe < rnd


def test_tpe_tells_invalid_and_failed_configs_as_failures():
    space = SearchSpace("s", (Param("a", tuple(range(6)), 0), Param("b", tuple(range(6)), 0)),
                        constraint=lambda c: "odd" if (c["a"] + c["b"]) % 2 else None)
    tpe = TPEStrategy(seed=0, n_startup_trials=3)
    hist: list[Trial] = []
    for i in range(12):
        config = tpe.suggest(space, hist, CTX)
        assert space.validate(config) is None
        status = "wrong" if config["a"] == 5 else "ok"
        hist.append(Trial(config, "tpe", status=status,
                          median_ms=1.0 + config["a"] + config["b"], number=i))
    study = tpe._study
    from optuna.trial import TrialState

    states = {t.state for t in study.trials}
    assert TrialState.COMPLETE in states
    assert len({config_key(t.config) for t in hist}) == len(hist)


def test_make_strategy_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown strategy 'annealing'"):
        make_strategy("annealing")
