"""What a user hands Tritium on the command line (or to the Python API), checked before work.

    RANGES["learning_rate"].check(1e309)        # "must be a number in (0, 10], got inf"
    parser.add_argument("--lr", type=number("learning_rate"))   # argparse rejects it: exit 2
    check_output_dir("runs/mlp", "--out")       # raises ArgError before any data is loaded
    with open_input(path, "--data") as fh: ...  # a regular file, opened without blocking

One home for three things:

* **Numbers**: :data:`RANGES` is the single table of ranges for every numeric flag and every
  numeric `training { }` key; the argparse types (:func:`number`) and the training-block
  checker read it, so a flag and the key it overrides can never disagree. Every range is
  finite at both ends, and inf, NaN and overflowing literals (`1e309`) are never in range.
* **Output paths**: :func:`check_output_dir` / :func:`check_output_file` say in one line what
  is wrong with a path (empty, control characters, a name over 255 bytes, an existing file
  where a directory is needed, `FILE/run`, a read-only directory) before anything runs;
  :func:`write_output` writes atomically (temporary file + rename) with the umask's mode.
* **Input paths**: :func:`check_input_file` accepts only an existing, readable regular file
  (never a directory, FIFO, device such as `/dev/zero`, or socket) and
  :func:`open_input` opens it without blocking and re-checks what it opened.

Imports nothing heavy: the CLI checks its flags here before it imports torch.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ArgError", "MAX_JOBS", "MAX_THREADS", "NAME_MAX", "PATH_MAX", "RANGES", "Range",
           "check_input_file", "check_output_dir", "check_output_file", "input_error",
           "input_problem",
           "check_name", "entry_point_problem", "number", "open_input", "path_arg", "quote",
           "show_path", "write_output"]

NAME_MAX = 255          # bytes in one path component (Linux, macOS)
PATH_MAX = 4096         # bytes in a whole path
_CORES = os.cpu_count() or 1
MAX_THREADS = min(1024, max(64, 4 * _CORES))
MAX_JOBS = min(1024, max(64, 4 * _CORES))
MAX_SEED = 2**32 - 1    # numpy's and every generator's common range


class ArgError(ValueError):
    """A bad flag value or path: one line, exit code `code` (2, a usage error)."""

    def __init__(self, message: str, code: int = 2) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


# ----------------------------------------------------------------------------- numbers

@dataclass(frozen=True)
class Range:
    """A closed or half-open interval of ints or floats; both ends are finite."""

    kind: type                  # int or float
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""              # what a special value means, e.g. "0: off"

    def contains(self, v: float) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def describe(self) -> str:
        def fmt(x: float) -> str:
            return str(int(x)) if self.kind is int or float(x).is_integer() else repr(x)
        if self.kind is int:
            lo = int(self.lo) + 1 if self.lo_open else int(self.lo)
            hi = int(self.hi) - 1 if self.hi_open else int(self.hi)
            text = f"an integer from {lo} to {hi}"
        else:
            text = (f"a number in {'(' if self.lo_open else '['}{fmt(self.lo)}, "
                    f"{fmt(self.hi)}{')' if self.hi_open else ']'}")
        return f"{text} ({self.note})" if self.note else text

    def check(self, value: Any) -> str | None:
        """None when `value` is in range, else what is wrong (without the name)."""
        wrong = f"must be {self.describe()}, got {quote(value)}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return wrong
        if self.kind is int and isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                return wrong
            value = int(value)
        return None if self.contains(value) else wrong

    def parse(self, text: str) -> int | float:
        """The value of a command-line word, or ArgError."""
        word = text.strip()
        try:
            value: int | float = int(word) if self.kind is int else float(word)
        except ValueError:
            raise ArgError(f"must be {self.describe()}, got {quote(text)}") from None
        problem = self.check(value)
        if problem is not None:
            raise ArgError(f"must be {self.describe()}, got {quote(text)}")
        return value


def quote(text: object) -> str:
    """A user's word for a one-line message: a Python literal (control characters escaped),
    shortened in the middle when long."""
    try:
        r = repr(text)
    except ValueError:       # an int beyond Python's digit limit for str()
        return f"an integer of {int(text).bit_length()} bits"  # type: ignore[call-overload]
    return r if len(r) <= 60 else r[:40] + "…" + r[-12:]


def check_name(text: str | None, flag: str) -> None:
    """A model, block or layer name given on the command line: an identifier (ArgError)."""
    if text is not None and not (text.isidentifier() and len(text) <= 255):
        raise ArgError(f"{flag} expects a name (letters, digits, `_`), got {quote(text)}")


#: A Python entry point: ``package.module:attribute.path``.
_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:"
                    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def entry_point_problem(text: Any) -> str | None:
    """What is wrong with a Python entry point ``module:callable`` (`--entry-point`, or one a
    checkpoint records), or None when it is well formed."""
    if not isinstance(text, str) or len(text) > 256 or not _ENTRY.fullmatch(text):
        return f"{quote(text)} is not an entry point of the form `package.module:callable`"
    return None


_E = 100_000   # most epochs, trials, milestones, ...

#: The one table of numeric ranges: command-line flags (named by their `dest`) and the
#: numeric keys of a program's `training { }` block share these entries.
RANGES: dict[str, Range] = {
    # training: flags and training { } keys
    "epochs": Range(int, 1, _E),
    "batch_size": Range(int, 1, 1 << 20),
    "learning_rate": Range(float, 0.0, 10.0, lo_open=True),
    "weight_decay": Range(float, 0.0, 1.0),
    "momentum": Range(float, 0.0, 1.0, hi_open=True),
    "seed": Range(int, 0, MAX_SEED),
    "validation_split": Range(float, 0.0, 0.9, hi_open=True),
    "warmup_epochs": Range(int, 0, _E),
    "label_smoothing": Range(float, 0.0, 1.0, hi_open=True),
    "grad_clip": Range(float, 0.0, 1e6, note="0: off"),
    "early_stopping": Range(int, 1, _E),
    "beta": Range(float, 0.0, 1.0, hi_open=True),
    "gamma": Range(float, 0.0, 1.0, lo_open=True),
    "eta_min": Range(float, 0.0, 10.0),
    "step_size": Range(int, 1, _E),
    "milestone": Range(int, 1, _E),
    "threads": Range(int, 0, MAX_THREADS, note="0: torch's default"),
    "latency_runs": Range(int, 1, 1_000_000),
    # language models: train and generate
    "seq_len": Range(int, 1, 1 << 16),
    "max_bytes": Range(int, 1, 1 << 40),
    "steps_per_epoch": Range(int, 1, 1 << 30),
    "max_new_tokens": Range(int, 0, 1 << 20),
    "temperature": Range(float, 0.0, 100.0),
    "top_k": Range(int, 0, 1 << 24, note="0: off"),
    "top_p": Range(float, 0.0, 1.0, lo_open=True),
    # predict, profile, compile
    "top": Range(int, 1, 100_000),
    "jobs": Range(int, 1, MAX_JOBS),
    # tune
    "budget": Range(int, 1, _E),
    "time": Range(float, 0.0, 7 * 24 * 3600.0, lo_open=True),
    "patience": Range(int, 0, _E, note="0: off"),
    "min_improvement": Range(float, 0.0, 100.0),
    "max_ci": Range(float, 0.0, 1000.0, lo_open=True),
    "dim": Range(int, 1, 1 << 17),          # one of M, N, K or a batch size to tune
}
#: the most elements of one matrix a tuning problem allocates (1 GiB of float32)
MAX_MATRIX = 1 << 28


#: The names a training recipe may use (the flags' choices and the `training { }` keys).
OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("cross_entropy", "mse")
SCHEDULES = ("constant", "multistep", "step", "cosine")
AUGMENTATIONS = ("random_crop", "random_shift", "horizontal_flip", "hflip", "noise")


def number(key: str, flag: str | None = None):
    """An argparse `type` checking a word against ``RANGES[key]``; the callable carries the
    range as `.range` (the hostile-input test generates its out-of-range values from it)."""
    rng = RANGES[key]

    def convert(text: str) -> int | float:
        import argparse
        try:
            return rng.parse(text)
        except ArgError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    convert.__name__ = rng.kind.__name__
    convert.range = rng  # type: ignore[attr-defined]
    convert.key = key    # type: ignore[attr-defined]
    return convert


# ----------------------------------------------------------------------------- paths

#: what a path argument is: the command checks it with the matching function before work
PATH_ROLES = ("input-file", "input-dir", "output-file", "output-dir", "output", "data",
              "resume")


def path_arg(role: str):
    """An argparse `type` that keeps the word as given and records the path's role
    (`.role`, one of :data:`PATH_ROLES`); the command checks it before any work, and the
    hostile-input test generates bad paths for every option so marked."""
    if role not in PATH_ROLES:
        raise ValueError(f"unknown path role {role!r}")

    def convert(text: str) -> str:
        return text

    convert.__name__ = "path"
    convert.role = role  # type: ignore[attr-defined]
    return convert


def show_path(path: str | os.PathLike[str]) -> str:
    """A path as one line of text: backquoted, or as a Python literal when it holds control
    characters (a newline would otherwise split the message)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if any(ord(c) < 32 or ord(c) == 0x7F for c in text) or len(text) > 300:
        r = repr(text)
        return r if len(r) <= 120 else r[:80] + "…" + r[-30:]
    return f"`{text}`"


