"""The autotuner against exhaustive search, on shapes of the kernel benchmark.

    .venv/bin/python benchmarks/tune.py                 # 4 shapes, about 3-5 minutes
    .venv/bin/python benchmarks/tune.py --shapes 64x1024x1024 --quick

For each shape (M x N x K of the int8 ``cpu.linear`` kernel) it runs, each on a fresh study
(a fresh SQLite archive), an exhaustive grid over a reduced search space, then TPE and the
heuristic with a budget of a quarter of the grid size. The heuristic's archive holds the
exhaustive results of the shapes benchmarked before (what it starts from on a tuned machine:
the best configs of the nearest shapes). Printed, all measured in this run:

- the default config, the exhaustive optimum and each strategy's pick re-timed side by side
  (interleaved rounds on the same inputs, so load drifting during the searches cancels out):
  the tuned speedup over the default, and each pick's speed as a share of the optimum's
  (target: at least 95%, i.e. time <= optimum / 0.95);
- the trial at which each strategy found its pick, and the first trial at which it visited a
  config that the exhaustive grid timed within 95% of its optimum (the grid's own timings);
- torch fp32 ``F.linear`` on the same problem.

The spaces are reduced (a few values of the block parameters) so the grid stays at a few dozen
builds and trials, and every config runs on one thread: on a shared machine the best thread
count follows the other processes' load, which drifts during a run (``tritium tune`` itself
does search ``threads``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tritium.tune import cpu  # noqa: E402
from tritium.tune.archive import Archive  # noqa: E402
from tritium.tune.loop import tune  # noqa: E402
from tritium.tune.measure import Settings, compare_configs  # noqa: E402
from tritium.tune.space import SearchSpace, config_key  # noqa: E402
from tritium.tune.strategies import make_strategy  # noqa: E402

# A few values per parameter (defaults are always kept); parameters this ISA path lacks are
# simply ignored, so the benchmark runs on AVX2-only machines too.
REDUCED = {
    "tok_chunk": (16, 32, 64, 128, 256),
    "gemv_max_m": (2, 8),
    "gemm_min_m": (1, 8, 16),
    "gemm_mr": (2, 4, 6, 8, 12),
    "gemm_nrv": (1, 2, 3, 4),
    "gemm_mc": (64, 128),
    "gemm_kc": (0,),
    "gemm_pf": (0,),
    "gemm_unpack": (1,),
    # one thread per call (below), so the pool cannot matter; the OpenMP one is the default
    "pool": ("openmp",),
}
# One thread per call: on a shared 2-core machine the best thread count follows the other
# processes' load, which changes during a run, so a threads dimension measures the neighbours.
THREADS = 1


class ReducedProblem(cpu.CpuLinearProblem):
    def space(self):
        from tritium.backends.cpu.build import KernelConfig

        names = {p.name for p in KernelConfig.search_params(self.isa)}
        full = cpu.linear_space(self.kernel, self.shape[0], self.isa)
        only = {k: v for k, v in REDUCED.items() if k in names and k in full.names}
        space = cpu.linear_space(self.kernel, self.shape[0], self.isa, only=only)
        params = tuple(p for p in space.params if p.name != "threads")
        return SearchSpace(space.kernel, params, constraint=space.constraint)

    def runner(self, config):
        return super().runner({**config, "threads": THREADS})

    def at(self, shape):
        return ReducedProblem(self.kernel, shape, self.fmt, self.isa)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="1x1024x1024,8x4096x4096,64x4096x4096,64x1024x1024",
                    help="comma list of MxNxK")
    ap.add_argument("--format", default="t2", choices=("t2", "t1.6"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="fewer timing samples")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    settings = Settings.quick() if args.quick else Settings(samples=21)
    isa = cpu.default_isa()
    device = cpu.device_info(isa)
    fp = cpu.device_fingerprint(device)
    common = dict(device=device, device_fingerprint=fp, source_hash=cpu.source_hash(),
                  settings=settings, seed=args.seed)
    print(f"device: {device['model']} ({isa}, {device['cores']} cores); kernel cpu.linear "
          f"(int8 activations), format {args.format}; load average {load()}")
    tmp = Path(tempfile.mkdtemp(prefix="tritium-tune-bench-"))
    grid_exports: list[Path] = []
    rows = []
    t_start = time.monotonic()
    for shape in shapes:
        problem = ReducedProblem("cpu.linear", shape, args.format, isa)
        space = problem.space()
        size = space.size()
        budget = max(1, size // 4)
        tag = "x".join(map(str, shape))
        t0 = time.monotonic()
        grid_ar = Archive(f"sqlite:///{tmp / f'grid_{tag}.db'}")
        grid = tune(problem, make_strategy("grid"), grid_ar, stability=False, **common)
        export = tmp / f"grid_{tag}.json"
        grid_ar.export_json(export)
        grid_ar.close()
        opt = grid.best.median_ms
        row = {"shape": tag, "size": size, "budget": budget, "default": grid.default_ms,
               "fp32": grid.fp32_ms, "opt": opt, "opt_config": grid.best.config}
        grid_ms = {config_key(t.config): t.median_ms for t in grid.trials if t.ok}
        picks = {}
        for name in ("tpe", "heuristic"):
            ar = Archive(f"sqlite:///{tmp / f'{name}_{tag}.db'}")
            if name == "heuristic":
                for path in grid_exports:  # the tuned shapes before this one
                    ar.import_json(path)
            r = tune(problem, make_strategy(name, seed=args.seed), ar, budget=budget,
                     baseline=False, stability=False, patience=0, **common)
            ar.close()
            ok = [t for t in r.trials if t.ok]
            pick = min(ok, key=lambda t: t.median_ms) if ok else None
            picks[name] = pick.config if pick else None
            found = r.trials.index(pick) + 1 if pick else None
            near = next((i for i, t in enumerate(r.trials, 1)
                         if grid_ms.get(config_key(t.config), math.inf) <= opt / 0.95), None)
            row[name] = {"found": found, "near": near, "n": len(r.trials)}
        configs = [space.default(), grid.best.config] + [picks[n] or space.default()
                                                         for n in ("tpe", "heuristic")]
        d_ms, o_ms, tpe_ms, heu_ms = compare_configs(problem, configs, args.seed + 11,
                                                     settings, rounds=7)
        row.update(ab_default=d_ms, ab_opt=o_ms)
        row["tpe"]["ab"], row["heuristic"]["ab"] = tpe_ms, heu_ms
        grid_exports.append(export)
        row["seconds"] = time.monotonic() - t0
        rows.append(row)
        print(f"  {tag}: grid {size} configs, optimum {cpu_config_text(grid.best.config)}; "
              f"{row['seconds']:.0f} s", flush=True)

    print()
    print("side by side: the default config, the exhaustive optimum and each strategy's pick "
          "re-timed in 7 interleaved rounds (ms);")
    print("  pick: % of the optimum's speed, trial # where the strategy found it / its trials; "
          "grid95: first trial whose config the grid timed within 95% of its optimum")
    print(f"{'shape MxNxK':<14} {'grid':>4} {'fp32':>8} {'default':>8} {'optimum':>8} "
          f"{'speedup':>7} {'budget':>6}  {'TPE pick':<30} {'heuristic pick':<30}")
    ok_speedup = ok_target = 0
    for r in rows:
        speed = r["ab_default"] / r["ab_opt"] if r["ab_default"] and r["ab_opt"] else 0.0
        ok_speedup += speed > 1.02  # beyond the run-to-run noise of side-by-side timings
        cells = []
        reached = False
        for name in ("tpe", "heuristic"):
            s = r[name]
            share = r["ab_opt"] / s["ab"] if s["ab"] and r["ab_opt"] else 0.0
            reached = reached or share >= 0.95
            found = f"#{s['found']}/{s['n']}" if s["found"] else f"-/{s['n']}"
            near = f"#{s['near']}" if s["near"] else "-"
            cells.append(f"{s['ab'] or math.nan:.4f} {100 * share:5.1f}% {found} grid95 {near}")
        ok_target += reached
        print(f"{r['shape']:<14} {r['size']:>4} {r['fp32']:>8.3f} {r['ab_default']:>8.4f} "
              f"{r['ab_opt']:>8.4f} {speed:>6.2f}x {r['budget']:>6}  {cells[0]:<30} "
              f"{cells[1]:<30}")
    print()
    print(f"tuned faster than the default config by more than 2% on {ok_speedup} of {len(rows)} "
          f"shapes; TPE or "
          f"the heuristic picked, within a quarter of the grid's trials, a config running at 95% "
          f"or more of the exhaustive optimum's speed on {ok_target} of {len(rows)} shapes; "
          f"total {time.monotonic() - t_start:.0f} s; load average {load()}")
    return 0


def load() -> str:
    """The 1-minute load average (other processes on the machine skew every timing)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def cpu_config_text(config: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


if __name__ == "__main__":
    sys.exit(main())
