"""The search strategies: exhaustive grid, seeded random, the archive-seeded heuristic and TPE.

Every strategy implements :class:`tritium.tune.strategy.Strategy`: ``suggest(space, history,
ctx)`` returns the next config or ``None`` when it has nothing new. ``history`` holds every
trial of the search so far, including those measured by other workers on the same archive, so
a strategy never keeps private bookkeeping it could not rebuild from ``history`` (the TPE
strategy keeps an Optuna study only as a cache of it). A strategy never proposes a config
whose key is already in ``history``; the loop additionally claims configs in the archive, so
two workers never measure the same one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any

from tritium.tune.space import Config, SearchSpace, Trial, config_key
from tritium.tune.strategy import Strategy, TuneContext

__all__ = [
    "STRATEGIES",
    "GridStrategy",
    "HeuristicStrategy",
    "RandomStrategy",
    "TPEStrategy",
    "make_strategy",
]


def _seen(history: Iterable[Trial]) -> set[str]:
    return {config_key(t.config) for t in history}


def _in_space(space: SearchSpace, config: Config) -> bool:
    """Whether an archived config is made of ``space``'s parameters and values (the archive
    is untrusted: a row of another space or a planted one is skipped, never climbed from)."""
    return space.validate(config, constraint=False) is None


def _random_unseen(space: SearchSpace, seen: set[str], rng: random.Random) -> Config | None:
    """A uniformly drawn legal config not in ``seen`` (None when the space is exhausted).

    Rejection sampling first (cheap for large spaces); when that keeps hitting seen or illegal
    configs, the remaining grid is listed and one is drawn from it, so the result is exact.
    """
    for _ in range(64):
        cand = {p.name: rng.choice(p.values) for p in space.params}
        if config_key(cand) not in seen and space.validate(cand) is None:
            return cand
    rest = [c for c in space.grid() if config_key(c) not in seen]
    return rng.choice(rest) if rest else None


class GridStrategy:
    """Every legal config once, in the space's deterministic order (the default first)."""

    name = "grid"

    def suggest(self, space: SearchSpace, history: list[Trial], ctx: TuneContext) -> Config | None:
        seen = _seen(history)
        for config in space.grid():
            if config_key(config) not in seen:
                return config
        return None


class RandomStrategy:
    """Uniform random legal configs without repeats, reproducible for a given seed."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def suggest(self, space: SearchSpace, history: list[Trial], ctx: TuneContext) -> Config | None:
        return _random_unseen(space, _seen(history), self.rng)


def _shape_distance(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Distance between two problem shapes on a log scale (M=1 vs 2 is as far as 32 vs 64)."""
    if len(a) != len(b):
        return math.inf
    return sum(abs(math.log2(max(x, 1)) - math.log2(max(y, 1))) for x, y in zip(a, b))


def prior_configs(space: SearchSpace, ctx: TuneContext, limit: int = 4) -> list[Config]:
    """The archived best configs of the shapes nearest to ``ctx.shape``, adapted to ``space``.

    Parameters the space does not have are dropped, missing ones take their defaults, and a
    config that is not legal here (a block that does not fit this shape) is skipped.
    """
    rows = sorted(ctx.prior, key=lambda r: (_shape_distance(tuple(r[0]), ctx.shape), r[2]))
    out: list[Config] = []
    keys: set[str] = set()
    for _shape, config, _ms in rows:
        cand = space.complete({k: v for k, v in config.items() if k in space.names})
        key = config_key(cand)
        if key in keys or space.validate(cand) is not None:
            continue
        keys.add(key)
        out.append(cand)
        if len(out) >= limit:
            break
    return out


class HeuristicStrategy:
    """Start where similar problems ended, then hill-climb, then explore at random.

    1. The best archived configs of the nearest shapes of the same kernel and device
       (``ctx.prior``), then the default config.
    2. Hill-climbing: the untried one-step neighbours of the best trials so far (the best
       first), trying first the direction of the step that last improved (a pattern move).
    3. When every neighbour of the best few trials is tried (a local optimum): random configs.
    """

    name = "heuristic"

    def __init__(self, seed: int = 0, climb_from: int = 3) -> None:
        self.rng = random.Random(seed)
        self.climb_from = climb_from

    def suggest(self, space: SearchSpace, history: list[Trial], ctx: TuneContext) -> Config | None:
        seen = _seen(history)
        for config in [*prior_configs(space, ctx), space.default()]:
            if config_key(config) not in seen:
                return config
        ok = sorted((t for t in history if t.ok and _in_space(space, t.config)),
                    key=lambda t: t.median_ms)  # type: ignore[arg-type,return-value]
        for rank, best in enumerate(ok[: self.climb_from]):
            cands = [c for c in space.neighbours(best.config) if config_key(c) not in seen]
            if not cands:
                continue
            if rank == 0:
                pattern = self._pattern_move(space, best, history, seen)
                if pattern is not None:
                    return pattern
            return self.rng.choice(cands)
        return _random_unseen(space, seen, self.rng)

    @staticmethod
    def _pattern_move(space: SearchSpace, best: Trial, history: list[Trial],
                      seen: set[str]) -> Config | None:
        """If ``best`` improved on a trial one step away, take one more step the same way."""
        for t in history:
            if not t.ok or t is best or t.median_ms <= best.median_ms:  # type: ignore[operator]
                continue
            if not _in_space(space, t.config):
                continue
            diff = [n for n in space.names if t.config[n] != best.config[n]]
            if len(diff) != 1:
                continue
            p = space.param(diff[0])
            i, j = p.values.index(t.config[p.name]), p.values.index(best.config[p.name])
            nxt = j + (1 if j > i else -1)
            if abs(j - i) == 1 and 0 <= nxt < len(p.values):
                cand = {**best.config, p.name: p.values[nxt]}
                if config_key(cand) not in seen and space.validate(cand) is None:
                    return cand
        return None


