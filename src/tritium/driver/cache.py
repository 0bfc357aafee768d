"""The compile cache: content-addressed entries under `<cache root>/compile`.

An entry is one JSON file named by the key (sha256 of the compiler version, the options and
the bytes of the main file and of every file it imports). Writes are atomic; every entry
carries a sha256 of its payload and is verified on read, so a truncated or corrupted entry
is detected, deleted and rebuilt. Reads refresh the entry's mtime; when the cache grows past
its size cap the least recently used entries are evicted.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..cachedir import atomic_write_bytes, cache_subdir

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
FORMAT = 1


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
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        try:
            outer = json.loads(raw)
            payload = outer["payload"]
            body = json.dumps(payload, sort_keys=True).encode()
            if outer.get("format") != FORMAT or outer.get("sha256") != hashlib.sha256(body).hexdigest():
                raise ValueError("checksum mismatch")
        except (ValueError, KeyError, TypeError):
            # corrupted or truncated: drop it, the caller rebuilds
            try:
                path.unlink()
            except OSError:
                pass
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return payload

    def put(self, key: str, payload: dict) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        outer = {"format": FORMAT, "sha256": hashlib.sha256(body).hexdigest(), "payload": payload}
        atomic_write_bytes(self._path(key), json.dumps(outer, sort_keys=True).encode())
        self.evict()

    def entries(self) -> list[Path]:
        return [p for p in self.root.glob("*.json") if p.is_file()]

    def evict(self, limit: int | None = None) -> int:
        """Delete least recently used entries until the cache fits `limit` bytes."""
        limit = max_bytes() if limit is None else limit
        files = []
        total = 0
        for p in self.entries():
            try:
                st = p.stat()
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
                size += p.stat().st_size
            except OSError:
                pass
        return CacheStats(self.root, len(files), size, max_bytes())
