"""Generation: the sampler's restrictions, seeded reproducibility, KV cache = recompute."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tritium.driver.generate import GenerateError, generate_tokens, sample_next

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ckpt_edit import with_metadata as _with_metadata  # noqa: E402

_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bitnet_b158.tri"


def _draws(logits, n=400, **kw):
    g = torch.Generator().manual_seed(0)
    return {sample_next(logits, generator=g, **kw) for _ in range(n)}


def test_greedy_and_zero_temperature_take_the_argmax():
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert sample_next(logits, greedy=True) == 1
    assert sample_next(logits, temperature=0.0) == 1


def test_top_k_keeps_only_the_k_most_likely():
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0, 2.5])
    assert _draws(logits, top_k=2) == {3, 4}
    assert _draws(logits, top_k=1) == {3}
    assert _draws(logits, top_k=0) == {0, 1, 2, 3, 4}


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    assert _draws(logits, top_p=0.5) == {0}            # 0.5 alone reaches 0.5
    assert _draws(logits, top_p=0.6) == {0, 1}
    assert _draws(logits, top_p=0.85) == {0, 1, 2}      # 0.8 < 0.85 needs the third
    assert _draws(logits, top_p=1.0) == {0, 1, 2, 3}
    assert _draws(logits, top_p=0.01) == {0}            # the most likely always stays


def test_top_k_then_top_p_and_frequencies():
    logits = torch.tensor([2.0, 1.0, 0.0, -5.0])
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(4)
    for _ in range(3000):
        counts[sample_next(logits, top_k=3, generator=g)] += 1
    want = torch.softmax(logits[:3], 0)
    torch.testing.assert_close(counts[:3] / 3000, want, atol=0.03, rtol=0)
    assert counts[3] == 0


@pytest.mark.parametrize("temperature", [1e-30, 1e-45, 1e-300, 5e-324])
def test_a_tiny_temperature_picks_the_most_likely(temperature):
    # logits / 1e-300 overflowed float32 to inf and the softmax to NaN: multinomial raised
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0, float("-inf")])
    assert _draws(logits, n=50, temperature=temperature) == {1}
    assert _draws(logits, n=50, temperature=temperature, top_k=2, top_p=0.5) == {1}
    assert _draws(torch.tensor([2.0, 2.0, -1.0]), n=100, temperature=temperature) == {0, 1}


def test_logits_that_are_not_finite():
    with pytest.raises(GenerateError, match="NaN"):
        sample_next(torch.tensor([1.0, float("nan"), 0.0]), greedy=True)
    with pytest.raises(GenerateError, match="NaN"):
        sample_next(torch.tensor([1.0, float("nan"), 0.0]), temperature=0.7)
    for greedy in (True, False):     # greedy took token 0, sampling raised RuntimeError
        with pytest.raises(GenerateError, match="all -inf"):
            sample_next(torch.full((4,), float("-inf")), greedy=greedy)
    # an infinite logit takes all of the probability (inf - inf was NaN)
    assert _draws(torch.tensor([0.0, float("inf"), 5.0]), n=50) == {1}


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(top_k=-2), dict(top_p=0.0),
                                 dict(top_p=1.5), dict(temperature=float("nan"))])
def test_bad_sampling_options(bad):
    with pytest.raises(GenerateError):
        generate_tokens(torch.nn.Identity(), [1], 1, **bad)



@pytest.mark.parametrize("prompt, kw, match", [
    ([1, -2], dict(vocab=10), "prompt token -2 is not a token id"),
    ([-1], {}, "prompt token -1"), ([1.5], {}, "prompt token 1.5"), ([True], {}, "True"),
    ([1], dict(seed=-1), "seed"), ([1], dict(seed=1 << 64), "seed"),
    ([1], dict(seed=1.5), "seed"), ([1], dict(seed="7"), "seed"),
    ([1], dict(max_new_tokens=None), "max_new_tokens"),
    ([1], dict(max_new_tokens=2.5), "max_new_tokens")])
def test_bad_prompt_ids_seeds_and_lengths_are_clear_errors(prompt, kw, match):
    # a negative id failed inside the model (IndexError), a seed of 2**64 overflowed in
    # torch (ValueError), max_new_tokens=None was a TypeError
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    kw = {"max_new_tokens": 2, **kw}
    with pytest.raises(GenerateError, match=match):
        generate_tokens(model, prompt, kw.pop("max_new_tokens"), **kw)
    # numpy's and torch's integers are whole numbers too
    import numpy as np
    assert len(generate_tokens(model, [np.int64(3), torch.tensor(2)], np.int32(2),
                               seed=np.uint64(5), vocab=10).tokens) == 2

@pytest.fixture(scope="module")
def tiny_frozen():
    import tritium
    from tritium.runtime import freeze_model
    torch.manual_seed(0)
    model = tritium.load(str(_EXAMPLE), "BitNetB158", dim=32, layers=2, heads=2, ffn=48)
    # a few steps on a repetitive text so that the greedy path is not a constant
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = torch.tensor([list(b"def f(x):\n    return x\n" * 3)])
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(data[:, :-1]).transpose(1, 2),
                                                 data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return freeze_model(model.eval(), "t2")


def test_kv_cache_greedy_equals_full_recompute(tiny_frozen):
    prompt = list(b"def f(")
    cached = generate_tokens(tiny_frozen, prompt, 40, greedy=True, use_cache=True)
    full = generate_tokens(tiny_frozen, prompt, 40, greedy=True, use_cache=False)
    assert cached.tokens == full.tokens
    assert cached.cache_used and not full.cache_used
    assert len(set(cached.tokens)) > 1
    assert cached.decode_steps == 39 and cached.prompt_tokens == len(prompt)


def test_seeded_sampling_is_reproducible(tiny_frozen):
    a = generate_tokens(tiny_frozen, [100, 101], 30, seed=7, top_k=20)
    b = generate_tokens(tiny_frozen, [100, 101], 30, seed=7, top_k=20)
    c = generate_tokens(tiny_frozen, [100, 101], 30, seed=8, top_k=20)
    assert a.tokens == b.tokens and a.tokens != c.tokens
    assert generate_tokens(tiny_frozen, [100], 20, seed=3, vocab=50).tokens and \
        all(t < 50 for t in generate_tokens(tiny_frozen, [100], 20, seed=3, vocab=50).tokens)


def test_empty_prompt_is_an_error(tiny_frozen):
    with pytest.raises(GenerateError, match="empty"):
        generate_tokens(tiny_frozen, [], 5)


class _Mixer(torch.nn.Module):
    """A toy LM whose next-token logits depend on every earlier token without attention
    (a cumulative sum over the sequence): the KV cache cannot serve it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(256, 16)
        self.head = torch.nn.Linear(16, 256)

    def forward(self, ids):
        return self.head(torch.tanh(self.embed(ids).cumsum(dim=1)))


