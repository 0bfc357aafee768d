"""An imported model generates as transformers does: every end-of-sequence id of a list
stops it, generation_config.json's ids win over config.json's, and the prompt gets the
tokens the tokenizer's post-processor puts around a text (Llama 3's BOS). The references
are transformers' own rules (checked against transformers 5.25 on tiny BitNet models: its
tokenizer's input_ids and generate's stop) and the `tokenizers` package's encoding."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tritium.driver.generate import GenerateError, generate, generation_settings
from tritium.driver.hf_import import HFImportError, import_hf, read_hf_config
from tritium.driver.hf_tokenizer import generation_record

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ckpt_edit import with_metadata  # noqa: E402
from tiny_bitnet import conf, tensors  # noqa: E402

PROMPT = "héllo"


def _hf_dir(tmp_path: Path, name: str = "hf", **config) -> Path:
    """A tiny hand-made BitNet checkpoint directory (vocabulary 260)."""
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(0)
    t = tensors(g)
    t["model.embed_tokens.weight"] = torch.randn(260, 8, generator=g)
    t["lm_head.weight"] = torch.randn(260, 8, generator=g)
    d = tmp_path / name
    d.mkdir()
    save_file(t, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(conf(vocab_size=260, **config)))
    return d


def _import(d: Path, name: str = "m") -> str:
    return import_hf(d, d.parent / f"{name}.safetensors")["checkpoint"]


def _first_new(tokens: list[int]) -> tuple[int, int]:
    """(k, tokens[k]): the first token from the third on that was not drawn before."""
    k = next(i for i, t in enumerate(tokens) if i >= 2 and t not in tokens[:i])
    return k, tokens[k]


def test_every_eos_id_of_a_list_ends_the_generation(tmp_path):
    # config.json's eos_token_id [a, b] (Llama 3's form): only a stopped the generation
    d = _hf_dir(tmp_path)
    free = generate(_import(d, "free"), PROMPT, 12, greedy=True)
    assert free.stopped_at is None and len(free.tokens) == 12
    k, eos = _first_new(free.tokens)
    (d / "config.json").write_text(json.dumps(conf(vocab_size=260, eos_token_id=[259, eos])))
    ckpt = _import(d)
    assert generation_settings(ckpt).eos == (259, eos)
    r = generate(ckpt, PROMPT, 12, greedy=True)
    assert r.tokens == free.tokens[:k] and r.stopped_at == eos
    assert generate(ckpt, PROMPT, 12, greedy=True, stop_at_eos=False).tokens == free.tokens


def _record(d: Path) -> dict:
    return json.loads(generation_record(d, read_hf_config(d), ([], []))[0])


def test_generation_config_json_gives_the_ids_over_config_json(tmp_path):
    # transformers' model.generation_config is generation_config.json's when there is one
    # (all of it: an id it lacks is not taken from config.json), else config.json's
    d = _hf_dir(tmp_path, bos_token_id=1, eos_token_id=[2, 3], pad_token_id=-1)
    assert _record(d) == {"eos": [2, 3], "bos": 1, "pad": None, "prefix": [], "suffix": []}
    (d / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 7, "eos_token_id": [9, 8, 9], "pad_token_id": 4,
         "transformers_version": "4.57.0"}))
    assert _record(d) == {"eos": [9, 8], "bos": 7, "pad": 4, "prefix": [], "suffix": []}
    (d / "generation_config.json").write_text(json.dumps({"bos_token_id": 7}))
    assert _record(d)["eos"] == []
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": 11}))
    ckpt = _import(d)
    assert generation_settings(ckpt).eos == (11,)


@pytest.mark.parametrize("text, match", [
    ("{", "generation_config.json is not valid JSON"),
    ("[1]", "generation_config.json is not a JSON object"),
    ('{"eos_token_id": "2"}', "generation_config.json: `eos_token_id` must be a token id"),
    ('{"eos_token_id": [2, true]}', "generation_config.json: `eos_token_id` must be"),
    ('{"bos_token_id": [1]}', "generation_config.json: `bos_token_id` must be a token id"),
    ('{"pad_token_id": 1.5}', "generation_config.json: `pad_token_id` must be a token id"),
    (json.dumps({"eos_token_id": [2] * 5000}), "at most 4096"),
])
def test_a_malformed_generation_config_is_a_clear_error(tmp_path, text, match):
    d = _hf_dir(tmp_path)
    (d / "generation_config.json").write_text(text)
    with pytest.raises(HFImportError, match=match):
        import_hf(d, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_a_huge_generation_config_is_refused_unread(tmp_path):
    d = _hf_dir(tmp_path)
    (d / "generation_config.json").write_text(" " * (2 << 20) + "{}")
    with pytest.raises(HFImportError, match="generation_config.json is larger than"):
        import_hf(d, tmp_path / "m.safetensors")


def _tokenizer_json(post: str) -> str:
    """A byte-level BPE tokenizer.json (the 256 bytes, no merges; <s> 256 and </s> 257)
    whose post-processor is `post`: "bos" (Llama's `<s> $A`), "seq" (the same after
    ByteLevel in a Sequence, as Llama 3's), "bos_eos", "bert" or "none"."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    from tritium.data.tokenizer import byte_alphabet
    vocab = {c: b for b, c in byte_alphabet().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in ("<s>", "</s>")])
    specials = [("<s>", 256), ("</s>", 257)]
    single = {"bos": "<s> $A", "seq": "<s> $A", "bos_eos": "<s> $A </s>"}.get(post)
    if single is not None:
        tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=specials)
    if post == "seq":
        tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False),
                                                  tok.post_processor])
    if post == "bert":
        tok.post_processor = processors.BertProcessing(("</s>", 257), ("<s>", 256))
    return tok.to_str()


