"""The GPU check of the Triton backend: tests, every kernel against its reference, a frozen
model on CUDA against the CPU, and ternary linear timed against bf16 cuBLAS and gemlite.

    PYTHONPATH=src python3 benchmarks/gpu.py --out "$OUT"              # on a CUDA GPU
    PYTHONPATH=src python benchmarks/gpu.py --out /tmp/gpu-check         # no GPU: dry run
    TRITON_INTERPRET=1 PYTHONPATH=src python benchmarks/gpu.py --quick   # the same, smaller

Without a CUDA device (or with TRITON_INTERPRET=1, or --dry-run) the same code runs every
correctness check on tiny shapes through Triton's interpreter on CPU tensors and skips the
timings. docs/triton.md ("Running the GPU check") gives the command for the H200 machine.

Sections (``--sections``, in this order; default all but ``tune``):

* ``env``: device, driver, CUDA, torch, triton, numpy, gemlite versions.
* ``tests``: the GPU-marked tests (every file under tests/ that carries ``pytest.mark.gpu``,
  compiled kernels) and the interpreter-equivalence tests (TRITON_INTERPRET=1), each in a
  pytest process of its own; logs ``pytest-gpu.log`` and ``pytest-interp.log``.
* ``kernels``: each generated kernel against the PyTorch reference on odd shapes, with the
  output poisoned first: t2 and t1.6 linears with every activation, bias and residual, float
  and int8 activations (int8 bit-exact), RMSNorm + BitLinear (plain and weighted; one int8
  step per output, the tests' rule), the int8 quantizer (bit-exact, with zero rows and
  rounding ties), and the implicit-GEMM conv2d (strides, padding, dilation, groups).
  Forced tiles (16x32, and a 64x64 one with two packed blocks per K step and GROUP_M=4)
  plus one autotuned launch per format.
* ``model``: frozen examples (mlp, resnet18, the TinyBitNet of bitnet_block) on CUDA against
  the same frozen model on the CPU.
* ``timing``: ternary linear (t2 with fp32 and with int8 activations) at the LLM shapes
  N x K and batches M, against bf16 ``torch.matmul`` (cuBLAS) and gemlite's A16W2 ternary
  kernel (``A16W158_INT``) when gemlite imports. Each figure is the median of CUDA-graph
  replays (``triton.testing.do_bench_cudagraph``) after a warm-up call that autotunes, the
  weights rotating over enough copies to exceed the L2 cache several times; GB/s counts the
  weight bytes one call must read (packed t2: N*K/4; bf16: 2*N*K), against 4.8 TB/s.
* ``tune``: ``tritium tune --kernel triton.linear_t2`` on ``--tune-shapes`` (needs
  sqlalchemy), its archive exported to ``tuned.json``.

Writes ``gpu.json`` (everything) and ``gpu.md`` (the tables) to ``--out`` after every section,
so a run cut short leaves what it finished. Exit status: 0 when every check passed (timings
are reported, not judged by the exit status), 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HBM_GBPS = 4800.0  # H200 HBM3e, the vendor's datasheet
LLM_SHAPES = ((2560, 2560), (6912, 2560), (2560, 6912), (4096, 4096), (8192, 8192),
              (28672, 8192))
BATCHES = (1, 8, 64, 256, 2048)
SECTIONS = ("env", "tests", "kernels", "model", "timing", "tune")
DEFAULT_SECTIONS = ("env", "tests", "kernels", "model", "timing")
INTERP_TESTS = ("tests/unit/backends/triton/test_kernels_interp.py",
                "tests/unit/backends/triton/test_tile_params_interp.py",
                "tests/unit/backends/triton/test_compat.py",
                "tests/unit/backends/triton/test_dispatch.py")
RTOL, ATOL = 1e-5, 1e-4
# int8 results under these activations are compared bit for bit; gelu, silu, sigmoid and tanh
# round differently from torch's in the last bits (tritium.tune.triton_run.EXACT_ACTIVATIONS)
EXACT_ACTIVATIONS = ("none", "relu", "relu6")
SMALL = {"BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 2, "num_stages": 2}
VARIANTS = {"t2": ("t2", "none"), "t2_q8": ("t2", "int8"), "t16": ("t1.6", "none"),
            "t16_q8": ("t1.6", "int8")}


# ----------------------------------------------------------------------------- arguments

def _pairs(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        n, _, k = item.lower().partition("x")
        out.append((int(n), int(k)))
    return out


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu-check"),
                   help="results folder (default $OUT, else runs/gpu-check)")
    p.add_argument("--mode", choices=("auto", "cuda", "interpret"), default="auto",
                   help="cuda: compiled kernels on the GPU; interpret: Triton's interpreter on "
                        "CPU tensors, no timings; auto (default): cuda when torch sees a GPU "
                        "and TRITON_INTERPRET is not 1")
    p.add_argument("--dry-run", action="store_true", help="the same as --mode interpret")
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated, from {', '.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true",
                   help="fewer kernel cases, shapes and batches (the pytest dry run uses it)")
    p.add_argument("--shapes", type=_pairs, default=None, metavar="NxK,...",
                   help="timing shapes (default the LLM shapes)")
    p.add_argument("--batches", type=_ints, default=None, metavar="M,...",
                   help="timing batches (default 1,8,64,256,2048)")
    p.add_argument("--variants", default="t2,t2_q8",
                   help=f"Tritium kernels timed, from {', '.join(VARIANTS)}")
    p.add_argument("--rep-ms", type=float, default=20.0,
                   help="milliseconds of calls per CUDA graph replay (default 20)")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="seconds since the start after which timing and tuning stop, "
                        "recording what was skipped (default 480)")
    p.add_argument("--pytest-workers", type=int, default=None,
                   help="pytest-xdist workers for the interpreter tests (default: up to 8)")
    p.add_argument("--tune-shapes", default="1,4096,4096;64,4096,4096", metavar="M,N,K;...",
                   help="shapes for the tune section")
    p.add_argument("--tune-budget", type=int, default=12, help="trials per tuned shape")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {', '.join(bad)}; expected {', '.join(SECTIONS)}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(v not in VARIANTS for v in args.variants):
        p.error(f"--variants takes {', '.join(VARIANTS)}")
    if args.dry_run:
        args.mode = "interpret"
    return args


def decide_mode(requested: str) -> str:
    """cuda or interpret, decided before anything imports Triton (it builds its standard
    library for the interpreter or the compiler when first imported)."""
    if requested == "interpret" or os.environ.get("TRITON_INTERPRET") == "1":
        os.environ["TRITON_INTERPRET"] = "1"
        return "interpret"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise SystemExit("gpu.py: --mode cuda, but torch sees no CUDA device")
    os.environ["TRITON_INTERPRET"] = "1"
    return "interpret"


# ----------------------------------------------------------------------------- report

class Report:
    def __init__(self, out: Path, mode: str, started: float) -> None:
        self.out = out
        self.started = started
        self.data: dict[str, Any] = {"mode": mode, "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def section(self, name: str, value: dict[str, Any]) -> None:
        self.data["sections"][name] = value
        self.save()

    def ok(self) -> bool:
        return all(s.get("status") in ("ok", "skipped")
                   for s in self.data["sections"].values())

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        self.data["ok"] = self.ok()
        tmp = self.out / "gpu.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(tmp, self.out / "gpu.json")
        (self.out / "gpu.md").write_text(markdown(self.data))


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def markdown(data: dict[str, Any]) -> str:
    s = data["sections"]
    lines = ["# Tritium GPU check", "", f"mode: {data['mode']}; elapsed {data.get('elapsed_s')} s;"
             f" all checks passed: {data.get('ok')}", ""]
    env = s.get("env", {})
    if env:
        lines += ["| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in env.items() if k != "status"]
        lines.append("")
    tests = s.get("tests")
    if tests:
        lines += ["## Tests", "", "| run | status | passed | failed | skipped | errors | s |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in tests.get("runs", {}).items():
            lines.append(f"| {name} | {r['status']} | {r.get('passed', 0)} | {r.get('failed', 0)}"
                         f" | {r.get('skipped', 0)} | {r.get('errors', 0)} | {r.get('seconds')} |")
        lines.append("")
    kern = s.get("kernels")
    if kern:
        lines += ["## Kernels against the PyTorch reference", "",
                  f"{kern.get('passed', 0)} of {kern.get('cases', 0)} cases passed "
                  f"({kern.get('kernels', 0)} kernels).", ""]
        bad = [c for c in kern.get("results", []) if c["status"] != "ok"]
        if bad:
            lines += ["| case | status | why |", "|---|---|---|"]
            lines += [f"| {c['case']} | {c['status']} | {c.get('why', '')} |" for c in bad[:60]]
            lines.append("")
    model = s.get("model")
    if model:
        lines += ["## Frozen models, CUDA against CPU", "",
                  "| model | status | max abs diff | rel. error | top-1 agreement | note |",
                  "|---|---|---|---|---|---|"]
        for r in model.get("results", []):
            lines.append(f"| {r['model']} | {r['status']} | {_fmt(r.get('max_abs'), '.3g')} | "
                         f"{_fmt(r.get('rel_err'), '.3g')} | {_fmt(r.get('top1'), '.3f')} | "
                         f"{r.get('note', '')} |")
        lines.append("")
    timing = s.get("timing")
    if timing:
        lines += timing_markdown(timing)
    tune = s.get("tune")
    if tune:
        lines += ["## Tuning", ""]
        lines += (["```", str(tune["summary"]).strip(), "```"] if tune.get("summary")
                  else [tune.get("note", "")])
        lines.append("")
    for name, sec in s.items():
        if sec.get("status") == "error":
            lines += [f"## {name}: error", "", "```", sec.get("error", ""), "```", ""]
    return "\n".join(lines) + "\n"


def timing_markdown(timing: dict[str, Any]) -> list[str]:
    lines = ["## Ternary linear against bf16 cuBLAS and gemlite", ""]
    if timing.get("note"):
        lines += [timing["note"], ""]
    if timing.get("skipped"):
        lines += ["Not timed: " + "; ".join(timing["skipped"]), ""]
    if not timing.get("rows"):
        return lines
    variants = timing.get("variants", [])
    head = "| N x K | M |"
    rule = "|---|---|"
    for v in variants:
        head += f" {v} µs | {v} GB/s | {v} % HBM |"
        rule += "---|---|---|"
    head += " cuBLAS bf16 µs | gemlite µs |"
    rule += "---|---|"
    for v in variants:
        head += f" {v} vs cuBLAS | {v} vs gemlite |"
        rule += "---|---|"
    lines += [head, rule]
    for r in timing.get("rows", []):
        row = f"| {r['n']}x{r['k']} | {r['m']} |"
        for v in variants:
            t = r.get(v, {})
            row += (f" {_fmt(t.get('us'))} | {_fmt(t.get('gbps'), '.0f')} | "
                    f"{_fmt(t.get('hbm_pct'), '.0f')} |")
        row += f" {_fmt(r.get('cublas', {}).get('us'))} | {_fmt(r.get('gemlite', {}).get('us'))} |"
        for v in variants:
            t = r.get(v, {})
            row += f" {_fmt(t.get('vs_cublas'), '.2f')} | {_fmt(t.get('vs_gemlite'), '.2f')} |"
        lines.append(row)
    lines.append("")
    verdicts = timing.get("verdicts", {})
    if verdicts:
        lines += ["| goal | met | worst case |", "|---|---|---|"]
        lines += [f"| {k} | {v['met']} | {v['worst']} |" for k, v in verdicts.items()]
        lines.append("")
    return lines


# ----------------------------------------------------------------------------- env

def section_env(mode: str) -> dict[str, Any]:
    import numpy
    import torch
    import triton

    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "mode": mode, "python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "triton": triton.__version__,
        "numpy": numpy.__version__, "cpus": os.cpu_count(),
    }
    spec = importlib.util.find_spec("gemlite")
    env["gemlite"] = _dist_version("gemlite") if spec else None
    if mode == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(device=props.name, capability=f"sm_{props.major}{props.minor}",
                   sms=props.multi_processor_count,
                   memory_gib=round(props.total_memory / 2**30, 1),
                   l2_mib=round(getattr(props, "L2_cache_size", 0) / 2**20, 1))
        smi = shutil.which("nvidia-smi")
        if smi:
            q = subprocess.run([smi, "--query-gpu=driver_version,clocks.sm,clocks.mem",
                                "--format=csv,noheader"], capture_output=True, text=True,
                               timeout=60)
            env["driver / SM clock / memory clock"] = q.stdout.strip() or q.stderr.strip()
    from tritium.backends.triton import compat

    env["triton_exact_division"] = compat.exact_division()
    env["status"] = "ok"
    return env


def _dist_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# ----------------------------------------------------------------------------- tests

_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def _gpu_test_files() -> list[str]:
    files = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if "pytest.mark.gpu" in path.read_text(encoding="utf-8", errors="replace"):
            files.append(str(path.relative_to(ROOT)))
    return files


def _pytest(name: str, files: list[str], marker: str, interpret: bool, workers: int,
            out: Path, cache: Path, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                      os.environ.get("PYTHONPATH")]))
    env["TRITIUM_CACHE_DIR"] = str(cache / name)
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker,
           "-o", "addopts=-ra --strict-markers --import-mode=importlib"]
    if importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", str(workers)]
    t = time.monotonic()
    log = out / f"pytest-{name}.log"
    try:
        proc = subprocess.run([*cmd, *files], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)
        text, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (
            e.stdout or "")
        text, rc = text + f"\n(timed out after {timeout:.0f} s)\n", -1
    log.write_text(" ".join(cmd + files) + "\n\n" + text)
    summary = [line for line in text.splitlines() if _COUNTS.search(line)]
    counts: dict[str, int] = {}
    for n, what in _COUNTS.findall(summary[-1] if summary else ""):
        counts["errors" if what.startswith("error") else what] = int(n)
    status = "ok" if rc == 0 else ("ok" if rc == 5 else "failed")
    return {"status": status, "exit": rc, "files": files, "seconds": round(time.monotonic() - t, 1),
            "log": log.name, **counts}


def section_tests(mode: str, args: argparse.Namespace, out: Path, cache: Path) -> dict[str, Any]:
    cpus = os.cpu_count() or 2
    workers = args.pytest_workers or max(1, min(8, cpus // 2))
    runs = {
        "gpu": _pytest("gpu", _gpu_test_files(), "gpu", False, 1, out, cache, 300),
        "interp": _pytest("interp", list(INTERP_TESTS), "not gpu", True, workers, out, cache,
                          240),
    }
    if mode != "cuda":
        runs["gpu"]["note"] = "no CUDA device: the GPU tests skip"
    status = "ok" if all(r["status"] == "ok" for r in runs.values()) else "failed"
    return {"status": status, "runs": runs}


# ----------------------------------------------------------------------------- kernels

def linear_specs(quick: bool) -> list[Any]:
    """Every activation with float and int8 activations for both formats, bias and residual
    in all four combinations across them, and RMSNorm + BitLinear (plain and weighted)."""
    from tritium.backends.triton.specs import ACTIVATIONS, FORMATS, LinearSpec

    specs, i = [], 0
    for fmt in FORMATS:
        for quant in ("none", "int8"):
            for act in ACTIVATIONS:
                bias, res = (i % 4) in (1, 3), (i % 4) in (2, 3)
                specs.append(LinearSpec(fmt, act, quant, bias, res))
                i += 1
        for pre in ("rms", "rms_weight"):
            for quant in ("int8", "none"):
                specs.append(LinearSpec(fmt, "none", quant, pre == "rms", False, pre))
    if quick:  # each activation once, cycling format, quantization and the four flag pairs
        specs = [LinearSpec(FORMATS[i % 2], act, ("none", "int8")[(i // 2) % 2],
                            (i % 4) in (1, 3), (i % 4) in (2, 3))
                 for i, act in enumerate(ACTIVATIONS)]
        specs += [LinearSpec("t2", "none", "int8", True, False, "rms"),
                  LinearSpec("t1.6", "none", "int8", False, False, "rms_weight")]
    return specs


def _sync(mode: str) -> None:
    if mode == "cuda":
        import torch

        torch.cuda.synchronize()


def _check_linear(problem: Any, config: dict[str, int] | None, seed: int, mode: str
                  ) -> str | None:
    """Run ``problem`` (a TritonProblem) once into a poisoned buffer; None or why it fails."""
    import torch

    from tritium.backends.triton import launch
    from tritium.tune.triton_run import RMS_EPS

    inputs = problem.inputs(seed)
    expected = problem.reference(inputs)
    out = problem.output(inputs)
    if out.dtype == torch.uint8:
        out.fill_(0xAB)
    else:
        out.fill_(float("nan"))
    if problem.quant:
        launch.triton_quantize_int8(inputs["x"], config=config, out=problem._quant_views(out))
    else:
        spec, d = problem.spec, inputs["dev"]
        act = None if spec.activation == "none" else spec.activation
        if spec.prenorm != "none":
            launch.triton_rmsnorm_bitlinear(d["x"], inputs["w"], d["scale"], d["norm_weight"],
                                            RMS_EPS, d["bias"], act, spec.act_quant,
                                            d["residual"], config=config, out=out)
        else:
            launch.triton_ternary_linear(d["x"], inputs["w"], d["scale"], d["bias"], act,
                                         spec.act_quant, d["residual"], config=config, out=out)
    _sync(mode)
    return problem.check(out, expected)


def _check_quant_edges(mode: str) -> str | None:
    """Zero rows, rounding ties and extreme magnitudes: q and s bit for bit."""
    import torch

    from tritium.backends.triton import launch
    from tritium.runtime import kernels

    k = 300
    rows = [torch.zeros(k), torch.full((k,), 1e-30), torch.full((k,), -3e30)]
    tie = torch.zeros(k)
    tie[0] = 127.0
    tie[1:9] = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -125.5])
    rows.append(tie)
    g = torch.Generator().manual_seed(7)
    rows.append(torch.randn(k, generator=g) * 1e-3)
    x = torch.stack(rows)
    q_ref, s_ref = kernels.quantize_activations_int8(x)
    dev = "cuda" if mode == "cuda" else "cpu"
    q, s = launch.triton_quantize_int8(x.to(dev))
    _sync(mode)
    bad_q = int((q.cpu() != q_ref).sum())
    bad_s = int((s.cpu().reshape(-1).view(torch.int32) != s_ref.reshape(-1).view(torch.int32))
                .sum())
    if bad_q or bad_s:
        return f"{bad_q} int8 values and {bad_s} scales differ from the runtime's quantizer"
    return None


def _conv_cases(mode: str, quick: bool) -> list[tuple]:
    if mode == "cuda":
        geos = [(2, 8, 9, 9, 16, 3, 1, 1, 1, 1), (1, 6, 11, 10, 12, 3, 2, 1, 2, 2),
                (2, 16, 8, 8, 24, 1, 2, 0, 1, 1)]
    else:
        geos = [(1, 3, 5, 5, 4, 3, 1, 1, 1, 1), (1, 4, 6, 6, 4, 1, 2, 0, 1, 2)]
    epilogues = [("relu", True, False), ("none", False, True), ("silu", True, True)]
    cases, i = [], 0
    for fmt in ("t2", "t1.6"):
        for quant in ("none", "int8"):
            for geo in (geos[:1] if quick else geos):
                cases.append((fmt, quant, geo, *epilogues[i % len(epilogues)]))
                i += 1
    return cases


def _check_conv(case: tuple, config: dict[str, int] | None, mode: str) -> str | None:
    import torch
    import torch.nn.functional as F

    from tritium.backends.triton import launch
    from tritium.runtime import kernels
    from tritium.runtime.packing import PackedTernary, pack_ternary

    fmt, quant, (b, c, h, w, o, kk, st, pd, dl, g), act, has_bias, has_res = case
    gen = torch.Generator().manual_seed(b * 1000 + c * 100 + o + kk)
    wt = torch.randint(-1, 2, (o, c // g, kk, kk), generator=gen).float()
    x = torch.randn(b, c, h, w, generator=gen)
    scale = torch.rand(o, generator=gen) + 0.5
    bias = torch.randn(o, generator=gen) if has_bias else None
    ho = (h + 2 * pd - dl * (kk - 1) - 1) // st + 1
    wo = (w + 2 * pd - dl * (kk - 1) - 1) // st + 1
    res = torch.randn(b, o, ho, wo, generator=gen) if has_res else None
    packed = pack_ternary(wt.reshape(o, -1), fmt)
    a = None if act == "none" else act
    dev = "cuda" if mode == "cuda" else "cpu"
    pk = PackedTernary(packed.format, packed.data.to(dev), packed.shape)

    def on(t):
        return None if t is None else t.to(dev)

    y = launch.triton_ternary_conv2d(on(x), pk, tuple(wt.shape), on(scale), on(bias), st, pd, dl,
                                     g, a, quant, on(res), config=config)
    _sync(mode)
    y = y.cpu()
    if quant == "int8":  # the CPU kernels define the int8 conv (a token per receptive field)
        ref = kernels.ternary_conv2d(x, packed, tuple(wt.shape), scale, bias, st, pd, dl, g, a,
                                     "int8", res)
        if act in EXACT_ACTIVATIONS:
            bad = int((y != ref).sum())
            return None if bad == 0 else (f"{bad} of {y.numel()} outputs differ from the "
                                          "bit-exact CPU int8 conv")
        close = torch.isclose(y, ref, rtol=RTOL, atol=ATOL)
        return None if bool(close.all()) else (
            f"{int((~close).sum())} of {y.numel()} outputs outside rtol {RTOL}, atol {ATOL} of "
            "the CPU int8 conv")
    ref = F.conv2d(x.double(), wt.double(), None, st, pd, dl, g) * scale.double().view(1, -1, 1, 1)
    if bias is not None:
        ref = ref + bias.double().view(1, -1, 1, 1)
    if res is not None:
        ref = ref + res.double()
    ref = kernels._apply_activation(ref.float(), a)
    close = torch.isclose(y, ref, rtol=RTOL, atol=ATOL)
    if bool(close.all()):
        return None
    return (f"{int((~close).sum())} of {y.numel()} outputs outside rtol {RTOL}, atol {ATOL} "
            f"(max abs diff {float((y - ref).abs().max()):.3g})")


def section_kernels(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from tritium.backends.triton.specs import BLOCK_TRITS, Conv2dSpec
    from tritium.tune.triton_run import TritonProblem

    dev = "cuda" if mode == "cuda" else "interpret"
    # every kernel at the main shape; the decode path (M=1: plain and relu linears, int8
    # RMSNorm + BitLinear) also at a one-row shape (each shape class is another compile)
    main, row = ((33, 257, 1000), (1, 130, 517)) if mode == "cuda" else ((3, 33, 130), (1, 5, 7))
    shapes = [row, main]
    results: list[dict[str, Any]] = []

    def record(case: str, fn) -> None:
        t = time.monotonic()
        try:
            why = fn()
            status = "ok" if why is None else "failed"
        except Exception as e:  # noqa: BLE001 - every failure is a result
            why, status = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}", "error"
        results.append({"case": case, "status": status, "why": why,
                        "seconds": round(time.monotonic() - t, 2)})
        if status != "ok":
            print(f"  FAIL {case}: {why}", flush=True)

    specs = linear_specs(args.quick)
    for i, spec in enumerate(specs):
        name = "triton." + spec.name.removeprefix("tri_")
        configs = [SMALL]
        if spec.prenorm == "none" and spec.activation == "none" and not spec.has_bias:
            configs.append({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 2 * BLOCK_TRITS[spec.format],
                            "GROUP_M": 4, "num_warps": 4, "num_stages": 3})
        decode = spec.activation in ("none", "relu") and (spec.prenorm == "none"
                                                          or spec.act_quant == "int8")
        for shape in ([row, main] if decode and not args.quick else [main]):
            for config in configs:
                problem = TritonProblem(name, shape, device=dev)
                tag = "x".join(map(str, shape))
                cfg = ",".join(f"{k}={v}" for k, v in config.items())
                record(f"{name} {tag} [{cfg}]",
                       lambda p=problem, c=config, s=11 + i: _check_linear(p, c, s, mode))
    for fmt in ("t2", "t16"):  # the runtime's default path: @triton.autotune picks the tile
        problem = TritonProblem(f"triton.linear_{fmt}_q8", shapes[-1], device=dev)
        record(f"triton.linear_{fmt}_q8 {'x'.join(map(str, shapes[-1]))} [autotuned]",
               lambda p=problem: _check_linear(p, None, 5, mode))
    for shape in (shapes if not args.quick else [main]):
        problem = TritonProblem("triton.quantize_int8", (shape[0], 1, shape[2]), device=dev)
        record(f"triton.quantize_int8 {shape[0]}x{shape[2]} [autotuned]",
               lambda p=problem: _check_linear(p, None, 3, mode))
        record(f"triton.quantize_int8 {shape[0]}x{shape[2]} [BLOCK_M=4,BLOCK_K=64]",
               lambda p=problem: _check_linear(p, {"BLOCK_M": 4, "BLOCK_K": 64, "num_warps": 2},
                                               4, mode))
    record("triton.quantize_int8 zero rows, ties, extremes", lambda: _check_quant_edges(mode))
    for j, case in enumerate(_conv_cases(mode, args.quick)):
        fmt, quant, geo, act, bias, res = case
        label = (f"tri_conv2d_{fmt} {quant} {'x'.join(map(str, geo[:4]))}->{geo[4]} k{geo[5]} "
                 f"s{geo[6]} p{geo[7]} d{geo[8]} g{geo[9]} {act} bias={bias} res={res}")
        config = None if j == 0 else SMALL
        record(label + (" [autotuned]" if config is None else " [16x32]"),
               lambda c=case, cf=config: _check_conv(c, cf, mode))
    passed = sum(r["status"] == "ok" for r in results)
    return {"status": "ok" if passed == len(results) else "failed", "cases": len(results),
            "passed": passed, "kernels": len(specs) + 1 + len({
                Conv2dSpec(c[0], c[3], c[1], c[4], c[5]).name
                for c in _conv_cases(mode, args.quick)}),
            "shapes": shapes, "results": results}


# ----------------------------------------------------------------------------- model

def section_model(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import tritium
    from tritium import runtime as trt

    cases = [("mlp", lambda g: torch.randn(5, 64, generator=g), 1e-4),
             ("resnet18", lambda g: torch.randn(2, 3, 32, 32, generator=g), 1e-3),
             ("bitnet_block", lambda g: torch.randint(0, 256, (2, 7), generator=g), 1e-2)]
    if args.quick:
        cases = cases[:1]
    results = []
    for name, make, tol in cases:
        t = time.monotonic()
        row: dict[str, Any] = {"model": name, "tolerance": tol}
        try:
            def frozen(name=name):
                torch.manual_seed(0)
                m = tritium.load(ROOT / "examples" / f"{name}.tri").eval()
                return trt.freeze_model(m)

            model, twin = frozen(), frozen()  # the same weights: same seed, same freeze
            for (ka, a), (kb, b) in zip(model.state_dict().items(), twin.state_dict().items()):
                if ka != kb or not torch.equal(a, b):
                    raise RuntimeError(f"two frozen builds differ at {ka}")
            x = make(torch.Generator().manual_seed(1))
            with torch.no_grad():
                y_cpu = model(x).float()
            if mode == "cuda":
                twin = twin.to("cuda")
                with torch.no_grad():
                    y_dev = twin(x.to("cuda")).float().cpu()
            else:
                with torch.no_grad():
                    y_dev = twin(x).float()
                row["note"] = "no CUDA device: two frozen CPU builds (harness only)"
            diff = (y_dev - y_cpu).abs()
            row["max_abs"] = float(diff.max())
            row["rel_err"] = float(torch.linalg.vector_norm(y_dev - y_cpu)
                                   / torch.linalg.vector_norm(y_cpu).clamp_min(1e-30))
            row["top1"] = float((y_dev.argmax(-1) == y_cpu.argmax(-1)).float().mean())
            finite = bool(torch.isfinite(y_dev).all())
            row["status"] = "ok" if finite and row["rel_err"] <= tol else "failed"
        except Exception as e:  # noqa: BLE001 - recorded as the model's result
            row["status"] = "error"
            row["note"] = f"{type(e).__name__}: {e}"
        row["seconds"] = round(time.monotonic() - t, 1)
        results.append(row)
    status = "ok" if all(r["status"] == "ok" for r in results) else "failed"
    return {"status": status, "results": results}


# ----------------------------------------------------------------------------- timing

def _bench_ms(calls: list, rep_ms: float) -> tuple[float, str]:
    """Median milliseconds per call: CUDA-graph replays of calls rotating over ``calls``
    (each a different weight copy); plain ``do_bench`` (L2 flushed per call) if the calls
    cannot be captured."""
    import torch
    import triton.testing

    for c in calls:  # warm-up outside any capture: autotuning, compiles, allocator
        c()
    torch.cuda.synchronize()
    state = {"i": 0}

    def step():
        calls[state["i"] % len(calls)]()
        state["i"] += 1

    try:
        ms = triton.testing.do_bench_cudagraph(step, rep=rep_ms, return_mode="median")
        return float(ms), "cuda-graph"
    except Exception:  # noqa: BLE001 - not capturable: time launches, L2 flushed each call
        torch.cuda.synchronize()
        ms = triton.testing.do_bench(step, warmup=25, rep=max(100.0, rep_ms * 5),
                                     return_mode="median")
        return float(ms), "do_bench"


def _copies(nbytes: int, l2_bytes: int) -> int:
    return max(1, min(64, math.ceil(3 * l2_bytes / max(nbytes, 1))))


def _gemlite(trits_bf16) -> Any:
    import torch
    from gemlite.helper import A16W158_INT

    return A16W158_INT(device="cuda:0", dtype=torch.bfloat16).from_weights(
        weight=trits_bf16, weight_scale=torch.tensor(1.0), bias=None)


def _load_gemlite(device_name: str) -> tuple[Any, str]:
    try:
        import gemlite
    except Exception as e:  # noqa: BLE001 - the column is skipped with the reason
        return None, f"gemlite not importable ({type(e).__name__}: {e}); its column is empty"
    note = f"gemlite {getattr(gemlite, '__version__', '?')}"
    name = device_name.lower()
    cfg_dir = Path(gemlite.__file__).parent / "configs"
    if "h200" in name and (cfg_dir / "h100.json").is_file():
        # gemlite ships autotuned configs per GPU; the H200 is an H100 with faster memory
        gemlite.load_config(str(cfg_dir / "h100.json"))
        note += " with its H100 configs (no H200 file ships)"
    return gemlite, note


def section_timing(mode: str, args: argparse.Namespace, report: Report) -> dict[str, Any]:
    if mode != "cuda":
        return {"status": "skipped", "note": "no CUDA device: nothing timed"}
    import torch

    props = torch.cuda.get_device_properties(0)
    l2 = int(getattr(props, "L2_cache_size", 0) or 60 * 2**20)
    gemlite, gnote = _load_gemlite(props.name)
    return time_linears(args, report, "cuda", _bench_ms, l2, gemlite, gnote)


def time_linears(args: argparse.Namespace, report: Report, dev: str, bench, l2: int,
                 gemlite: Any, gnote: str) -> dict[str, Any]:
    """The timing table on ``dev`` with ``bench(calls, rep_ms) -> (ms, method)`` (the tests
    drive it on CPU tensors under the interpreter with a stand-in timer)."""
    import torch

    from tritium.backends.triton import launch
    from tritium.backends.triton.specs import LinearSpec
    from tritium.runtime.packing import pack_ternary

    shapes = args.shapes or (list(LLM_SHAPES[:2]) if args.quick else list(LLM_SHAPES))
    batches = args.batches or ([1, 256] if args.quick else list(BATCHES))
    out: dict[str, Any] = {"status": "ok", "variants": args.variants, "rows": [],
                           "note": (f"median of CUDA-graph replays after a warm-up (autotuning) "
                                    f"call; weights rotate over copies totalling >= 3x the "
                                    f"{l2 / 2**20:.0f} MiB L2; GB/s = weight bytes per call "
                                    f"(packed t2 N*K/4, bf16 2*N*K) / time; % HBM of "
                                    f"{HBM_GBPS / 1000} TB/s. Tritium takes fp32 activations, "
                                    f"cuBLAS and gemlite bf16. {gnote}."),
                           "skipped": []}
    for n, k in shapes:
        if report.elapsed() > args.budget_s:
            out["skipped"].append(f"{n}x{k}: over the {args.budget_s:.0f} s budget")
            continue
        gen = torch.Generator(device=dev).manual_seed(n + k)
        trits = torch.randint(-1, 2, (n, k), device=dev, dtype=torch.int8, generator=gen)
        packed = pack_ternary(trits, "t2")
        w_t2 = type(packed)(packed.format, packed.data.to(dev), packed.shape)
        t2_bytes = w_t2.data.numel()
        w16 = trits.to(torch.bfloat16)
        copies_t2 = _copies(t2_bytes, l2)
        copies_16 = _copies(w16.numel() * 2, l2)
        ws_t2 = [w_t2] + [type(w_t2)(w_t2.format, w_t2.data.clone(), w_t2.shape)
                          for _ in range(copies_t2 - 1)]
        ws_t16 = None
        if any(VARIANTS[v][0] == "t1.6" for v in args.variants):
            p16 = pack_ternary(trits, "t1.6")
            w = type(p16)(p16.format, p16.data.to(dev), p16.shape)
            ws_t16 = [w] + [type(w)(w.format, w.data.clone(), w.shape)
                            for _ in range(_copies(w.data.numel(), l2) - 1)]
        ws_16 = [w16] + [w16.clone() for _ in range(copies_16 - 1)]
        gl = []
        if gemlite is not None:
            try:
                gl = [_gemlite(w16) for _ in range(copies_t2)]
            except Exception as e:  # noqa: BLE001 - recorded, the column stays empty
                out["note"] += f" gemlite failed to pack {n}x{k}: {type(e).__name__}: {e}."
                gl = []
        scale = torch.ones(1, device=dev)
        for m in batches:
            if report.elapsed() > args.budget_s:
                out["skipped"].append(f"{n}x{k} M={m}: over the {args.budget_s:.0f} s budget")
                continue
            row: dict[str, Any] = {"n": n, "k": k, "m": m}
            x32 = torch.randn(m, k, device=dev)
            x16 = x32.to(torch.bfloat16)
            try:
                ms, how = bench([lambda w=w, x=x16: torch.matmul(x, w.t()) for w in ws_16],
                                    args.rep_ms)
                row["cublas"] = {"us": ms * 1e3, "method": how,
                                 "gbps": 2 * n * k / ms / 1e6}
            except Exception as e:  # noqa: BLE001
                row["cublas"] = {"error": f"{type(e).__name__}: {e}"}
            if gl:
                try:
                    ms, how = bench([lambda g=g, x=x16: g(x) for g in gl], args.rep_ms)
                    row["gemlite"] = {"us": ms * 1e3, "method": how,
                                      "gbps": t2_bytes / ms / 1e6}
                except Exception as e:  # noqa: BLE001
                    row["gemlite"] = {"error": f"{type(e).__name__}: {e}"}
            for v in args.variants:
                fmt, quant = VARIANTS[v]
                ws = ws_t2 if fmt == "t2" else ws_t16
                try:
                    ms, how = bench(
                        [lambda w=w, q=quant, x=x32, sc=scale: launch.triton_ternary_linear(
                            x, w, sc, None, None, q) for w in ws], args.rep_ms)
                    nbytes = ws[0].data.numel()
                    best = launch.kernel_for(LinearSpec(fmt, "none", quant)).best_config
                    t = {"us": ms * 1e3, "method": how, "gbps": nbytes / ms / 1e6,
                         "config": str(best)}
                    t["hbm_pct"] = 100 * t["gbps"] / HBM_GBPS
                    if "us" in row.get("cublas", {}):
                        t["vs_cublas"] = row["cublas"]["us"] / t["us"]
                    if "us" in row.get("gemlite", {}):
                        t["vs_gemlite"] = row["gemlite"]["us"] / t["us"]
                    row[v] = t
                except Exception as e:  # noqa: BLE001
                    row[v] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            out["rows"].append(row)
            print(f"  {n}x{k} M={m}: " + ", ".join(
                f"{name} {row[name]['us']:.1f} us" for name in ["cublas", "gemlite",
                                                                *args.variants]
                if "us" in row.get(name, {})), flush=True)
            report.section("timing", out)
        del ws_t2, ws_16, gl, ws_t16
        if dev == "cuda":
            torch.cuda.empty_cache()
    out["verdicts"] = verdicts(out["rows"], args.variants)
    return out


def verdicts(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """The issue's goals, checked on the first (headline) variant."""
    if not variants:
        return {}
    v = variants[0]
    goals = {
        f"{v} at M=1 >= 4x bf16 cuBLAS": ([r for r in rows if r["m"] == 1], "vs_cublas", 4.0),
        f"{v} at M=1 >= 1.0x gemlite": ([r for r in rows if r["m"] == 1], "vs_gemlite", 1.0),
        f"{v} at M=1 >= 60% of HBM": ([r for r in rows if r["m"] == 1], "hbm_pct", 60.0),
        f"{v} at M>=256 >= 1.0x bf16 cuBLAS": ([r for r in rows if r["m"] >= 256], "vs_cublas",
                                              1.0),
    }
    out = {}
    for goal, (sel, key, need) in goals.items():
        vals = [(r[v][key], f"{r['n']}x{r['k']} M={r['m']}") for r in sel
                if key in r.get(v, {})]
        if not vals:
            out[goal] = {"met": None, "worst": "not measured"}
            continue
        worst = min(vals)
        out[goal] = {"met": worst[0] >= need, "worst": f"{worst[0]:.2f} at {worst[1]}"}
    return out


