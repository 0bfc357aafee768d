"""A language model end to end through the CLI: train a tiny BitNet on a tiny text
directory for a few steps, then generate from its checkpoint (greedy, KV cache and full
recomputation agree; the tokens/s line is printed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bitnet_b158.tri"
TINY = ["--set", "dim=32", "--set", "layers=1", "--set", "heads=2", "--set", "ffn=48"]


def _tritium(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "NO_PROGRESS": "1",
           "HOME": str(Path.home())}
    import os
    for key in ("TRITIUM_CACHE_DIR", "XDG_CACHE_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    return subprocess.run([sys.executable, "-m", "tritium", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_train_then_generate(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "pkg").mkdir(parents=True)
    for i in range(5):
        (corpus / "pkg" / f"mod{i}.py").write_text(
            "".join(f"def handler_{i}_{j}(request):\n    return request.value + {j}\n\n"
                    for j in range(30)))
    out = tmp_path / "run"
    r = _tritium("train", str(EXAMPLE), *TINY, "--data", f"text:{corpus}", "--seq-len", "32",
                 "--epochs", "2", "--steps-per-epoch", "8", "--batch-size", "8",
                 "--latency-runs", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "bits per byte" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "lm" and m["seq_len_from"] == "--seq-len"
    assert m["ternary"]["test_bpb"] < 8 and m["fp32"]["test_bpb"] < 8
    assert "val_bpb" in m["history"]["ternary"][0]

    ckpt = str(out / "model.safetensors")
    greedy = [_tritium("generate", ckpt, "--prompt", "def handler_", "--max-new-tokens", "24",
                       "--greedy", *extra) for extra in ((), ("--no-cache",))]
    for g in greedy:
        assert g.returncode == 0, g.stderr
        assert "prefill:" in g.stderr and "tokens/s" in g.stderr
    assert greedy[0].stdout == greedy[1].stdout and len(greedy[0].stdout) > 1
    sampled = [_tritium("generate", ckpt, "--prompt", "def", "--max-new-tokens", "16",
                        "--temperature", "0.9", "--top-k", "20", "--top-p", "0.9", "--seed",
                        "5") for _ in range(2)]
    assert sampled[0].returncode == 0 and sampled[0].stdout == sampled[1].stdout

    # the Python API: the same text, streamed in pieces
    import tritium
    pieces: list[str] = []
    r = tritium.generate(ckpt, "def handler_", 24, greedy=True, on_text=pieces.append)
    assert "".join(pieces) == r.text and r.text + "\n" == greedy[0].stdout
    assert len(r.tokens) == 24 and r.decode_tokens_per_s > 0 and r.prefill_tokens_per_s > 0


def test_generate_refuses_a_classifier_checkpoint_and_bad_options(tmp_path):
    r = _tritium("generate", str(ROOT / "tests" / "unit" / "driver" / "data" /
                                 "mlp_v2.safetensors"), "--prompt", "x")
    assert r.returncode == 1 and "not a language model" in r.stderr
    assert "Traceback" not in r.stderr
    r = _tritium("generate", "nope.safetensors", "--prompt", "x", "--top-p", "2")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_bitnet_block_example_trains_on_text(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("for i in range(10):\n    print(i)\n" * 200)
    r = _tritium("train", str(ROOT / "examples" / "bitnet_block.tri"), "--data",
                 f"text:{corpus}", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size",
                 "4", "--seq-len", "32", "--no-baseline", "--latency-runs", "1", "--out",
                 str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr + r.stdout


@pytest.mark.slow
def test_lm_ddp_ranks_agree(tmp_path):
    import os
    import shutil
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) \
        or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"m{i}.py").write_text(f"x_{i} = [n * {i} for n in range(9)]\n" * 60)
    out, digests = tmp_path / "run", tmp_path / "digests"
    env = {**os.environ, "TRITIUM_TEST_DIGEST_DIR": str(digests), "NO_PROGRESS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "tritium",
                        "train", str(EXAMPLE), *TINY, "--data", f"text:{corpus}",
                        "--seq-len", "32", "--epochs", "1", "--steps-per-epoch", "3",
                        "--batch-size", "8", "--no-baseline", "--latency-runs", "1",
                        "--out", str(out)], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (digests / "rank0.txt").read_text() == (digests / "rank1.txt").read_text()
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["task"] == "lm"