@pytest.mark.parametrize("post", ["bos", "seq", "bos_eos", "none"])
def test_the_prompt_gets_the_tokens_the_tokenizer_puts_around_it(tmp_path, post):
    # a Llama tokenizer prepends <s> (transformers' tokenizer(text).input_ids start with
    # it): tritium generate fed the model the text's tokens alone
    from tokenizers import Tokenizer
    d = _hf_dir(tmp_path)
    (d / "tokenizer.json").write_text(_tokenizer_json(post))
    ckpt = _import(d)
    want = Tokenizer.from_str(_tokenizer_json(post)).encode(PROMPT).ids
    assert (want[0] == 256) == (post != "none")
    s = generation_settings(ckpt)
    text = generate(ckpt, PROMPT, 6, greedy=True, stop_at_eos=False)
    assert [*s.prefix, *list(PROMPT.encode()), *s.suffix] == want
    assert text.prompt_tokens == len(want)
    from tritium.driver.generate import generate_tokens, load_language_model
    model, _, _ = load_language_model(ckpt)
    from tritium.runtime.layers.head import quantize_head
    quantize_head(model, "int8")
    assert generate_tokens(model, want, 6, greedy=True, vocab=258).tokens == text.tokens


def test_a_post_processor_tritium_cannot_reproduce_is_not_used_silently(tmp_path):
    d = _hf_dir(tmp_path)
    (d / "tokenizer.json").write_text(_tokenizer_json("bert"))
    r = import_hf(d, tmp_path / "m.safetensors")
    assert "post-processor (BertProcessing)" in r["tokenizer"] and "bytes" in r["tokenizer"]


def test_a_damaged_generation_record_is_an_error(tmp_path):
    d = _hf_dir(tmp_path)
    (d / "tokenizer.json").write_text(_tokenizer_json("bos"))
    ckpt = Path(_import(d))
    rec = json.loads(__import__("tritium.runtime", fromlist=["x"])
                     .read_checkpoint_metadata(ckpt).extra["tritium.generation"])
    assert rec["prefix"] == [256]
    for bad in ({**rec, "eos": [True]}, {**rec, "prefix": [-1]}, {**rec, "more": 1},
                {k: v for k, v in rec.items() if k != "pad"}):
        edited = with_metadata(ckpt, tmp_path / "bad.safetensors",
                               **{"tritium.generation": json.dumps(bad)})
        with pytest.raises(GenerateError, match="tritium.generation` record is damaged"):
            generate(str(edited), PROMPT, 2)
    # an id the tokenizer does not have, put before every prompt
    edited = with_metadata(ckpt, tmp_path / "far.safetensors",
                           **{"tritium.generation": json.dumps({**rec, "prefix": [258]})})
    with pytest.raises(GenerateError, match="not all below the tokenizer's 258"):
        generate(str(edited), PROMPT, 2)


def test_a_checkpoint_imported_before_the_record_stops_at_its_config_eos(tmp_path):
    # checkpoints `tritium import hf` wrote before the generation record: the arch record's
    # eos (config.json's first eos_token_id), no prefix
    d = _hf_dir(tmp_path, eos_token_id=[5, 6])
    ckpt = Path(_import(d))
    raw = ckpt.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    del header["__metadata__"]["tritium.generation"]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    old = tmp_path / "old.safetensors"
    old.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    assert generation_settings(str(old)).eos == (5,)
    assert generation_settings(str(old)).prefix == ()
