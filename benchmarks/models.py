"""Whole models: frozen ternary vs fp32 with batch norms folded vs PyTorch int8 dynamic.

    .venv/bin/python benchmarks/models.py                         # every example model
    .venv/bin/python benchmarks/models.py examples/lenet5.tri --batches 1,64 --threads 1
    .venv/bin/python benchmarks/models.py my.tri --shape 3,64,64  # a model of your own
    .venv/bin/python benchmarks/models.py --quick                 # CI-sized
    .venv/bin/python benchmarks/models.py examples/mobilenetv2.tri --layers  # + per layer

For each model (the example programs, or the ``.tri`` files given), the entry is built with
random weights and batch-norm statistics moved off their defaults, and three variants of the
same network are timed:

- ``ternary``: ``freeze_model`` (packed weights, native kernels, batch norms folded into
  the ternary layers' scales) — what ``tritium train`` ships;
- ``fp32``: the float twin (``tritium.driver.models.float_twin``) with every batch norm that
  follows a Linear/Conv folded into it (``tritium.runtime.baseline.fold_fp32_batchnorms``,
  what any fp32 deployment does);
- ``int8dyn``: that folded fp32 model under ``torch.ao.quantization.quantize_dynamic``
  (int8 Linear layers; convolutions stay fp32), the int8 baseline users reach for.

Every variant runs once per round at each batch size and thread count, in a fresh random
order each round; a sample is the mean of ``--reps`` forward passes, and the figure is the
median over ``--rounds``. Ratios are fp32's (and int8dyn's) time over ternary's: above 1
means the ternary model is faster. With ``--layers`` each model is also timed layer by layer:
every frozen ternary layer against the fp32 twin's layer of the same name, both on the input
that layer sees in the fp32 model (captured once), interleaved the same way; the rows that
follow the table (the whole model minus the sum of its layers) are what runs between them
(activations, residual adds, pooling, the per-call Python). The input shape is the one the entry's ``forward``
declares (batch dim replaced), or ``--shape`` (per-sample, comma-separated).
"""

from __future__ import annotations

import argparse
import copy
import functools
import random
import sys
import time
import warnings
from pathlib import Path

import _timing
import torch
from _args import positive_ints
from torch import nn

from tritium.driver.models import build_model, declared_input_shape, float_twin
from tritium.runtime import TernaryConv2d, TernaryLayer, freeze_model, kernels
from tritium.runtime.baseline import fold_fp32_batchnorms

