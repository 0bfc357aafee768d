"""Tokenizers: bytes and byte-level BPE round-trip any text; their JSON form is validated."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.data.tokenizer import (
    ByteTokenizer,
    TokenizerError,
    parse_tokenizer_spec,
    tokenizer_from_json,
    train_bpe,
)

_CORPUS = ["def add(a, b):\n    return a + b\n" * 20,
           "class Point:\n    x: int = 0\n    y: int = 0\n" * 20,
           "héllo wörld — 日本語のテキスト ✓\n" * 5]


@pytest.fixture(scope="module")
def bpe():
    pytest.importorskip("tokenizers")
    return train_bpe(_CORPUS, vocab_size=320)


def test_bytes_tokenizer_basics():
    tok = ByteTokenizer()
    assert tok.vocab_size == 256
    assert tok.encode("aé") == [97, 0xC3, 0xA9]
    assert tok.decode([97, 0xC3]) == "a\ufffd"          # a cut character: replaced
    with pytest.raises(TokenizerError, match="outside"):
        tok.decode([256])
    assert tokenizer_from_json(tok.to_json()) == tok


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bytes_round_trip(text):
    tok = ByteTokenizer()
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_bpe_round_trip(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text


def test_bpe_learns_merges_and_compresses(bpe):
    assert 257 <= bpe.vocab_size <= 320
    text = "def add(a, b):\n    return a + b\n"
    assert len(bpe.encode(text)) < len(text.encode()) / 2
    assert sum(bpe.token_bytes()[i] for i in bpe.encode(text)) == len(text.encode())


def test_bpe_json_round_trip(bpe):
    again = tokenizer_from_json(json.loads(json.dumps(bpe.to_json())))
    assert again == bpe
    assert again.encode("return a + b") == bpe.encode("return a + b")


def test_spec_parsing():
    assert parse_tokenizer_spec("bytes") == ("bytes", 256)
    assert parse_tokenizer_spec("bpe") == ("bpe", 1024)
    assert parse_tokenizer_spec("BPE:512") == ("bpe", 512)
    for bad in ("bpe:10", "bpe:x", "words", "bpe:-3"):
        with pytest.raises(TokenizerError):
            parse_tokenizer_spec(bad)


@pytest.mark.parametrize("blob, match", [
    ([], "JSON object"),
    ({"type": "bytes"}, "version"),
    ({"type": "bytes", "version": 1, "x": 1}, "unexpected"),
    ({"type": "words", "version": 1}, "unknown tokenizer"),
    ({"type": "bpe", "version": 1, "vocab": {"a": 0}, "merges": []}, "byte-level"),
    ({"type": "bpe", "version": 1, "vocab": {"a": 5}, "merges": []}, "ids"),
    ({"type": "bpe", "version": 1, "vocab": "x", "merges": []}, "vocab"),
])
def test_bad_json_is_a_clear_error(blob, match):
    with pytest.raises(TokenizerError, match=match):
        tokenizer_from_json(blob)


def test_bad_merges_refused(bpe):
    blob = bpe.to_json()
    blob["merges"] = blob["merges"] + [["a", "zzz"]]
    with pytest.raises(TokenizerError, match="merge"):
        tokenizer_from_json(blob)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                       max_size=4),
                     max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json,
                 st.fixed_dictionaries({"type": st.sampled_from(["bpe", "bytes"]),
                                        "version": st.sampled_from([1, True, 1.0, 2])},
                                       optional={"vocab": _json, "merges": _json})))
def test_fuzzed_json_never_tracebacks(blob):
    try:
        tok = tokenizer_from_json(blob)
    except TokenizerError:
        return
    assert tok.decode(tok.encode("x = 1")) == "x = 1"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(min_size=1, max_size=4), st.integers(-2, 400), max_size=5),
       st.lists(st.lists(st.text(max_size=3), min_size=0, max_size=3), max_size=4))
def test_fuzzed_bpe_entries(bpe, vocab_extra, merges_extra):
    blob = bpe.to_json()
    blob["vocab"] = {**blob["vocab"], **vocab_extra}
    blob["merges"] = blob["merges"] + merges_extra
    try:
        tok = tokenizer_from_json(blob)
    except TokenizerError:
        return
    assert tok.decode(tok.encode("return a + b")) == "return a + b"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["reverse", "drop_last", "bad_merge", "same"]))
def test_mutated_bpe_json(bpe, how):
    blob = bpe.to_json()
    if how == "reverse":
        blob["merges"] = blob["merges"][::-1]
    elif how == "drop_last":
        blob["vocab"] = dict(list(blob["vocab"].items())[:-1])
    elif how == "bad_merge":
        blob["merges"] = blob["merges"] + [["\u0100", "\u0100"]]
    try:
        tok = tokenizer_from_json(blob)
    except TokenizerError:
        return
    assert tok.decode(tok.encode("return a + b")) == "return a + b"