def test_a_model_mixing_positions_outside_attention_falls_back_to_recompute():
    model = _Mixer().eval()
    cached = generate_tokens(model, [1, 2, 3], 12, greedy=True, use_cache=True)
    full = generate_tokens(model, [1, 2, 3], 12, greedy=True, use_cache=False)
    assert not cached.cache_used and cached.tokens == full.tokens


class _Positions(torch.nn.Module):
    """A toy LM that looks its positions up in a table of 8 (GPT-2's learned positions)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(256, 16)
        self.pos = torch.nn.Embedding(8, 16)
        self.head = torch.nn.Linear(16, 256)

    def forward(self, ids):
        return self.head(self.embed(ids) + self.pos(torch.arange(ids.shape[1])))


class _ArangePositions(torch.nn.Module):
    """Learned positions looked up by the language's `arange` (trt.arange, what a .tri
    program's `arange(seq)` runs), weak enough that the first cached step's logits stay
    within CACHE_TOLERANCE of full recomputation although its position is wrong (0)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(256, 16)
        self.pos = torch.nn.Embedding(64, 16)
        with torch.no_grad():
            self.pos.weight.mul_(0.05)
        self.head = torch.nn.Linear(16, 256)

    def forward(self, ids):
        from tritium.runtime import functional as trt
        return self.head(self.embed(ids) + self.pos(trt.arange(ids.shape[1])))


def test_positions_from_arange_are_never_served_from_the_cache():
    # the cached step looked positions 0.. up for the new token; the logits check let it by
    model = _ArangePositions().eval()
    cached = generate_tokens(model, list(range(1, 30)), 6, greedy=True, use_cache=True)
    full = generate_tokens(model, list(range(1, 30)), 6, greedy=True, use_cache=False)
    assert not cached.cache_used and cached.tokens == full.tokens


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_sequence_longer_than_the_model_runs_is_a_clear_error(use_cache):
    # the position table's IndexError came out of the model as a traceback
    model = _Positions().eval()
    assert len(generate_tokens(model, [1, 2, 3], 5, greedy=True, use_cache=use_cache).tokens) == 5
    with pytest.raises(GenerateError, match="cannot run a sequence of 9 tokens") as err:
        generate_tokens(model, [1, 2, 3], 7, greedy=True, use_cache=use_cache)
    assert "IndexError" in err.value.message and "prompt" in err.value.help
    with pytest.raises(GenerateError, match="sequence of 12 tokens"):
        generate_tokens(model, list(range(12)), 1, use_cache=use_cache)


