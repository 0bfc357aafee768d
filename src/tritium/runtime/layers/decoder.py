"""A decoder block of a BitNet b1.58 language model running a prompt, or decoding one token,
in one native call: :class:`BlockDecoder` (installed by :func:`install_block_decoders`, which
:meth:`tritium.runtime.decoding.DecodeSession.forward` calls on the models it runs).

A decode step of a generated model makes about thirty PyTorch and native calls per decoder
block (norms, q/k/v, rope, the k/v head repeat, the cache append, attention, o, gate/up,
ReLU², down, the residual adds): at batch 1 their Python and dispatch cost is a large part of
a small model's step. ``tri_lm_block_decode`` (``csrc/tritium_lmblock.h``) runs the whole block
for one new token -- RMSNorm, q/k/v from one int8 quantization, rope, the key and value
written into the session's cache, attention over the cache, the sub-norm, o and its residual,
RMSNorm, gate/up from one quantization, ReLU² gating, the sub-norm, down and its residual --
through the same packed kernels and the same quantizer as the layers' own calls, with its
scratch planned once (a workspace per block, grown with the cache). ``tri_lm_block_prefill``
does the same for m tokens (a prompt, or a chunk of one after the cached tokens): one int8
quantization of the m rows per product, the layers' batch GEMMs (on their G2 layouts, as
their own calls), causal attention over the cache and the chunk, the m keys and values
written into the cache. In a prompt's forward the generated code's own elementwise ops
(norms, rope, the head repeat, residuals) are PyTorch parallel regions of their own, which
on a loaded machine wait for a second thread; the native block has none of them.

The cache: a slot the native calls make keeps each k/v head once ([1, kv_heads, capacity,
head_dim]: grouped-query attention reads each k/v head for its group of query heads), in
float32 or in float16 (``DecodeSession(kv_dtype=torch.float16)``; written rounded to nearest
even, widened where read); they also read and write the generated model's layout, every k/v
head repeated per query head, of a slot the block's own forward made.

Which blocks: the structure of the decoder layer `tritium import hf` writes for
``BitNetForCausalLM`` (``input_layernorm`` ... ``down_proj`` children: ``nn.RMSNorm`` norms and
frozen int8-activation :class:`TernaryLinear` projections of one packed format, the
``heads``/``kv_heads``/``head_dim``/``rope_base`` hyperparameters of the block). Nothing is
inferred from Python source: a block of that structure is checked once against its own
``forward``: its first one-token decode call on the same input and cache, and its first
prompt of a new session on the prompt's first :data:`PREFILL_CHECK_TOKENS` tokens (the block
is causal: they depend on no later token); the native call serves from then on only if the
output agrees within :data:`BLOCK_TOLERANCE` (another dataflow -- SiLU gating, no sub-norms,
a different residual -- moves it by far more), else the block keeps its ``forward`` for good,
for prompts and tokens. The native values differ from the eager ones only in the summation
order of the norms and the attention: an input near an int8 rounding step can round the
other way, which moves the output by the int8 error (greedy generations are identical on the
tested models).

The native calls serve only float32 CPU input [1, m, hidden] inside an active decode session;
anything else -- no session, autograd, hooks on the block's children, a tuned kernel
config for one of its projections at that number of tokens (an installed tuning archive with
none for them leaves the block fused), a cache slot of another layout, changed weights (the
plans are rebuilt) -- runs the block's own ``forward``. Copies and pickles of a model start
over (their blocks are checked again).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_mod

from tritium.runtime import plan as _plan_mod
from tritium.runtime.capture import capturing
from tritium.runtime.decode_state import SESSION as _SESSION
from tritium.runtime.decode_state import grown as _grown
from tritium.runtime.native import _g2_layout

__all__ = ["BLOCK_TOLERANCE", "PREFILL_CHECK_TOKENS", "BlockDecoder", "install_block_decoders"]

NORMS = ("input_layernorm", "attn_sub_norm", "post_attention_layernorm", "ffn_sub_norm")
PROJS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: How far the fused block's first output may be from its own forward's, as a fraction of the
#: largest change the block makes to its input (int8 rounding flips move it by about 1%)
BLOCK_TOLERANCE = 0.05
#: How many of the first prompt's tokens the first native prefill of a block is checked on
#: (against the block's own forward over them; causal, so they depend on no later token)
PREFILL_CHECK_TOKENS = 16
_CPU = torch.device("cpu")
_CACHE_DTYPES = (torch.float32, torch.float16)


class _BlockArgs(ctypes.Structure):
    """``TriLmBlock`` of csrc/tritium_lmblock.h."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("dim", "heads", "kv_heads", "head_dim", "ffn")]
                + [(n, ctypes.c_float) for n in ("eps_in", "eps_attn", "eps_post", "eps_ffn")]
                + [(n, ctypes.c_void_p) for n in ("w_in", "w_attn", "w_post", "w_ffn")]
                + [(n, ctypes.c_void_p) for n in ("q", "k", "v", "o", "gate", "up", "down")]
                + [("cache_heads", ctypes.c_int64), ("cache_half", ctypes.c_int64)])


