"""Ternary GEMV/GEMM kernels against PyTorch baselines, all measured in the same run.

    .venv/bin/python benchmarks/ternary_kernels.py            # full: 3 shapes x batch 1, 8, 64, 256
    .venv/bin/python benchmarks/ternary_kernels.py --quick    # CI-sized
    .venv/bin/python benchmarks/ternary_kernels.py --shapes 4096x4096 --batches 1,64 --threads 1

A shape NxK is a linear layer with N output features and K input features (weight N x K);
11008x4096 is a LLaMA-7B MLP up-projection. Baselines: torch fp32 ``F.linear``; torch int8
dynamic quantization (``torch.ao.quantization.quantize_dynamic``); ``torch.compile`` of
unpack-the-packed-t2-weights-then-matmul. Tritium rows: the int8-activation path (per-token
absmax, exact int32 maddubs/VNNI GEMM; the headline) and the fp32-activation path, for t2 and
t1.6, each called the way a frozen ternary layer calls it (its cached ``LinearPlan``; the int8
dynamic baseline is likewise a module with prepacked weights). Each figure is the median over interleaved repetitions (every implementation runs once
per round, in a fresh random order every round, so a burst of load on the machine -- or torch's
OpenMP workers still spinning after a parallel op -- hits all of them alike); ratios are
against fp32 ``F.linear`` and int8 dynamic measured in that same round-robin. GMAC/s is
M*N*K multiply-adds per second of the int8 paths. GB/s is packed weight bytes streamed per
call divided by the time; the memory bandwidth is measured in the same run with a large
``torch`` copy (read + write bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable

import _timing
import torch
import torch.nn.functional as F
from _args import positive_int, positive_ints, shapes

from tritium.runtime.kernels import kernel_info, linear_plan, ternary_linear
from tritium.runtime.packing import pack_ternary


def measure(fns: dict[str, Callable[[], object]], rounds: int, min_time: float,
            stat: str = "median", settle: float = 0.05) -> dict[str, float]:
    """The ``stat`` of seconds per call of each function over interleaved rounds: a fresh
    random order every round, and a pause before each sample: torch's OpenMP workers (and
    tritium's pool) keep spinning for several milliseconds after a parallel op and would
    otherwise take a core from whatever runs next on this 2-core machine. Each implementation
    is measured in its own steady state, not in its neighbour's wake. A sample's call count
    is estimated over a quarter of ``min_time`` of warm calls (one call, a wake-up after the
    settle pause, could take 10-100x a steady call on a loaded machine)."""
    return _timing.measure(fns, rounds, min_time, settle=settle, stat=stat)


def memory_bandwidth(rounds: int) -> float:
    """GB/s of a 256 MiB tensor copy (bytes read + bytes written)."""
    src = torch.ones(64 * 1024 * 1024, dtype=torch.float32)
    dst = torch.empty_like(src)
    t = measure({"copy": lambda: dst.copy_(src)}, rounds, 0.05)["copy"]
    return 2 * src.numel() * 4 / t / 1e9


def _unpack_matmul(x: torch.Tensor, data: torch.Tensor, k: int, scale: torch.Tensor) -> torch.Tensor:
    n, rb = data.shape
    nb = rb // 32
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=data.device).view(1, 1, 4, 1)
    codes = (data.view(n, nb, 1, 32) >> shifts) & 3
    w = codes.reshape(n, nb * 128)[:, :k].to(x.dtype) - 1
    return (x @ w.t()) * scale


def _tritium(x, p, scale, act_quant: str) -> Callable[[], object]:
    """The call a frozen ternary layer makes (its cached LinearPlan; int8 dynamic is timed as
    a module with prepacked weights too), or ``ternary_linear`` without native kernels."""
    n, k = p.shape
    plan = linear_plan(p.data, n, k, p.format, scale, None, act_quant)
    if plan is None:
        return lambda: ternary_linear(x, p, scale, act_quant=act_quant)
    return lambda: plan(x, None, None)


def _impls(x, w_fp32, qlin, p2, p16, scale, compiled) -> dict[str, Callable[[], object]]:
    k = x.shape[1]
    fns: dict[str, Callable[[], object]] = {
        "fp32": lambda: F.linear(x, w_fp32),
        "int8dyn": lambda: qlin(x),
        "tri_i8_t2": _tritium(x, p2, scale, "int8"),
        "tri_f32_t2": _tritium(x, p2, scale, "none"),
        "tri_i8_t16": _tritium(x, p16, scale, "int8"),
        "tri_f32_t16": _tritium(x, p16, scale, "none"),
    }
    if compiled is not None:
        fns["compiled"] = lambda: compiled(x, p2.data, k, scale)
    return fns


def bench_shape(n: int, k: int, batches: list[int], args, bw: float) -> list[dict]:
    g = torch.Generator().manual_seed(n + k)
    trits = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
    w_fp32 = trits.float() * 0.05
    scale = torch.full((n,), 0.05)
    p2 = pack_ternary(trits, "t2")
    p16 = pack_ternary(trits, "t1.6")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin = torch.nn.Linear(k, n, bias=False)
        lin.weight.data.copy_(w_fp32)
        qlin = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
        )
    compiled = None
    if not args.no_compile:
        compiled = torch.compile(_unpack_matmul, dynamic=True)
    rows = []
    for m in batches:
        x = torch.randn(m, k, generator=g)
        fns = _impls(x, w_fp32, qlin, p2, p16, scale, compiled)
        with torch.no_grad():
            t = measure(fns, args.rounds, args.min_time, args.stat, args.settle)
        row = {"n": n, "k": k, "batch": m, **{f"{key}_ms": v * 1e3 for key, v in t.items()}}
        vs_fp32, vs_int8dyn = _timing.speedups(t, "fp32"), _timing.speedups(t, "int8dyn")
        for key in ("tri_i8_t2", "tri_f32_t2", "tri_i8_t16", "tri_f32_t16"):
            row[f"{key}_vs_fp32"] = vs_fp32[key]
            row[f"{key}_vs_int8dyn"] = vs_int8dyn[key]
        for key in ("int8dyn", "tri_i8_t2", "tri_i8_t16"):
            row[f"{key}_GMACs"] = m * n * k / t[key] / 1e9
        row["i8_t2_weight_GBps"] = p2.nbytes() / t["tri_i8_t2"] / 1e9
        row["i8_t2_bw_frac"] = row["i8_t2_weight_GBps"] / bw
        row["i8_t16_weight_GBps"] = p16.nbytes() / t["tri_i8_t16"] / 1e9
        rows.append(row)
        print(
            f"  {n}x{k} batch {m}: fp32 {t['fp32'] * 1e3:.3f} ms, tritium int8/t2 "
            f"{t['tri_i8_t2'] * 1e3:.3f} ms ({row['tri_i8_t2_vs_fp32']:.1f}x)",
            file=sys.stderr,
        )
    return rows


def render(rows: list[dict], bw: float, info: dict, stat: str = "median") -> None:
    headers = [
        "N x K", "batch", "fp32 ms", "int8dyn ms", "compiled ms",
        "T i8/t2 ms", "vs fp32", "vs int8dyn", "T f32/t2 ms", "vs fp32",
        "T i8/t1.6 ms", "vs fp32", "vs int8dyn", "T f32/t1.6 ms", "vs fp32",
        "GMAC/s int8dyn", "GMAC/s i8/t2", "W GB/s (i8/t2)", "% bw",
    ]
    body = []
    for r in rows:
        body.append([
            f"{r['n']}x{r['k']}", str(r["batch"]),
            f"{r['fp32_ms']:.3f}", f"{r['int8dyn_ms']:.3f}",
            f"{r['compiled_ms']:.3f}" if "compiled_ms" in r else "-",
            f"{r['tri_i8_t2_ms']:.3f}", f"{r['tri_i8_t2_vs_fp32']:.1f}x", f"{r['tri_i8_t2_vs_int8dyn']:.2f}x",
            f"{r['tri_f32_t2_ms']:.3f}", f"{r['tri_f32_t2_vs_fp32']:.1f}x",
            f"{r['tri_i8_t16_ms']:.3f}", f"{r['tri_i8_t16_vs_fp32']:.1f}x",
            f"{r['tri_i8_t16_vs_int8dyn']:.2f}x",
            f"{r['tri_f32_t16_ms']:.3f}", f"{r['tri_f32_t16_vs_fp32']:.1f}x",
            f"{r['int8dyn_GMACs']:.0f}", f"{r['tri_i8_t2_GMACs']:.0f}",
            f"{r['i8_t2_weight_GBps']:.1f}", f"{100 * r['i8_t2_bw_frac']:.0f}%",
        ])
    title = (
        f"Ternary linear ({stat} of interleaved rounds), {info.get('isa')} kernels, "
        f"{info.get('threads')} threads; "
        f"memory bandwidth {bw:.1f} GB/s (copy, same run); machine load {info.get('loadavg_1min')} "
        f"on {os.cpu_count()} CPUs"
    )
    _timing.print_table(title, headers, body, width=250)
    print(
        "T i8 = tritium int8-activation path (per-token absmax int8, exact int32 GEMM) -- the "
        "headline; T f32 = fp32-activation path. Ratios > 1 mean tritium is faster."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small CI-sized run")
    ap.add_argument("--shapes", type=shapes, default=None, help="comma list of NxK (default 1024x1024,4096x4096,11008x4096)")
    ap.add_argument("--batches", type=positive_ints, default=None, help="comma list of batch sizes (default 1,8,64,256)")
    ap.add_argument("--threads", type=int, default=None, help="threads for torch and tritium")
    ap.add_argument("--isa", default=None, help="force a kernel ISA path (avx512, avx2, neon, scalar)")
    ap.add_argument("--rounds", type=positive_int, default=None, help="interleaved repetitions (median)")
    ap.add_argument("--min-time", type=float, default=0.02, help="seconds per timing sample")
    ap.add_argument(
        "--stat", choices=sorted(_timing.STATS), default="median",
        help="statistic over the rounds (min = best-of, for a machine shared with other jobs)",
    )
    ap.add_argument(
        "--settle", type=float, default=0.05,
        help="seconds of pause before each sample, so thread pools left spinning by the previous "
        "implementation have gone to sleep (0 = back to back)",
    )
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    if args.isa:
        os.environ["TRITIUM_CPU_ISA"] = args.isa
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["TRITIUM_NUM_THREADS"] = str(args.threads)
    if args.quick:
        shape_list = args.shapes or [(1024, 1024), (4096, 4096)]
        batch_list = args.batches or [1, 64]
        args.rounds = args.rounds or 5
        args.min_time = min(args.min_time, 0.01)
    else:
        shape_list = args.shapes or [(1024, 1024), (4096, 4096), (11008, 4096)]
        batch_list = args.batches or [1, 8, 64, 256]
        args.rounds = args.rounds or 9
    info = kernel_info()
    print(f"kernels: {json.dumps(info)}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    bw = memory_bandwidth(args.rounds)
    rows = []
    for n, k in shape_list:
        rows += bench_shape(n, k, batch_list, args, bw)
    info["loadavg_1min"] = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    render(rows, bw, info, args.stat)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"bandwidth_GBps": bw, "stat": args.stat, "kernel_info": info, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
