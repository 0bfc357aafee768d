"""benchmarks/threads.py runs end to end at its CI size (idle neighbour only: the busy and
torch neighbours are separate processes whose timing on a CI machine says nothing) and prints
what the issue asks for: the thread counts, fp32's time, the ratios and the pool's counters,
including the stalls it forgave as lone hiccups. Timings are not asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_the_table_and_the_pool_counters(tmp_path):
    env = dict(os.environ, TRITIUM_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "threads.py"), "--quick",
                        "--neighbours", "idle", "--acts", "int8", "--batches", "1"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "== neighbour: idle" in out and "== neighbour: busy" not in out
    header = next(line for line in out.splitlines() if "shape batch" in line)
    assert header.split()[:4] == ["shape", "batch", "act", "1t"] and "vs fp32" in header
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+x\d+\s+1\s+int8\s", line)]
    assert rows, out
    ms = rows[0].split()[3:]
    assert all(float(v) > 0 for v in ms[:-2]), rows[0]
    assert re.search(r"pool: (\d+ parallel calls, \d+ stalls \(\d+ of them lone hiccups"
                     r"|no native kernels)", out), out
    assert re.search(r"worst \d+-thread / 1-thread time ratio: \d+\.\d\d", out), out