def _imported_lm(tmp_path: Path, **config) -> Path:
    """A tiny hand-made BitNet checkpoint (vocabulary 260: the byte tokenizer) imported."""
    import json
    import sys

    from safetensors.torch import save_file

    from tritium.driver.hf_import import import_hf
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_bitnet import conf, tensors
    g = torch.Generator().manual_seed(0)
    t = tensors(g)
    t["model.embed_tokens.weight"] = torch.randn(260, 8, generator=g)
    t["lm_head.weight"] = torch.randn(260, 8, generator=g)
    d = tmp_path / "hf"
    d.mkdir()
    save_file(t, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(conf(vocab_size=260, **config)))
    return Path(import_hf(d, tmp_path / "m.safetensors")["checkpoint"])


def test_a_tokenizer_larger_than_the_model_is_refused_at_load(tmp_path):
    # a checkpoint whose tokenizer record has more tokens than the model's vocabulary
    # (an edited record): its ids past the embedding table raised IndexError in the model
    import json

    from tritium.data.tokenizer import train_bpe
    from tritium.driver.generate import generate

    pytest.importorskip("tokenizers")
    ckpt = _imported_lm(tmp_path)
    assert len(generate(str(ckpt), "héllo", 3, greedy=True).tokens) == 3
    bpe = train_bpe(["héllo wörld, héllo again " * 50], vocab_size=300)
    assert bpe.vocab_size > 260
    bad = _with_metadata(ckpt, tmp_path / "bad.safetensors",
                         **{"tritium.tokenizer": json.dumps(bpe.to_json())})
    with pytest.raises(GenerateError, match="more tokens than the model's vocabulary of 260"):
        generate(str(bad), "héllo wörld", 3, greedy=True)


def test_an_imported_model_stops_at_its_end_of_text_token(tmp_path):
    # transformers and llama.cpp end a generation at eos_token_id; tritium generate went on
    # past it (the end-of-text token's text, then another document)
    import json

    from tritium.driver.generate import end_of_text, generate
    ckpt = _imported_lm(tmp_path)
    assert end_of_text(str(ckpt)) is None
    free = generate(str(ckpt), "héllo", 12, greedy=True)
    assert free.stopped_at is None and len(free.tokens) == 12
    k = next(i for i, t in enumerate(free.tokens) if i >= 2 and t not in free.tokens[:i])
    eos = free.tokens[k]
    from tritium.runtime import read_checkpoint_metadata
    settings = json.loads(read_checkpoint_metadata(ckpt).extra["tritium.generation"])
    stops = _with_metadata(ckpt, tmp_path / "eos.safetensors",
                           **{"tritium.generation": json.dumps({**settings, "eos": [eos]})})
    assert end_of_text(str(stops)) == eos
    for use_cache in (True, False):
        r = generate(str(stops), "héllo", 12, greedy=True, use_cache=use_cache)
        assert r.tokens == free.tokens[:k] and r.stopped_at == eos
    assert generate(str(stops), "héllo", 12, greedy=True, stop_at_eos=False).tokens == \
        free.tokens
    # a damaged record is an error, not a silent default
    bad = _with_metadata(ckpt, tmp_path / "bad.safetensors", **{"tritium.generation": "{"})
    with pytest.raises(GenerateError, match="tritium.generation"):
        end_of_text(str(bad))


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript"])
def test_a_language_model_exports_with_token_ids(tmp_path, fmt):
    # export fed the model a float sample: "Expected tensor for argument #1 'indices' to have
    # one of the following scalar types: Long, Int" (a traceback)
    from tritium.driver.evaluate import export_checkpoint
    ckpt = _imported_lm(tmp_path)
    r = export_checkpoint(ckpt, fmt, tmp_path / f"lm.{fmt}")
    assert r["bytes"] > 0 and r["max_abs_diff"] < 1e-3


def test_a_language_model_is_not_exported_as_an_onnx_classifier(tmp_path):
    from tritium.driver.evaluate import ExportError, export_checkpoint
    ckpt = _imported_lm(tmp_path)
    with pytest.raises(ExportError, match="language model") as err:
        export_checkpoint(ckpt, "onnx", tmp_path / "lm.onnx")
    assert "gguf" in err.value.help and not (tmp_path / "lm.onnx").exists()
