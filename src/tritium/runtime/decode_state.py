"""What a decode session shares with the layers that read it: the context variable holding
the active :class:`tritium.runtime.decoding.DecodeSession` and the growth of its KV buffers.
A leaf module, so that the fused decoder blocks (``runtime.layers.decoder``) and the session
(``runtime.decoding``, which installs them) do not import each other."""

from __future__ import annotations

import contextvars
from typing import Any

import torch

__all__ = ["SESSION", "grown"]

#: the active decode session (``with session:``), or None
SESSION: contextvars.ContextVar[Any] = contextvars.ContextVar("tritium_decode_session",
                                                              default=None)


def grown(cached: torch.Tensor, need: int) -> torch.Tensor:
    """A buffer for at least `need` tokens (and twice the cached ones, at least 64) holding a
    copy of `cached` in its first positions."""
    n = cached.shape[-2]
    cap = max(64, 2 * n, need)
    out = cached.new_empty(*cached.shape[:-2], cap, cached.shape[-1])
    out[..., :n, :] = cached
    return out
