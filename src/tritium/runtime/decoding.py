"""A decode session: the KV cache that generated models consult while generating text.

    with DecodeSession() as s:
        logits = s.forward(model, prompt_ids)        # prefill: caches every layer's k/v
        logits = s.forward(model, next_id[:, None])  # one new token: attends to the cache

Generated code calls :func:`tritium.runtime.attention` and :func:`tritium.runtime.rope`
instead of torch directly. Outside a session they are plain scaled dot-product attention
and rotary embedding from position 0. While a session is active (in this thread or task:
a context variable), each `attention` call site of one forward, counted in call order,
owns a cache slot: it appends its new keys and values to the slot and attends over all
cached ones (a causal mask is aligned to the end, so a chunk of several new tokens sees
the cache and the tokens before it in the chunk); `rope` starts positions after the tokens
already cached. A model whose forward calls attention in a data-dependent order would
pair call sites with the wrong slots: generated models call them in program order.

Each slot's keys and values live in a buffer with room for more tokens than are cached: a
decode step writes its new key and value in place and attends over a view of the filled part,
instead of concatenating the whole cache again (which copies O(n) per step and O(n^2) over a
generation). `keys[i]`/`values[i]` are those views (made when asked for after a fused block
wrote the buffers). `DecodeSession(max_tokens=N)` (what `generate_tokens` passes: the prompt
plus the new tokens) makes each buffer N tokens long at the prefill, the context the
generation will use; without it (or past it) a buffer holds twice the cached tokens, at least
64, and doubles when it runs out.

The first time a session runs a model (`forward`), it gives the model's decoder blocks of an
imported BitNet's structure their fused one-token call
(:mod:`tritium.runtime.layers.decoder`): such a block then decodes a token in one native call
that writes its key and value into its slot's buffers as `attend` would.
`DecodeSession(fused=False)` keeps every block on its own forward.
"""

from __future__ import annotations

from typing import Any

import torch

from tritium.runtime.decode_state import SESSION as _SESSION
from tritium.runtime.decode_state import grown as _grown

__all__ = ["DecodeSession", "current_session", "rope_tables"]

_CPU = torch.device("cpu")