def _name_problem(text: str, output: bool) -> str | None:
    if text == "":
        return "is empty"
    if "\0" in text:
        return "contains a NUL character"
    if output and any(ord(c) < 32 or ord(c) == 0x7F for c in text):
        return "contains a control character (newline, tab, ...); choose a plainer name"
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        return "cannot be encoded as a file name"
    if len(raw) >= PATH_MAX:
        return f"is {len(raw)} bytes long; the limit for a path is {PATH_MAX - 1}"
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return f"has a name of {len(longest)} bytes; the limit for one name is {NAME_MAX}"
    return None


def _stat(p: str) -> os.stat_result | None:
    """`os.stat`, None when nothing is there; other errors become ArgError with a predicate
    about the path ("cannot be reached: `a` is a file, not a directory")."""
    try:
        return os.stat(p)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        for anc in reversed(Path(p).parents):
            a = os.fspath(anc)
            if a not in ("", ".") and os.path.exists(a) and not os.path.isdir(a):
                raise ArgError(f"cannot be reached: {show_path(a)} is a file, not a "
                               "directory") from None
        raise ArgError("cannot be reached: a part of it is a file, not a directory") from None
    except PermissionError:
        raise ArgError("cannot be reached: permission denied on a directory in it") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ArgError("is too long for a file name") from None
        if exc.errno == errno.ELOOP:
            raise ArgError("has too many levels of symbolic links") from None
        raise ArgError(f"cannot be read ({exc.strerror or exc})") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _writable_dir(p: str, st: os.stat_result) -> bool:
    """A directory this process may create files in. A directory without any write bit is
    read-only for root too (root would otherwise ignore the mark)."""
    if not os.access(p, os.W_OK | os.X_OK):
        return False
    return not (os.geteuid() == 0 and not st.st_mode & 0o222) if hasattr(os, "geteuid") \
        else True


