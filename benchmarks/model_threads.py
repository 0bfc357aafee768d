"""A model in which PyTorch ops and tritium kernels interleave: the thread pools meet.

    .venv/bin/python benchmarks/model_threads.py                      # 4 x 4096 MLP, batch 8/64/256
    .venv/bin/python benchmarks/model_threads.py --batches 64 --pools openmp,pthread
    .venv/bin/python benchmarks/model_threads.py --quick              # CI-sized

The model is ``--layers`` blocks of a ``--width`` x ``--width`` linear followed by a ReLU (a
PyTorch op that runs on PyTorch's OpenMP threads between every two kernel calls), frozen
(weights packed once). The same architecture runs three ways, each measured in the same run:
fp32 ``torch.nn.Linear``, PyTorch int8 dynamic quantization (``quantize_dynamic``), and
``TernaryLinear(act_quant="int8")`` on each kernel thread pool given by ``--pools`` (``openmp``:
the kernels run on PyTorch's own OpenMP team; ``pthread``: the kernels' own pool, which has to
compete with PyTorch's still-spinning OpenMP workers after every ReLU). Each figure is the
median over ``--rounds`` interleaved rounds (every variant once per round, in a fresh random
order, after a ``--pause-ms`` pause so no variant is timed in the spin-down of its predecessor's
threads); a sample is the mean of ``--reps`` back-to-back forward passes. Ratios > 1 mean the
first named variant is faster.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import warnings
from collections.abc import Callable

import _timing
import torch

from tritium import runtime as trt
from tritium.backends.cpu import KernelConfig
from tritium.backends.cpu.build import POOLS
from tritium.runtime import kernels


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated integers, "
                                         f"got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"{what} must be positive integers, got {text!r}")
    return vals


def _pools(text: str) -> list[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in vals if v not in POOLS]
    if not vals or bad:
        raise argparse.ArgumentTypeError(
            f"pools must be a comma-separated subset of {', '.join(POOLS)}, got {text!r}")
    return vals


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=4096, help="features of every layer")
    p.add_argument("--layers", type=int, default=4, help="linear + ReLU blocks")
    p.add_argument("--batches", type=lambda s: _ints(s, "--batches"), default=[8, 64, 256])
    p.add_argument("--pools", type=_pools, default=list(POOLS),
                   help=f"kernel thread pools to compare ({', '.join(POOLS)})")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median)")
    p.add_argument("--reps", type=int, default=5, help="forward passes per sample")
    p.add_argument("--pause-ms", type=float, default=50.0, help="pause before each sample")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument("--quick", action="store_true", help="small model, few rounds (CI)")
    args = p.parse_args(argv)
    for name in ("width", "layers", "rounds", "reps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.pause_ms < 0 or args.threads < 0:
        p.error("--pause-ms and --threads must be >= 0")
    if args.quick:
        args.width, args.batches, args.rounds, args.reps = 512, [8, 64], 3, 2
    return args


def build_models(width: int, layers: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    fp32 = torch.nn.Sequential(*[m for _ in range(layers)
                                 for m in (torch.nn.Linear(width, width), torch.nn.ReLU())]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic's deprecation notice
        int8dyn = torch.ao.quantization.quantize_dynamic(fp32, {torch.nn.Linear},
                                                         dtype=torch.qint8)
    tern = torch.nn.Sequential(*[m for _ in range(layers)
                                 for m in (trt.TernaryLinear(width, width, act_quant="int8"),
                                           torch.nn.ReLU())]).eval()
    trt.freeze_model(tern)
    return {"fp32": fp32, "int8dyn": int8dyn, "ternary": tern}


def _pool_resolver(pool: str):
    def resolve(m, n, k, fmt, act_quant, isa):
        return KernelConfig(isa=isa, pool=pool)
    return resolve


def measure(models: dict[str, torch.nn.Module], pools: list[str], batch: int, width: int,
            rounds: int, reps: int, pause: float) -> dict[str, float]:
    x = torch.randn(batch, width)
    variants: dict[str, Callable[[], float]] = {
        "fp32": _sampler(lambda: models["fp32"](x), None, reps),
        "int8dyn": _sampler(lambda: models["int8dyn"](x), None, reps),
    }
    for pool in pools:
        variants[f"ternary[{pool}]"] = _sampler(lambda: models["ternary"](x), pool, reps)
    with torch.no_grad():
        samples = _timing.interleave(variants, rounds, shuffle=random.shuffle, settle=pause)
    kernels.set_config_resolver(None)
    return _timing.summarize(samples, scale=1e3)


def _sampler(fn: Callable[[], torch.Tensor], pool: str | None, reps: int
             ) -> Callable[[], float]:
    """A sample of ``fn``: the kernels' resolver set to ``pool`` (None: the default) and one
    warm call (the resolver's choice, caches), then the mean seconds of ``reps`` calls."""
    sample = _timing.timed(fn, reps)

    def run() -> float:
        kernels.set_config_resolver(None if pool is None else _pool_resolver(pool))
        fn()
        return sample()

    return run


def _load_pool(pool: str, isa: str):
    from tritium.backends import cpu

    return cpu.load(config=KernelConfig(isa=isa, pool=pool))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not kernels.native_available():
        print(f"native kernels unavailable: {kernels.kernel_info().get('error')}", file=sys.stderr)
        return 1
    info = kernels.kernel_info()
    print("kernels:", json.dumps({k: info.get(k) for k in (
        "isa", "threads", "pool", "omp_library", "omp_shared_with_torch", "pool_fallback")}))
    for pool in args.pools:
        lib = _load_pool(pool, info["isa"])
        if lib is None or lib.pool != pool:
            print(f"the {pool} kernels are unavailable here", file=sys.stderr)
            return 1
    models = build_models(args.width, args.layers)
    print(f"model: {args.layers} x (Linear {args.width}x{args.width} + ReLU), "
          f"torch threads {torch.get_num_threads()}, {args.rounds} rounds x {args.reps} reps, "
          f"{args.pause_ms:g} ms pause; medians in ms")
    for batch in args.batches:
        med = measure(models, args.pools, batch, args.width, args.rounds, args.reps,
                      args.pause_ms / 1e3)
        times = "  ".join(f"{k} {v:.3f}" for k, v in med.items())
        ratios = "  ".join(
            f"{k} vs int8dyn {med['int8dyn'] / med[k]:.2f}x, vs fp32 {med['fp32'] / med[k]:.2f}x"
            for k in med if k.startswith("ternary"))
        print(f"batch {batch:4d}: {times}")
        print(f"            int8dyn vs fp32 {med['fp32'] / med['int8dyn']:.2f}x;  {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
