"""The tokenizer `tritium import hf` gives the checkpoint it writes: the model directory's
``tokenizer.json`` converted (data/tokenizer.py's ``bpe_from_hf_json``), or the byte
tokenizer with the reason the file was not used."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["BYTE_TOKENIZER", "MAX_TOKENIZER_BYTES", "read_hf_tokenizer"]

#: the byte-level tokenizer record of a checkpoint (ids 0..255 are the bytes)
BYTE_TOKENIZER = '{"type":"bytes","version":1}'
#: a tokenizer.json larger than this is not read (Llama 3's is about 9 MB)
MAX_TOKENIZER_BYTES = 64 << 20


def read_hf_tokenizer(directory: Path, vocab: int) -> tuple[str | None, str]:
    """The tokenizer record (JSON text) a checkpoint imported from ``directory`` carries,
    and a line saying what it is: the directory's ``tokenizer.json`` converted
    (data/tokenizer.py's ``bpe_from_hf_json``: byte-level BPE, every id below the model's
    vocabulary), else the byte tokenizer (token id = byte) when the vocabulary has room for
    the 256 bytes, with the reason the file was not used; ``None`` when neither fits."""
    from ..argcheck import ArgError, open_input
    from ..cachedir import parse_json
    from ..data.tokenizer import TokenizerError, bpe_from_hf_json
    path = directory / "tokenizer.json"
    why = "no tokenizer.json"
    if path.exists():
        try:
            with open_input(path, "tokenizer") as f:   # a regular file, read bounded
                data = f.read(MAX_TOKENIZER_BYTES + 1)
            if len(data) > MAX_TOKENIZER_BYTES:
                raise TokenizerError(f"it is larger than {MAX_TOKENIZER_BYTES} bytes")
            tok = bpe_from_hf_json(parse_json(data, max_depth=16))
            if tok.vocab_size > vocab:
                raise TokenizerError(f"its {tok.vocab_size} tokens do not fit the model's "
                                     f"vocabulary of {vocab}")
            return (json.dumps(tok.to_json(), separators=(",", ":")),
                    f"tokenizer.json: {tok.describe()}")
        except ArgError as exc:
            why = exc.message
        except OSError as exc:
            why = f"cannot read {path}: {exc.strerror or exc}"
        except ValueError as exc:
            why = f"{path} is not valid JSON: {exc}"
        except TokenizerError as exc:
            why = exc.message.removeprefix("tokenizer.json: ")
            why = f"tokenizer.json not used: {why}"
    if vocab >= 256:
        return BYTE_TOKENIZER, f"bytes (token id = byte; {why})"
    return None, f"none ({why}; the vocabulary of {vocab} cannot hold the 256 bytes)"
