"""Hugging Face ``tokenizer.json`` files made locally with the `tokenizers` package (no
download): byte-level BPE tokenizers built the way GPT-2's, Llama 3's and Qwen2's are, trained
on a slice of the Python standard library."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

from tritium.data.tokenizer import PRE_TOKENIZERS

SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")


def corpus(files: int = 30) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [p.read_text(encoding="utf-8", errors="replace")[:20000]
            for p in sorted(root.glob("*.py"))[:files]]


def hf_tokenizer_json(pre: str = "llama3", vocab_size: int = 400,
                      specials: tuple[str, ...] = SPECIALS) -> dict:
    """The parsed tokenizer.json of a byte-level BPE with the named pre-tokenizer (its split
    pattern, ByteLevel without its own regex), ``ignore_merges`` as Llama 3 sets it, and
    ``specials`` added after the vocabulary."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(ignore_merges=pre == "llama3"))
    pattern = PRE_TOKENIZERS[pre]
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return json.loads(tok.to_str())


def hf_tokenizer(blob: dict):
    """The `tokenizers` object the JSON describes (the reference)."""
    from tokenizers import Tokenizer
    return Tokenizer.from_str(json.dumps(blob))
