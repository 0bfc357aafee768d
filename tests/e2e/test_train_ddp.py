"""`torchrun --nproc-per-node 2 -m tritium train` on CPU (gloo): both ranks end with the same
weights and only rank 0 writes the run's files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_process_ddp_ranks_agree_and_only_rank0_writes(tmp_path: Path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) \
        or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    out, digests = tmp_path / "run", tmp_path / "digests"
    env = {**os.environ, "TRITIUM_TEST_DIGEST_DIR": str(digests), "NO_PROGRESS": "1",
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2",
                        "-m", "tritium", "train", str(ROOT / "examples" / "mlp.tri"),
                        "--epochs", "2", "--no-baseline", "--out", str(out), "--no-progress",
                        "--latency-runs", "5"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    # how far the ranks got (a rank aborted once, SIGABRT in torch's teardown, in CI's
    # load): the digests are written after training, the report by rank 0 after that
    assert r.returncode == 0, (
        f"exit {r.returncode}; digests: {sorted(p.name for p in digests.glob('*'))}\n"
        f"stdout (end):\n{r.stdout[-1500:]}\nstderr (start):\n{r.stderr[:2000]}\n"
        f"stderr (end):\n{r.stderr[-3000:]}")
    d0 = (digests / "rank0.txt").read_text()
    d1 = (digests / "rank1.txt").read_text()
    assert len(d0) == 64 and d0 == d1
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "train_state.safetensors",
                                               "model.py", "metrics.json", "curves.png",
                                               "weights.png"}
    assert {p.name for p in tmp_path.iterdir()} == {"run", "digests"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and len(m["history"]["ternary"]) == 2
    # every epoch line and the report come from rank 0 alone
    assert r.stdout.count("ternary epoch 1:") == 1
