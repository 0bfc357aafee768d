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


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (setting it
    and back would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one.
    The file gets `mode`, by default what the umask allows (0o666 & ~umask) like any newly
    created file (the temporary file's private 0o600 is not kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), (0o666 & ~_umask()) if mode is None else mode)
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


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def digest(*parts: bytes | str) -> str:
    """A stable content key: sha256 over length-prefixed parts (so ("ab","c") != ("a","bc"))."""
    h = hashlib.sha256()
    for part in parts:
        b = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
