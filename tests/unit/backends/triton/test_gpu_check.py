"""benchmarks/gpu.py, the GPU check, in its no-GPU mode: every kernel check on tiny shapes
through Triton's interpreter, the frozen models' harness, no timings."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def _module():
    spec = importlib.util.spec_from_file_location("tritium_gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dry_run_checks_every_kernel_kind_and_skips_timing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                      os.environ.get("PYTHONPATH")]))
    env["TRITON_INTERPRET"] = "1"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--quick", "--out", str(out),
                           "--sections", "env,kernels,model,timing,tune"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads((out / "gpu.json").read_text())
    sec = data["sections"]
    assert data["mode"] == "interpret" and data["ok"] is True
    assert sec["env"]["status"] == "ok" and sec["env"]["triton"]
    kernels = sec["kernels"]
    assert kernels["status"] == "ok" and kernels["passed"] == kernels["cases"] >= 15
    names = " ".join(r["case"] for r in kernels["results"])
    for kind in ("linear_t2_q8", "linear_t16", "_rms_q8", "_rmsw_q8", "quantize_int8",
                 "zero rows, ties", "tri_conv2d_t2 int8", "tri_conv2d_t1.6 none", "[autotuned]",
                 "_relu", "_gelu", "_bias", "_res"):
        assert kind in names, kind
    assert sec["model"]["status"] == "ok"
    assert sec["timing"]["status"] == "skipped" and sec["tune"]["status"] == "skipped"
    md = (out / "gpu.md").read_text()
    assert "## Kernels against the PyTorch reference" in md and "no CUDA device" in md


@pytest.mark.usefixtures("interpreted")
def test_a_wrong_kernel_fails_the_check(monkeypatch):
    gpu = _module()
    from tritium.backends.triton import launch

    real = launch.triton_ternary_linear

    def off_by_a_bit(*args, **kwargs):
        y = real(*args, **kwargs)
        y.view(-1)[0] += 1e-3  # one output, slightly wrong
        return y

    monkeypatch.setattr(launch, "triton_ternary_linear", off_by_a_bit)
    args = gpu.parse_args(["--dry-run", "--quick"])
    res = gpu.section_kernels("interpret", args)
    failed = [r for r in res["results"] if r["status"] != "ok"]
    assert res["status"] == "failed"
    assert failed and all("linear" in r["case"] and "rms" not in r["case"] for r in failed)
    assert any("differ from the bit-exact int8 reference" in r["why"] for r in failed)


def test_verdicts_follow_the_issue_goals():
    gpu = _module()
    row = {"n": 4096, "k": 4096, "m": 1,
           "t2": {"us": 10.0, "vs_cublas": 4.5, "vs_gemlite": 0.9, "hbm_pct": 70.0}}
    big = {"n": 4096, "k": 4096, "m": 256, "t2": {"vs_cublas": 0.8}}
    v = gpu.verdicts([row, big], ["t2"])
    assert v["t2 at M=1 >= 4x bf16 cuBLAS"]["met"] is True
    assert v["t2 at M=1 >= 1.0x gemlite"] == {"met": False, "worst": "0.90 at 4096x4096 M=1"}
    assert v["t2 at M=1 >= 60% of HBM"]["met"] is True
    assert v["t2 at M>=256 >= 1.0x bf16 cuBLAS"]["met"] is False
    md = "\n".join(gpu.timing_markdown({"variants": ["t2"], "rows": [row, big], "verdicts": v}))
    assert "| 4096x4096 | 1 | 10.0 |" in md and "| t2 at M=1 >= 1.0x gemlite | False |" in md


def test_arguments():
    gpu = _module()
    a = gpu.parse_args(["--shapes", "2560x2560,28672x8192", "--batches", "1,2048",
                        "--sections", "env,timing", "--dry-run"])
    assert a.shapes == [(2560, 2560), (28672, 8192)] and a.batches == [1, 2048]
    assert a.sections == ["env", "timing"] and a.mode == "interpret"
    with pytest.raises(SystemExit):
        gpu.parse_args(["--sections", "env,bogus"])


@pytest.mark.usefixtures("interpreted")
def test_timing_harness_runs_on_cpu_tensors(tmp_path):
    """The timing loop (weights, copies, calls, rows, verdicts, tables) on tiny shapes under
    the interpreter, with a stand-in timer that runs every call once and checks each one."""
    import time

    import torch

    gpu = _module()
    seen = []

    def bench(calls, rep_ms):
        outs = [c() for c in calls]
        assert all(torch.is_tensor(y) and torch.isfinite(y).all() for y in outs)
        seen.append(len(calls))
        return 0.5 + 0.1 * len(seen), "stand-in"

    args = gpu.parse_args(["--dry-run", "--shapes", "40x300,8x130", "--batches", "1,3",
                           "--variants", "t2,t2_q8,t16"])
    report = gpu.Report(tmp_path, "interpret", time.monotonic())
    # L2 of 3 KB: the 40x300 t2 weight (40 rows x 96 bytes) needs 3 copies to exceed it 3x
    res = gpu.time_linears(args, report, "cpu", bench, 3 * 1024, None, "gemlite: not here")
    assert [(r["n"], r["k"], r["m"]) for r in res["rows"]] == [
        (40, 300, 1), (40, 300, 3), (8, 130, 1), (8, 130, 3)]
    first = res["rows"][0]
    assert first["cublas"]["us"] == pytest.approx(600.0) and "gemlite" not in first
    assert first["t2"]["gbps"] == pytest.approx(40 * 96 / 0.7 / 1e6)
    assert first["t2"]["vs_cublas"] == pytest.approx(0.6 / 0.7)
    # calls per timing: bf16 24000 bytes -> 1 copy; t2 3840 -> 3; t1.6 2560 -> 4
    assert seen[:4] == [1, 3, 3, 4]
    assert set(res["verdicts"]) and all(v["met"] is not None for k, v in res["verdicts"].items()
                                        if "gemlite" not in k and "M>=256" not in k)
    md = "\n".join(gpu.timing_markdown(res))
    assert "| 40x300 | 1 |" in md and "t2_q8 µs" in md
