"""The one cache root shared by the compile cache, kernel binaries and tuning archive.

`$TRITIUM_CACHE_DIR` wins; otherwise the XDG user cache dir (`~/.cache/tritium`).
Writes are atomic (temp file in the same directory + `os.replace`), so a reader never
sees half a file and concurrent writers of the same key simply race to the same bytes.
This module imports nothing heavy: the compiler and the runtime both use it.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    env = os.environ.get("TRITIUM_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        root = base / "tritium"
    return root


TUNED_CONFIGS_NAME = "tuned_configs.json"


def tuned_configs_path() -> Path:
    """The winning kernel configs the tuner records for the runtime (``tune`` area; read by
    ``tritium.runtime.tuned``, removed by ``tritium cache clear tune``)."""
    return cache_root() / "tune" / TUNED_CONFIGS_NAME


def tuned_configs_enabled() -> bool:
    """Whether the runtime runs tuned configs (``$TRITIUM_TUNED_CONFIGS=0`` turns them off)."""
    return os.environ.get("TRITIUM_TUNED_CONFIGS", "1").strip().lower() not in (
        "0", "false", "no", "off")


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


# ----------------------------------------------------------------------------- reading back

class UnsafeFileError(OSError):
    """A file Tritium reads back is not what it may be: a symbolic link (where links are not
    followed), a FIFO, a device, a directory, or larger than the bound. The message names
    the file and the reason; callers treat it like any other unreadable file (a cache miss,
    a corrupt entry, a clear error)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_file_bounded(path: str | os.PathLike[str], max_bytes: int | None, *,
                      follow_symlinks: bool = False) -> bytes:
    """The bytes of the regular file ``path``, read safely: never blocks on a FIFO, never
    opens a device, never reads more than ``max_bytes`` (None: the file's size as ``fstat``
    reports it when opened; a file that grows meanwhile is not read past it).

    ``follow_symlinks=False`` (what every cache read uses) refuses a symbolic link as the
    last component (``O_NOFOLLOW``). Raises :class:`UnsafeFileError` for a link, FIFO,
    device, directory, socket or a file over the bound, and ``OSError`` as ``open`` does
    (missing file, permission, a name too long).
    """
    st = os.stat(path, follow_symlinks=follow_symlinks)   # look before opening anything
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(path, f"is {_kind(st.st_mode)}, not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_symlinks:
            raise UnsafeFileError(path, "is a symbolic link, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)   # what was opened, whatever the name points to by now
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(path, f"is {_kind(st.st_mode)}, not a regular file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnsafeFileError(path, f"is {st.st_size} bytes, more than the "
                                        f"{max_bytes} bytes such a file can hold")
        limit = st.st_size if max_bytes is None else max_bytes
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise UnsafeFileError(path, f"grew past the {max_bytes} bytes such a file can "
                                        "hold while it was read")
        return b"".join(chunks)[:limit] if max_bytes is None else b"".join(chunks)
    finally:
        os.close(fd)


MAX_JSON_DEPTH = 64
# a string, or an unterminated one to the end of the text (possessive: linear time)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"?', re.S)
_JSON_BRACKETS = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings ignored), computed
    without recursion, so it can be asked of any input before ``json.loads`` sees it."""
    brackets = _JSON_BRACKETS.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def parse_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for data Tritium reads back (cache entries, checkpoint headers, tuning
    archives): nesting deeper than ``max_depth`` levels, ``NaN``/``Infinity`` or a float that overflows (``1e999``), an integer
    too long for Python to convert, text that is not UTF-8 or not JSON all raise
    ``ValueError`` with the reason (never ``RecursionError``)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"nested {depth} levels deep (the limit is {max_depth})")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as e:
        raise ValueError(str(e) or type(e).__name__) from None
