"""Thread counts under load: a frozen ternary linear at 1..cores threads, idle and beside a
neighbour process, against fp32 ``F.linear`` measured in the same run.

    .venv/bin/python benchmarks/threads.py                    # the issue's table (a few minutes)
    .venv/bin/python benchmarks/threads.py --quick            # CI-sized
    .venv/bin/python benchmarks/threads.py --model examples/mlp.tri   # + tuned vs default

For each neighbour condition (``idle``; ``busy``: a process spinning in a pure Python loop;
``torch``: a second PyTorch process running small matmuls in a loop, as a training run, a
data loader or an inference server does), and for each shape (N x K), batch and activation
mode (``int8``: int8 activations; ``none``: fp32 activations), the frozen
``TernaryLinear(K, N)`` is timed at every thread count from 1 to the cores this process may
use, and fp32 ``F.linear`` at the default thread count (torch's own default, what a user
gets without configuring anything). Every variant is measured once per round, rounds in a
fresh random order, and the figure is the median over rounds of the mean call time of
back-to-back calls: at least ``--reps``, and enough that every sample lasts at least
``--min-sample-ms`` (20 ms; a shorter sample of a fast layer falls inside or between the
bursts of a neighbour by chance). A stall of the thread pool shows in that mean, as it does
for a user. ``default`` is the ternary layer at the default thread count; ``vs fp32`` is fp32's time
over it; ``2t/1t`` is the time at the most threads over the time at one (above 1.10 means more
threads lost). The pool's counters (stalls and back-offs, see docs/formats.md) are printed per
condition.

With ``--model FILE.tri`` (after ``tritium tune --model FILE.tri --batch 1,64``), every
ternary linear shape of the model is also timed with the tuning archive's configs and with
the defaults, interleaved, under each condition; ``tuned/default`` (the median over rounds of
the two samples' ratio within a round, over three times the rounds) above 1.05 would be a
tuned config that loses. Whether a tuned config applied to the shape is printed beside it. The whole
model (random weights, frozen) is timed the same way at batch 1 and 64: a tuning archive must
not cost the fusion around a layer either (a chain of linear layers stays one native call).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import _timing
import torch
import torch.nn.functional as F
from _args import positive_ints, shapes

from tritium import runtime as trt
from tritium.runtime import kernels

NEIGHBOURS = {
    "idle": None,
    "busy": "while True:\n    pass\n",
    "torch": ("import time, torch\n"
              "a = torch.randn(256, 256)\n"
              "while True:\n"
              "    (a @ a).sum()\n"
              "    time.sleep(0.001)\n"),
}


def _choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        vals = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in vals if v not in allowed]
        if not vals or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {text!r}")
        return vals
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=shapes, default=[(4096, 4096), (1024, 1024)],
                   help="NxK weight shapes (default 4096x4096,1024x1024)")
    p.add_argument("--batches", type=positive_ints, default=[1, 64])
    p.add_argument("--acts", type=_choices(("int8", "none")), default=["int8", "none"])
    p.add_argument("--neighbours", type=_choices(tuple(NEIGHBOURS)), default=list(NEIGHBOURS))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=20,
                   help="calls per sample at least (their mean)")
    p.add_argument("--min-sample-ms", type=float, default=20.0,
                   help="a sample lasts at least this long: more calls for fast variants")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds a neighbour runs before measuring")
    p.add_argument("--model", help="a .tri model: also time its layers tuned vs default")
    p.add_argument("--quick", action="store_true", help="small shapes, few rounds (CI)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.reps < 1 or args.settle < 0 or args.min_sample_ms < 0:
        p.error("--rounds and --reps must be >= 1, --settle and --min-sample-ms >= 0")
    if args.quick:
        args.shapes, args.batches, args.rounds, args.reps, args.settle, args.min_sample_ms = (
            [(512, 512)], [1, 8], 3, 5, 0.2, 1.0)
    return args


@dataclass
class Variant:
    name: str
    threads: int
    run: Callable[[], object]
    resolver: object = None  # the config resolver to install while it runs
    use_resolver: bool = False


class Neighbour:
    """A process beside the benchmark (killed on exit)."""

    def __init__(self, kind: str, settle: float) -> None:
        self.proc = None
        code = NEIGHBOURS[kind]
        if code is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", code],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(settle)

    def __enter__(self) -> Neighbour:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def _enter(v: Variant) -> None:
    torch.set_num_threads(v.threads)
    if v.use_resolver:
        kernels.set_config_resolver(v.resolver)
    v.run()  # warm: plans, resolver answers, the pool's team


def _calls_per_sample(variants: list[Variant], reps: int, min_ms: float) -> int:
    """At least ``reps`` calls, and enough that a sample of the fastest variant lasts
    ``min_ms``: a sample much shorter than a neighbour's cycle (the
    torch neighbour computes, then sleeps a millisecond) lands by chance inside or outside
    its bursts, and the median of a few such samples is a coin toss, not a time."""
    fastest = float("inf")
    for v in variants:
        _enter(v)
        fastest = min(fastest, _timing.timed(v.run, reps)() * 1e3)
    return max(reps, min(100_000, math.ceil(min_ms / max(fastest, 1e-6))))


def samples_of(variants: list[Variant], rounds: int, reps: int, min_ms: float = 0.0
               ) -> dict[str, list[float]]:
    """Each variant's samples (mean seconds per call), rounds interleaved in a fresh random
    order each round."""
    saved = kernels.get_config_resolver()
    with torch.no_grad():
        try:
            calls = _calls_per_sample(variants, reps, min_ms) if min_ms > 0 else reps
            return _timing.interleave({v.name: _sampler(v, calls) for v in variants}, rounds,
                                      shuffle=random.shuffle)
        finally:
            kernels.set_config_resolver(saved)


def measure(variants: list[Variant], rounds: int, reps: int, min_ms: float = 0.0
            ) -> dict[str, float]:
    return _timing.summarize(samples_of(variants, rounds, reps, min_ms), scale=1e3)


def tuned_vs_default(variants: list[Variant], args) -> tuple[dict[str, float], str]:
    """Medians (ms) of the "default" and "tuned" variants and the text of their ratio: the
    median over rounds of tuned / default measured in the same round (and its interquartile
    range), over three times the table's rounds (at least 21): the two differ by a few
    percent at most, well inside the spread of separate medians beside a neighbour."""
    samples = samples_of(variants, max(3 * args.rounds, 21), args.reps * 5, args.min_sample_ms)
    mid, lo, hi = _timing.paired_ratio(samples, "tuned", "default")
    return (_timing.summarize(samples, scale=1e3),
            f"tuned/default {mid:.2f} (paired by round; quartiles {lo:.2f}-{hi:.2f})")


def _sampler(v: Variant, calls: int) -> Callable[[], float]:
    """A sample of ``v``: its threads and resolver installed (and one warm call), then the
    mean seconds of ``calls`` back-to-back calls."""
    sample = _timing.timed(v.run, calls)

    def run() -> float:
        _enter(v)
        return sample()

    return run


def layer_variants(n: int, k: int, batch: int, act: str, counts: list[int],
                   default: int) -> tuple[list[Variant], dict]:
    torch.manual_seed(0)
    layer = trt.TernaryLinear(k, n, bias=False, act_quant=act).eval()
    trt.freeze_model(layer)
    x = torch.randn(batch, k)
    w = torch.randn(n, k)
    vs = [Variant(f"t{t}", t, lambda: layer(x)) for t in counts]
    vs.append(Variant("fp32", default, lambda: F.linear(x, w)))
    return vs, {"layer": layer, "x": x}


def _pool_line() -> str:
    st = kernels.kernel_info().get("pool_stats") or {}
    if not st:
        return "pool: no native kernels"
    return (f"pool: {st['parallel']} parallel calls, {st['stalls']} stalls "
            f"({st['lone']} of them lone hiccups, no back-off; longest wait {st['max_wait_ns'] / 1e6:.2f} ms, {st['streak']} in a row at the "
            f"end), {st['capped']} calls on a smaller team during back-offs (the last one "
            f"{st['backoff_ns'] / 1e6:.0f} ms and {st['backoff_calls']} calls)")


def _reset_pool() -> None:
    from tritium.backends import cpu

    lib = cpu.load()
    if lib is not None:
        lib.configure_pool()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not kernels.native_available():
        print(f"native kernels unavailable: {kernels.kernel_info().get('error')}", file=sys.stderr)
        return 1
    default = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    counts = list(range(1, max(cores or 1, default) + 1))
    info = kernels.kernel_info()
    from tritium.backends.cpu import isa as isa_mod

    print(f"CPU: {isa_mod.cpu_model()} ({cores} cores usable), kernels {info['isa']} / "
          f"{info['pool']} pool, torch {torch.__version__}, default threads {default}")
    print(f"{args.rounds} interleaved rounds x {args.reps} calls; median of per-sample mean "
          "call time, ms")
    archive = kernels.get_config_resolver() is not None
    print("tuning archive: " + ("present; the default configuration runs its tuned configs "
                                "where one was measured for the shape" if archive else
                                "none; every layer runs the default kernel config"))
    tuned_rows = _tuned_setup(args.model)
    worst_2v1 = 0.0
    for cond in args.neighbours:
        _reset_pool()
        with Neighbour(cond, args.settle):
            print(f"\n== neighbour: {cond}")
            head = "  ".join(f"{f'{t}t':>8}" for t in counts)
            print(f"{'shape':>11} {'batch':>5} {'act':>4}  {head}  {'fp32':>8}  "
                  f"{'default vs fp32':>15}  {f'{counts[-1]}t/1t':>6}")
            for (n, k) in args.shapes:
                for batch in args.batches:
                    for act in args.acts:
                        vs, _keep = layer_variants(n, k, batch, act, counts, default)
                        med = measure(vs, args.rounds, args.reps, args.min_sample_ms)
                        ratio = med["fp32"] / med[f"t{default}"]
                        more = med[f"t{counts[-1]}"] / med["t1"]
                        worst_2v1 = max(worst_2v1, more)
                        cells = "  ".join(f"{med[f't{t}']:8.3f}" for t in counts)
                        print(f"{f'{n}x{k}':>11} {batch:5d} {act:>4}  {cells}  "
                              f"{med['fp32']:8.3f}  {ratio:14.1f}x  {more:6.2f}")
            print(_pool_line())
            if tuned_rows:
                _tuned_table(tuned_rows, args, default)
    verdict = "more threads lost" if worst_2v1 > 1.10 else "within 1.10 of one thread"
    print(f"\nworst {counts[-1]}-thread / 1-thread time ratio: {worst_2v1:.2f} ({verdict})")
    return 0


def _tuned_setup(model: str | None) -> list[tuple[int, int, int, str]]:
    """(m, n, k, act) of every ternary linear of ``model`` at batch 1 and 64."""
    if model is None:
        return []
    from tritium.tune import dispatch
    from tritium.tune.cli import UsageError, model_shapes
    from tritium.tune.cpu import act_quant_of

    if not dispatch.install_if_tuned():
        print(f"--model {model}: no tuning archive (run `tritium tune --model {model} "
              "--batch 1,64` first); the tuned comparison is skipped")
        return []
    try:
        shapes = model_shapes(model, None, [1, 64], "t2")
    except UsageError as exc:
        print(f"--model {model}: {exc}; the tuned comparison is skipped")
        return []
    return sorted({(m, n, k, act_quant_of(kernel)) for kernel, (m, n, k) in shapes})


def _tuned_table(rows: list[tuple[int, int, int, str]], args, default: int) -> None:
    from tritium.tune import dispatch

    print(f"  tuned vs default ({args.model}, {default} threads):")
    for m, n, k, act in rows:
        torch.manual_seed(0)
        layer = trt.TernaryLinear(k, n, bias=False, act_quant=act).eval()
        trt.freeze_model(layer)
        x = torch.randn(m, k)

        def run(layer=layer, x=x):
            return layer(x)

        vs = [Variant("default", default, run, None, True),
              Variant("tuned", default, run, dispatch.resolve, True)]
        kernels.set_config_resolver(dispatch.resolve)
        with torch.no_grad():
            layer(x)
        key = (kernels.m_bucket(m), n, k)
        applied = any((u["m_bucket"], u["n"], u["k"]) == key
                      for u in kernels.tuned_configs_used())
        why = [r["why"] for r in kernels.tuned_configs_refused()
               if (r["m_bucket"], r["n"], r["k"]) == key]
        med, ratio = tuned_vs_default(vs, args)
        status = ("a tuned config applied" if applied else
                  f"the default ran: {why[0]}" if why else "no tuned config for this shape")
        print(f"    {m}x{n}x{k} {act:>4}: default {med['default']:.4f} ms, tuned "
              f"{med['tuned']:.4f} ms, {ratio} ({status})")
    from tritium.driver.models import build_model, declared_input_shape

    torch.manual_seed(0)
    built = build_model(args.model)
    model = trt.freeze_model(built.model.eval())
    shape = declared_input_shape(args.model, built.entry)
    for batch in (1, 64):
        x = torch.randn(batch, *shape) if shape is not None else None
        if x is None:
            print(f"    whole model: {built.entry} declares no input shape; not timed")
            break

        def run(model=model, x=x):
            return model(x)

        try:
            with torch.no_grad():
                run()
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            print(f"    whole model: {built.entry} does not run on a random float input of "
                  f"shape {tuple(x.shape)} ({type(exc).__name__}: {exc}); not timed")
            break
        vs = [Variant("default", default, run, None, True),
              Variant("tuned", default, run, dispatch.resolve, True)]
        med, ratio = tuned_vs_default(vs, args)
        print(f"    whole model {built.entry} batch {batch}: default {med['default']:.4f} ms, "
              f"tuned {med['tuned']:.4f} ms, {ratio}")


if __name__ == "__main__":
    sys.exit(main())
