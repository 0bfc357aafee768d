"""Compile speed and generated-code overhead.

    .venv/bin/python benchmarks/compile.py [--runs 7] [--batch 32]

Measures, for examples/resnet18.tri: a cold compile to PyTorch (no cache: parse, check,
codegen; what `tritium.compile` and `tritium train` do), a cold compile of every stage up to
the optimized IR (also lowering and -O2, what `--emit ir-opt` and the Triton target need), a
cached compile, the peak traced memory of a cold compile; and the
forward time of the generated ResNet-18 module against the hand-written PyTorch ResNet-18 of
tests/e2e (same weights, batch 32, eval mode), both measured in this run, median of runs.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

from _timing import median_time, per_call

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

RESNET = ROOT / "examples" / "resnet18.tri"
TARGETS = {"cold": 0.150, "cached": 0.010, "peak_mb": 50.0, "overhead": 0.03}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    os.environ["TRITIUM_CACHE_DIR"] = tempfile.mkdtemp(prefix="tritium-bench-")

    from tritium.compile_cache import CompileCache
    from tritium.driver import compile_program

    compile_program(RESNET, use_cache=False)          # warm imports (numpy, IR) once
    cold = median_time(lambda: compile_program(RESNET, use_cache=False), args.runs)
    full = ("py", "ir", "ir-opt")
    compile_program(RESNET, use_cache=False, stages=full)
    cold_ir = median_time(lambda: compile_program(RESNET, use_cache=False, stages=full), args.runs)
    cache = CompileCache()
    compile_program(RESNET, cache=cache)
    cached = median_time(lambda: compile_program(RESNET, cache=cache), args.runs)
    tracemalloc.start()
    compile_program(RESNET, use_cache=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stages = compile_program(RESNET, use_cache=False, stages=full).timings

    import torch
    from test_pytorch_backend import _HandResNet18

    import tritium
    torch.manual_seed(0)
    gen = tritium.load(RESNET).eval()
    hand = _HandResNet18().eval()
    hand.load_state_dict(gen.state_dict())
    x = torch.randn(args.batch, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gen(x), hand(x), atol=1e-5)
        # one warm call each, then the two interleaved so that machine noise hits both alike
        med = per_call({"gen": functools.partial(gen, x), "hand": functools.partial(hand, x)},
                       args.runs)
    g, h = med["gen"], med["hand"]
    overhead = g / h - 1

    rows = [
        ("cold compile (ms)", cold * 1e3, TARGETS["cold"] * 1e3, cold <= TARGETS["cold"]),
        ("cold compile to ir-opt (ms)", cold_ir * 1e3, TARGETS["cold"] * 1e3,
         cold_ir <= TARGETS["cold"]),
        ("cached compile (ms)", cached * 1e3, TARGETS["cached"] * 1e3,
         cached <= TARGETS["cached"]),
        ("peak memory, cold (MB)", peak / 1e6, TARGETS["peak_mb"], peak / 1e6 <= TARGETS["peak_mb"]),
        (f"generated fwd b{args.batch} (ms)", g * 1e3, None, None),
        (f"hand-written fwd b{args.batch} (ms)", h * 1e3, None, None),
        ("generated / hand-written - 1", overhead * 100, TARGETS["overhead"] * 100,
         overhead <= TARGETS["overhead"]),
    ]
    print(f"ResNet-18 ({RESNET.relative_to(ROOT)}), medians of {args.runs} runs")
    print(f"{'measure':<34}{'value':>12}{'target':>12}  ok")
    for name, value, target, ok in rows:
        tgt = "" if target is None else f"{target:.2f}"
        mark = "" if ok is None else ("yes" if ok else "NO")
        unit = " %" if "- 1" in name else ""
        print(f"{name:<34}{value:>12.2f}{tgt:>12}  {mark}{unit}")
    print("cold stages (ms): " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in stages.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
