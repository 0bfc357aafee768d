"""The tokenizer and generation settings `tritium import hf` gives the checkpoint it writes:
the model directory's ``tokenizer.json`` converted (data/tokenizer.py's
``bpe_from_hf_json``), or the byte tokenizer with the reason the file was not used; and what
transformers' tokenizer and ``generate`` would do around it (:func:`generation_record`):
the token ids its tokenizer puts before a prompt (Llama's BOS), the end-of-sequence ids that
end a generation (every one of a list), from ``generation_config.json`` when the directory
has one, as transformers reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BYTE_TOKENIZER", "GENERATION_KEYS", "GenerationSettings", "HFImportError",
           "MAX_TOKENIZER_BYTES", "generation_record", "read_generation_record",
           "read_hf_tokenizer", "read_json_object", "read_small"]

class HFImportError(Exception):
    """The checkpoint directory cannot be imported; `help` says what to do."""

    def __init__(self, message: str, help: str | None = None,  # noqa: A002
                 usage: bool = False) -> None:
        self.message = message
        self.help = help
        self.usage = usage        # a bad command-line path (exit 2), not a bad checkpoint
        super().__init__(message)


def read_small(path: Path, limit: int, what: str) -> bytes:
    """The bytes of the small file `path`, read bounded (`limit`): an HFImportError if it
    is larger or cannot be read."""
    from ..argcheck import ArgError, open_input
    try:
        with open_input(path, what) as f:
            data = f.read(limit + 1)
    except ArgError as exc:
        raise HFImportError(exc.message) from None
    except OSError as exc:
        raise HFImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise HFImportError(f"{path} is larger than {limit} bytes; not a config file")
    return data


#: the byte-level tokenizer record of a checkpoint (ids 0..255 are the bytes)
BYTE_TOKENIZER = '{"type":"bytes","version":1}'
#: a tokenizer.json larger than this is not read (Llama 3's is about 9 MB)
MAX_TOKENIZER_BYTES = 64 << 20
#: generation_config.json is read up to this many bytes
MAX_SMALL_BYTES = 1 << 20
#: the most end-of-sequence ids a generation_config.json or config.json may list
MAX_EOS_IDS = 4096


def read_hf_tokenizer(directory: Path, vocab: int
                      ) -> tuple[str | None, str, tuple[list[int], list[int]]]:
    """The tokenizer record (JSON text) a checkpoint imported from ``directory`` carries,
    a line saying what it is, and the token ids transformers' tokenizer puts before and
    after a text: the directory's ``tokenizer.json`` converted (data/tokenizer.py's
    ``bpe_from_hf_json``: byte-level BPE, every id below the model's vocabulary) with its
    post-processor's template (``hf_prompt_template``: Llama 3's BOS), else the byte tokenizer
    (token id = byte, nothing added) when the vocabulary has room for the 256 bytes, with the
    reason the file was not used; ``None`` when neither fits.

    tokenizer_config.json's ``add_bos_token``/``add_eos_token`` are not read: transformers
    drops them when the directory has a tokenizer.json (its post-processor says what is
    added; save_pretrained writes the two in agreement)."""
    from ..argcheck import ArgError, open_input
    from ..cachedir import parse_json
    from ..data.tokenizer import TokenizerError, bpe_from_hf_json, hf_prompt_template
    path = directory / "tokenizer.json"
    why = "no tokenizer.json"
    if path.exists():
        try:
            with open_input(path, "tokenizer") as f:   # a regular file, read bounded
                data = f.read(MAX_TOKENIZER_BYTES + 1)
            if len(data) > MAX_TOKENIZER_BYTES:
                raise TokenizerError(f"it is larger than {MAX_TOKENIZER_BYTES} bytes")
            blob = parse_json(data, max_depth=16)
            tok = bpe_from_hf_json(blob)
            if tok.vocab_size > vocab:
                raise TokenizerError(f"its {tok.vocab_size} tokens do not fit the model's "
                                     f"vocabulary of {vocab}")
            template = hf_prompt_template(blob, tok)
            return (json.dumps(tok.to_json(), separators=(",", ":")),
                    f"tokenizer.json: {tok.describe()}", template)
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
        return BYTE_TOKENIZER, f"bytes (token id = byte; {why})", ([], [])
    return None, f"none ({why}; the vocabulary of {vocab} cannot hold the 256 bytes)", ([], [])


def read_json_object(path: Path, limit: int = MAX_SMALL_BYTES) -> dict[str, Any] | None:
    """The JSON object in the small file `path` (config.json, generation_config.json; None
    when there is none): read bounded; anything else is an HFImportError naming the file."""
    from ..cachedir import parse_json
    if not path.exists():
        return None
    data = read_small(path, limit, "config")
    try:
        blob = parse_json(data, max_depth=16)
    except ValueError as exc:
        raise HFImportError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(blob, dict):
        raise HFImportError(f"{path} is not a JSON object")
    return blob


def _token_ids(cfg: dict[str, Any], key: str, where: Path, vocab: int,
               many: bool = False) -> list[int]:
    """The ids of `key` (an id, null, or with `many` a list of ids), those below `vocab`
    (an id the model cannot produce or read never comes: config.json's pad_token_id -1)."""
    value = cfg.get(key)
    values = value if many and isinstance(value, list) else [] if value is None else [value]
    if len(values) > MAX_EOS_IDS or not all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in values):
        raise HFImportError(f"{where}: `{key}` must be a token id (a whole number)"
                            + (f", a list of at most {MAX_EOS_IDS} of them" if many else "")
                            + f" or null, got {str(value)[:60]!r}")
    return list(dict.fromkeys(v for v in values if 0 <= v < vocab))


