"""Tritium's ternary kernels against llama.cpp's (ggml TQ2_0 and TQ1_0) on the same weights.

    .venv/bin/python benchmarks/peers.py                       # 4096x4096 and 1024x1024, batch 1
                                                               # and 64, 1 thread and all threads
    .venv/bin/python benchmarks/peers.py --shapes 4096x4096 --batches 1 --threads 1 --rounds 15
    .venv/bin/python benchmarks/peers.py --quick --json peers.json

The first run downloads the pinned llama-cpp-python source distribution from PyPI (it vendors
llama.cpp) and builds only its ggml libraries (CPU backend, ``-march=native`` -- under
``TRITIUM_CPU_MAX_ISA`` the capped CPU's ISA options --, Release) under
Tritium's cache root (``<cache>/peers/``); later runs reuse the build (``benchmarks/_ggml.py``).
It needs cmake and a C/C++ compiler; without them, or without the network for the first
download, it says so and exits with status 2.

For each shape N x K (a linear layer with N outputs and K inputs; K a multiple of 256), one
ternary weight matrix is made as BitNet does (latent Gaussian weights, a per-tensor absmean
scale ``s``, trits ``clip(round(W / s), -1, 1)``, weights ``trits * s`` in fp32). ggml quantizes
those fp32 weights to TQ2_0 (2.06 bits per weight) and TQ1_0 (1.69) with ``ggml_quantize_chunk``
and computes ``ggml_mul_mat`` in a graph (``ggml_graph_compute``, planned once per batch and
thread count; ggml quantizes the activations to q8_K). ggml is built with OpenMP, as llama.cpp
builds it by default; when torch is loaded first (as here) ggml's ``libgomp.so.1`` resolves to
torch's, so ggml, torch and Tritium's pool share one OpenMP runtime. Tritium runs the same trits
through the call a frozen layer makes (its ``LinearPlan``, the output buffer allocated once as
ggml's is): ``T i8/t2`` and ``T i8/t1.6`` (int8 activations per token, exact int32 products)
and ``T f32/t2`` (fp32 activations: Tritium's exact ternary product). Every implementation runs
once per round, in a fresh random order each round, with a short pause before each sample so
thread pools left spinning by the previous one are asleep; the figure is the median over the
rounds of the mean call time of a sample (``--min-time`` seconds of back-to-back calls).

Every output is checked, before and after the timing, against the exact product: fp64 of the
weights as the implementation stores them (ggml's dequantized TQ blocks with their fp16 scales;
Tritium's trits times its fp32 scale) times the fp32 activations. The relative error
(Frobenius) of each is reported. An output fails -- loudly, exit status 1 -- when its largest
element error exceeds three times the largest error that the implementation's own activation
quantization (q8_K blocks of 256 for ggml, int8 per token for Tritium, none for the fp32 path)
causes, simulated in numpy, plus 1e-4 of the output's RMS.

Ratios are llama.cpp's time over Tritium's: above 1 means Tritium is faster. ``best/TQ2_0``
takes Tritium's fastest path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

# numpy's BLAS computes the exact references between timings; OpenBLAS's worker threads then
# spin on the cores for a while, and a timed 2-thread call waits milliseconds for its late
# worker (ggml's and Tritium's alike: 1024x1024 at batch 64 on 2 threads ran no faster than
# on 1). The references run on one thread (before numpy loads OpenBLAS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import _args  # noqa: E402
import _timing  # noqa: E402
import numpy as np  # noqa: E402
from _args import positive_ints  # noqa: E402

QK_K = 256
IMPLS = ("TQ2_0", "TQ1_0", "T i8/t2", "T i8/t1.6", "T f32/t2")
# what each implementation does to the activations (the quantization its check simulates)
ACT_QUANT = {"TQ2_0": "q8_K", "TQ1_0": "q8_K", "T i8/t2": "int8", "T i8/t1.6": "int8",
             "T f32/t2": "none"}
ACT_LABEL = {"q8_K": "q8_K activations", "int8": "int8 activations per token",
             "none": "fp32 activations"}
TRITIUM = ("T i8/t2", "T i8/t1.6", "T f32/t2")


# ----------------------------------------------------------------------------- arguments

def shapes(text: str) -> list[tuple[int, int]]:
    """``4096x4096,1024x1024``: N x K pairs (:func:`_args.shapes`), K a multiple of 256 (the
    TQ and q8_K block)."""
    out = _args.shapes(text)
    for n, k in out:
        if k % QK_K:
            raise argparse.ArgumentTypeError(
                f"shape '{n}x{k}': K={k} must be a multiple of {QK_K} (ggml's TQ1_0/TQ2_0 block)")
    return out


def default_threads() -> list[int]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return sorted({1, cores or 1})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=shapes, default=None,
                   help="NxK weight shapes, K a multiple of 256 (default 4096x4096,1024x1024; "
                   "--quick 1024x1024)")
    p.add_argument("--batches", type=positive_ints, default=[1, 64],
                   help="batch sizes (tokens), default 1,64")
    p.add_argument("--threads", type=positive_ints, default=None,
                   help="thread counts, the same for every implementation (default: 1 and all "
                   "the cores this process may use)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds (median; default 9, --quick 3)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of back-to-back calls per sample (default 0.02, --quick 0.01)")
    p.add_argument("--settle", type=float, default=0.05,
                   help="seconds of pause before each sample (0 = back to back)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and activations")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache root for the ggml build (default: Tritium's, $TRITIUM_CACHE_DIR)")
    p.add_argument("--sdist", metavar="PATH",
                   help="a local llama_cpp_python sdist of the pinned version (skips the download)")
    p.add_argument("--rebuild", action="store_true", help="rebuild ggml even if cached")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1024x1024, 3 rounds, short samples (unless given)")
    args = p.parse_args(argv)
    if args.shapes is None:
        args.shapes = [(1024, 1024)] if args.quick else [(4096, 4096), (1024, 1024)]
    if args.rounds is None:
        args.rounds = 3 if args.quick else 9
    if args.min_time is None:
        args.min_time = 0.01 if args.quick else 0.02
    if args.rounds < 1 or args.min_time <= 0 or args.settle < 0:
        p.error("--rounds must be >= 1, --min-time > 0 and --settle >= 0")
    if args.threads is None:
        args.threads = default_threads()
    return args


# ----------------------------------------------------------------------------- weights

def ternary_weights(n: int, k: int, seed: int) -> tuple[np.ndarray, np.float32]:
    """BitNet b1.58 weights: trits of latent Gaussian weights under their absmean scale.
    Returns (trits as int8 [n, k], the per-tensor scale as float32)."""
    rng = np.random.default_rng([seed, n, k])
    latent = rng.standard_normal((n, k), dtype=np.float32) * np.float32(0.02)
    scale = np.float32(np.abs(latent).mean(dtype=np.float64))
    trits = np.clip(np.rint(latent / scale), -1, 1).astype(np.int8)
    return trits, scale


def activations(m: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, m, k, 1])
    return rng.standard_normal((m, k), dtype=np.float32)


# ----------------------------------------------------------------------------- checking

class OutputMismatch(AssertionError):
    """An implementation's output is wrong beyond its quantization error."""


