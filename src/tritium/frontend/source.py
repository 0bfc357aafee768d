"""Reading .tri files: every way a path can be wrong becomes a Diagnostic, never a traceback."""

from __future__ import annotations

import os
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
    if p.is_dir():
        return _raise(_usage("E0002", f"`{name}` is a directory, not a .tri file",
                             help=f"pass the files inside it, e.g. `{name}/*.tri`"))
    if not p.exists():
        return _raise(_usage("E0001", f"no such file: `{name}`"))
    if not p.is_file():
        return _raise(_usage("E0003", f"cannot read `{name}`: not a regular file"))
    try:
        size = p.stat().st_size
        if size > MAX_SOURCE_BYTES:
            return _raise(_usage("E0005", f"`{name}` is {size} bytes; the limit for a source "
                                          f"file is {MAX_SOURCE_BYTES} bytes"))
        data = p.read_bytes()
    except OSError as exc:
        return _raise(_usage("E0003", f"cannot read `{name}`: {exc.strerror or exc}"))
    return decode_source(data, name, p.resolve())


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
