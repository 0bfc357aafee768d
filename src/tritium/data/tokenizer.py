"""Tokenizers for language models: bytes (the default) and byte-level BPE.

    tok = ByteTokenizer()                          # vocab 256: a token is a UTF-8 byte
    tok = train_bpe(texts, vocab_size=1024)         # byte-level BPE learned from `texts`
    ids = tok.encode("def f(x):")                   # list[int]
    tok.decode(ids)                                 # str (bad UTF-8 decodes to U+FFFD)
    blob = tok.to_json()                            # a dict a checkpoint carries
    tok = tokenizer_from_json(blob)                 # validated: TokenizerError if wrong

Text is encoded as UTF-8; characters UTF-8 cannot encode (lone surrogates) become `?`.
Both tokenizers are lossless on every other string: `decode(encode(s)) == s`.

A BPE tokenizer's JSON holds only its vocabulary and merges (never executable options); on
load both are checked (ids 0..n-1 each once, every byte of the byte-level alphabet present,
each merge of two known tokens giving a known token) before the `tokenizers` package builds
it, so a damaged or hostile checkpoint is a :class:`TokenizerError`, not a traceback. This
module does not import torch; BPE needs the `tokenizers` package (`pip install tokenizers`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

__all__ = [
    "BpeTokenizer",
    "ByteTokenizer",
    "MAX_BPE_VOCAB",
    "Tokenizer",
    "TokenizerError",
    "parse_tokenizer_spec",
    "tokenizer_from_json",
    "train_bpe",
]

#: the largest BPE vocabulary accepted (a checkpoint asking for more is refused)
MAX_BPE_VOCAB = 1 << 18
_JSON_VERSION = 1


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


def _byte_alphabet() -> dict[int, str]:
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


_ALPHABET = _byte_alphabet()
_CHAR_BYTE = {c: b for b, c in _ALPHABET.items()}


class BpeTokenizer(Tokenizer):
    """Byte-level BPE: text → UTF-8 bytes → the byte alphabet → merges. Build it with
    :func:`train_bpe` or :func:`tokenizer_from_json`."""

    kind = "bpe"

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        _check_bpe(vocab, merges)
        tk = _need_tokenizers()
        from tokenizers import decoders, models, pre_tokenizers
        try:
            model = models.BPE(vocab=dict(vocab), merges=[(a, b) for a, b in merges])
            tok = tk.Tokenizer(model)
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
        except Exception as exc:  # noqa: BLE001 - the library's own refusal, reported
            raise TokenizerError(f"cannot build the BPE tokenizer: {exc}") from None
        self._tok = tok
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.vocab_size = len(vocab)
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
            self._inv = inv
        return inv

    def token_bytes(self) -> list[int]:
        if self._lengths is None:
            self._lengths = [len(b) for b in self._inverse()]
        return self._lengths

    def to_json(self) -> dict[str, Any]:
        return {"type": "bpe", "version": _JSON_VERSION,
                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                "merges": [list(m) for m in self.merges]}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BpeTokenizer) and self.vocab == other.vocab \
            and self.merges == other.merges

    def __hash__(self) -> int:
        return hash(("bpe", self.vocab_size))


def _check_bpe(vocab: Any, merges: Any) -> None:
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerError("BPE tokenizer: `vocab` must be a non-empty object "
                             "{token: id}")
    if len(vocab) > MAX_BPE_VOCAB:
        raise TokenizerError(f"BPE tokenizer: {len(vocab)} tokens, more than the "
                             f"{MAX_BPE_VOCAB} allowed")
    seen = [False] * len(vocab)
    for token, i in vocab.items():
        if not isinstance(token, str) or not token or len(token) > 1024:
            raise TokenizerError(f"BPE tokenizer: a token must be a non-empty string of at "
                                 f"most 1024 characters, got {str(token)[:40]!r}")
        if any(c not in _CHAR_BYTE for c in token):
            raise TokenizerError(f"BPE tokenizer: token {token[:40]!r} has characters outside "
                                 "the byte-level alphabet")
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(vocab) \
                or seen[i]:
            raise TokenizerError(f"BPE tokenizer: token ids must be 0..{len(vocab) - 1}, each "
                                 f"once; {token[:40]!r} has {str(i)[:40]}")
        seen[i] = True
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
        extra = set(blob) - {"type", "version", "vocab", "merges"}
        if extra:
            raise TokenizerError(f"BPE tokenizer: unexpected keys {sorted(map(str, extra))[:5]}")
        return BpeTokenizer(blob.get("vocab"), blob.get("merges"))  # type: ignore[arg-type]
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
