"""benchmarks/llm.py (BitNet b1.58 end to end) on its `tiny` size: arguments, the memory plan,
the printed table's shape, and that Tritium's frozen model and its PyTorch fp32 twin choose
the same greedy tokens (the same trits and the same int8 activation quantization: they differ
only in float rounding, which on this model and seed changes no argmax; bf16 may, so it is
not compared), and the check of cached against uncached decode."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--sizes", "tiny", "--rounds", "1", "--threads", "1", "--prompt-len", "12",
        "--gen-len", "10", "--skip-llama"]


@pytest.fixture(scope="module")
def llm():
    bench = str(ROOT / "benchmarks")
    sys.path.insert(0, bench)
    try:
        yield importlib.import_module("llm")
    finally:
        sys.path.remove(bench)


def test_defaults_and_options(llm):
    args = llm.parse_args([])
    assert args.sizes == ["125m", "0.7b"] and args.prompt_len == 128 and args.gen_len == 128
    assert args.threads[0] == 1 and not args.skip_llama
    args = llm.parse_args(["--sizes", "tiny,2b", "--threads", "1,2", "--rounds", "2",
                           "--skip-llama", "--impls", "tritium"])
    assert args.sizes == ["tiny", "2b"] and args.threads == [1, 2] and args.rounds == 2
    assert args.skip_llama and args.impls == ["tritium"]


@pytest.mark.parametrize("argv, needle", [
    (["--sizes", "7b"], "unknown size 7b"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--impls", "onnx"], "unknown onnx"),
])
def test_bad_options_are_clear(llm, capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        llm.parse_args(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_sizes_are_the_issue_shapes(llm):
    large, big = llm.SIZES["0.7b"], llm.SIZES["2b"]
    assert (large.dim, large.layers, large.ffn) == (1536, 24, 4096)
    assert (big.dim, big.layers, big.ffn, big.heads, big.vocab) == (2560, 30, 6912, 20, 128256)
    ternary, full = llm.SIZES["125m"].params()
    assert 110e6 < ternary + full < 140e6
    assert "vocab: int = 256" in llm.program_text()


def test_memory_plan_skips_what_does_not_fit(llm):
    ctx = 257
    chosen, skipped = llm.plan_memory(list(llm.IMPLS), llm.SIZES["2b"], ctx, 17 << 30)
    assert "torch-fp32" in skipped and "tritium" in chosen
    assert "GiB available" in skipped["torch-fp32"]
    chosen, skipped = llm.plan_memory(list(llm.IMPLS), llm.SIZES["tiny"], ctx, 17 << 30)
    assert chosen == list(llm.IMPLS) and not skipped
    chosen, skipped = llm.plan_memory(list(llm.IMPLS), llm.SIZES["125m"], ctx, 1 << 20)
    assert not chosen and set(skipped) == set(llm.IMPLS)


def test_tiny_end_to_end(llm, capsys):
    assert llm.main(TINY) == 0
    out = capsys.readouterr().out
    assert "# CPU: " in out and "llama.cpp skipped: --skip-llama" in out
    for impl in llm.IMPLS:
        assert f"{impl}: cached decode against an uncached forward, 11 greedy tokens" in out
    assert "tritium: cached decode against an uncached forward, 11 greedy tokens: the same" \
        in out
    table = out[out.index("size  impl"):].strip().splitlines()
    assert table[0].split() == ["size", "impl", "threads", "prefill", "tok/s", "decode",
                                "tok/s", "peak", "RSS", "MiB", "prefill/fp32", "decode/fp32"]
    rows = [line.split() for line in table[2:]]
    assert [r[1] for r in rows] == list(llm.IMPLS) and all(len(r) == 8 for r in rows)
    for r in rows:
        assert r[0] == "tiny" and r[2] == "1"
        assert float(r[3]) > 0 and float(r[4]) > 0 and int(r[5]) > 0
        assert re.fullmatch(r"\d+\.\d\dx", r[6]) and re.fullmatch(r"\d+\.\d\dx", r[7])
    assert rows[1][6:] == ["1.00x", "1.00x"]      # torch-fp32 against itself


def test_tritium_and_fp32_twin_choose_the_same_tokens(llm):
    args = llm.parse_args(TINY + ["--impls", "tritium,torch-fp32", "--gen-len", "24"])
    rows = {r["impl"]: r for r in llm.bench_size("tiny", args, log=lambda s: None)}
    assert rows["tritium"]["cache"] and rows["torch-fp32"]["cache"]
    assert rows["tritium"]["uncached_agrees"] and rows["torch-fp32"]["uncached_agrees"]
    assert len(rows["tritium"]["tokens"]) == 25
    assert rows["tritium"]["tokens"] == rows["torch-fp32"]["tokens"]


def test_verify_flags_a_wrong_token(llm):
    """The cache check itself: a sequence whose continuation is the uncached argmax passes; a
    token far below it (the lowest logit) fails."""
    import torch

    model = llm.build_unfrozen(llm.SIZES["tiny"], 0)
    seq = [1, 2, 3]
    with torch.no_grad():
        for _ in range(4):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    good = llm.verify(model, seq, 3)
    assert good["agrees"] and good["flips"] == 0
    with torch.no_grad():
        worst = int(model(torch.tensor([seq[:-1]]))[0, -1].argmin())
    bad = llm.verify(model, seq[:-1] + [worst], 3)
    assert bad["flips"] == 1 and not bad["agrees"] and bad["worst"] > llm.CACHE_TOLERANCE
