"""The one cache root shared by the compile cache, kernel binaries and tuning archive.

`$TRITIUM_CACHE_DIR` wins; otherwise the XDG user cache dir (`~/.cache/tritium`).
Writes are atomic (temp file in the same directory + `os.replace`), so a reader never
sees half a file and concurrent writers of the same key simply race to the same bytes.
This module imports nothing heavy: the compiler and the runtime both use it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("TRITIUM_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        root = base / "tritium"
    return root


def cache_subdir(name: str) -> Path:
    """A named area under the cache root (`compile`, `kernels`, `tune`), created on demand."""
    path = cache_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def digest(*parts: bytes | str) -> str:
    """A stable content key: sha256 over length-prefixed parts (so ("ab","c") != ("a","bc"))."""
    h = hashlib.sha256()
    for part in parts:
        b = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