def quantize_int8_per_token(x: np.ndarray) -> np.ndarray:
    """Tritium's activation quantization, dequantized: per token (row) absmax, 127 levels."""
    x = np.asarray(x, dtype=np.float32)
    s = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)
    s = np.where(s == 0, np.float32(1), s).astype(np.float32)
    q = np.clip(np.rint(x / s), -127, 127)
    return q.astype(np.float64) * s.astype(np.float64)


def quantize_q8_k(x: np.ndarray) -> np.ndarray:
    """ggml's q8_K (``quantize_row_q8_K_ref``), dequantized: blocks of 256 along the row, the
    scale ``1 / (-127 / v)`` with ``v`` the block's value of largest magnitude, codes
    ``min(127, rint(-127 / v * x))``; an all-zero block stays zero."""
    x = np.asarray(x, dtype=np.float32)
    m, k = x.shape
    if k % QK_K:
        raise ValueError(f"q8_K needs rows of a multiple of {QK_K} values, got {k}")
    b = x.reshape(m, k // QK_K, QK_K)
    idx = np.abs(b).argmax(axis=-1)[..., None]
    vmax = np.take_along_axis(b, idx, axis=-1)
    zero = vmax == 0
    iscale = (np.float32(-127) / np.where(zero, np.float32(1), vmax)).astype(np.float32)
    q = np.minimum(127, np.rint((iscale * b).astype(np.float32)))
    d = (np.float32(1) / iscale).astype(np.float32)
    out = np.where(zero, 0.0, q.astype(np.float64) * d.astype(np.float64))
    return out.reshape(m, k)


def simulate_activations(x: np.ndarray, act_quant: str) -> np.ndarray:
    if act_quant == "int8":
        return quantize_int8_per_token(x)
    if act_quant == "q8_K":
        return quantize_q8_k(x)
    if act_quant == "none":
        return np.asarray(x, dtype=np.float64)
    raise ValueError(f"unknown activation quantization {act_quant!r}")


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    """Frobenius relative error (absolute where the reference is all zeros)."""
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(y - ref))
    return num / den if den > 0 else num


