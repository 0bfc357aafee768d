"""Latency of the digits MLP (examples/mlp.tri): frozen ternary vs fp32, same run, and the
per-layer call overhead of the frozen layers.

    .venv/bin/python benchmarks/mlp_latency.py                 # fresh models, 1 thread
    .venv/bin/python benchmarks/mlp_latency.py --batches 1,64  # also batch 64
    .venv/bin/python benchmarks/mlp_latency.py --run runs/mlp  # the checkpoints of `make demo`

Models: the fp32 baseline with its batch norm folded into the Linear before it (what any fp32
deployment runs, ``tritium.runtime.baseline``: the ratio's denominator), the float twin as
`tritium train` builds it (BatchNorm1d kept), the frozen ternary model with its batch norm
kept, and the frozen ternary model with the batch norm folded (what `tritium train` writes;
its forward runs as one chain: ``tritium.runtime.chain``). Every figure is the median of
interleaved repetitions (each round runs every entry once), and the ratio is the folded fp32
model's median over the row's.

Per-layer overhead: for each frozen ternary layer, its module call (``layer(x)``: the layer's
own fast path, what a model that is not one chain pays per layer) and the whole folded model,
against the bare native kernels (the plan's ``tri_linear_planned`` into a pre-allocated output,
called as the plan calls it: through the fast-call module, about 0.1 us, or ctypes where it
did not build): the difference is the Python and allocation cost above the kernel itself.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path

import _timing
import torch
from _args import positive_int, positive_ints
from torch import nn

from tritium.driver.models import build_model, float_twin, model_from_checkpoint
from tritium.runtime import freeze_model
from tritium.runtime.baseline import fold_fp32_batchnorms

ROOT = Path(__file__).resolve().parents[1]
BASE = "fp32, batch norm folded"


def measure(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of one call of each, rounds in a fixed order, after a warm-up of
    ``max(10, rounds // 10)`` rounds."""
    return _timing.per_call(fns, rounds, warmup=max(10, rounds // 10))


def fresh_models() -> tuple[nn.Module, nn.Module]:
    """(ternary, fp32) digits MLPs with batch-norm statistics moved off their defaults."""
    torch.manual_seed(0)
    model = build_model(ROOT / "examples" / "mlp.tri").model
    model.train()
    for _ in range(5):
        model(torch.randn(64, 64))
    fp32, _ = float_twin(model)
    return model.eval(), fp32.eval()


def layer_overheads(model: nn.Module, x: torch.Tensor, rounds: int) -> list[str]:
    """Lines: each frozen ternary layer's module call and the whole model against the bare
    native calls of the same plans (medians of interleaved rounds, microseconds)."""
    from tritium.runtime.layers import TernaryLayer

    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, TernaryLayer) and m.frozen]
    fns: dict[str, Callable[[], object]] = {"model": lambda: model(x)}
    raw: list[str] = []
    h = x
    for name, layer in layers:
        h_in = h.reshape(h.shape[0], -1).contiguous()
        layer(h_in)   # builds the layer's cached plan
        plan = layer._plan
        if plan is None:
            return ["  (no native kernels: no per-layer figures)"]
        out = torch.empty(h_in.shape[0], plan.n)
        threads = max(1, torch.get_num_threads())
        args = (plan.args_ptr, h_in.data_ptr(), h_in.shape[0], None, 0, out.data_ptr(),
                threads, None)
        fns[f"{name}: module call"] = lambda layer=layer, h_in=h_in: layer(h_in)
        # (the default arguments keep the input and output alive while their pointers are used)
        fns[f"{name}: native kernel"] = lambda fn=plan.fn, args=args, keep=(h_in, out): fn(*args)
        raw.append(f"{name}: native kernel")
        h = torch.relu(layer(h_in))
    med = measure(fns, rounds)
    lines = []
    for name, _ in layers:
        call, kern = med[f"{name}: module call"], med[f"{name}: native kernel"]
        lines.append(f"  {name:8s} module call {call * 1e6:7.2f} us   native kernel "
                     f"{kern * 1e6:7.2f} us   overhead {(call - kern) * 1e6:6.2f} us")
    total_raw = sum(med[r] for r in raw)
    lines.append(f"  whole model {med['model'] * 1e6:7.2f} us   native kernels "
                 f"{total_raw * 1e6:7.2f} us   overhead {(med['model'] - total_raw) * 1e6:6.2f} us"
                 f" for {len(layers)} layers")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="a `tritium train` output directory")
    ap.add_argument("--rounds", type=positive_int, default=5000)
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument("--batches", type=positive_ints, default=[1])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.run is not None:
        folded, _ = model_from_checkpoint(args.run / "model.safetensors")
        fp32, _ = model_from_checkpoint(args.run / "fp32.safetensors")
        unfolded = None
    else:
        ternary, fp32 = fresh_models()
        unfolded = freeze_model(copy.deepcopy(ternary), fold_bn=False).eval()
        folded = freeze_model(copy.deepcopy(ternary)).eval()
    fp32_folded = copy.deepcopy(fp32).eval()
    fold_fp32_batchnorms(fp32_folded)
    models = {BASE: fp32_folded, "fp32 float twin (batch norm kept)": fp32}
    if unfolded is not None:
        models["ternary frozen, batch norm kept"] = unfolded
    models["ternary frozen, batch norm folded"] = folded
    for batch in args.batches:
        x = torch.randn(batch, 64)
        with torch.inference_mode():
            ref = fp32(x)
            torch.testing.assert_close(fp32_folded(x), ref, rtol=1e-4, atol=1e-5)
            medians = measure({name: (lambda m=m, x=x: m(x)) for name, m in models.items()},
                              args.rounds)
            vs_base = _timing.speedups(medians, BASE)
            print(f"digits MLP, batch {batch}, {args.threads} thread(s), median of "
                  f"{args.rounds} interleaved rounds")
            for name, t in medians.items():
                print(f"  {name:36s} {t * 1e6:8.2f} us   {vs_base[name]:5.2f}x vs {BASE}")
            print("per-layer overhead of the frozen ternary model (batch norm folded):")
            for line in layer_overheads(folded, x, args.rounds):
                print(line)


if __name__ == "__main__":
    main()