def generation_record(directory: Path, arch: Any, template: tuple[list[int], list[int]]
                      ) -> tuple[str, str]:
    """The generation settings a checkpoint imported from `directory` records
    (models.GENERATION_KEY, JSON text) and a line saying what they are: ``eos`` (every
    end-of-sequence id: generation stops at any of them), ``bos``, ``pad``, and ``prefix``
    and ``suffix`` (the ids `template` says the tokenizer puts around a prompt). The ids
    come from ``generation_config.json`` when the directory has one (all of them: transformers
    then reads none from config.json), else from config.json (`arch.extra["special"]`)."""
    path = directory / "generation_config.json"
    cfg = read_json_object(path)
    if cfg is None:
        path, cfg = directory / "config.json", arch.extra.get("special", {})
    eos = _token_ids(cfg, "eos_token_id", path, arch.vocab, many=True)
    bos = _token_ids(cfg, "bos_token_id", path, arch.vocab)
    pad = _token_ids(cfg, "pad_token_id", path, arch.vocab)
    prefix, suffix = template
    record = {"eos": eos, "bos": bos[0] if bos else None, "pad": pad[0] if pad else None,
              "prefix": prefix, "suffix": suffix}
    note = (f"stops at token {' or '.join(map(str, eos))}" if eos else "no end-of-text token")
    note += f" ({path.name})"
    if prefix or suffix:
        note += f"; prompts are {' '.join(map(str, prefix))} TEXT {' '.join(map(str, suffix))}"
    return json.dumps(record, separators=(",", ":")), note.replace("  ", " ").strip()


#: the keys of the generation record (models.GENERATION_KEY), each a token id (``bos``,
#: ``pad``: or null) or a list of them
GENERATION_KEYS = ("eos", "bos", "pad", "prefix", "suffix")


@dataclass(frozen=True)
class GenerationSettings:
    """What transformers' tokenizer and ``generate`` do around a model's text: the
    end-of-sequence ids (drawing any of them ends a generation), the BOS and pad ids, and
    the ids put before (``prefix``: Llama's BOS) and after every prompt."""

    eos: tuple[int, ...] = ()
    bos: int | None = None
    pad: int | None = None
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()


def read_generation_record(text: Any, where: str) -> GenerationSettings:
    """The generation record :func:`generation_record` wrote, validated again (a checkpoint
    is untrusted): an HFImportError naming `where` when it is damaged."""
    from ..cachedir import parse_json
    from .models import GENERATION_KEY
    try:
        d = parse_json(text, max_depth=2) if isinstance(text, str) else None
    except ValueError:
        d = None
    ok = isinstance(d, dict) and set(d) == set(GENERATION_KEYS)
    for k in GENERATION_KEYS if ok else ():
        v = d[k] if k in ("eos", "prefix", "suffix") else [] if d[k] is None else [d[k]]
        ok = ok and isinstance(v, list) and len(v) <= MAX_EOS_IDS and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 1 << 31 for i in v)
    if not ok:
        raise HFImportError(f"{where}: its `{GENERATION_KEY}` record is damaged",
                            help=f"an object with the token ids {', '.join(GENERATION_KEYS)}, "
                                 "as `tritium import hf` writes it: import the model again")
    return GenerationSettings(tuple(d["eos"]), d["bos"], d["pad"], tuple(d["prefix"]),
                              tuple(d["suffix"]))
