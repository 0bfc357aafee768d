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


def grown(cached: torch.Tensor, need: int, planned: int | None = None) -> torch.Tensor:
    """A buffer for at least `need` tokens holding a copy of `cached` in its first positions:
    `planned` tokens when they are more than the cached ones (the context the caller will
    use), else twice the cached ones, at least 64."""
    n = cached.shape[-2]
    cap = max(planned, need) if planned is not None and planned > n else max(64, 2 * n, need)
    out = cached.new_empty(*cached.shape[:-2], cap, cached.shape[-1])
    out[..., :n, :] = cached
    return out