def rope_tables(d: int, base: float, start: int, end: int, dtype: torch.dtype, device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [end - start, d/2] of positions start .. end-1 (the angles of
    :func:`tritium.runtime.functional.rope`)."""
    half = d // 2
    inv = base ** (-torch.arange(half, device=device, dtype=torch.float32) * 2 / d)
    pos = torch.arange(start, end, device=device, dtype=torch.float32)
    ang = pos[:, None] * inv[None, :]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def current_session() -> DecodeSession | None:
    """The active decode session, or None."""
    return _SESSION.get()


class DecodeSession:
    """Per-call-site key/value caches and the number of tokens already cached."""

    def __init__(self, fused: bool = True, max_tokens: int | None = None) -> None:
        self.fused = bool(fused)   # one-token decode steps through fused decoder blocks
        # the tokens the caller means to run (prompt + new ones): each cache buffer is made
        # that large at once, so that it is never grown (a copy) nor larger than the context
        self.max_tokens = int(max_tokens) if max_tokens is not None and max_tokens > 0 \
            else None
        self._keys: list[torch.Tensor] = []      # the cached part of each slot's buffer
        self._values: list[torch.Tensor] = []
        # slots a fused decoder block wrote to: their cached length (views made on demand)
        self._pending: dict[int, int] = {}
        self._kbuf: list[torch.Tensor] = []      # [..., capacity, head_dim] per slot
        self._vbuf: list[torch.Tensor] = []
        # rope's cos/sin tables per (head dim, base, dtype, device), for positions 0 .. n-1
        self._rope: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.offset = 0          # tokens cached before the forward in progress
        self._call = 0
        self._new = 0
        self._token: Any = None
        self._examined: set[int] = set()   # models given their fused decoder blocks
        self._scratch: dict[Any, tuple] = {}  # each fused block's workspace in this session

    def __enter__(self) -> DecodeSession:
        if self._token is not None:
            raise RuntimeError("this decode session is already active")
        self._token = _SESSION.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _SESSION.reset(self._token)
        self._token = None

    @property
    def cached(self) -> int:
        return self.offset

    @property
    def keys(self) -> list[torch.Tensor]:
        """The cached keys of each slot (views of its buffer)."""
        if self._pending:
            self._sync()
        return self._keys

    @property
    def values(self) -> list[torch.Tensor]:
        if self._pending:
            self._sync()
        return self._values

    def _sync(self) -> None:
        for slot, n in self._pending.items():
            self._keys[slot] = self._kbuf[slot][..., :n, :]
            self._values[slot] = self._vbuf[slot][..., :n, :]
        self._pending.clear()

    def reset(self) -> None:
        self._keys.clear()
        self._values.clear()
        self._pending.clear()
        self._kbuf.clear()
        self._vbuf.clear()
        self._scratch.clear()
        self.offset = 0

    def rope_tables(self, d: int, base: float, offset: int, seq: int, dtype: torch.dtype,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`rope_tables` of positions offset .. offset+seq-1,
        sliced from tables computed once for many positions (the same values: every position
        is computed by the same elementwise operations)."""
        key = (d, float(base), dtype, device)
        end = offset + seq
        hit = self._rope.get(key)
        if hit is None or hit[0].shape[0] < end:
            hit = self._rope[key] = rope_tables(d, base, 0, max(256, 2 * end), dtype, device)
        return hit[0][offset:end], hit[1][offset:end]

    def rope_row(self, d: int, base: float, pos: int) -> tuple[int, int]:
        """The addresses of the float32 CPU cos and sin rows (d/2 values each) of position
        `pos` in the tables :meth:`rope_tables` slices (for a native caller)."""
        key = (d, float(base), torch.float32, _CPU)
        hit = self._rope.get(key)
        if hit is None or hit[0].shape[0] <= pos:
            self.rope_tables(d, base, pos, 1, torch.float32, _CPU)
            hit = self._rope[key]
        row = pos * (d // 2) * 4
        return hit[0].data_ptr() + row, hit[1].data_ptr() + row

    def forward(self, model: torch.nn.Module, tokens: torch.Tensor) -> Any:
        """Run `model` on the next `tokens` [batch, new] (the session must be active), then
        count them as cached."""
        if _SESSION.get() is not self:
            raise RuntimeError("DecodeSession.forward runs inside `with session:`")
        if self.fused and id(model) not in self._examined:
            from tritium.runtime.layers.decoder import install_block_decoders
            install_block_decoders(model)
            self._examined.add(id(model))
        self._call = 0
        self._new = int(tokens.shape[-1])
        out = model(tokens)
        if self._call and self._call != len(self._keys):
            raise RuntimeError(f"the forward called attention {self._call} times, the cache "
                               f"holds {len(self._keys)} layers: not a stable call order")
        self.offset += self._new
        return out

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               attn_mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
        if attn_mask is not None:
            raise ValueError("attention with an explicit mask cannot decode with a KV cache")
        slot = self._call
        self._call += 1
        if slot == len(self.keys):
            if self.offset:
                raise RuntimeError("attention call sites changed between decode steps")
            self._kbuf.append(_grown(k, 0, self.max_tokens))
            self._vbuf.append(_grown(v, 0, self.max_tokens))
            self.keys.append(k)
            self.values.append(v)
            keys, values = self.keys[slot], self.values[slot]
        else:
            keys = self._append(self._kbuf, self.keys, slot, k)
            values = self._append(self._vbuf, self.values, slot, v)
        n_q, n_k = q.shape[-2], keys.shape[-2]
        if not is_causal or n_q == 1:
            return torch.nn.functional.scaled_dot_product_attention(q, keys, values)
        # query i (absolute position n_k - n_q + i) sees keys 0 .. n_k - n_q + i
        rows = torch.arange(n_q, device=q.device)[:, None] + (n_k - n_q)
        mask = torch.arange(n_k, device=q.device)[None, :] <= rows
        return torch.nn.functional.scaled_dot_product_attention(q, keys, values,
                                                                attn_mask=mask)

    @staticmethod
    def _append(bufs: list[torch.Tensor], views: list[torch.Tensor], slot: int,
                new: torch.Tensor) -> torch.Tensor:
        """Write `new` after the cached tokens of `slot` (growing its buffer when full) and
        return the view of everything cached."""
        old = views[slot]
        n = old.shape[-2]
        total = n + new.shape[-2]
        buf = bufs[slot]
        if (buf.shape[:-2] != new.shape[:-2] or buf.shape[-1] != new.shape[-1]
                or buf.dtype != new.dtype or buf.device != new.device):
            # another batch or head layout than the cache: concatenate as before
            view = torch.cat([old, new], dim=-2)
            bufs[slot] = _grown(view, 0)
        else:
            if total > buf.shape[-2]:
                buf = bufs[slot] = _grown(old, total)
            buf[..., n:total, :] = new
            view = buf[..., :total, :]
        views[slot] = view
        return view