ROOT = Path(__file__).resolve().parents[1]
# the example programs of fixed-shape models (the BitNet language models are measured end to
# end by benchmarks/llm.py); lenet5_fashion keeps its first and last layers and its
# activations in fp32 (its accuracy recipe), so little of it runs on ternary kernels
EXAMPLES = ["mlp.tri", "lenet5.tri", "lenet5_fashion.tri", "resnet18.tri", "mobilenetv2.tri"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", help=".tri programs (default: the example models)")
    p.add_argument("--entry", help="the model to build (default: the file's main model)")
    p.add_argument("--shape", type=positive_ints, help="per-sample input shape, if not declared")
    p.add_argument("--batches", type=positive_ints, default=[1, 64])
    p.add_argument("--threads", type=positive_ints, default=None,
                   help="thread counts (default: 1 and torch's default)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="few rounds, batch 1 and 8 (CI)")
    p.add_argument("--layers", action="store_true",
                   help="also time every ternary layer against its fp32 twin's layer")
    p.add_argument("--cpu-time", action="store_true",
                   help="time the calling thread's CPU time instead of wall time (1 thread "
                        "only: on a loaded machine it leaves out the time other jobs ran)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.reps < 1:
        p.error("--rounds and --reps must be >= 1")
    if args.quick:
        args.rounds, args.reps, args.batches = 3, 2, [1, 8]
    if not args.files:
        args.files = [str(ROOT / "examples" / name) for name in EXAMPLES]
    if args.threads is None:
        args.threads = [1] if args.cpu_time else sorted({1, torch.get_num_threads()})
    if args.cpu_time and args.threads != [1]:
        p.error("--cpu-time measures one thread: use --threads 1")
    global _clock
    _clock = time.thread_time if args.cpu_time else time.perf_counter
    return args


_clock = time.perf_counter


def _perturb_batchnorms(model: nn.Module) -> None:
    """Running statistics and affine parameters away from the identity, so folding matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
                n = mod.running_mean.numel()
                mod.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if mod.weight is not None:
                    mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    mod.bias.copy_(torch.rand(n, generator=g) - 0.5)


def variants(path: str, entry: str | None) -> tuple[dict[str, nn.Module], str]:
    torch.manual_seed(0)
    built = build_model(path, entry)
    model = built.model
    _perturb_batchnorms(model)
    fp32, _ = float_twin(model)
    fp32.eval()
    folded = fold_fp32_batchnorms(fp32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic's deprecation notice
        int8dyn = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32), {nn.Linear},
                                                         dtype=torch.qint8)
    ternary = freeze_model(model.eval())
    return ({"ternary": ternary, "fp32": fp32, "int8dyn": int8dyn},
            f"{built.entry} ({len(folded)} fp32 batch norms folded)")


def measure(models: dict[str, nn.Module], x: torch.Tensor, threads: int, rounds: int,
            reps: int) -> dict[str, float]:
    """Median ms per forward pass of each model: ``rounds`` interleaved rounds in a fresh
    random order, a sample the mean of ``reps`` passes."""
    torch.set_num_threads(threads)
    with torch.no_grad():
        for m in models.values():
            m(x)  # warm: plans, packed layouts, allocator
        samples = _timing.interleave(
            {k: _timing.timed(functools.partial(m, x), reps, _clock) for k, m in models.items()},
            rounds, shuffle=random.shuffle)
    return _timing.summarize(samples, scale=1e3)


def _layer_inputs(models: dict[str, nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input of every fp32 layer whose name is a frozen ternary layer's, from one pass."""
    tern = dict(models["ternary"].named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args, name=name: seen.setdefault(name, args[0].detach().clone()))
        for name, m in models["fp32"].named_modules()
        if isinstance(tern.get(name), TernaryLayer) and name]
    try:
        with torch.no_grad():
            models["fp32"](x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _describe(layer: nn.Module, x: torch.Tensor) -> str:
    if isinstance(layer, TernaryConv2d):
        return (f"{layer.in_channels}>{layer.out_channels} k{layer.kernel_size[0]} "
                f"s{layer.stride[0]} g{layer.groups} {x.shape[-2]}x{x.shape[-1]} {layer.act_quant}")
    return f"{getattr(layer, 'in_features', '?')}>{getattr(layer, 'out_features', '?')} " \
           f"{getattr(layer, 'act_quant', '')}"


def measure_layers(models: dict[str, nn.Module], x: torch.Tensor, threads: int, rounds: int,
                   reps: int, whole: dict[str, float]) -> None:
    """Print each ternary layer's time against its fp32 twin's (see the module docstring)."""
    torch.set_num_threads(threads)
    inputs = _layer_inputs(models, x)
    mods = {k: dict(models[k].named_modules()) for k in ("ternary", "fp32")}
    runs = [(name, k) for name in inputs for k in ("ternary", "fp32")]
    with torch.no_grad():
        for name, k in runs:
            mods[k][name](inputs[name])
        samples = _timing.interleave(
            {(name, k): _timing.timed(functools.partial(mods[k][name], inputs[name]), reps,
                                      _clock) for name, k in runs},
            rounds, shuffle=random.shuffle)
    meds = _timing.summarize(samples, scale=1e3)
    tot = {"ternary": 0.0, "fp32": 0.0}
    print(f"  {'layer':<24} {'shape':<34} {'ternary':>9} {'fp32':>9} {'vs fp32':>8}")
    for name in inputs:
        med = {k: meds[(name, k)] for k in tot}
        for k in tot:
            tot[k] += med[k]
        print(f"  {name[:24]:<24} {_describe(mods['ternary'][name], inputs[name])[:34]:<34} "
              f"{med['ternary']:9.3f} {med['fp32']:9.3f} {med['fp32'] / med['ternary']:7.2f}x")
    print(f"  {'sum of the layers':<59} {tot['ternary']:9.3f} {tot['fp32']:9.3f} "
          f"{tot['fp32'] / tot['ternary']:7.2f}x")
    print(f"  {'the rest (model - layers)':<59} {whole['ternary'] - tot['ternary']:9.3f} "
          f"{whole['fp32'] - tot['fp32']:9.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    default_threads = torch.get_num_threads()
    from tritium.backends.cpu import isa as isa_mod

    info = kernels.kernel_info()
    print(f"CPU: {isa_mod.cpu_model()}, kernels {info.get('isa')} ({info.get('pool', '-')} "
          f"pool), torch {torch.__version__}; {args.rounds} interleaved rounds x {args.reps} "
          f"passes, medians in ms ({'thread CPU' if args.cpu_time else 'wall'} time)")
    print(f"{'model':<28} {'batch':>5} {'thr':>3} {'ternary':>9} {'fp32':>9} {'int8dyn':>9} "
          f"{'vs fp32':>8} {'vs int8dyn':>10}")
    worst = None
    for path in args.files:
        try:
            models, label = variants(path, args.entry)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be built: say so, go on
            print(f"{Path(path).name}: cannot build ({type(exc).__name__}: {exc})")
            continue
        shape = args.shape
        if shape is None:
            shape = declared_input_shape(path, models["ternary"].__class__.__name__)
        if shape is None:
            print(f"{Path(path).name}: the input shape is not declared; pass --shape")
            continue
        for batch in args.batches:
            x = torch.randn(batch, *shape)
            for threads in args.threads:
                med = measure(models, x, threads, args.rounds, args.reps)
                r32 = med["fp32"] / med["ternary"]
                r8 = med["int8dyn"] / med["ternary"]
                worst = r32 if worst is None else min(worst, r32)
                print(f"{label[:28]:<28} {batch:5d} {threads:3d} {med['ternary']:9.3f} "
                      f"{med['fp32']:9.3f} {med['int8dyn']:9.3f} {r32:7.2f}x {r8:9.2f}x")
                if args.layers:
                    measure_layers(models, x, threads, args.rounds, args.reps, med)
    torch.set_num_threads(default_threads)
    tuned = kernels.tuned_configs_used()
    print("kernel configs: " + (f"tuned for {len(tuned)} layer shape(s) (archive)" if tuned
                                else "the defaults (no tuned config applied)"))
    if worst is not None:
        print(f"slowest ternary vs fp32 (BN folded): {worst:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
