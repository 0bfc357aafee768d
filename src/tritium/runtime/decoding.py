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
imported BitNet's structure their fused calls (:mod:`tritium.runtime.layers.decoder`): such a
block then runs a prompt, or decodes a token, in one native call that writes the keys and
values into its slot's buffers. A slot such a block made keeps each k/v head once
([batch, kv_heads, capacity, head_dim]); `attend` appends the generated code's repeated heads
to it as one entry per k/v head (after checking that the new heads are such repeats; else the
slot is widened to one entry per head) and attends with grouped-query attention.
`DecodeSession(fused=False)` keeps every block on its own forward.
`DecodeSession(kv_dtype=torch.float16)` keeps the cache in float16 (half the memory and the
bytes attention reads per token; widened to the query's dtype where read).

`forward(model, tokens, last_only=True)` (what `generate_tokens` asks of the prompt) runs the
model's output head (a child named ``lm_head``) on the last position only: the logits a
generation samples from, [batch, 1, vocab]. Should the model's output not be what the head
returned (it does more with the logits), the forward runs again, from the cache as it was,
with every position.
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


def note_positions(what: str) -> None:
    """A builtin that makes values from a length (`arange`) ran: in a forward over tokens
    after cached ones, they are the new tokens' own positions from 0, not their place in the
    sequence (only `rope` and `attention` know the cache), so the session records it and a
    generation recomputes the whole sequence instead (:func:`tritium.driver.generate`)."""
    session = _SESSION.get()
    if session is not None and session.offset > 0 and session.position_free is None:
        session.position_free = what


class DecodeSession:
    """Per-call-site key/value caches and the number of tokens already cached."""

    def __init__(self, fused: bool = True, max_tokens: int | None = None,
                 kv_dtype: torch.dtype | None = None) -> None:
        if kv_dtype not in (None, torch.float32, torch.float16):
            raise ValueError(f"kv_dtype must be None, torch.float32 or torch.float16, got "
                             f"{kv_dtype!r}")
        self.fused = bool(fused)   # one-token decode steps through fused decoder blocks
        # the cached keys' and values' dtype: None keeps the model's (float32 for the fused
        # blocks); float16 halves the cache (attention reads it widened to the query's dtype)
        self.kv_dtype = kv_dtype
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
        self._last_only = False   # the forward in progress needs the last position's logits
        # what a forward over cached tokens computed from the new tokens' count alone (an
        # `arange` of positions: a table of learned positions looked up by it starts again
        # at 0), which the cache cannot stand in for; None while nothing did
        self.position_free: str | None = None
        self._head_out: Any = None   # what the sliced head returned in it

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
        self.position_free = None

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

    def forward(self, model: torch.nn.Module, tokens: torch.Tensor,
                last_only: bool = False) -> Any:
        """Run `model` on the next `tokens` [batch, new] (the session must be active), then
        count them as cached. `last_only=True` asks only for the logits of the last new
        token (what a generation samples from): the output head (a child named ``lm_head``)
        then projects only the last position, so the result is [batch, 1, vocab]; a model
        whose output is not its head's output computes every position as before."""
        if _SESSION.get() is not self:
            raise RuntimeError("DecodeSession.forward runs inside `with session:`")
        if self.fused and id(model) not in self._examined:
            from tritium.runtime.layers.decoder import install_block_decoders
            install_block_decoders(model)
            self._examined.add(id(model))
        new = int(tokens.shape[-1])
        slice_head = last_only and new > 1 and _install_last_rows(model)
        nslots = len(self._keys)
        self._call = 0
        self._new = new
        self._head_out = None
        self._last_only = slice_head
        try:
            out = model(tokens)
        finally:
            self._last_only = False
        if slice_head and (self._head_out is None or out is not self._head_out):
            # the output is not the head's (the model does more after it): run again with
            # every position, from the cache as it was
            self._head_out = None
            self._rollback(nslots)
            self._call = 0
            out = model(tokens)
        self._head_out = None
        if self._call and self._call != len(self._keys):
            raise RuntimeError(f"the forward called attention {self._call} times, the cache "
                               f"holds {len(self._keys)} layers: not a stable call order")
        self.offset += self._new
        return out

    def _rollback(self, nslots: int) -> None:
        """Forget what the forward in progress cached: the slots it made, the tokens it
        appended (the buffers keep their first `offset` tokens)."""
        self._sync()
        for lst in (self._keys, self._values, self._kbuf, self._vbuf):
            del lst[nslots:]
        for i in range(nslots):
            self._keys[i] = self._kbuf[i][..., :self.offset, :]
            self._values[i] = self._vbuf[i][..., :self.offset, :]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               attn_mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
        if attn_mask is not None:
            raise ValueError("attention with an explicit mask cannot decode with a KV cache")
        slot = self._call
        self._call += 1
        if self.kv_dtype is not None and k.is_floating_point():
            k, v = k.to(self.kv_dtype), v.to(self.kv_dtype)
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
        if keys.dtype != q.dtype:
            keys, values = keys.to(q.dtype), values.to(q.dtype)
        n_q, n_k = q.shape[-2], keys.shape[-2]
        # a slot a fused block made keeps each k/v head once: grouped-query attention
        gqa = keys.dim() >= 3 and keys.shape[-3] != q.shape[-3]
        if not is_causal or n_q == 1:
            return torch.nn.functional.scaled_dot_product_attention(q, keys, values,
                                                                    enable_gqa=gqa)
        # query i (absolute position n_k - n_q + i) sees keys 0 .. n_k - n_q + i
        rows = torch.arange(n_q, device=q.device)[:, None] + (n_k - n_q)
        mask = torch.arange(n_k, device=q.device)[None, :] <= rows
        return torch.nn.functional.scaled_dot_product_attention(q, keys, values,
                                                                attn_mask=mask,
                                                                enable_gqa=gqa)

    @staticmethod
    def _append(bufs: list[torch.Tensor], views: list[torch.Tensor], slot: int,
                new: torch.Tensor) -> torch.Tensor:
        """Write `new` after the cached tokens of `slot` (growing its buffer when full) and
        return the view of everything cached."""
        old = views[slot]
        buf = bufs[slot]
        if buf.dim() == new.dim() >= 3 and buf.shape[-3] != new.shape[-3]:
            # the slot keeps each k/v head once (a fused block made it): the new heads must be
            # its heads repeated, each `rep` times in a row (as a generated model repeats
            # them); otherwise the cache is widened to one entry per head
            c, h = buf.shape[-3], new.shape[-3]
            if not c or h % c:
                raise RuntimeError("the attention heads changed between decode steps")
            rep = h // c
            first = new[..., ::rep, :, :]
            if torch.equal(first.repeat_interleave(rep, dim=-3), new):
                new = first
            else:
                old = old.repeat_interleave(rep, dim=-3)
                buf = bufs[slot] = _grown(old, 0)
        n = old.shape[-2]
        total = n + new.shape[-2]
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


def _last_rows(module: torch.nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook of an output head: inside a session's forward that asked for the last
    position's logits only, the head's input cut to that position."""
    session = _SESSION.get()
    if session is None or not session._last_only or not args:
        return None
    x = args[0]
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[-2] <= 1:
        return None
    return (x[..., -1:, :], *args[1:])


def _head_output(module: torch.nn.Module, args: tuple, output: Any) -> None:
    session = _SESSION.get()
    if session is not None and session._last_only:
        session._head_out = output


def _install_last_rows(model: torch.nn.Module) -> bool:
    """Give the model's output head (one child module named ``lm_head``) the hooks of
    `last_only` (once); False when the model has no such head."""
    from tritium.runtime.layers.head import HEAD_NAMES
    heads = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in HEAD_NAMES]
    if len(heads) != 1:
        return False
    head = heads[0]
    if _last_rows not in head._forward_pre_hooks.values():
        head.register_forward_pre_hook(_last_rows)
        head.register_forward_hook(_head_output)
    return True

