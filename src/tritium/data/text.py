"""Text corpora for language models: `--data text` and `--data text:PATH`.

    corpus = load_text("text")                     # the Python standard library's source
    corpus = load_text("text:notes/", max_bytes=1_000_000)
    tokens = encode_split(tokenizer, corpus.train)  # one flat array of token ids
    windows = pack_windows(tokens, seq=128)         # [N, 129]: inputs w[:, :-1], targets w[:, 1:]

`text` alone is the embedded default corpus: the `*.py` files of the running Python's
standard library (`sysconfig.get_paths()["stdlib"]`, without `site-packages`), sorted by
path, so every installation of the same Python reads the same text. `text:PATH` is a
UTF-8 text file or a directory of them, read recursively in sorted order (names starting
with `.` are skipped); a file that is not UTF-8 text (a NUL byte, undecodable bytes) or an
empty corpus is a :class:`~tritium.data.DatasetError` naming the file.

Held-out data is split by file, deterministically: files are ordered by the SHA-256 of
their relative path and the first `holdout` share goes to validation, the next to test
(each at least one file). With fewer than three files the text itself is cut instead:
the last 10 % of each file is test, the 10 % before it validation.
"""

from __future__ import annotations

import hashlib
import math
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import DatasetError

__all__ = ["TextCorpus", "encode_split", "is_text_spec", "load_text", "pack_windows",
           "stdlib_dir"]

#: the largest text file read (larger ones are an error: split them)
MAX_FILES = 20000          # files a text corpus directory may hold
MAX_FILE_BYTES = 1 << 30


@dataclass
class TextCorpus:
    """Train, validation and test documents as `(relative name, text)` pairs."""

    name: str
    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    files: int = 0
    split_by: str = "file"            # or "text" (fewer than three files)
    skipped: list[str] = field(default_factory=list)

    def nbytes(self, split: str) -> int:
        return sum(len(t.encode("utf-8", errors="replace")) for _, t in getattr(self, split))


def is_text_spec(spec: str | None) -> bool:
    return spec is not None and (spec.strip().lower() == "text"
                                 or spec.startswith("text:"))


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> tuple[Path, list[Path]]:
    root = stdlib_dir()
    skip = {"site-packages", "dist-packages", "__pycache__"}
    files = [p for p in root.rglob("*.py")
             if not skip.intersection(p.relative_to(root).parts) and p.is_file()]
    return root, sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _tree_files(root: Path) -> list[Path]:
    """The non-empty regular files under `root` (hidden ones skipped), at most MAX_FILES: a
    spec naming `/` (which a checkpoint may record) would otherwise walk the whole machine,
    and reading a pseudo-file (size 0 in /proc, e.g. /proc/kmsg) can block forever."""
    from ..argcheck import show_path
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            p = Path(dirpath) / f
            try:
                if not p.is_file() or p.stat().st_size == 0:   # regular files (and links)
                    continue
            except OSError:
                continue
            out.append(p)
            if len(out) > MAX_FILES:
                raise DatasetError(f"text corpus {show_path(root)} holds more than {MAX_FILES} "
                                   "files", help="name a directory of text files, or one file",
                                   code=2)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _read_text(p: Path, shown: str) -> str | None:
    """The file's text; None when it is not UTF-8 text (the caller decides)."""
    from ..argcheck import input_problem
    problem = input_problem(p)
    if problem is not None:
        raise DatasetError(f"cannot read text {shown}: {problem}", code=2)
    if p.stat().st_size > MAX_FILE_BYTES:
        raise DatasetError(f"text file {shown} is larger than {MAX_FILE_BYTES >> 20} MiB",
                           help="split it into several files in a directory")
    raw = p.read_bytes()
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def load_text(spec: str, max_bytes: int | None = None, holdout: float = 0.1) -> TextCorpus:
    """The corpus `spec` names (`text` or `text:PATH`), at most `max_bytes` bytes of UTF-8
    text in all (each split gets its share: `holdout` each for validation and test)."""
    from ..argcheck import show_path
    if not is_text_spec(spec):
        raise DatasetError(f"`{spec}` is not a text corpus", help="text or text:PATH", code=2)
    if max_bytes is not None and max_bytes < 1:
        raise DatasetError("--max-bytes must be positive", code=2)
    holdout = min(max(float(holdout), 0.01), 0.45)
    target = spec.strip()[5:] if spec.strip().lower() != "text" else ""
    try:
        if not target:
            root, paths = _stdlib_files()
            name, strict = "stdlib", False
        else:
            root = Path(target).expanduser()
            if root.is_dir():
                paths = _tree_files(root)
            elif root.exists():
                paths = [root]
                root = root.parent
            else:
                raise DatasetError(f"--data text:{target}: {show_path(target)} does not exist",
                                   help="a UTF-8 text file or a directory of text files",
                                   code=2)
            name, strict = target, True
        return _load(name, root, paths, strict, max_bytes, holdout)
    except OSError as exc:
        where = show_path(exc.filename) if exc.filename else "the text"
        raise DatasetError(f"cannot read {where}: {exc.strerror or exc}", code=2) from None


