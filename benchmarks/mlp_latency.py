"""Batch-1 latency of the digits MLP (examples/mlp.tri): frozen ternary vs fp32, same run.

    .venv/bin/python benchmarks/mlp_latency.py                 # fresh models, 1 thread
    .venv/bin/python benchmarks/mlp_latency.py --run runs/mlp  # the checkpoints of `make demo`

Rows: the fp32 baseline as `tritium train` builds it (the float twin: Linear layers that
accept the fused-activation keyword, BatchNorm1d), the same fp32 weights in plain
`nn.Linear` modules, the frozen ternary model with its batch norm kept, and the frozen
ternary model with the batch norm folded into the first layer's scale and bias (what
`tritium train` writes). Every figure is the median of interleaved repetitions (each round
runs every model once), and the ratio is the fp32 baseline's median over the row's.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tritium.driver.models import build_model, float_twin, model_from_checkpoint
from tritium.runtime import freeze_model

ROOT = Path(__file__).resolve().parents[1]


def measure(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    for _ in range(max(10, rounds // 10)):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}


def plain_linears(model: nn.Module) -> nn.Module:
    """A copy of an fp32 model whose Linear subclasses are plain `nn.Linear` modules."""
    out = copy.deepcopy(model)
    for mod in list(out.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, nn.Linear) and type(child) is not nn.Linear:
                plain = nn.Linear(child.in_features, child.out_features, child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(mod, name, plain)
    return out.eval()


def fresh_models() -> tuple[nn.Module, nn.Module]:
    """(ternary, fp32) digits MLPs with batch-norm statistics moved off their defaults."""
    torch.manual_seed(0)
    model = build_model(ROOT / "examples" / "mlp.tri").model
    model.train()
    for _ in range(5):
        model(torch.randn(64, 64))
    fp32, _ = float_twin(model)
    return model.eval(), fp32.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="a `tritium train` output directory")
    ap.add_argument("--rounds", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.run is not None:
        folded, _ = model_from_checkpoint(args.run / "model.safetensors")
        fp32, _ = model_from_checkpoint(args.run / "fp32.safetensors")
        unfolded = None
    else:
        ternary, fp32 = fresh_models()
        unfolded = freeze_model(copy.deepcopy(ternary), fold_bn=False).eval()
        folded = freeze_model(copy.deepcopy(ternary)).eval()
    models = {"fp32 baseline (float twin)": fp32, "fp32, plain nn.Linear": plain_linears(fp32)}
    if unfolded is not None:
        models["ternary frozen, batch norm kept"] = unfolded
    models["ternary frozen, batch norm folded"] = folded
    x = torch.randn(1, 64)
    with torch.inference_mode():
        ref = fp32(x)
        for name, m in models.items():
            if name.startswith("fp32"):
                torch.testing.assert_close(m(x), ref)
        medians = measure({name: (lambda m=m: m(x)) for name, m in models.items()},
                          args.rounds)
    base = medians["fp32 baseline (float twin)"]
    print(f"digits MLP, batch 1, {args.threads} thread(s), median of {args.rounds} "
          "interleaved rounds")
    for name, t in medians.items():
        print(f"  {name:36s} {t * 1e6:8.2f} us   {base / t:5.2f}x vs fp32 baseline")


if __name__ == "__main__":
    main()
