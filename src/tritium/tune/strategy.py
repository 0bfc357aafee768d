"""The interface every search strategy implements (grid, random, heuristic, TPE, LLM).

A strategy proposes the next config given the space and the trials so far. It may return
``None`` when it has nothing new to propose (an exhausted grid); the loop then stops. A
strategy never times anything itself: the loop builds, checks and measures, then appends the
trial to the history it passes back in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tritium.tune.space import Config, SearchSpace, Trial


@dataclass
class TuneContext:
    """What a strategy may want to know beyond the space: the problem and the machine.

    ``shape`` is (M, N, K) for linear kernels; ``device`` is the device description (ISA,
    cores, caches for CPUs; the GPU target otherwise); ``goal`` is a sentence for humans and
    LLMs; ``prior`` holds (shape, config, median_ms) rows of archived best configs of other
    shapes of the same kernel and device (the heuristic starts from the nearest ones);
    ``source`` is the kernel's source text (the LLM strategy sends it).
    """

    kernel: str
    shape: tuple[int, ...]
    device: dict[str, Any]
    goal: str = "minimize the median run time of one call"
    prior: list[tuple[tuple[int, ...], Config, float]] = field(default_factory=list)
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Strategy(Protocol):
    name: str

    def suggest(self, space: SearchSpace, history: list[Trial], ctx: TuneContext) -> Config | None:
        """The next config to try (legal or not: the loop validates), or None when done."""
        ...