def _int_attr(mod: nn.Module, name: str) -> int | None:
    v = getattr(mod, name, None)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _matches(mod: nn.Module) -> bool:
    """Whether `mod` has the structure of an imported BitNet decoder block (see the module's
    documentation; its dataflow is checked on the first call)."""
    from tritium.runtime.layers.ternary import TernaryLinear
    children = mod._modules
    if any(type(children.get(n)) is not nn.RMSNorm for n in NORMS):
        return False
    if any(not isinstance(children.get(n), TernaryLinear) for n in PROJS):
        return False
    heads, kv, hd = (_int_attr(mod, n) for n in ("heads", "kv_heads", "head_dim"))
    base = getattr(mod, "rope_base", None)
    if heads is None or kv is None or hd is None or heads % kv or hd % 2:
        return False
    if isinstance(base, bool) or not isinstance(base, int | float):
        return False
    for n in NORMS:
        norm = children[n]
        if len(norm.normalized_shape) != 1:
            return False
    for n in PROJS:
        p = children[n]
        if not p.frozen or p.act_quant != "int8" or p.folded:
            return False
    return True


class BlockDecoder:
    """The ``forward`` of one decoder block: the fused one-token call when it may serve,
    otherwise the block's class ``forward`` (see the module's documentation)."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block
        self._reset()

    def _reset(self) -> None:
        self.state = "check"          # "check": compare the first fused call; "on"; "off"
        self._watch: list[tuple[dict, str, Any]] | None = None
        self._versions: tuple = ()
        self._args: _BlockArgs | None = None
        self._fn: Any = None
        self._args_ptr = 0
        self._ws_bytes: dict[int, int] = {}
        self._kv_ok: tuple = (None, None)   # the cache buffers whose layout was checked
        self._threads = 0
        self.prefill_state = "check"  # the same for calls of several tokens (the prompt)
        # the native arguments per cache layout (heads, float16)
        self._by_layout: dict[tuple[int, bool], tuple[_BlockArgs, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"block": self.block}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.block = state["block"]
        self._reset()

    def own_forward(self, *args: Any, **kwargs: Any) -> Any:
        return type(self.block).forward(self.block, *args, **kwargs)

    # -- the plan -------------------------------------------------------------------------

    def _plan(self, m: int) -> _BlockArgs | None:
        """The native arguments of the block for a call of ``m`` tokens; None when the block
        cannot run fused now. The arguments are rebuilt whenever a tensor they point into was
        replaced or changed in place (its version counter). Under a kernel config resolver
        the block runs fused only while each projection resolves to the default kernels at
        ``m`` tokens (a tuned config runs in the projection's own call)."""
        watch = self._watch
        args = None
        if watch is not None:
            for owner, name, t in watch:
                if owner.get(name) is not t:
                    break
            else:
                if self._stamp() == self._versions:
                    args = self._args
        if args is None:
            args = self._build()
        if args is None or _plan_mod._RESOLVER is None:
            return args
        gen = _plan_mod._RESOLVER_GENERATION
        hit = self._untuned.get(m)
        if hit is None or hit[0] != gen:
            if len(self._untuned) >= 64:   # prompt lengths come and go: keep a bounded few
                self._untuned.clear()
            hit = self._untuned[m] = (gen, all(p.runs_default(m) for p in self._plans))
        return args if hit[1] else None

    def _stamp(self) -> tuple:
        """What the native arguments depend on besides the watched objects' identity: each
        watched tensor's version counter and data pointer (``t.data = other`` keeps the tensor
        object and its version), the norms' eps, the head counts and the layers' activation
        modes (read into the arguments when they were built)."""
        b = self.block
        ch = b._modules
        return (tuple([(t._version, t.data_ptr()) for _, _, t in self._watch
                       if isinstance(t, torch.Tensor)]),
                tuple([ch[n].eps for n in NORMS]), b.heads, b.kv_heads, b.head_dim,
                tuple([ch[n].act_quant for n in PROJS]))

    def _build(self) -> _BlockArgs | None:
        b = self.block
        ch = b._modules
        self._watch, self._args = None, None
        plans = []
        for n in PROJS:
            layer = ch[n]
            if not layer.frozen:
                return None
            p = layer._current_plan()
            if p is None or not p.aq:
                return None
            plans.append(p)
        norms = [ch[n] for n in NORMS]
        weights = [m.weight for m in norms]
        lib = plans[0].lib
        if any(p.lib is not lib for p in plans) or not hasattr(lib.lib, "tri_lm_block_decode"):
            return None
        for w in weights:
            if w is not None and (w.dtype != torch.float32 or w.device.type != "cpu"
                                  or not w.is_contiguous()):
                return None
        heads, kv, hd = b.heads, b.kv_heads, b.head_dim
        dim, ffn = plans[0].k, plans[4].n
        shapes = [(dim, heads * hd), (dim, kv * hd), (dim, kv * hd), (heads * hd, dim),
                  (dim, ffn), (dim, ffn), (ffn, dim)]
        if [(p.k, p.n) for p in plans] != shapes or [m.normalized_shape[0] for m in norms] != [
                dim, heads * hd, dim, ffn]:
            return None
        if plans[1].fmt != plans[0].fmt or plans[2].fmt != plans[0].fmt \
                or plans[5].fmt != plans[4].fmt:
            return None
        eps = [torch.finfo(torch.float32).eps if m.eps is None else float(m.eps) for m in norms]
        args = _BlockArgs(dim, heads, kv, hd, ffn, *eps,
                          *[None if w is None else w.data_ptr() for w in weights],
                          *[p.args_ptr for p in plans])
        # what the arguments were built from: the block's layers and norms (a module replaced
        # is another object in the block's dict), each plan's tensors (held by the layer's
        # buffers) and the norms' weights
        watch: list[tuple[dict, str, Any]] = [(ch, n, ch[n]) for n in (*PROJS, *NORMS)]
        for n in PROJS:
            layer = ch[n]
            watch.append((layer._buffers, "weight_packed", layer._buffers["weight_packed"]))
            watch.append((layer._buffers, "weight_scale", layer._buffers["weight_scale"]))
            bias = layer._parameters.get("bias")
            if bias is not None:
                watch.append((layer._parameters, "bias", bias))
        for m in norms:
            if m.weight is not None:
                watch.append((m._parameters, "weight", m.weight))
        self._args, self._plans = args, plans
        self._args_ptr = ctypes.addressof(args)
        self._watch = watch
        self._versions = self._stamp()
        self._fn = lib.lib.tri_lm_block_decode
        self._prefill_fn = getattr(lib.lib, "tri_lm_block_prefill", None)
        self._ws_fn = lib.lib.tri_lm_block_workspace
        self._by_layout = {}
        self._ws_bytes: dict[int, int] = {}
        self._threads = plans[0].env_threads
        self._untuned = {}   # tokens per call -> (resolver generation, all default kernels)
        return args

    def _workspace(self, session: Any, cap: int) -> torch.Tensor:
        """The block's scratch for a cache of `cap` positions, kept by the session (so that
        sessions decoding with one model in several threads never share it)."""
        hit = session._scratch.get(self)
        if hit is not None and hit[0] >= cap and hit[2] is self._args:
            return hit[1]
        nbytes = self._ws_bytes.get(cap)
        if nbytes is None:
            nbytes = self._ws_bytes[cap] = int(self._ws_fn(self._args_ptr, cap))
        ws = torch.empty(nbytes, dtype=torch.uint8)
        session._scratch[self] = (cap, ws, self._args)
        return ws

    def _args_for(self, layout: tuple[int, bool]) -> int:
        """The address of the block's native arguments for a cache of `layout` (heads,
        float16)."""
        hit = self._by_layout.get(layout)
        if hit is None:
            a = _BlockArgs.from_buffer_copy(self._args)
            a.cache_heads, a.cache_half = layout[0], int(layout[1])
            hit = self._by_layout[layout] = (a, ctypes.addressof(a))
        return hit[1]

    def _cache_layout(self, kbuf: torch.Tensor, vbuf: torch.Tensor, plan: _BlockArgs
                      ) -> tuple[int, bool] | None:
        """(heads, float16) of a slot's cache buffers when the native calls can read and
        write them ([1, heads, capacity, head_dim] float32 or float16 on the CPU, heads a
        multiple of the k/v heads that divides the query heads), else None."""
        if kbuf is self._kv_ok[0] and vbuf is self._kv_ok[1]:
            return kbuf.shape[1], kbuf.dtype == torch.float16
        if kbuf.dim() != 4 or kbuf.dtype not in _CACHE_DTYPES:
            return None
        c = kbuf.shape[1]
        if c <= 0 or c % plan.kv_heads or plan.heads % c:
            return None
        want = (1, c, kbuf.shape[2], plan.head_dim)
        for buf in (kbuf, vbuf):
            if (tuple(buf.shape) != want or buf.dtype != kbuf.dtype
                    or buf.device.type != "cpu" or not buf.is_contiguous()):
                return None
        self._kv_ok = (kbuf, vbuf)
        return c, kbuf.dtype == torch.float16

    def _slot_ready(self, session: Any, slot: int, n: int) -> bool:
        """Whether an existing slot holds exactly the `n` tokens before this call."""
        pending = session._pending.get(slot)
        if pending is None:
            return session._keys[slot].shape[-2] == n and session._values[slot].shape[-2] == n
        return pending == n

    # -- the call -------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        session = _SESSION.get()
        if session is None or not session.fused or kwargs or len(args) != 1:
            return self.own_forward(*args, **kwargs)
        x = args[0]
        b = self.block
        if (not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] != 1
                or x.shape[1] < 1 or x.dtype != torch.float32 or x.device.type != "cpu"
                or not x.is_contiguous() or torch.is_grad_enabled()
                or capturing()):
            return self.own_forward(x)
        slot = session._call
        if slot > len(session._keys) or _hooked(b):
            return self.own_forward(x)
        if x.shape[1] > 1 or slot == len(session._keys):
            return self._prefill(session, x, slot)
        if self.state == "off":
            return self.own_forward(x)
        plan = self._plan(1)
        if plan is None or x.shape[2] != plan.dim:
            return self.own_forward(x)
        n = session.offset      # every slot holds the tokens before this step
        if not self._slot_ready(session, slot, n):
            return self.own_forward(x)
        kbuf, vbuf = session._kbuf[slot], session._vbuf[slot]
        layout = self._cache_layout(kbuf, vbuf, plan)
        if layout is None:
            return self.own_forward(x)
        if n + 1 > kbuf.shape[2]:
            kbuf = session._kbuf[slot] = _grown(session.keys[slot], n + 1)
            vbuf = session._vbuf[slot] = _grown(session.values[slot], n + 1)
            self._kv_ok = (kbuf, vbuf)
        cap = kbuf.shape[2]
        cos, sin = session.rope_row(plan.head_dim, b.rope_base, n)
        ws = self._workspace(session, cap)
        y = x.new(x.shape)
        rc = self._fn(self._args_for(layout), x.data_ptr(), y.data_ptr(), cos, sin,
                      kbuf.data_ptr(), vbuf.data_ptr(), cap, n, ws.data_ptr(),
                      self._threads or torch.get_num_threads())
        if rc == 1:
            raise MemoryError("tritium: the native decoder block could not allocate its "
                              "buffers")
        if rc:
            self.state = "off"
            return self.own_forward(x)
        if self.state == "check":
            # the block's own forward on the same input and cache (it rewrites the new key and
            # value where the fused call wrote them); its output is this step's
            ref = self.own_forward(x)
            if _agrees(y, ref, x):
                self.state = "on"
            else:       # a block of another dataflow: its prompts run its forward too
                self.state = self.prefill_state = "off"
            return ref
        session._call = slot + 1
        session._pending[slot] = n + 1
        return y

    def _prefill(self, session: Any, x: torch.Tensor, slot: int) -> torch.Tensor:
        """The block on the m tokens of `x` (a prompt, or the first token of a session) in
        one native call that writes their keys and values into the slot's cache (made here
        for a new slot); the block's own forward where that cannot serve. The first such call
        of a new session is checked against the block's own forward on the first
        :data:`PREFILL_CHECK_TOKENS` tokens (outside the session: positions from 0)."""
        if self.prefill_state == "off":
            return self.own_forward(x)
        plan = self._plan(x.shape[1])
        if plan is None or self._prefill_fn is None or x.shape[2] != plan.dim:
            return self.own_forward(x)
        m, n, hd = x.shape[1], session.offset, plan.head_dim
        new = slot == len(session._keys)
        if new:
            if n:       # attention call sites changed: the own forward says so
                return self.own_forward(x)
            planned = session.max_tokens
            cap = planned if planned is not None and planned > m else max(64, 2 * m)
            # each k/v head once (grouped-query attention), in the session's cache dtype
            layout = (plan.kv_heads, session.kv_dtype == torch.float16)
            kbuf = x.new_empty(1, plan.kv_heads, cap, hd, dtype=session.kv_dtype)
            vbuf = x.new_empty(1, plan.kv_heads, cap, hd, dtype=session.kv_dtype)
        else:
            if self.prefill_state == "check" or not self._slot_ready(session, slot, n):
                return self.own_forward(x)
            kbuf, vbuf = session._kbuf[slot], session._vbuf[slot]
            layout = self._cache_layout(kbuf, vbuf, plan)
            if layout is None:
                return self.own_forward(x)
            if n + m > kbuf.shape[2]:
                kbuf = session._kbuf[slot] = _grown(session.keys[slot], n + m)
                vbuf = session._vbuf[slot] = _grown(session.values[slot], n + m)
                self._kv_ok = (kbuf, vbuf)
        # rope's tables reach position n + m - 1; the native call reads m rows from n
        base = self.block.rope_base
        session.rope_tables(hd, base, n, m, torch.float32, _CPU)
        cos, sin = session.rope_row(hd, base, n)
        gws = (ctypes.c_void_p * 7)()
        plans = self._plans
        if m >= plans[0].g2_min:    # each layer's G2 layout, as its own call would use
            for i, p in enumerate(plans):
                if p.g2 is None:
                    p.g2 = _g2_layout(p.lib, p.tensors[0], p.n, p.k, p.fmt)
                gws[i] = None if p.g2 is None else p.g2.data_ptr()
        y = torch.empty_like(x)
        rc = self._prefill_fn(self._args_for(layout), x.data_ptr(), y.data_ptr(), m, cos, sin,
                              kbuf.data_ptr(), vbuf.data_ptr(), kbuf.shape[2], n, gws,
                              self._threads or torch.get_num_threads())
        if rc == 1:
            raise MemoryError("tritium: the native decoder block could not allocate its "
                              "buffers")
        if rc:
            self.prefill_state = "off"
            return self.own_forward(x)
        if self.prefill_state == "check":
            j = min(m, PREFILL_CHECK_TOKENS)
            token = _SESSION.set(None)
            try:
                ref = self.own_forward(x[:, :j])
            finally:
                _SESSION.reset(token)
            if not _agrees(y[:, :j], ref, x[:, :j]):
                self.prefill_state = self.state = "off"     # and its one-token calls
                return self.own_forward(x)      # it makes the slot (the buffers are dropped)
            self.prefill_state = "on"
        if new:
            session._kbuf.append(kbuf)
            session._vbuf.append(vbuf)
            session._keys.append(kbuf[..., :m, :])
            session._values.append(vbuf[..., :m, :])
        else:
            session._pending[slot] = n + m
        session._call = slot + 1
        return y


def _hooked(block: nn.Module) -> bool:
    """Whether hooks would see calls of the block's children (or any module's)."""
    if _module_mod._global_forward_hooks or _module_mod._global_forward_pre_hooks:
        return True
    for c in block._modules.values():
        if c._forward_hooks or c._forward_pre_hooks:
            return True
    return False


def _agrees(fused: torch.Tensor, ref: torch.Tensor, x: torch.Tensor) -> bool:
    if not (torch.isfinite(fused).all() and torch.isfinite(ref).all()):
        return False
    change = float((ref - x).abs().max())
    return float((fused - ref).abs().max()) <= BLOCK_TOLERANCE * change + 1e-6


def install_block_decoders(model: nn.Module) -> int:
    """Give every module of `model` with the structure of an imported BitNet decoder block
    a :class:`BlockDecoder` as its ``forward``; returns how many blocks have one."""
    count = 0
    for mod in model.modules():
        if isinstance(mod.__dict__.get("forward"), BlockDecoder):
            count += 1
        elif "forward" not in mod.__dict__ and _matches(mod):
            mod.forward = BlockDecoder(mod)
            count += 1
    return count