SLACK = 3.0  # times the largest element error the simulated activation quantization causes
FLOOR = 1e-4  # of the output RMS: fp32 accumulation and scale rounding


def check_output(name: str, y: np.ndarray, exact: np.ndarray, simulated: np.ndarray,
                 slack: float = SLACK, floor: float = FLOOR) -> dict[str, float]:
    """Check an implementation's output ``y`` against the ``exact`` product of its stored
    weights and the fp32 activations. ``simulated`` is the product with the activations
    quantized as that implementation quantizes them. Raises :class:`OutputMismatch` when a
    value is not finite, the shape differs, or the largest element error exceeds ``slack``
    times the simulated quantization's largest error plus ``floor`` of the output RMS (one
    wrong row or element fails it, not only a wrong whole). Returns the figures."""
    y = np.asarray(y, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    simulated = np.asarray(simulated, dtype=np.float64)
    if y.shape != exact.shape:
        raise OutputMismatch(f"{name}: output shape {y.shape}, expected {exact.shape}")
    if not np.isfinite(y).all():
        bad = int((~np.isfinite(y)).sum())
        raise OutputMismatch(f"{name}: {bad} output values are not finite")
    rms = float(np.sqrt(np.mean(exact * exact))) if exact.size else 0.0
    qmax = float(np.abs(simulated - exact).max()) if exact.size else 0.0
    emax = float(np.abs(y - exact).max()) if exact.size else 0.0
    bound = slack * qmax + floor * rms
    figures = {"rel_err": rel_err(y, exact), "quant_rel_err": rel_err(simulated, exact),
               "max_err": emax, "bound": bound, "rms": rms}
    if emax > bound:
        i, j = np.unravel_index(int(np.abs(y - exact).argmax()), y.shape)
        raise OutputMismatch(
            f"{name}: WRONG OUTPUT: element [{i}, {j}] is {y[i, j]:.6g}, the exact product "
            f"{exact[i, j]:.6g} (error {emax:.3g} > bound {bound:.3g}: {slack}x the largest "
            f"error of its activation quantization, {qmax:.3g}, plus {floor:g} of the RMS "
            f"{rms:.3g}); relative error {figures['rel_err']:.3g}")
    return figures


def check_all(label: str, outs: dict[str, np.ndarray],
              refs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """:func:`check_output` of every implementation's output (``refs``: exact, simulated)."""
    return {name: check_output(f"{name} {label}", outs[name], *refs[name]) for name in outs}


# ----------------------------------------------------------------------------- ratios

def ratios(ms: dict[str, float]) -> dict[str, float]:
    """llama.cpp's time over Tritium's (> 1: Tritium faster)."""
    best = min(ms[t] for t in TRITIUM)
    return {"t2/TQ2_0": ms["TQ2_0"] / ms["T i8/t2"], "t1.6/TQ1_0": ms["TQ1_0"] / ms["T i8/t1.6"],
            "best/TQ2_0": ms["TQ2_0"] / best}


# ----------------------------------------------------------------------------- one shape

@dataclass
class Shape:
    n: int
    k: int
    ggml: dict[str, object] = field(default_factory=dict)  # TQ name -> GgmlMatmul
    weights64: dict[str, np.ndarray] = field(default_factory=dict)  # impl -> stored weights
    plans: dict[str, object] = field(default_factory=dict)
    nbytes: dict[str, int] = field(default_factory=dict)


def setup_shape(g, n: int, k: int, batches: list[int], seed: int) -> Shape:
    import _ggml
    import torch

    from tritium.runtime.kernels import linear_plan
    from tritium.runtime.packing import pack_ternary

    trits, scale = ternary_weights(n, k, seed)
    w32 = trits.astype(np.float32) * scale
    sh = Shape(n, k)
    for name, code in (("TQ2_0", _ggml.GGML_TYPE_TQ2_0), ("TQ1_0", _ggml.GGML_TYPE_TQ1_0)):
        mm = _ggml.GgmlMatmul(g, code, w32, batches)
        sh.ggml[name] = mm
        dq = mm.dequantized()
        if not np.array_equal(np.sign(dq).astype(np.int8), trits):
            raise OutputMismatch(f"{name}: ggml quantized the weights to other trits "
                                 f"({int((np.sign(dq) != trits).sum())} of {n * k} differ)")
        sh.weights64[name] = dq.astype(np.float64)
        sh.nbytes[name] = mm.weight_nbytes()
    t = torch.from_numpy(trits.astype(np.float32))
    scale_vec = torch.full((n,), float(scale), dtype=torch.float32)
    packed = {fmt: pack_ternary(t, fmt) for fmt in ("t2", "t1.6")}
    for name, fmt, aq in (("T i8/t2", "t2", "int8"), ("T i8/t1.6", "t1.6", "int8"),
                          ("T f32/t2", "t2", "none")):
        p = packed[fmt]
        plan = linear_plan(p.data, n, k, fmt, scale_vec, None, aq)
        if plan is None:
            raise RuntimeError("Tritium's native kernels gave no plan")
        sh.plans[name] = (plan, p, scale_vec)
        sh.nbytes[name] = p.nbytes()
    w_tri = trits.astype(np.float64) * np.float64(scale)
    for name in TRITIUM:
        sh.weights64[name] = w_tri
    return sh


def bench_batch(sh: Shape, m: int, threads: list[int], args) -> list[dict]:
    import torch

    x = activations(m, sh.k, args.seed)
    xt = torch.from_numpy(x)
    refs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sims: dict[str, np.ndarray] = {q: simulate_activations(x, q) for q in set(ACT_QUANT.values())}
    x64 = x.astype(np.float64)
    for name in IMPLS:
        w = sh.weights64[name]
        refs[name] = (x64 @ w.T, sims[ACT_QUANT[name]] @ w.T)
    outs: dict[str, np.ndarray] = {}
    for name, mm in sh.ggml.items():
        mm.set_input(m, x)
        outs[name] = mm.output(m)
    touts = {name: torch.empty((m, sh.n), dtype=torch.float32) for name in TRITIUM}
    for name in TRITIUM:
        outs[name] = touts[name].numpy()
    rows = []
    for nt in threads:
        torch.set_num_threads(nt)
        fns: dict[str, Callable[[], object]] = {
            name: mm.runner(m, nt) for name, mm in sh.ggml.items()}
        for name in TRITIUM:
            plan = sh.plans[name][0]
            fns[name] = (lambda plan=plan, out=touts[name]: plan(xt, None, None, out))
        label = f"{sh.n}x{sh.k} batch {m} {nt} threads"
        for name in IMPLS:  # fill every output with garbage, run once, check
            outs[name][...] = np.nan
            fns[name]()
        check_all(f"{label} (before timing)", outs, refs)
        with torch.no_grad():
            med = _timing.measure(fns, args.rounds, args.min_time, settle=args.settle,
                                  seed=args.seed)
        errors = check_all(f"{label} (after timing)", outs, refs)
        ms = {name: v * 1e3 for name, v in med.items()}
        row = {"n": sh.n, "k": sh.k, "batch": m, "threads": nt,
               "ms": ms, "ratios": ratios(ms),
               "errors": {name: errors[name] for name in IMPLS},
               "weight_bytes": dict(sh.nbytes)}
        rows.append(row)
        r = row["ratios"]
        print(f"  {sh.n}x{sh.k} batch {m} {nt}t: TQ2_0 {ms['TQ2_0']:.3f} ms, T i8/t2 "
              f"{ms['T i8/t2']:.3f} ms ({r['t2/TQ2_0']:.2f}x)", file=sys.stderr)
    return rows


# ----------------------------------------------------------------------------- output

def render(rows: list[dict], header: list[str]) -> str:
    heads = ["N x K", "batch", "thr", *(f"{n} ms" for n in IMPLS),
             "t2/TQ2_0", "t1.6/TQ1_0", "best/TQ2_0"]
    body = []
    for r in rows:
        body.append([f"{r['n']}x{r['k']}", str(r["batch"]), str(r["threads"]),
                     *(f"{r['ms'][n]:.3f}" for n in IMPLS),
                     *(f"{r['ratios'][key]:.2f}x" for key in ("t2/TQ2_0", "t1.6/TQ1_0",
                                                              "best/TQ2_0"))])
    lines = list(header)
    lines += _timing.text_table(heads, body)
    worst = {name: max(r["errors"][name]["rel_err"] for r in rows) for name in IMPLS} if rows else {}
    lines.append("relative error vs the exact fp64 product (largest over the rows): " + ", ".join(
        f"{n} {worst[n]:.2g} ({ACT_LABEL[ACT_QUANT[n]]})" for n in IMPLS))
    lines.append("ratios: llama.cpp's time over Tritium's (> 1: Tritium faster); best = "
                 "Tritium's fastest path. T i8 = int8 activations per token, exact int32 "
                 "products; T f32 = fp32 activations.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.pop("TRITIUM_NUM_THREADS", None) is not None:
        print("peers: ignoring $TRITIUM_NUM_THREADS; --threads sets every implementation's "
              "thread count", file=sys.stderr)
    import _ggml
    import torch

    from tritium.runtime import kernels

    if not kernels.native_available():
        print(f"peers: Tritium's native CPU kernels are unavailable "
              f"({kernels.kernel_info().get('error')}); nothing to compare", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(f"peers: {msg}", file=sys.stderr)

    try:
        from pathlib import Path

        cache = _ggml.peers_cache(args.cache_dir)
        libdir, key = _ggml.ensure_build(cache, Path(args.sdist) if args.sdist else None,
                                         rebuild=args.rebuild, log=log)
        g = _ggml.Ggml(libdir)
    except (_ggml.PeerUnavailable, OSError) as exc:
        print(f"peers: llama.cpp (ggml) is unavailable: {exc}", file=sys.stderr)
        return 2
    ggml_version = g.version()
    if not ggml_version.startswith(_ggml.GGML_VERSION):
        print(f"peers: the cached build reports ggml {ggml_version}, not the pinned "
              f"{_ggml.GGML_VERSION}; rerun with --rebuild", file=sys.stderr)
        return 2
    info = kernels.kernel_info()
    flags = _ggml.isa_flags(_ggml.cpu_flags())
    default_torch_threads = torch.get_num_threads()
    load = os.getloadavg()[0]
    rows: list[dict] = []
    try:
        for n, k in args.shapes:
            sh = setup_shape(g, n, k, args.batches, args.seed)
            for m in args.batches:
                rows += bench_batch(sh, m, args.threads, args)
            for mm in sh.ggml.values():
                mm.close()
    except OutputMismatch as exc:
        print(f"\npeers: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(default_torch_threads)
        g.close()
    tuned = kernels.tuned_configs_used()
    header = [
        f"CPU: {_ggml.cpu_model()} ({len(os.sched_getaffinity(0))} cores usable); "
        f"ISA flags: {' '.join(flags) or '-'}",
        f"llama.cpp: ggml {ggml_version} from llama-cpp-python "
        f"{_ggml.LLAMA_CPP_PYTHON_VERSION} (built here: {', '.join(g.features()) or 'no SIMD'}; "
        f"{key}); Tritium kernels: {info.get('isa')} ({info.get('pool')} pool), "
        + (f"tuned configs for {len(tuned)} shape(s)" if tuned else "default configs"),
        f"median of {args.rounds} interleaved rounds, ms per call; machine load "
        f"{load:.1f} -> {os.getloadavg()[0]:.1f}",
    ]
    print(render(rows, header))
    if args.json:
        doc = {"cpu": _ggml.cpu_model(), "isa_flags": flags,
               "ggml": {"version": ggml_version, "llama_cpp_python": _ggml.LLAMA_CPP_PYTHON_VERSION,
                        "features": g.features(), "build": key,
                        "build_info": _ggml.build_info(libdir)},
               "tritium": {"isa": info.get("isa"), "pool": info.get("pool"),
                           "tuned_configs_used": len(tuned)},
               "rounds": args.rounds, "min_time": args.min_time, "stat": "median",
               "rows": rows}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
