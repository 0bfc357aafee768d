"""How Python calls a kernel library's per-call entry points: :class:`Calls`.

ctypes converts each argument through its ``argtypes`` and libffi: 0.6-0.9 us for the eight
arguments of ``tri_linear_planned``, as much as a small layer's kernel. ``csrc/tritium_pycall.c``
is a CPython module that calls the same functions through their prototypes in
``tritium_kernels.h`` (about 0.1 us), built once per interpreter and compiler and cached
beside the kernels (:func:`tritium.backends.cpu.build.build_pycall`). Where it cannot be built
(no ``Python.h``, no compiler) or ``$TRITIUM_CPU_CALLS=ctypes``, the same names are the
ctypes functions: every caller writes ``lib.call.tri_linear_planned(...)`` either way, with
addresses as ints and None for NULL. ``kernel_info()`` reports which one runs, and why.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import importlib.util
import os
import threading
import warnings
from types import ModuleType

from tritium.backends.cpu import build as _build

# the entry points called once per layer call (csrc/tritium_pycall.c wraps exactly these;
# the others run once per plan, or, as the decoder block's, on far more work than a call)
FAST_ENTRY_POINTS = ("tri_linear_planned", "tri_chain_planned", "tri_conv2d_planned",
                     "tri_conv2d_pool_planned", "tri_conv2d_f32", "tri_pool2d",
                     "tri_rms_linear_planned", "tri_rms_multi_planned", "tri_i8_linear")
MODES = ("fast", "ctypes")
PYCALL_ABI = 1   # TRI_PYCALL_ABI of csrc/tritium_pycall.c

_lock = threading.Lock()
_loaded: dict[str, tuple[ModuleType | None, str]] = {}


def requested_mode() -> str:
    """``$TRITIUM_CPU_CALLS``: ``fast`` (the default) or ``ctypes``; another value warns and
    means ``fast``."""
    want = os.environ.get("TRITIUM_CPU_CALLS", "").strip().lower()
    if not want:
        return "fast"
    if want not in MODES:
        warnings.warn(f"TRITIUM_CPU_CALLS={want!r} is not one of {', '.join(MODES)}; using fast",
                      RuntimeWarning, stacklevel=3)
        return "fast"
    return want


def _import(path: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader("_tritium_pycall", path)
    spec = importlib.util.spec_from_file_location("_tritium_pycall", path, loader=loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _module() -> tuple[ModuleType | None, str]:
    """(the fast-call module, "") or (None, why not), once per process and cache root."""
    root = os.environ.get("TRITIUM_CACHE_DIR", "")
    hit = _loaded.get(root)
    if hit is not None:
        return hit
    with _lock:
        hit = _loaded.get(root)
        if hit is not None:
            return hit
        try:
            path = _build.build_pycall()
            try:
                module = _import(str(path))
            except ImportError:
                # a cached binary that matched its hash but does not load: rebuild once
                path.unlink(missing_ok=True)
                module = _import(str(_build.build_pycall()))
            if getattr(module, "ABI", None) != PYCALL_ABI:
                raise _build.BuildError(f"the fast-call module's ABI {getattr(module, 'ABI', None)}"
                                        f" is not {PYCALL_ABI}")
            hit = (module, "")
        except Exception as exc:  # noqa: BLE001 - the fast calls must never break the kernels
            hit = (None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        _loaded[root] = hit
        return hit


class Calls:
    """A kernel library's per-call entry points (:data:`FAST_ENTRY_POINTS`) as attributes:
    the fast-call module's functions bound to the library's addresses, or its ctypes
    functions. ``mode`` is ``"fast"`` or ``"ctypes"``; ``reason`` says why ctypes runs ("" for
    fast)."""

    __slots__ = ("mode", "reason", *FAST_ENTRY_POINTS)

    def __init__(self, lib: ctypes.CDLL) -> None:
        mode = requested_mode()
        module, why = _module() if mode == "fast" else (None, "TRITIUM_CPU_CALLS=ctypes")
        self.mode = "fast" if module is not None else "ctypes"
        self.reason = why
        for name in FAST_ENTRY_POINTS:
            fn = getattr(lib, name)
            if module is not None:
                address = ctypes.cast(fn, ctypes.c_void_p).value
                fn = functools.partial(getattr(module, name), address)
            setattr(self, name, fn)
