"""Load generated Triton source as a Python module.

`@triton.jit` reads a kernel's source back with `inspect`, so the text is written to a real
file, `<cache root>/triton/src/<sha256>.py` (atomically, named by its content), and imported
from there. Whether `@triton.jit` builds interpreted kernels is decided when the module
executes (`TRITON_INTERPRET`, read through `compat.interpreting`); a module is therefore cached per
(source, interpret) pair, and `interpret=False` can be forced for ahead-of-time builds in a
process that otherwise runs the interpreter. (Compiling is another matter: Triton builds its
own standard library for the interpreter or the compiler when it is imported, so `aot`
compiles in a helper process when this one imported Triton for the interpreter.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...cachedir import atomic_write_text, cache_subdir, read_file_bounded
from . import compat

_MODULES: dict[tuple[str, bool], types.ModuleType] = {}
_LOCK = threading.Lock()


def source_digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def tuning_hash(source: str) -> str:
    """The short hash a tuned config of a generated kernel module is recorded under (the
    tuner writes it, Triton dispatch compares it): other sources never reuse a config."""
    return source_digest(source)[:16]


def source_path(source: str) -> Path:
    """The file holding `source` (written on first use)."""
    path = cache_subdir("triton") / "src" / f"{source_digest(source)}.py"
    want = source.encode("utf-8")
    try:   # a regular file of exactly these bytes (never a link, FIFO or device)
        if read_file_bounded(path, len(want)) == want:
            return path
    except OSError:
        pass
    atomic_write_text(path, source)
    return path


def interpreting() -> bool:
    """Whether newly loaded kernels run on the Triton interpreter."""
    return compat.interpreting()


@contextmanager
def interpret_mode(on: bool) -> Iterator[None]:
    """Temporarily force TRITON_INTERPRET on or off (the knob and the variable)."""
    with compat.interpret_mode(on):
        yield


def load_source(source: str, interpret: bool | None = None) -> types.ModuleType:
    """Import the generated module for `source` (cached in this process)."""
    mode = interpreting() if interpret is None else interpret
    key = (source_digest(source), mode)
    with _LOCK:
        mod = _MODULES.get(key)
        if mod is not None:
            return mod
        if mode:
            compat.prepare_interpreter()
        path = source_path(source)
        name = f"tritium_triton_{key[0][:16]}_{'interp' if mode else 'jit'}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load generated Triton source from {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            with interpret_mode(mode):
                spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        _MODULES[key] = mod
        return mod
