"""Whether torch is recording a graph of the current call.

``torch.compile``/``torch.export`` and ``torch.jit.trace`` see only torch operations: a ctypes
call into the native kernels is invisible to them (a trace of a frozen model's cached plan
recorded only the output's allocation, and the traced model returned uninitialized memory).
Every native fast path asks :func:`capturing` first and, while a graph is recorded, takes
the ``torch.library`` custom op or the pure-torch path instead."""

from __future__ import annotations

import torch

__all__ = ["capturing"]

_compiling = torch.compiler.is_compiling
_tracing_state = torch._C._get_tracing_state


def capturing() -> bool:
    """True while ``torch.compile``/``torch.export`` or ``torch.jit.trace`` records this call."""
    return _tracing_state() is not None or _compiling()
