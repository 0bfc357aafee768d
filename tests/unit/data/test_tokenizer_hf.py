"""`bpe_from_hf_json`: a Hugging Face byte-level BPE ``tokenizer.json`` becomes a Tritium BPE
tokenizer that encodes every text to the same ids as the `tokenizers` package does with the
original file; what it cannot reproduce is a clear TokenizerError."""

from __future__ import annotations

import copy
import functools
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hf_tokenizers import SPECIALS, corpus, hf_tokenizer, hf_tokenizer_json  # noqa: E402

from tritium.data.tokenizer import (  # noqa: E402
    GGUF_PRE,
    PRE_TOKENIZERS,
    BpeTokenizer,
    TokenizerError,
    bpe_from_hf_json,
    tokenizer_from_json,
)


@pytest.fixture(scope="module", params=list(PRE_TOKENIZERS))
def pair(request):
    blob = hf_tokenizer_json(request.param)
    return request.param, blob, hf_tokenizer(blob), bpe_from_hf_json(blob)


_SAMPLES = ["héllo wörld 12345 don't DON'T you'll\r\n\n  y\t\tz  ", "日本語 ünïcödé 😀",
            f"x{SPECIALS[2]}y {SPECIALS[0]}def f():\n    return 1\n", "1234567 89", ""]


def test_same_ids_as_the_tokenizers_package(pair):
    name, blob, ref, ours = pair
    assert ours.pre == name and ours.ignore_merges == (name == "llama3")
    assert ours.vocab_size == len(blob["model"]["vocab"]) + len(SPECIALS)
    assert ours.special == {s: ours.vocab_size - len(SPECIALS) + i for i, s in enumerate(SPECIALS)}
    for text in corpus(40)[30:] + _SAMPLES:
        ids = ours.encode(text)
        assert ids == ref.encode(text, add_special_tokens=False).ids
        assert ours.decode(ids) == text
    assert GGUF_PRE[name]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=30), st.sampled_from(SPECIALS)), max_size=6))
def test_random_text_same_ids(pair, parts):
    _, _, ref, ours = pair
    text = "".join(parts)
    ids = ours.encode(text)
    assert ids == ref.encode(text, add_special_tokens=False).ids
    # lone surrogates cannot be UTF-8: both sides encode the replacement
    assert ours.decode(ids) == text.encode("utf-8", "replace").decode("utf-8")


def test_json_round_trip_keeps_everything(pair):
    _, _, _, ours = pair
    blob = json.loads(json.dumps(ours.to_json()))
    back = tokenizer_from_json(blob)
    assert isinstance(back, BpeTokenizer) and back == ours
    assert back.encode(_SAMPLES[2]) == ours.encode(_SAMPLES[2])
    assert back.token_bytes()[ours.special[SPECIALS[0]]] == len(SPECIALS[0])


def _edit(path: str, value):
    def go(blob):
        node = blob
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return blob
    return go


_DELETE = object()


@pytest.mark.parametrize("edit, match", [
    (_edit("model.type", "Unigram"), "not BPE"),
    (_edit("model.byte_fallback", True), "byte_fallback"),
    (_edit("model.dropout", 0.1), "dropout"),
    (_edit("model.end_of_word_suffix", "</w>"), "end_of_word_suffix"),
    (_edit("normalizer", {"type": "NFC"}), "normalizes"),
    (_edit("pre_tokenizer", {"type": "Metaspace", "replacement": "▁"}), "Metaspace"),
    (_edit("pre_tokenizer.pretokenizers.0.pattern.Regex", "(a+)+$"), "does not know"),
    (_edit("pre_tokenizer.pretokenizers.0.behavior", "Removed"), "not a byte-level"),
    (_edit("pre_tokenizer.pretokenizers.1.use_regex", True), "not a byte-level"),
    (_edit("model.merges", "a b"), "merges"),
    (_edit("model.merges.0", "nospace"), "merge"),
    (_edit("model.merges.0", ["Ġ", "zzz"]), "merge"),
    (_edit("model.vocab.Ġ", 10 ** 6), "ids"),
    (_edit("model.vocab", {}), "non-empty"),
    (_edit("added_tokens.0.id", 5), "special token"),
    (_edit("added_tokens.0.id", 10 ** 6), "ids must be"),
    (_edit("added_tokens.0.content", ""), "special token"),
    (_edit("added_tokens.0.content", "x" * 300), "special token"),
    (_edit("added_tokens", [{"id": 1}]), "no content"),
    (_edit("model", _DELETE), "not BPE"),
    # the tokenizers package takes the whitespace beside such a token into it (or matches it
    # as a whole word only): "a <|x|> b" encoded to other ids than the file's own
    (_edit("added_tokens.0.lstrip", True), "lstrip"),
    (_edit("added_tokens.1.rstrip", True), "rstrip"),
    (_edit("added_tokens.2.single_word", True), "single_word"),
    (_edit("added_tokens.2.single_word", "yes"), "single_word"),
])
def test_what_cannot_be_reproduced_is_a_clear_error(edit, match):
    blob = edit(copy.deepcopy(hf_tokenizer_json("llama3", vocab_size=300)))
    with pytest.raises(TokenizerError, match=match):
        bpe_from_hf_json(blob)


def _mutations():
    keys = ["model", "type", "vocab", "merges", "pre_tokenizer", "pretokenizers", "pattern",
            "Regex", "added_tokens", "id", "content", "normalizer", "ignore_merges"]
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 10 ** 7), st.text(max_size=8),
                     st.lists(st.text(max_size=3), max_size=3))
    return st.lists(st.tuples(st.sampled_from(keys), leaf), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(_mutations())
def test_mutated_files_never_traceback(muts):
    blob = copy.deepcopy(_base())

    def visit(node, key, value):
        if isinstance(node, dict):
            if key in node:
                node[key] = value
                return True
            return any(visit(v, key, value) for v in list(node.values()))
        if isinstance(node, list):
            return any(visit(v, key, value) for v in node[:4])
        return False
    for key, value in muts:
        visit(blob, key, value)
    try:
        tok = bpe_from_hf_json(blob)
    except TokenizerError:
        return
    assert tok.decode(tok.encode("def f(x): return 1")) == "def f(x): return 1"


@functools.cache
def _base() -> dict:
    return hf_tokenizer_json("llama3", vocab_size=280)
