"""The llama.cpp leg of the Hugging Face round trip: a checkpoint imported with `tritium import
hf`, exported with `tritium export --format gguf` (TQ2_0 and TQ1_0), loaded by llama.cpp
itself. llama.cpp's tokens, its logits at every prompt position and its greedy continuation
are compared with Tritium's forward pass (benchmarks/gguf_parity.py's comparison).

llama.cpp runs as ``llama_logits`` (benchmarks/llama_check/), built from the pinned
llama-cpp-python sdist by `make test` (about a minute on two cores, cached), which passes its
path in ``TRITIUM_LLAMA_CHECK``. A plain ``pytest`` without it skips these tests, saying how
to run them: ``make llama-check`` prints the path.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")
pytest.importorskip("safetensors")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _llama_check  # noqa: E402
import gguf_parity  # noqa: E402
import llm  # noqa: E402

from tritium.driver.gguf_export import export_gguf  # noqa: E402
from tritium.driver.hf_import import import_hf  # noqa: E402
from tritium.driver.models import model_from_checkpoint  # noqa: E402

GREEDY = 16


@pytest.fixture(scope="module")
def llama_logits() -> Path:
    path = os.environ.get("TRITIUM_LLAMA_CHECK")
    if not path:
        pytest.skip("llama.cpp's llama_logits is not built: `make test` builds it and sets "
                    "TRITIUM_LLAMA_CHECK (or TRITIUM_LLAMA_CHECK=$(make -s llama-check) pytest)")
    exe = Path(path)
    assert exe.is_file() and os.access(exe, os.X_OK), \
        f"TRITIUM_LLAMA_CHECK={path} is not an executable llama_logits"
    return exe


def _exported(tmp: Path, qtype: str, act: str = "silu", size=None,
              tokenizer: dict | None = None):
    hf = llm.write_hf_checkpoint(tmp / "hf", size or llm.SIZES["tiny"], seed=0, act=act)
    if tokenizer is not None:
        (hf / "tokenizer.json").write_text(json.dumps(tokenizer))
    ckpt = import_hf(hf, tmp / "model.safetensors")["checkpoint"]
    gguf = Path(export_gguf(ckpt, tmp / "model.gguf", qtype)["output"])
    model, _ = model_from_checkpoint(ckpt)
    model.eval()
    return ckpt, gguf, model


@pytest.mark.parametrize("qtype", ["tq2_0", "tq1_0"])
def test_llama_cpp_computes_what_tritium_computes(llama_logits, tmp_path, qtype):
    """Byte tokens, logits within the two activation quantizations' difference at every
    position, and every greedy token Tritium's argmax or a near-tie of it."""
    _, gguf, model = _exported(tmp_path, qtype)
    for prompt in gguf_parity.PROMPTS:
        run = _llama_check.run_llama_logits(llama_logits, gguf, prompt, GREEDY)
        assert run.vocab == 256
        r = gguf_parity.compare(model, list(prompt.encode()), run, prompt)
        assert r.ok, r.summary()
        assert r.worst_cos > 0.998, r.summary()
        assert r.greedy_equal >= GREEDY - 2, r.summary()   # near-ties are rare


def test_the_comparison_catches_a_model_llama_cpp_computes_differently(llama_logits, tmp_path):
    """A ReLU²-gated model (BitNet b1.58 2B4T's MLP) exports with a note that llama.cpp's
    bitnet graph gates with SiLU: the check must see the difference."""
    _, gguf, model = _exported(tmp_path, "tq2_0", act="relu2")
    prompt = gguf_parity.PROMPTS[0]
    run = _llama_check.run_llama_logits(llama_logits, gguf, prompt, GREEDY)
    r = gguf_parity.compare(model, list(prompt.encode()), run, prompt)
    assert not r.ok and r.worst_rel > 5 * gguf_parity.MAX_REL, r.summary()


@pytest.mark.parametrize("pre", ["llama3", "gpt2", "qwen2"])
def test_a_bpe_tokenizer_tokenizes_alike_in_llama_cpp(llama_logits, tmp_path, pre):
    """A model directory with a byte-level BPE tokenizer.json: llama.cpp reads the exported
    vocabulary, merges and pre-tokenizer and splits text into the same ids as Tritium's
    tokenizer (code, digits, contractions, non-ASCII, runs of spaces), and the logits agree."""
    pytest.importorskip("tokenizers")
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "data"))
    from hf_tokenizers import hf_tokenizer_json

    from tritium.data.tokenizer import tokenizer_from_json
    from tritium.runtime import read_checkpoint_metadata
    size = llm.Size(256, 1, 4, 512, 512, kv_heads=2)
    ckpt, gguf, model = _exported(tmp_path, "tq2_0", size=size,
                                  tokenizer=hf_tokenizer_json(pre, vocab_size=420))
    tok = tokenizer_from_json(json.loads(
        read_checkpoint_metadata(ckpt).extra["tritium.tokenizer"]))
    texts = ["def parse(self, value=12345):\n        return value  # it's done\n",
             "Grüße, 世界! We'll see   you at 3:30pm.\t\tOK?",
             "x = [i ** 2 for i in range(1000000)]"]
    for text in texts:
        run = _llama_check.run_llama_logits(llama_logits, gguf, text, 4)
        ids = tok.encode(text)
        assert run.tokens == ids, (text, run.tokens, ids)
        r = gguf_parity.compare(model, ids, run, text)
        assert r.ok, r.summary()


def test_llama_logits_output_is_checked():
    """The parser of llama_logits's records refuses what is incomplete or inconsistent."""
    good = "vocab 3\ntokens 1 2\nlogits 0 0.5 1 2\nlogits 1 3 2 1\ngreedy 2 0\n"
    run = _llama_check.parse_output(good)
    assert run.tokens == [1, 2] and run.greedy == [2, 0] and run.logits[1] == [3.0, 2.0, 1.0]
    for bad in (good.replace("greedy 2 0\n", ""), good.replace("logits 1 3 2 1\n", ""),
                good.replace("logits 1 3 2 1", "logits 1 3 2"),
                good.replace("logits 0", "logits 5")):
        with pytest.raises(ValueError):
            _llama_check.parse_output(bad)


def test_the_build_is_keyed_by_cpu_and_source(tmp_path, monkeypatch):
    """Another CPU or another llama_logits.cpp builds its own; a build without its program
    or its record is not reused; without cmake the build says what is missing."""
    key = _llama_check.check_key(["avx2", "fma"], machine="x86_64")
    assert key.startswith("llama-check-") and key == _llama_check.check_key(
        ["fma", "avx2", "ht"], machine="x86_64")
    assert key != _llama_check.check_key(["avx2", "fma", "avx512f"], machine="x86_64")
    src = tmp_path / "llama_logits.cpp"
    src.write_bytes(_llama_check.SOURCE.read_bytes() + b"\n// changed\n")
    monkeypatch.setattr(_llama_check, "SOURCE", src)
    assert key != _llama_check.check_key(["avx2", "fma"], machine="x86_64")
    final = tmp_path / _llama_check.check_key()
    (final / "bin").mkdir(parents=True)
    (final / "bin" / _llama_check.PROGRAM).write_text("#!/bin/sh\n")
    (final / "bin" / _llama_check.PROGRAM).chmod(0o755)
    assert _llama_check.built_program(final) is None          # no build.json: unfinished
    monkeypatch.setattr(_llama_check._ggml.shutil, "which", lambda name, path=None: None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(_llama_check.PeerUnavailable, match="cmake"):
        _llama_check.ensure_llama_check(tmp_path)
