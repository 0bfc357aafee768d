"""Tokenizers for language models: bytes (the default) and byte-level BPE.

    tok = ByteTokenizer()                          # vocab 256: a token is a UTF-8 byte
    tok = train_bpe(texts, vocab_size=1024)         # byte-level BPE learned from `texts`
    ids = tok.encode("def f(x):")                   # list[int]
    tok.decode(ids)                                 # str (bad UTF-8 decodes to U+FFFD)
    blob = tok.to_json()                            # a dict a checkpoint carries
    tok = tokenizer_from_json(blob)                 # validated: TokenizerError if wrong

Text is encoded as UTF-8; characters UTF-8 cannot encode (lone surrogates) become `?`.
Both tokenizers are lossless on every other string: `decode(encode(s)) == s`.

A BPE tokenizer's JSON holds only its vocabulary, merges, the *name* of its pre-tokenizer
(``gpt2``, ``llama3`` or ``qwen2``: the split patterns are constants here, never a regex read
from a file), whether whole words in the vocabulary skip the merges (``ignore_merges``) and
its special tokens (never executable options); on load all of it is checked (ids 0..n-1 each
once, every byte of the byte-level alphabet present, each merge of two known tokens giving a
known token) before the `tokenizers` package builds it, so a damaged or hostile checkpoint
is a :class:`TokenizerError`, not a traceback.

:func:`bpe_from_hf_json` converts a Hugging Face ``tokenizer.json`` of a byte-level BPE
(GPT-2's, Llama 3's, Qwen2's, and every tokenizer built the same way) into this form, and
says which part it cannot represent otherwise (a SentencePiece model, a normalizer, a
pre-tokenizer pattern it does not know, an added token that strips the whitespace beside it
or matches whole words only): `tritium import hf` keeps a model's own tokenizer.
This module does not import torch; BPE needs the `tokenizers` package (`pip install
tokenizers`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

__all__ = [
    "BpeTokenizer",
    "PRE_TOKENIZERS",
    "ByteTokenizer",
    "MAX_BPE_VOCAB",
    "Tokenizer",
    "TokenizerError",
    "bpe_from_hf_json",
    "byte_alphabet",
    "hf_prompt_template",
    "parse_tokenizer_spec",
    "tokenizer_from_json",
    "train_bpe",
]

#: the largest BPE vocabulary accepted (a checkpoint asking for more is refused)
MAX_BPE_VOCAB = 1 << 18
_JSON_VERSION = 1
#: the most special tokens and the longest one accepted
MAX_SPECIAL = 1 << 12
MAX_SPECIAL_CHARS = 256

#: The pre-tokenizers a BPE tokenizer may name: the pattern that splits text into words
#: before the merges (``None``: the `tokenizers` ByteLevel pre-tokenizer's own, GPT-2's).
#: Only these run: a pattern is never taken from a file (a hostile regular expression could
#: take exponential time). The names are also how llama.cpp knows them (``GGUF_PRE``).
PRE_TOKENIZERS: dict[str, str | None] = {
    "gpt2": None,
    "llama3": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "qwen2": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
}
#: GPT-2's pattern, which the ByteLevel pre-tokenizer applies when it splits by itself
_GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
#: llama.cpp's name of each pre-tokenizer (``tokenizer.ggml.pre``)
GGUF_PRE = {"gpt2": "gpt-2", "llama3": "llama-bpe", "qwen2": "qwen2"}


class TokenizerError(Exception):
    """A tokenizer cannot be built, read or used; `help` says what to do."""

    def __init__(self, message: str, help: str | None = None) -> None:  # noqa: A002
        self.message = message
        self.help = help
        super().__init__(message if help is None else f"{message}\n  help: {help}")


def _utf8(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"encode takes a str, got {type(text).__name__}")
    return text.encode("utf-8", errors="replace")


class Tokenizer(ABC):
    """The interface: `encode`, `decode`, `vocab_size`, `to_json`, and `token_bytes` (the
    number of UTF-8 bytes each token stands for, for bits per byte)."""

    kind = ""
    vocab_size = 0

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The token ids of `text`."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """The text of the tokens (invalid UTF-8 replaced)."""

    @abstractmethod
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The UTF-8 bytes the tokens stand for (a stream decodes them incrementally)."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The record a checkpoint carries (`tokenizer_from_json` reads it back)."""

    @abstractmethod
    def token_bytes(self) -> list[int]:
        """How many UTF-8 bytes each token id stands for."""

    def describe(self) -> str:
        return f"{self.kind} (vocab {self.vocab_size})"

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        out = [int(i) for i in ids]
        bad = [i for i in out if not 0 <= i < self.vocab_size]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside the {self.kind} tokenizer's "
                                 f"vocabulary 0..{self.vocab_size - 1}")
        return out


