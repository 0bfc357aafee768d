"""The C heap's free memory handed back to the system after a large load (a leaf module)."""

from __future__ import annotations

import ctypes
from typing import Any

__all__ = ["release_free_memory"]

_TRIM: Any = None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Loading a model frees many large temporaries (each tensor as stored, a
    layer's trits, the checkpoint's state beside the model, an output head's float table);
    glibc keeps freed blocks below its adaptive mmap threshold (up to 32 MiB) in the heap,
    where they would stay in the process's resident set for good."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL(None).malloc_trim
            _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)