def input_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with `path` as an input file (None: an existing, readable regular
    file)."""
    text = os.fspath(path)
    problem = _name_problem(text, output=False)
    if problem:
        return problem
    try:
        st = _stat(text)
    except ArgError as exc:
        return exc.message
    if st is None:
        return "does not exist"
    if not stat.S_ISREG(st.st_mode):
        what = _kind(st.st_mode)
        return f"is {what}, not a file" if what != "not a regular file" else what
    if not os.access(text, os.R_OK):
        return "is not readable (permission denied)"
    return None


def input_error(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """The code and message of the usage diagnostic for `path` (E0001 missing, E0002 a
    directory, E0003 anything else unreadable) when it is not a readable regular file, else
    None. The compiler's front door makes its ``Diagnostic`` of them (this module is a shared
    leaf: it imports no stage)."""
    problem = input_problem(path)
    if problem is None:
        return None
    if problem == "does not exist":
        return "E0001", f"no such file: {show_path(path)}"
    if problem.startswith("is a directory"):
        return "E0002", f"{show_path(path)} is a directory, not a .tri file"
    return "E0003", f"cannot read {show_path(path)}: it {problem}"


def check_input_file(path: str | os.PathLike[str], what: str = "input") -> Path:
    """`path` as a Path when it names a readable regular file, else ArgError naming it."""
    problem = input_problem(path)
    if problem:
        raise ArgError(f"{what} {show_path(path)} {problem}")
    return Path(path)


def open_input(path: str | os.PathLike[str], what: str = "input"):
    """A binary file object for a regular file, opened with O_NONBLOCK (a FIFO swapped in
    after the check cannot block) and checked again on the open descriptor."""
    check_input_file(path, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(os.fspath(path), flags)
    except OSError as exc:
        raise ArgError(f"{what} {show_path(path)}: cannot open: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ArgError(f"{what} {show_path(path)} is {_kind(st.st_mode)}, not a file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _dir_problem(text: str) -> str | None:
    """What stops creating files in the directory `text` (creating it first if missing), as
    a phrase that names the path; None when nothing does."""
    try:
        st = _stat(text)
    except ArgError as exc:
        return f"{show_path(text)} {exc.message}"
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            kind = "a file" if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)
            return f"{show_path(text)} exists and is {kind}, not a directory"
        if not _writable_dir(text, st):
            return f"{show_path(text)} is a read-only directory"
        return None
    # missing: its nearest existing ancestor must be a writable directory
    for anc in Path(text).parents:
        a = os.fspath(anc) or "."
        try:
            ast = _stat(a)
        except ArgError as exc:
            return f"{show_path(text)} {exc.message}"
        if ast is None:
            continue
        if not stat.S_ISDIR(ast.st_mode):
            kind = "a file" if stat.S_ISREG(ast.st_mode) else _kind(ast.st_mode)
            return f"{show_path(text)} cannot be created: {show_path(a)} is {kind}"
        if not _writable_dir(a, ast):
            return f"{show_path(text)} cannot be created: {show_path(a)} is read-only"
        return None
    return None


def check_output_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """`path` as a Path when it is (or can be created as) a directory this process can write
    in; otherwise ArgError with one line naming it. Nothing is created here."""
    text = os.fspath(path)
    problem = _name_problem(text, output=True)
    if problem:
        raise ArgError(f"{flag} {show_path(text)} {problem}")
    problem = _dir_problem(text)
    if problem:
        raise ArgError(f"{flag} {problem}")
    return Path(text)


def check_output_file(path: str | os.PathLike[str], flag: str = "-o") -> Path:
    """`path` as a Path when a file can be written (atomically) there: not a directory or
    special file, in a directory that exists or can be created and is writable."""
    text = os.fspath(path)
    problem = _name_problem(text, output=True)
    if problem:
        raise ArgError(f"{flag} {show_path(text)} {problem}")
    if text.endswith(("/", os.sep)) or Path(text).name in ("", ".", ".."):
        raise ArgError(f"{flag} {show_path(text)} names a directory; give a file name")
    try:
        st = _stat(text)
    except ArgError as exc:
        raise ArgError(f"{flag} {show_path(text)} {exc.message}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ArgError(f"{flag} {show_path(text)} is {_kind(st.st_mode)}; give a file name")
    problem = _dir_problem(os.fspath(Path(text).parent) or ".")
    if problem:
        raise ArgError(f"{flag} {show_path(text)} cannot be written: {problem}")
    return Path(text)


def write_output(path: str | os.PathLike[str], data: bytes | str,
                 mode: int | None = None) -> None:
    """Write a user-facing output atomically (a temporary file in the same directory, then
    a rename): either the old file or the whole new one, never half of it. The file gets
    `mode`, by default what the umask allows (0o666 & ~umask), like any created file."""
    from .cachedir import atomic_write_bytes

    blob = data.encode("utf-8") if isinstance(data, str) else data
    atomic_write_bytes(Path(path), blob, mode=mode)
