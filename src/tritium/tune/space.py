"""Search spaces and trials: the vocabulary shared by the tuner's loop, strategies and archive.

A :class:`SearchSpace` names one tunable kernel (``cpu.linear``, ``triton.ternary_linear``...)
and its parameters, each with a finite tuple of legal values and a default. A *config* is a
plain ``dict[str, int | str | bool]`` over those names; it is what strategies suggest, what the
archive stores (as JSON) and what the runtime's dispatch applies. A :class:`Trial` is one
measured (or rejected) config.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Config = dict[str, Any]


@dataclass(frozen=True)
class Param:
    """One tunable parameter: a name, its legal values (ordered, for ordinal ones) and a default."""

    name: str
    values: tuple[Any, ...]
    default: Any
    help: str = ""

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"parameter {self.name!r} has no legal values")
        if self.default not in self.values:
            raise ValueError(f"default {self.default!r} of {self.name!r} is not a legal value")

    @property
    def ordinal(self) -> bool:
        """Numeric values, so 'neighbouring' values and a log/linear scale make sense."""
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values)


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of one kernel for one problem (shape, format, ISA or GPU target).

    ``constraint`` (optional) rejects configs that are legal per parameter but not together
    (e.g. a K block that does not fit the shape); it returns the reason or None.
    """

    kernel: str
    params: tuple[Param, ...]
    constraint: Callable[[Config], str | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {self.kernel}: {names}")

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def default(self) -> Config:
        return {p.name: p.default for p in self.params}

    def validate(self, config: Any, *, constraint: bool = True) -> str | None:
        """Why ``config`` is not a legal config of this space, or None when it is
        (``constraint=False``: only its names, types and values are checked)."""
        if not isinstance(config, dict):
            return f"a config must be an object mapping parameter names to values, got {type(config).__name__}"
        unknown = sorted(set(config) - set(self.names))
        if unknown:
            return f"unknown parameter(s) {', '.join(map(repr, unknown))}; known: {', '.join(self.names)}"
        missing = [n for n in self.names if n not in config]
        if missing:
            return f"missing parameter(s) {', '.join(map(repr, missing))}"
        for p in self.params:
            v = config[p.name]
            if type(v) is not type(p.default) or v not in p.values:
                return f"{p.name}={v!r} is not one of {list(p.values)}"
        if constraint and self.constraint is not None:
            return self.constraint(config)
        return None

    def complete(self, partial: Config) -> Config:
        """``partial`` with the defaults filled in for the parameters it leaves out."""
        return {**self.default(), **partial}

    def grid(self) -> Iterator[Config]:
        """Every legal config, in a deterministic order (the default first)."""
        default = self.default()
        yield default
        for values in itertools.product(*(p.values for p in self.params)):
            config = dict(zip(self.names, values, strict=True))
            if config != default and self.validate(config) is None:
                yield config

    def size(self) -> int:
        """The number of legal configs (what an exhaustive search times)."""
        return sum(1 for _ in self.grid())

    def neighbours(self, config: Config) -> Iterator[Config]:
        """Legal configs that differ from ``config`` in one parameter by one step (none when
        ``config`` itself is not made of this space's values: an archived config of another
        space or a corrupt archive row)."""
        if self.validate(config, constraint=False) is not None:
            return
        for p in self.params:
            i = p.values.index(config[p.name])
            for j in (i - 1, i + 1):
                if 0 <= j < len(p.values):
                    cand = {**config, p.name: p.values[j]}
                    if self.validate(cand) is None:
                        yield cand

    def describe(self) -> list[dict[str, Any]]:
        """A JSON-able description (what the LLM strategy and the reports show)."""
        return [
            {"name": p.name, "values": list(p.values), "default": p.default, "help": p.help}
            for p in self.params
        ]


def config_key(config: Config) -> str:
    """A canonical string for a config (dedup in the archive, cache keys)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


@dataclass
class Trial:
    """One suggested config and what happened to it.

    ``status`` is ``"ok"`` (correct and timed), ``"invalid"`` (rejected by the space or by a
    build/compile check before timing), ``"wrong"`` (ran but the output differed from the
    reference), ``"noisy"`` (timings too spread to trust) or ``"error"`` (crashed).
    Times are milliseconds; ``ci_ms`` is a confidence interval on the median.
    """

    config: Config
    strategy: str
    status: str = "ok"
    median_ms: float | None = None
    ci_ms: tuple[float, float] | None = None
    times_ms: list[float] = field(default_factory=list)
    reason: str | None = None
    number: int = -1

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.median_ms is not None


def best_so_far(trials: list[Trial]) -> list[float | None]:
    """The best median after each trial (None until a trial succeeds): a convergence curve."""
    out: list[float | None] = []
    best: float | None = None
    for t in trials:
        if t.ok and (best is None or t.median_ms < best):  # type: ignore[operator]
            best = t.median_ms
        out.append(best)
    return out