# ----------------------------------------------------------------------------- tune

def section_tune(mode: str, args: argparse.Namespace, out: Path, cache: Path,
                 report: Report) -> dict[str, Any]:
    if mode != "cuda":
        return {"status": "skipped", "note": "no CUDA device: nothing tuned"}
    if importlib.util.find_spec("sqlalchemy") is None:
        return {"status": "skipped", "note": "sqlalchemy is not installed (the tuner's archive)"}
    db = cache / "tune.db"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                      os.environ.get("PYTHONPATH")]))
    env["TRITIUM_CACHE_DIR"] = str(cache / "tune-cache")
    texts, runs = [], []
    for shape in [s.strip() for s in args.tune_shapes.split(";") if s.strip()]:
        if report.elapsed() > args.budget_s:
            runs.append({"shape": shape, "status": "skipped", "note": "over the budget"})
            continue
        cmd = [sys.executable, "-m", "tritium", "tune", "--kernel", "triton.linear_t2",
               "--shape", shape, "--budget", str(args.tune_budget), "--strategy", "heuristic",
               "--storage", f"sqlite:///{db}", "-q"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        texts.append(f"$ {' '.join(cmd[2:])}\n{proc.stdout}{proc.stderr}")
        runs.append({"shape": shape, "exit": proc.returncode,
                     "status": "ok" if proc.returncode == 0 else "failed"})
    subprocess.run([sys.executable, "-m", "tritium", "tune", "--export",
                    str(out / "tuned.json"), "--storage", f"sqlite:///{db}"], cwd=ROOT, env=env,
                   capture_output=True, text=True, timeout=300)
    (out / "tune.log").write_text("\n".join(texts))
    status = "ok" if all(r["status"] in ("ok", "skipped") for r in runs) else "failed"
    return {"status": status, "runs": runs, "summary": "\n".join(texts)[-3000:]}


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    mode = decide_mode(args.mode)
    if importlib.util.find_spec("tritium") is None:
        sys.path.insert(0, str(ROOT / "src"))
    if mode == "interpret":
        from tritium.tune import triton_run

        triton_run.use_interpreter()
    out = Path(args.out)
    report = Report(out, mode, started)
    cache = Path(tempfile.mkdtemp(prefix="tritium-gpu-check-"))
    os.environ["TRITIUM_CACHE_DIR"] = str(cache / "cache")
    print(f"gpu.py: mode {mode}, sections {', '.join(args.sections)}, results in {out}",
          flush=True)
    runners = {
        "env": lambda: section_env(mode),
        "tests": lambda: section_tests(mode, args, out, cache),
        "kernels": lambda: section_kernels(mode, args),
        "model": lambda: section_model(mode, args),
        "timing": lambda: section_timing(mode, args, report),
        "tune": lambda: section_tune(mode, args, out, cache, report),
    }
    for name in SECTIONS:
        if name not in args.sections:
            continue
        t = time.monotonic()
        print(f"[{report.elapsed():6.1f} s] {name} ...", flush=True)
        try:
            result = runners[name]()
        except Exception:  # noqa: BLE001 - a broken section is reported, the rest still run
            result = {"status": "error", "error": traceback.format_exc()[-4000:]}
        result["seconds"] = round(time.monotonic() - t, 1)
        report.section(name, result)
        print(f"[{report.elapsed():6.1f} s] {name}: {result['status']}", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    print(markdown(report.data))
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
