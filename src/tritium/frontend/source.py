"""Reading .tri files: every way a path can be wrong becomes a Diagnostic, never a traceback."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import Diagnostic, DiagnosticError

# A .tri program larger than this is almost certainly not a program (a binary, a log).
MAX_SOURCE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourceFile:
    name: str   # the name shown in diagnostics (the path as the user gave it)
    text: str
    path: Path | None = None  # resolved path on disk, None for in-memory sources


def _usage(code: str, message: str, help: str | None = None) -> DiagnosticError:
    return DiagnosticError([Diagnostic(code, message, None, help=help)])


def read_source(path: str | os.PathLike[str], display: str | None = None) -> SourceFile:
    """Read a source file as UTF-8. Raises DiagnosticError (E0001-E0005) on any problem."""
    p = Path(path)
    name = display if display is not None else str(path)
    if "\0" in str(path):
        return _raise(_usage("E0003", f"cannot read {name!r}: a file name cannot contain a "
                                      f"NUL character"))
    try:
        st = p.stat()
    except FileNotFoundError:
        return _raise(_usage("E0001", f"no such file: `{name}`"))
    except (OSError, ValueError) as exc:   # ENAMETOOLONG, ELOOP, EACCES, ENOTDIR, …
        return _raise(_usage("E0003", f"cannot read `{name}`: "
                                      f"{getattr(exc, 'strerror', None) or exc}"))
    if stat.S_ISDIR(st.st_mode):
        return _raise(_usage("E0002", f"`{name}` is a directory, not a .tri file",
                             help=f"pass the files inside it, e.g. `{name}/*.tri`"))
    if not stat.S_ISREG(st.st_mode):
        return _raise(_usage("E0003", f"cannot read `{name}`: not a regular file"))
    too_big = _usage("E0005", f"`{name}` is larger than {MAX_SOURCE_BYTES} bytes, the limit "
                              f"for a source file")
    if st.st_size > MAX_SOURCE_BYTES:
        return _raise(too_big)
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)   # bounded even if the file grows
        resolved = p.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        return _raise(_usage("E0003", f"cannot read `{name}`: "
                                      f"{getattr(exc, 'strerror', None) or exc}"))
    if len(data) > MAX_SOURCE_BYTES:
        return _raise(too_big)
    return decode_source(data, name, resolved)


def decode_source(data: bytes, name: str, path: Path | None = None) -> SourceFile:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return _raise(_usage("E0004", f"`{name}` is not valid UTF-8: byte 0x{data[exc.start]:02x} "
                                      f"at line {line}, column {col}",
                             help="save the file as UTF-8"))
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return _raise(_usage("E0004", f"`{name}` contains a NUL byte at line {line}; "
                                      f"it looks like a binary file, not a .tri program"))
    return SourceFile(name, text, path)


def _raise(err: DiagnosticError):
    raise err