class TPEStrategy:
    """Bayesian optimization with Optuna's Tree-structured Parzen Estimator, in ask/tell mode.

    Every parameter is a categorical distribution over its legal values. The history (from
    this worker or any other one on the same archive) is told to an in-memory Optuna study
    before each ask: ``ok`` trials with their median, every other status as failed. Illegal
    configs the sampler proposes are told as failed and asked again; repeats of tried configs
    are told with their known result, and after a few of them a random untried config is used.
    """

    name = "tpe"

    def __init__(self, seed: int = 0, n_startup_trials: int = 6, multivariate: bool = True) -> None:
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.rng = random.Random(seed)
        self._study: Any = None
        self._space_id: tuple | None = None
        self._told: set[str] = set()
        self._pending: dict[str, Any] = {}  # config key -> asked, not yet told optuna trial

    def _reset(self, space: SearchSpace) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(
            seed=self.seed, n_startup_trials=self.n_startup_trials,
            multivariate=self.multivariate,
        )
        self._study = optuna.create_study(direction="minimize", sampler=sampler)
        self._space_id = (space.kernel, tuple((p.name, p.values) for p in space.params))
        self._told = set()
        self._pending = {}

    def _distributions(self, space: SearchSpace) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {p.name: CategoricalDistribution(list(p.values)) for p in space.params}

    def _tell(self, key: str, trial: Trial | None, dists: dict[str, Any],
              config: Config) -> None:
        import optuna
        from optuna.trial import TrialState

        ok = trial is not None and trial.ok
        value = float(trial.median_ms) if ok else None  # type: ignore[arg-type]
        state = TrialState.COMPLETE if ok else TrialState.FAIL
        pending = self._pending.pop(key, None)
        if pending is not None:
            self._study.tell(pending, value if ok else None, state=state)
        else:
            self._study.add_trial(optuna.trial.create_trial(
                params=config, distributions=dists, value=value, state=state))
        self._told.add(key)

    def suggest(self, space: SearchSpace, history: list[Trial], ctx: TuneContext) -> Config | None:
        space_id = (space.kernel, tuple((p.name, p.values) for p in space.params))
        if self._study is None or self._space_id != space_id:
            self._reset(space)
        dists = self._distributions(space)
        by_key: dict[str, Trial] = {}
        for t in history:
            by_key.setdefault(config_key(t.config), t)
        for key, t in by_key.items():
            if t.status == "running":  # claimed by a worker, result not in yet
                continue
            if key not in self._told and space.validate(t.config) is None:
                self._tell(key, t, dists, t.config)
        repeats = 0
        for _ in range(200):
            asked = self._study.ask(dists)
            config = {n: asked.params[n] for n in space.names}
            key = config_key(config)
            if space.validate(config) is not None:
                self._study.tell(asked, None, state=_fail_state())
                continue
            if key in by_key:
                known = by_key[key]
                if known.ok:
                    self._study.tell(asked, float(known.median_ms))  # type: ignore[arg-type]
                else:
                    self._study.tell(asked, None, state=_fail_state())
                repeats += 1
                if repeats >= 3:
                    break
                continue
            stale = self._pending.pop(key, None)  # asked before, never recorded: ask it again
            if stale is not None:
                self._study.tell(stale, None, state=_fail_state())
            self._pending[key] = asked
            return config
        return _random_unseen(space, set(by_key), self.rng)


def _fail_state() -> Any:
    from optuna.trial import TrialState

    return TrialState.FAIL


STRATEGIES: dict[str, type] = {
    "grid": GridStrategy,
    "random": RandomStrategy,
    "heuristic": HeuristicStrategy,
    "tpe": TPEStrategy,
}


def make_strategy(name: str, seed: int = 0, **options: Any) -> Strategy:
    """The strategy called ``name``. The LLM strategy sits above these (it falls back to the
    heuristic): build it as ``tritium.tune.llm.LLMStrategy(url=..., fallback=...)``."""
    if name == "grid":
        return GridStrategy()
    if name == "llm":
        raise ValueError("the llm strategy needs an endpoint: use "
                         "tritium.tune.llm.LLMStrategy(url=...)")
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; expected one of grid, random, heuristic, tpe, llm"
        ) from None
    return cls(seed=seed)