def _rank(rel: str) -> bytes:
    return hashlib.sha256(rel.encode("utf-8", errors="surrogateescape")).digest()


def _load(name: str, root: Path, paths: list[Path], strict: bool, max_bytes: int | None,
          holdout: float) -> TextCorpus:
    from ..argcheck import show_path
    rels = [p.relative_to(root).as_posix() if p != root else p.name for p in paths]
    if not paths:
        raise DatasetError(f"--data text:{name}: no files", help="a UTF-8 text file or a "
                           "directory holding text files (empty files are skipped)", code=2)
    n = len(paths)
    if n >= 3:
        k = max(1, math.ceil(n * holdout))
        k = min(k, (n - 1) // 2)
        ranked = sorted(range(n), key=lambda i: _rank(rels[i]))
        val_idx, test_idx = set(ranked[:k]), set(ranked[k:2 * k])
    else:
        val_idx, test_idx = set(), set()
    budget = {"train": None, "val": None, "test": None}
    if max_bytes is not None:
        share = holdout if n >= 3 else 0.0
        budget = {"train": max(1, int(max_bytes * (1 - 2 * share))),
                  "val": max(1, int(max_bytes * share)), "test": max(1, int(max_bytes * share))}
        if n < 3:
            budget = {"train": max_bytes, "val": None, "test": None}
    used = {"train": 0, "val": 0, "test": 0}
    docs: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    skipped: list[str] = []
    for i, (p, rel) in enumerate(zip(paths, rels)):
        split = "val" if i in val_idx else "test" if i in test_idx else "train"
        cap = budget[split]
        if cap is not None and used[split] >= cap:
            continue
        text = _read_text(p, show_path(p))
        if text is None:
            if strict:
                raise DatasetError(f"{show_path(p)} is not UTF-8 text (binary or another "
                                   "encoding)", help="remove it, convert it to UTF-8, or point "
                                                     "--data text: at a directory of text files")
            skipped.append(rel)
            continue
        if cap is not None:
            room = cap - used[split]
            raw = text.encode("utf-8")
            if len(raw) > room:
                text = raw[:room].decode("utf-8", errors="ignore")
        if not text:
            continue
        used[split] += len(text.encode("utf-8"))
        docs[split].append((rel, text))
    if n < 3:
        split_docs = docs["train"]
        docs = {"train": [], "val": [], "test": []}
        for rel, text in split_docs:
            a, b = int(len(text) * (1 - 2 * holdout)), int(len(text) * (1 - holdout))
            docs["train"].append((rel, text[:a]))
            docs["val"].append((rel, text[a:b]))
            docs["test"].append((rel, text[b:]))
    for split in ("train", "val", "test"):
        docs[split] = [d for d in docs[split] if d[1]]
        if not docs[split]:
            raise DatasetError(f"--data text:{name}: the {split} split holds no text (the "
                               f"corpus is empty{' or too small' if split != 'train' else ''})",
                               help="give more text (or a larger --max-bytes)")
    return TextCorpus(name, docs["train"], docs["val"], docs["test"], files=n,
                      split_by="file" if n >= 3 else "text", skipped=skipped)


def encode_split(tokenizer, docs: list[tuple[str, str]]) -> np.ndarray:
    """The documents' tokens, one flat array (documents joined in order); uint16 when the
    vocabulary fits, int32 otherwise."""
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.int32
    if getattr(tokenizer, "kind", "") == "bytes":
        data = b"".join(t.encode("utf-8", errors="replace") for _, t in docs)
        return np.frombuffer(data, dtype=np.uint8).astype(dtype)
    if hasattr(tokenizer, "encode_batch"):
        parts = tokenizer.encode_batch([t for _, t in docs])
    else:
        parts = [tokenizer.encode(t) for _, t in docs]
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate([np.asarray(p, dtype=dtype) for p in parts])


def pack_windows(tokens: np.ndarray, seq: int) -> np.ndarray:
    """Non-overlapping windows of `seq + 1` tokens (stride `seq`, so every token but the
    first is a target exactly once): `[N, seq + 1]`; the tail shorter than a window is
    dropped. Inputs are `w[:, :-1]`, targets `w[:, 1:]`."""
    if seq < 1:
        raise ValueError("seq must be positive")
    n = (len(tokens) - 1) // seq
    if n <= 0:
        return np.zeros((0, seq + 1), dtype=tokens.dtype)
    idx = np.arange(n)[:, None] * seq + np.arange(seq + 1)[None, :]
    return tokens[idx]
