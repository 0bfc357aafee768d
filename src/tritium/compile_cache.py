"""The compile cache: content-addressed entries under `<cache root>/compile`.

An entry is one JSON file named by the key (sha256 of the compiler version, the options and
the bytes of the main file and of every file it imports). Writes are atomic. Every entry is
untrusted when read back: it records its own key, and a sha256 over that key and the
payload, and is only served for that key, so a valid entry of one program copied under
another program's name is a miss, never the wrong program. The file is read with
:func:`tritium.cachedir.read_file_bounded` (never through a symbolic link, never from a
FIFO or device, at most :data:`MAX_ENTRY_BYTES`) and parsed with
:func:`tritium.cachedir.parse_json` (bounded nesting, no NaN); anything wrong -- truncated,
corrupted, foreign, malformed, not a regular file -- is deleted and rebuilt. Reads refresh
the entry's mtime; when the cache grows past its size cap the least recently used entries
are evicted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cachedir import atomic_write_bytes, cache_subdir, parse_json, read_file_bounded

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
FORMAT = 2
MAX_ENTRY_BYTES = 128 * 1024 * 1024
"""No entry is larger (a bigger file under the cache is not an entry; a bigger payload is
not stored)."""
MAX_ENTRY_DEPTH = 32
"""Payloads are shallow (the deepest, the Triton builds, nest 4 levels)."""
_KEY = re.compile(r"[0-9a-f]{16,128}")

Validator = Callable[[dict[str, Any]], "str | None"]


def max_bytes() -> int:
    raw = os.environ.get("TRITIUM_CACHE_MAX_BYTES")
    if raw:
        try:
            return max(int(raw), 0)
        except ValueError:
            warnings.warn(f"tritium: TRITIUM_CACHE_MAX_BYTES={raw!r} is not a whole number of "
                          f"bytes; using the default cap of {DEFAULT_MAX_BYTES} bytes",
                          RuntimeWarning, stacklevel=2)
    return DEFAULT_MAX_BYTES


@dataclass
class CacheStats:
    path: Path
    entries: int
    bytes: int
    max_bytes: int


class CompileCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else cache_subdir("compile")
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"compile cache keys are lowercase hex digests, got {key!r}")
        return self.root / f"{key}.json"

    def get(self, key: str, validate: Validator | None = None) -> dict | None:
        """The payload stored under ``key``, or None (a miss). A file that is not a valid
        entry *of this key* -- unreadable as a regular file, over the size bound, not JSON,
        nested too deeply, of another format, written for another key, failing its checksum,
        or whose payload ``validate`` rejects (it returns the reason) -- is deleted."""
        path = self._path(key)
        try:
            raw = read_file_bounded(path, MAX_ENTRY_BYTES)
        except FileNotFoundError:
            return None
        except OSError:
            self._drop(path)
            return None
        try:
            payload = _check_entry(key, raw)
            why = validate(payload) if validate is not None else None
            if why is not None:
                raise ValueError(why)
        except (ValueError, KeyError, TypeError):
            # corrupted, truncated, foreign or malformed: drop it, the caller rebuilds
            self._drop(path)
            return None
        try:
            os.utime(path, follow_symlinks=False)
        except (OSError, NotImplementedError):
            pass
        return payload

    @staticmethod
    def _drop(path: Path) -> None:
        try:
            if not stat.S_ISDIR(path.lstat().st_mode):
                path.unlink()   # a link goes, never what it points to
        except OSError:
            pass

    def put(self, key: str, payload: dict) -> None:
        data = _entry_bytes(key, payload)
        if len(data) > MAX_ENTRY_BYTES:
            return   # it could not be read back
        atomic_write_bytes(self._path(key), data)
        self.evict()

    def entries(self) -> list[Path]:
        """Every file that claims to be an entry (regular or not: `clear` removes them all;
        a symbolic link is listed, never followed)."""
        out = []
        for p in self.root.glob("*.json"):
            try:
                if not stat.S_ISDIR(p.lstat().st_mode):
                    out.append(p)
            except OSError:
                pass
        return out

    def evict(self, limit: int | None = None) -> int:
        """Delete least recently used entries until the cache fits `limit` bytes."""
        limit = max_bytes() if limit is None else limit
        files = []
        total = 0
        for p in self.entries():
            try:
                st = p.lstat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
            total += st.st_size
        removed = 0
        for _, size, p in sorted(files):
            if total <= limit:
                break
            try:
                p.unlink()
                total -= size
                removed += 1
            except OSError:
                pass
        return removed

    def clear(self) -> int:
        n = 0
        for p in self.entries():
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
        return n

    def stats(self) -> CacheStats:
        files = self.entries()
        size = 0
        for p in files:
            try:
                size += p.lstat().st_size
            except OSError:
                pass
        return CacheStats(self.root, len(files), size, max_bytes())


def _body(key: str, payload: Any) -> bytes:
    """What an entry's checksum covers: its key and its payload."""
    return json.dumps({"key": key, "payload": payload}, sort_keys=True,
                      allow_nan=False).encode()


def _entry_bytes(key: str, payload: dict) -> bytes:
    outer = {"format": FORMAT, "key": key,
             "sha256": hashlib.sha256(_body(key, payload)).hexdigest(), "payload": payload}
    return json.dumps(outer, sort_keys=True, allow_nan=False).encode()


def _check_entry(key: str, raw: bytes) -> dict[str, Any]:
    """The payload of an entry file read for ``key``; ValueError says what is wrong."""
    outer = parse_json(raw, max_depth=MAX_ENTRY_DEPTH)
    if not isinstance(outer, dict) or set(outer) != {"format", "key", "sha256", "payload"}:
        raise ValueError("not a compile cache entry")
    if outer["format"] != FORMAT:
        raise ValueError(f"entry format {outer['format']!r}, not {FORMAT}")
    if outer["key"] != key:
        raise ValueError("the entry was written for another key")
    payload = outer["payload"]
    if not isinstance(payload, dict):
        raise ValueError("the payload is not an object")
    if outer["sha256"] != hashlib.sha256(_body(key, payload)).hexdigest():
        raise ValueError("checksum mismatch")
    return payload
