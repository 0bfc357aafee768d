"""Timing and reporting shared by the benchmark scripts (run as `python benchmarks/NAME.py`,
which puts this directory on sys.path).

The scripts time implementations *interleaved round by round*: every round runs each
implementation once (one sample), in a fresh shuffled order or a fixed one, after an optional
settle pause, so a burst of load on the machine -- or a thread pool still spinning after the
previous implementation -- hits all of them alike; the figure is the median (or another
statistic) of each one's samples over the rounds.

- :func:`timed`: a sampler, the mean time per call of ``reps`` back-to-back calls;
- :func:`sampler`: the same with ``reps`` chosen so that a sample lasts ``min_time``;
- :func:`interleave`: the rounds; :func:`summarize`: the statistic of each one's samples;
- :func:`measure`: the three together (what peers.py and ternary_kernels.py time with);
- :func:`per_call`: one call per sample, rounds in a fixed order;
- :func:`speedups`: a baseline's time over each implementation's (> 1: faster);
- :func:`text_table` and :func:`print_table`: the tables (plain text; rich).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

Clock = Callable[[], float]

#: the statistics a script may report over the rounds (min = best-of, for a shared machine)
STATS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}


def timed(fn: Callable[[], object], reps: int = 1,
          clock: Clock = time.perf_counter) -> Callable[[], float]:
    """A sampler returning the mean seconds per call of ``reps`` back-to-back calls of
    ``fn`` (one call: just that call between the two clock readings)."""
    if reps < 1:
        raise ValueError(f"timed: reps must be >= 1, got {reps}")
    if reps == 1:
        def once() -> float:
            t = clock()
            fn()
            return clock() - t

        return once

    def sample() -> float:
        t = clock()
        for _ in range(reps):
            fn()
        return (clock() - t) / reps

    return sample


def reps_for(fn: Callable[[], object], min_time: float, probe: float = 0.25,
             clock: Clock = time.perf_counter) -> int:
    """Calls of ``fn`` that last ``min_time`` seconds (at least 1), after one warm call. The
    call time is estimated over ``probe * min_time`` of warm calls, not from one call: a first
    call that starts a thread team or waits for a busy core would otherwise set one call per
    sample, and every sample would then measure a wake-up (``probe=0``: from one call)."""
    fn()
    calls, t0 = 0, clock()
    while True:
        fn()
        calls += 1
        elapsed = clock() - t0
        if elapsed >= min_time * probe:
            break
    return max(1, int(min_time / max(elapsed / calls, 1e-7)))


def sampler(fn: Callable[[], object], min_time: float, probe: float = 0.25,
            clock: Clock = time.perf_counter) -> Callable[[], float]:
    """A sampler returning seconds per call, over enough calls to last ``min_time``
    (:func:`reps_for`)."""
    return timed(fn, reps_for(fn, min_time, probe, clock), clock)


def interleave(samplers: Mapping[K, Callable[[], T]], rounds: int, *,
               shuffle: Callable[[list[K]], None] | None = None, settle: float = 0.0,
               sleep: Callable[[float], object] = time.sleep,
               on_round: Callable[[int, float], object] | None = None) -> dict[K, list[T]]:
    """``rounds`` rounds, each taking one sample of every sampler: in the order of
    ``samplers``, or with ``shuffle`` (e.g. ``random.Random(seed).shuffle``) shuffling that
    order again before each round; ``settle`` seconds of ``sleep`` before each sample.
    ``on_round(index, seconds)`` is called after each round. Returns each sampler's samples,
    in the order of ``samplers``."""
    if rounds < 1:
        raise ValueError(f"interleave: rounds must be >= 1, got {rounds}")
    names = list(samplers)
    samples: dict[K, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        t = time.perf_counter()
        if shuffle is not None:
            shuffle(names)
        for name in names:
            if settle > 0:
                sleep(settle)
            samples[name].append(samplers[name]())
        if on_round is not None:
            on_round(r, time.perf_counter() - t)
    return samples


def summarize(samples: Mapping[K, Sequence[float]], stat: str = "median",
              scale: float = 1.0) -> dict[K, float]:
    """The ``stat`` (a key of :data:`STATS`) of each one's samples, times ``scale``."""
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}: choose from {', '.join(sorted(STATS))}")
    return {name: STATS[stat](list(v)) * scale for name, v in samples.items()}


def measure(fns: Mapping[str, Callable[[], object]], rounds: int, min_time: float, *,
            settle: float, seed: int = 0, stat: str = "median",
            probe: float = 0.25) -> dict[str, float]:
    """The ``stat`` of seconds per call of each function, interleaved round by round in a
    fresh ``random.Random(seed)`` order each round, a :func:`sampler` of ``min_time`` each."""
    samplers = {name: sampler(fn, min_time, probe) for name, fn in fns.items()}
    samples = interleave(samplers, rounds, shuffle=random.Random(seed).shuffle, settle=settle)
    return summarize(samples, stat)


def per_call(fns: Mapping[str, Callable[[], object]], rounds: int,
             warmup: int = 1) -> dict[str, float]:
    """Median seconds of one call of each function, rounds in a fixed order, after
    ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    return summarize(interleave({name: timed(fn) for name, fn in fns.items()}, rounds))


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median seconds of one call of ``fn`` over ``runs`` calls."""
    return per_call({"fn": fn}, runs, warmup=0)["fn"]


def paired_ratio(samples: Mapping[K, Sequence[float]], num: K, den: K
                 ) -> tuple[float, float, float]:
    """(median, lower quartile, upper quartile) of ``num``'s sample over ``den``'s sample of
    the same round: a slow drift of the machine (a neighbour's burst, a frequency change)
    moves both samples of a round together and cancels in their ratio, where it widens the
    gap between two medians taken over all rounds."""
    a, b = list(samples[num]), list(samples[den])
    if not a or len(a) != len(b):
        raise ValueError(f"paired_ratio: {num!r} and {den!r} need as many samples (rounds), "
                         f"got {len(a)} and {len(b)}")
    ratios = sorted(x / y for x, y in zip(a, b))
    q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else \
        [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2]


def speedups(times: Mapping[K, float], base: K,
             names: Iterable[K] | None = None) -> dict[K, float]:
    """``base``'s time over each one's (of ``names``, default all): above 1 is faster."""
    return {name: times[base] / times[name] for name in (times if names is None else names)}


def text_table(headers: Sequence[str], body: Sequence[Sequence[str]], left: int = 0,
               rule: bool = False) -> list[str]:
    """The lines of a plain-text table: columns two spaces apart, each as wide as its widest
    cell, the first ``left`` left-aligned and the others right-aligned; with ``rule``, a line
    of dashes under the header."""
    for i, row in enumerate(body):
        if len(row) != len(headers):
            raise ValueError(f"text_table: row {i} has {len(row)} cells, the header "
                             f"{len(headers)}")
    table = [list(headers), *(list(row) for row in body)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def print_table(title: str, headers: Sequence[str], body: Sequence[Sequence[str]],
                width: int) -> None:
    """``body`` under ``headers`` as a rich table ``width`` columns wide, every column
    right-aligned (plain text if rich is missing)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency, plain text just in case
        print(title)
        for line in text_table(headers, body):
            print(line)
        return
    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="right")
    for row in body:
        table.add_row(*row)
    Console(width=width).print(table)
