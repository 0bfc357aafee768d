"""A decoder block of a BitNet b1.58 language model decoding one token in one native call:
:class:`BlockDecoder` (installed by :func:`install_block_decoders`, which
:meth:`tritium.runtime.decoding.DecodeSession.forward` calls on the models it runs).

A decode step of a generated model makes about thirty PyTorch and native calls per decoder
block (norms, q/k/v, rope, the k/v head repeat, the cache append, attention, o, gate/up,
ReLU², down, the residual adds): at batch 1 their Python and dispatch cost is a large part of
a small model's step. ``tri_lm_block_decode`` (``csrc/tritium_lm.h``) runs the whole block
for one new token -- RMSNorm, q/k/v from one int8 quantization, rope, the key and value
written into the session's cache, attention over the cache, the sub-norm, o and its residual,
RMSNorm, gate/up from one quantization, ReLU² gating, the sub-norm, down and its residual --
through the same packed kernels and the same quantizer as the layers' own calls, with its
scratch planned once (a workspace per block, grown with the cache).

Which blocks: the structure of the decoder layer `tritium import hf` writes for
``BitNetForCausalLM`` (``input_layernorm`` ... ``down_proj`` children: ``nn.RMSNorm`` norms and
frozen int8-activation :class:`TernaryLinear` projections of one packed format, the
``heads``/``kv_heads``/``head_dim``/``rope_base`` hyperparameters of the block). Nothing is
inferred from Python source: a block of that structure is checked once, on its first
one-token decode call, against its own ``forward`` (the same input, the same cache); it
runs fused from the next call on only if its output agrees within
:data:`BLOCK_TOLERANCE` (another dataflow -- SiLU gating, no sub-norms, a different residual
-- moves it by far more), else it keeps its ``forward`` for good. The fused block's values
differ from the eager ones only in the summation order of the norms and the attention: an
input near an int8 rounding step can round the other way, which moves the output by the
int8 error (greedy generations are identical on the tested models).

The fused call serves only one token [1, 1, hidden] of float32 CPU input inside an active
decode session whose cache slot for the block exists (the prefill made it) and has the
generated model's layout ([1, heads, capacity, head_dim], float32); anything else --
prefill, no session, autograd, hooks on the block's children, a tuned kernel resolver,
changed weights (the plans are rebuilt) -- runs the block's own ``forward``. Copies and
pickles of a model start over (their blocks are checked again).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_mod

from tritium.runtime import plan as _plan_mod
from tritium.runtime.decode_state import SESSION as _SESSION
from tritium.runtime.decode_state import grown as _grown

__all__ = ["BLOCK_TOLERANCE", "BlockDecoder", "install_block_decoders"]

NORMS = ("input_layernorm", "attn_sub_norm", "post_attention_layernorm", "ffn_sub_norm")
PROJS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: How far the fused block's first output may be from its own forward's, as a fraction of the
#: largest change the block makes to its input (int8 rounding flips move it by about 1%)
BLOCK_TOLERANCE = 0.05


class _BlockArgs(ctypes.Structure):
    """``TriLmBlock`` of csrc/tritium_lm.h."""

    _fields_ = ([(n, ctypes.c_int64) for n in ("dim", "heads", "kv_heads", "head_dim", "ffn")]
                + [(n, ctypes.c_float) for n in ("eps_in", "eps_attn", "eps_post", "eps_ffn")]
                + [(n, ctypes.c_void_p) for n in ("w_in", "w_attn", "w_post", "w_ffn")]
                + [(n, ctypes.c_void_p) for n in ("q", "k", "v", "o", "gate", "up", "down")])


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
        self._watch: list[tuple[dict, str, torch.Tensor]] | None = None
        self._versions: tuple[int, ...] = ()
        self._args: _BlockArgs | None = None
        self._fn: Any = None
        self._args_ptr = 0
        self._ws_bytes: dict[int, int] = {}
        self._kv_ok: tuple = (None, None)   # the cache buffers whose layout was checked
        self._threads = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"block": self.block}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.block = state["block"]
        self._reset()

    def own_forward(self, *args: Any, **kwargs: Any) -> Any:
        return type(self.block).forward(self.block, *args, **kwargs)

    # -- the plan -------------------------------------------------------------------------

    def _plan(self) -> _BlockArgs | None:
        """The native arguments of the block; None when the block cannot run fused now. The
        arguments are rebuilt whenever a tensor they point into was replaced or changed in
        place (its version counter), or a kernel config resolver was installed."""
        if _plan_mod._RESOLVER is not None:
            return None
        watch = self._watch
        if watch is not None:
            for owner, name, t in watch:
                if owner.get(name) is not t:
                    break
            else:
                if tuple([t._version for _, _, t in watch]) == self._versions:
                    return self._args
        return self._build()

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
        # what the arguments point into: each plan's tensors (held by the layer's buffers)
        # and the norms' weights
        watch = []
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
        self._versions = tuple([t._version for _, _, t in watch])
        self._fn = lib.lib.tri_lm_block_decode
        self._ws_fn = lib.lib.tri_lm_block_workspace
        self._ws_bytes: dict[int, int] = {}
        self._threads = plans[0].env_threads
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

    # -- the call -------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        session = _SESSION.get()
        if (session is None or not session.fused or self.state == "off" or kwargs
                or len(args) != 1):
            return self.own_forward(*args, **kwargs)
        x = args[0]
        b = self.block
        if (not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] != 1
                or x.shape[1] != 1 or x.dtype != torch.float32 or x.device.type != "cpu"
                or not x.is_contiguous() or torch.is_grad_enabled()
                or torch.compiler.is_compiling()):
            return self.own_forward(x)
        slot = session._call
        if slot >= len(session._keys) or _hooked(b):
            return self.own_forward(x)
        plan = self._plan()
        if plan is None or x.shape[2] != plan.dim:
            return self.own_forward(x)
        n = session.offset      # every slot holds the tokens before this step
        pending = session._pending.get(slot)
        if pending is None:
            if session._keys[slot].shape[-2] != n or session._values[slot].shape[-2] != n:
                return self.own_forward(x)
        elif pending != n:
            return self.own_forward(x)
        kbuf, vbuf = session._kbuf[slot], session._vbuf[slot]
        if kbuf is not self._kv_ok[0] or vbuf is not self._kv_ok[1]:
            want = (1, plan.heads, kbuf.shape[2], plan.head_dim)
            for buf in (kbuf, vbuf):
                if (tuple(buf.shape) != want or buf.dtype != torch.float32
                        or buf.device.type != "cpu" or not buf.is_contiguous()):
                    return self.own_forward(x)
            self._kv_ok = (kbuf, vbuf)
        if n + 1 > kbuf.shape[2]:
            kbuf = session._kbuf[slot] = _grown(session.keys[slot], n + 1)
            vbuf = session._vbuf[slot] = _grown(session.values[slot], n + 1)
            self._kv_ok = (kbuf, vbuf)
        cap = kbuf.shape[2]
        cos, sin = session.rope_row(plan.head_dim, b.rope_base, n)
        ws = self._workspace(session, cap)
        y = x.new(x.shape)
        rc = self._fn(self._args_ptr, x.data_ptr(), y.data_ptr(), cos, sin, kbuf.data_ptr(),
                      vbuf.data_ptr(), cap, n, ws.data_ptr(),
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
            self.state = "on" if _agrees(y, ref, x) else "off"
            return ref
        session._call = slot + 1
        session._pending[slot] = n + 1
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