class ByteTokenizer(Tokenizer):
    """One token per UTF-8 byte: vocabulary 256, nothing to train or store."""

    kind = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(_utf8(text))

    def encode_bytes(self, data: bytes) -> bytes:
        """Token ids of raw UTF-8 bytes, as the bytes themselves (no copy to a list)."""
        return data

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return bytes(self._check_ids(ids))

    def to_json(self) -> dict[str, Any]:
        return {"type": "bytes", "version": _JSON_VERSION}

    def token_bytes(self) -> list[int]:
        return [1] * 256

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash("bytes")


def _need_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise TokenizerError("the BPE tokenizer needs the `tokenizers` package",
                             help="pip install tokenizers (or use --tokenizer bytes)") from None
    return tokenizers


def byte_alphabet() -> dict[int, str]:
    """The byte-level alphabet: each byte's printable stand-in character (GPT-2's table,
    which the `tokenizers` ByteLevel pre-tokenizer and decoder use)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + \
        list(range(0xAE, 0x100))
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


_ALPHABET = byte_alphabet()
_CHAR_BYTE = {c: b for b, c in _ALPHABET.items()}


class BpeTokenizer(Tokenizer):
    """Byte-level BPE: text → UTF-8 bytes → the byte alphabet → merges. Build it with
    :func:`train_bpe`, :func:`bpe_from_hf_json` or :func:`tokenizer_from_json`.

    ``pre`` names the pre-tokenizer (:data:`PRE_TOKENIZERS`), ``ignore_merges`` emits a word
    that is itself in the vocabulary whole (Llama 3's tokenizer does), ``special`` maps each
    special token's text to its id: found in the text before the merges, never split."""

    kind = "bpe"

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]],
                 pre: str = "gpt2", ignore_merges: bool = False,
                 special: dict[str, int] | None = None) -> None:
        special = dict(special or {})
        _check_bpe(vocab, merges, pre, ignore_merges, special)
        tk = _need_tokenizers()
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
        try:
            model = models.BPE(vocab=dict(vocab), merges=[(a, b) for a, b in merges],
                               ignore_merges=ignore_merges)
            tok = tk.Tokenizer(model)
            pattern = PRE_TOKENIZERS[pre]
            if pattern is None:
                tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            else:
                tok.pre_tokenizer = pre_tokenizers.Sequence([
                    pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
            tok.decoder = decoders.ByteLevel()
            for text, _ in sorted(special.items(), key=lambda kv: kv[1]):
                tok.add_special_tokens([AddedToken(text, special=True, normalized=False)])
        except Exception as exc:  # noqa: BLE001 - the library's own refusal, reported
            raise TokenizerError(f"cannot build the BPE tokenizer: {exc}") from None
        for text, i in special.items():
            if tok.token_to_id(text) != i:
                raise TokenizerError(f"BPE tokenizer: special token {text[:40]!r} should have id "
                                     f"{i}, but the vocabulary gives it "
                                     f"{tok.token_to_id(text)}")
        self._tok = tok
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.pre = pre
        self.ignore_merges = bool(ignore_merges)
        self.special = special
        self.vocab_size = len(set(vocab.values()) | set(special.values()))
        self._lengths: list[int] | None = None

    def encode(self, text: str) -> list[int]:
        data = _utf8(text)
        # through the byte-level alphabet ourselves: the pre-tokenizer's own handling of
        # replacement characters must not change what the bytes are
        return list(self._tok.encode(data.decode("utf-8"), add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        enc = self._tok.encode_batch([_utf8(t).decode("utf-8") for t in texts],
                                     add_special_tokens=False)
        return [list(e.ids) for e in enc]

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        inverse = self._inverse()
        return b"".join(inverse[i] for i in self._check_ids(ids))

    def _inverse(self) -> list[bytes]:
        inv = getattr(self, "_inv", None)
        if inv is None:
            inv = [b""] * self.vocab_size
            for token, i in self.vocab.items():
                inv[i] = bytes(_CHAR_BYTE[c] for c in token)
            for text, i in self.special.items():     # a special token is its own text
                inv[i] = _utf8(text)
            self._inv = inv
        return inv

    def token_bytes(self) -> list[int]:
        if self._lengths is None:
            self._lengths = [len(b) for b in self._inverse()]
        return self._lengths

    def id_tokens(self) -> list[tuple[str, bool]]:
        """Every id's token text as the vocabulary spells it (byte-level characters; a
        special token's own text) and whether it is special, in id order."""
        out: list[tuple[str, bool]] = [("", False)] * self.vocab_size
        for token, i in self.vocab.items():
            out[i] = (token, False)
        for text, i in self.special.items():
            out[i] = (text, True)
        return out

    def to_json(self) -> dict[str, Any]:
        blob: dict[str, Any] = {"type": "bpe", "version": _JSON_VERSION,
                                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                                "merges": [list(m) for m in self.merges]}
        if self.pre != "gpt2":
            blob["pre"] = self.pre
        if self.ignore_merges:
            blob["ignore_merges"] = True
        if self.special:
            blob["special"] = dict(sorted(self.special.items(), key=lambda kv: kv[1]))
        return blob

    def describe(self) -> str:
        extra = f", {self.pre} pre-tokenizer" if self.pre != "gpt2" else ""
        if self.special:
            extra += f", {len(self.special)} special"
        return f"{self.kind} (vocab {self.vocab_size}{extra})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BpeTokenizer) and self.vocab == other.vocab \
            and self.merges == other.merges and self.pre == other.pre \
            and self.ignore_merges == other.ignore_merges and self.special == other.special

    def __hash__(self) -> int:
        return hash(("bpe", self.vocab_size))


def _check_bpe(vocab: Any, merges: Any, pre: Any = "gpt2", ignore_merges: Any = False,
               special: Any = None) -> None:
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerError("BPE tokenizer: `vocab` must be a non-empty object "
                             "{token: id}")
    special = {} if special is None else special
    if not isinstance(special, dict) or len(special) > MAX_SPECIAL:
        raise TokenizerError(f"BPE tokenizer: `special` must be an object {{token: id}} of at "
                             f"most {MAX_SPECIAL} tokens")
    if len(vocab) + len(special) > MAX_BPE_VOCAB:
        raise TokenizerError(f"BPE tokenizer: {len(vocab) + len(special)} tokens, more than "
                             f"the {MAX_BPE_VOCAB} allowed")
    if not isinstance(pre, str) or pre not in PRE_TOKENIZERS:
        raise TokenizerError(f"BPE tokenizer: unknown pre-tokenizer {str(pre)[:40]!r}",
                             help=f"one of {', '.join(PRE_TOKENIZERS)}")
    if not isinstance(ignore_merges, bool):
        raise TokenizerError("BPE tokenizer: `ignore_merges` must be true or false")
    ids: dict[int, str] = {}
    for token, i in vocab.items():
        if not isinstance(token, str) or not token or len(token) > 1024:
            raise TokenizerError(f"BPE tokenizer: a token must be a non-empty string of at "
                                 f"most 1024 characters, got {str(token)[:40]!r}")
        if any(c not in _CHAR_BYTE for c in token):
            raise TokenizerError(f"BPE tokenizer: token {token[:40]!r} has characters outside "
                                 "the byte-level alphabet")
        if isinstance(i, bool) or not isinstance(i, int) or i in ids:
            raise TokenizerError(f"BPE tokenizer: token ids must be whole numbers, each once; "
                                 f"{token[:40]!r} has {str(i)[:40]}")
        ids[i] = token
    for text, i in special.items():
        if not isinstance(text, str) or not text or len(text) > MAX_SPECIAL_CHARS:
            raise TokenizerError(f"BPE tokenizer: a special token must be a non-empty string "
                                 f"of at most {MAX_SPECIAL_CHARS} characters, got "
                                 f"{str(text)[:40]!r}")
        if isinstance(i, bool) or not isinstance(i, int) or (i in ids and ids[i] != text):
            raise TokenizerError(f"BPE tokenizer: special token {text[:40]!r} has id "
                                 f"{str(i)[:40]}, not a free id or its own vocabulary entry")
        ids[i] = text
    n = len(ids)
    if min(ids) != 0 or max(ids) != n - 1:
        raise TokenizerError(f"BPE tokenizer: token ids must be 0..{n - 1}, each once; found "
                             f"{min(ids)}..{max(ids)}")
    missing = [c for c in _ALPHABET.values() if c not in vocab]
    if missing:
        raise TokenizerError(f"BPE tokenizer: {len(missing)} of the 256 byte-level symbols "
                             "are not in the vocabulary (every text must be encodable)")
    if not isinstance(merges, list) or len(merges) > MAX_BPE_VOCAB:
        raise TokenizerError("BPE tokenizer: `merges` must be a list of token pairs")
    for m in merges:
        if not isinstance(m, list | tuple) or len(m) != 2 \
                or not all(isinstance(t, str) and t in vocab for t in m) \
                or m[0] + m[1] not in vocab:
            raise TokenizerError(f"BPE tokenizer: merge {str(m)[:60]} is not two tokens of "
                                 "the vocabulary whose concatenation is one too")


def train_bpe(texts: Iterable[str], vocab_size: int = 1024) -> BpeTokenizer:
    """A byte-level BPE tokenizer with `vocab_size` tokens (at least 257: the 256 bytes and
    one merge), learned from `texts` locally with the `tokenizers` package."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) \
            or not 257 <= vocab_size <= MAX_BPE_VOCAB:
        raise TokenizerError(f"BPE vocabulary size must be a whole number from 257 to "
                             f"{MAX_BPE_VOCAB}, got {vocab_size!r}")
    import json

    tk = _need_tokenizers()
    from tokenizers import decoders, models, pre_tokenizers, trainers
    tok = tk.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator((_utf8(t).decode("utf-8") for t in texts), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
              for m in model["merges"]]
    return BpeTokenizer(model["vocab"], merges)


def _hf_pre(pre: Any) -> str:
    """The name (:data:`PRE_TOKENIZERS`) of a Hugging Face byte-level pre-tokenizer."""
    def byte_level(p: Any, use_regex: bool) -> bool:
        return isinstance(p, dict) and p.get("type") == "ByteLevel" \
            and not p.get("add_prefix_space", False) and p.get("use_regex", True) == use_regex
    if byte_level(pre, True):
        return "gpt2"
    if isinstance(pre, dict) and pre.get("type") == "Sequence":
        parts = pre.get("pretokenizers")
        if isinstance(parts, list) and len(parts) == 2 and byte_level(parts[1], False):
            split = parts[0]
            pattern = split.get("pattern") if isinstance(split, dict) else None
            regex = pattern.get("Regex") if isinstance(pattern, dict) else None
            if split.get("type") == "Split" and split.get("behavior") == "Isolated" \
                    and not split.get("invert", False) and isinstance(regex, str):
                for name, known in PRE_TOKENIZERS.items():
                    if regex == (known or _GPT2_PATTERN):
                        return name
                raise TokenizerError(
                    f"tokenizer.json: its pre-tokenizer splits with a pattern Tritium does not "
                    f"know ({regex[:60]!r}...)",
                    help=f"the byte-level patterns known: {', '.join(PRE_TOKENIZERS)}")
    kind = pre.get("type") if isinstance(pre, dict) else type(pre).__name__
    raise TokenizerError(f"tokenizer.json: its pre-tokenizer ({str(kind)[:40]}) is not a "
                         "byte-level one Tritium can reproduce",
                         help="byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2 style) convert")


def bpe_from_hf_json(blob: Any) -> BpeTokenizer:
    """The :class:`BpeTokenizer` equal to a Hugging Face ``tokenizer.json`` (parsed): a BPE
    model over the byte-level alphabet, no normalizer, a byte-level pre-tokenizer of a known
    pattern, its added tokens as special tokens. Anything else is a TokenizerError saying
    what cannot be reproduced (a SentencePiece tokenizer with byte fallback, a normalizer,
    BPE dropout, a word suffix, an added token with lstrip, rstrip or single_word...)."""
    if not isinstance(blob, dict):
        raise TokenizerError("tokenizer.json: not a JSON object")
    model = blob.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise TokenizerError(f"tokenizer.json: the model is {str(kind)[:40]}, not BPE",
                             help="byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2 style) "
                                  "convert")
    for key, ok in (("dropout", (None, 0, 0.0)), ("unk_token", (None,)),
                    ("continuing_subword_prefix", (None, "")), ("end_of_word_suffix", (None, "")),
                    ("byte_fallback", (None, False))):
        if model.get(key) not in ok:
            raise TokenizerError(f"tokenizer.json: the BPE model sets `{key}` "
                                 f"({str(model.get(key))[:40]}), which a byte-level BPE does "
                                 "not use and Tritium cannot reproduce")
    if blob.get("normalizer") is not None:
        raise TokenizerError("tokenizer.json: it normalizes text before tokenizing, which "
                             "Tritium cannot reproduce")
    pre = _hf_pre(blob.get("pre_tokenizer"))
    vocab = model.get("vocab")
    merges_in = model.get("merges")
    if not isinstance(merges_in, list):
        raise TokenizerError("tokenizer.json: the BPE model has no list of merges")
    merges: list[Any] = []
    for m in merges_in:
        if isinstance(m, str):
            a, sep, b = m.partition(" ")
            merges.append((a, b) if sep else m)
        else:
            merges.append(m)
    ignore = model.get("ignore_merges", False)
    special: dict[str, int] = {}
    added = blob.get("added_tokens", [])
    if not isinstance(added, list) or len(added) > MAX_SPECIAL:
        raise TokenizerError(f"tokenizer.json: `added_tokens` must be a list of at most "
                             f"{MAX_SPECIAL} tokens")
    for t in added:
        if not isinstance(t, dict) or not isinstance(t.get("content"), str) \
                or isinstance(t.get("id"), bool) or not isinstance(t.get("id"), int):
            raise TokenizerError(f"tokenizer.json: added token {str(t)[:60]} has no content "
                                 "and id")
        if t["content"] in special:
            raise TokenizerError(f"tokenizer.json: added token {t['content'][:40]!r} twice")
        # lstrip/rstrip take the whitespace beside the token into it, single_word matches it
        # only as a whole word: the `tokenizers` package encodes such text otherwise
        flags = [k for k in ("lstrip", "rstrip", "single_word") if t.get(k) not in (None, False)]
        if flags:
            raise TokenizerError(f"tokenizer.json: added token {t['content'][:40]!r} sets "
                                 f"{' and '.join(flags)}, which Tritium cannot reproduce")
        special[t["content"]] = t["id"]
    return BpeTokenizer(vocab, merges, pre, ignore, special)  # type: ignore[arg-type]


def hf_prompt_template(blob: Any, tok: BpeTokenizer) -> tuple[list[int], list[int]]:
    """The token ids a Hugging Face ``tokenizer.json`` (parsed) puts before and after a
    single text when transformers' tokenizer encodes it (``tokenizer(text)``): its
    post-processor's ``single`` template (``TemplateProcessing``: Llama 3's
    ``<|begin_of_text|> $A``), alone or in a ``Sequence`` beside ``ByteLevel`` (which only
    moves offsets); none for ``ByteLevel`` or no post-processor (GPT-2, Qwen2). Every id must
    be one of `tok`'s; any other post-processor is a TokenizerError."""
    post = blob.get("post_processor") if isinstance(blob, dict) else None
    parts: Any = [post]
    if isinstance(post, dict) and post.get("type") == "Sequence":
        parts = post.get("processors")
        if not isinstance(parts, list) or len(parts) > 16:
            raise TokenizerError("tokenizer.json: `post_processor.processors` must be a list "
                                 "of at most 16 post-processors")
    before: list[int] = []
    after: list[int] = []
    templates = 0
    for p in parts:
        kind = p.get("type") if isinstance(p, dict) else None
        if p is None or kind == "ByteLevel":
            continue
        if kind != "TemplateProcessing" or templates:
            raise TokenizerError(f"tokenizer.json: its post-processor ({str(kind)[:40]}) adds "
                                 "tokens in a way Tritium cannot reproduce",
                                 help="TemplateProcessing and ByteLevel post-processors "
                                      "convert")
        templates += 1
        before, after = _template_ids(p, tok)
    return before, after


def _template_ids(p: dict[str, Any], tok: BpeTokenizer) -> tuple[list[int], list[int]]:
    where = "tokenizer.json: `post_processor`"
    single, specials = p.get("single"), p.get("special_tokens")
    if not isinstance(single, list) or len(single) > 64 or not isinstance(specials, dict):
        raise TokenizerError(f"{where}: a TemplateProcessing needs `single` (a list of at most "
                             "64 pieces) and `special_tokens` (an object)")
    out: tuple[list[int], list[int]] = ([], [])
    side = 0
    for item in single:
        kind, value = next(iter(item.items())) if isinstance(item, dict) and len(item) == 1 \
            else (None, None)
        name = value.get("id") if isinstance(value, dict) else None
        if kind == "Sequence" and name == "A" and side == 0:
            side = 1
            continue
        entry = specials.get(name) if kind == "SpecialToken" and isinstance(name, str) \
            else None
        ids = entry.get("ids") if isinstance(entry, dict) else None
        if not isinstance(ids, list) or len(ids) > 64:
            raise TokenizerError(f"{where}: template piece {str(item)[:60]} is neither the text "
                                 "($A, once) nor a special token listed with its ids")
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < tok.vocab_size:
                raise TokenizerError(f"{where}: special token {name[:40]!r} has id "
                                     f"{str(i)[:40]}, not a token of the tokenizer "
                                     f"(0..{tok.vocab_size - 1})")
        out[side].extend(ids)
    if side == 0:
        raise TokenizerError(f"{where}: its `single` template has no $A (the text)")
    return out


def tokenizer_from_json(blob: Any) -> Tokenizer:
    """The tokenizer `to_json()` described; anything else is a TokenizerError."""
    if not isinstance(blob, dict):
        raise TokenizerError(f"a tokenizer must be a JSON object, got {type(blob).__name__}")
    kind = blob.get("type")
    version = blob.get("version")
    if isinstance(version, bool) or version != _JSON_VERSION:
        raise TokenizerError(f"unsupported tokenizer version {str(version)[:20]}",
                             help=f"this Tritium reads version {_JSON_VERSION}")
    if kind == "bytes":
        extra = set(blob) - {"type", "version"}
        if extra:
            raise TokenizerError(f"bytes tokenizer: unexpected keys {sorted(map(str, extra))[:5]}")
        return ByteTokenizer()
    if kind == "bpe":
        extra = set(blob) - {"type", "version", "vocab", "merges", "pre", "ignore_merges",
                             "special"}
        if extra:
            raise TokenizerError(f"BPE tokenizer: unexpected keys {sorted(map(str, extra))[:5]}")
        special = blob.get("special", {})
        if not isinstance(special, dict):
            raise TokenizerError("BPE tokenizer: `special` must be an object {token: id}")
        return BpeTokenizer(blob.get("vocab"), blob.get("merges"),  # type: ignore[arg-type]
                            blob.get("pre", "gpt2"), blob.get("ignore_merges", False),
                            special)
    raise TokenizerError(f"unknown tokenizer type {str(kind)[:40]!r}", help="bytes or bpe")


def parse_tokenizer_spec(spec: str) -> tuple[str, int]:
    """`bytes` → ("bytes", 256); `bpe` → ("bpe", 1024); `bpe:VOCAB` → ("bpe", VOCAB)."""
    text = spec.strip().lower()
    shown = repr(spec) if len(spec) <= 40 else repr(spec[:40]) + "..."
    if text in ("bytes", "byte"):
        return "bytes", 256
    kind, _, size = text.partition(":")
    if kind == "bpe":
        if not size:
            return "bpe", 1024
        if size.isascii() and size.isdigit() and 257 <= int(size) <= MAX_BPE_VOCAB:
            return "bpe", int(size)
        raise TokenizerError(f"--tokenizer {shown}: the BPE vocabulary must be a whole number "
                             f"from 257 to {MAX_BPE_VOCAB}")
    raise TokenizerError(f"unknown tokenizer {shown}", help="bytes, bpe or bpe:VOCAB")
