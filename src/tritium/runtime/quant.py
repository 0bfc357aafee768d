"""Quantizers: float weights to trits (plus a float scale), activations to int8 or trits,
and int8/int4 weights for mixed-precision layers.

Every ternary weight quantizer returns a :class:`TernaryQuant` ``(trits, scale)``:

* ``trits`` -- a ``torch.int8`` tensor of the weight's shape, values in {-1, 0, +1};
* ``scale`` -- a ``torch.float32`` tensor of shape ``(1,)`` (per tensor) or ``(N,)``
  (per output channel, ``N = w.shape[0]``), so that ``trits * scale`` (broadcast over
  dim 0) approximates ``w``.

Per-channel statistics are taken over every dimension except dim 0, which is the output
channel for ``nn.Linear`` ``(out, in)`` and ``nn.Conv2d`` ``(out, in/groups, kh, kw)``
weights alike.

The quantizers (see :func:`get_quantizer` for the registry names):

* TWN (Li & Liu, *Ternary Weight Networks*): threshold ``delta = factor * mean|W|``
  (``factor = 0.7``); trit = sign(W) where ``|W| > delta``; scale = mean of ``|W|`` over
  the kept entries.
* absmean (BitNet b1.58): ``gamma = mean|W|``;
  ``trits = clamp(round(W / (gamma + eps)), -1, 1)``; scale = ``gamma``.
* fixed threshold: a given ``delta``; trit = sign(W) where ``|W| > delta``; scale = mean
  kept magnitude.
* stochastic: scale ``s = max|W|``; each entry becomes ``sign(W)`` with probability
  ``|W| / s`` and 0 otherwise, so ``E[trits * s] = W`` exactly (unbiased).

A group (tensor or channel) with no kept entry gets scale 0 and all-zero trits, which
dequantizes to zeros, the closest ternary tensor to an all-zero group.

Quantization strength (progressive QAT): inside ``with quantization_strength(lam):`` every
fake quantizer the runtime applies in a forward pass -- the weight STEs of the ternary and
integer layers, their int8 activations, :class:`~tritium.runtime.TernaryActivation` and
the functional quantizers generated code calls (``trt.ste_quantize`` …) -- returns
``(1 - lam) * x + lam * q(x)`` (:func:`blend_quantized`) instead of ``q(x)``: ``lam = 0``
is the float forward (quantizers off), ``lam = 1`` (the default, outside any such block)
the quantized one. `tritium train` sets it per epoch from the program's QAT schedule;
evaluation, freezing and packing never see it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, NamedTuple

import torch

__all__ = [
    "TernaryQuant",
    "IntQuant",
    "WeightQuantizer",
    "QUANTIZER_NAMES",
    "get_quantizer",
    "canonical_quantizer_name",
    "quantize_twn",
    "quantize_absmean",
    "quantize_threshold",
    "quantize_stochastic",
    "quantize_stochastic_nearest",
    "dequantize_ternary",
    "quantize_weight",
    "quantize_activations_int8",
    "ternarize_activations",
    "DEFAULT_ACTIVATION_THRESHOLD",
    "quantize_int8_weights",
    "quantize_int4_weights",
    "dequantize_int",
    "pack_int4",
    "unpack_int4",
    "quantization_strength",
    "current_strength",
    "blend_quantized",
]

DEFAULT_ACTIVATION_THRESHOLD = 0.5

_STRENGTH: ContextVar[float] = ContextVar("tritium_quantization_strength", default=1.0)


@contextlib.contextmanager
def quantization_strength(lam: float) -> Iterator[float]:
    """Run the block's forward passes with quantization strength ``lam`` in [0, 1] (see the
    module docstring); blocks nest, and the previous strength comes back on exit."""
    value = float(lam)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"quantization strength must be in [0, 1], got {lam!r}")
    token = _STRENGTH.set(value)
    try:
        yield value
    finally:
        _STRENGTH.reset(token)


def current_strength() -> float:
    """The quantization strength of the current context (1.0 outside any block)."""
    return _STRENGTH.get()


def blend_quantized(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` at full strength (the default), ``x`` itself at strength 0, and
    ``x + lam * (q - x)`` in between; gradients flow to both as the expression says (``q``
    carries the quantizer's straight-through gradient)."""
    lam = _STRENGTH.get()
    if lam >= 1.0:
        return q
    if lam <= 0.0:
        return x
    return x + lam * (q - x)
"""Default threshold of the ternary activation: ``x -> sign(x)`` where ``|x| > 0.5``, else 0.

0.5 is the midpoint between the levels 0 and 1, so for inputs in ``[-1.5, 1.5]`` the
activation is round-to-nearest onto {-1, 0, +1}."""


class TernaryQuant(NamedTuple):
    """The result of a ternary weight quantizer."""

    trits: torch.Tensor
    """int8, same shape as the weight, values in {-1, 0, 1}."""
    scale: torch.Tensor
    """float32, shape ``(1,)`` or ``(N,)``."""


class IntQuant(NamedTuple):
    """The result of an integer (int8 / int4) quantizer: ``q * scale`` approximates the input."""

    q: torch.Tensor
    """int8 values (int4 values are held in int8, in [-7, 7])."""
    scale: torch.Tensor
    """float32 scales, broadcastable against ``q`` after the reshapes documented per function."""


WeightQuantizer = Callable[..., TernaryQuant]
"""A ternary weight quantizer: ``fn(w, *, per_channel=False, **options) -> TernaryQuant``."""


def _groups(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """``w`` as a float32 2-D view: one row per output channel, or a single row."""
    if w.dim() == 0:
        raise ValueError("cannot quantize a 0-d tensor; weights have at least one dimension")
    w = w.detach().to(torch.float32)
    if per_channel:
        return w.reshape(w.shape[0], -1)
    return w.reshape(1, -1)


def _finish(trits2d: torch.Tensor, scale: torch.Tensor, shape: torch.Size) -> TernaryQuant:
    return TernaryQuant(
        trits2d.to(torch.int8).reshape(shape),
        scale.to(torch.float32).reshape(-1).contiguous(),
    )


def _kept_mean(mag: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``mag`` over ``keep`` per row; 0 for rows that keep nothing."""
    kept = keep.to(mag.dtype)
    total = (mag * kept).sum(dim=1)
    count = kept.sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1.0), torch.zeros_like(total))


def quantize_twn(w: torch.Tensor, *, per_channel: bool = False, delta_factor: float = 0.7) -> TernaryQuant:
    """TWN: ``delta = delta_factor * mean|W|``, keep ``|W| > delta``, scale = mean kept ``|W|``."""
    g = _groups(w, per_channel)
    mag = g.abs()
    delta = delta_factor * mag.mean(dim=1, keepdim=True)
    keep = mag > delta
    scale = _kept_mean(mag, keep)
    trits = torch.sign(g) * keep
    return _finish(trits, scale, w.shape)


def quantize_absmean(w: torch.Tensor, *, per_channel: bool = False, eps: float = 1e-5) -> TernaryQuant:
    """BitNet b1.58: ``gamma = mean|W|``, ``trits = clamp(round(W/(gamma+eps)), -1, 1)``, scale gamma."""
    g = _groups(w, per_channel)
    gamma = g.abs().mean(dim=1, keepdim=True)
    trits = torch.clamp(torch.round(g / (gamma + eps)), -1.0, 1.0)
    return _finish(trits, gamma, w.shape)


def quantize_threshold(
    w: torch.Tensor, threshold: float, *, per_channel: bool = False
) -> TernaryQuant:
    """Fixed threshold: keep ``|W| > threshold``, trit = sign(W), scale = mean kept ``|W|``."""
    if threshold is None or not threshold >= 0.0:
        raise ValueError(f"the fixed-threshold quantizer needs a threshold >= 0, got {threshold!r}")
    g = _groups(w, per_channel)
    mag = g.abs()
    keep = mag > threshold
    scale = _kept_mean(mag, keep)
    trits = torch.sign(g) * keep
    return _finish(trits, scale, w.shape)


def quantize_stochastic(
    w: torch.Tensor,
    *,
    per_channel: bool = False,
    generator: torch.Generator | None = None,
) -> TernaryQuant:
    """Stochastic (probabilistic) rounding, unbiased: ``E[trits * scale] == w``.

    The scale is ``max|W|`` of the group; an entry becomes ``sign(W)`` with probability
    ``|W| / max|W|`` and 0 otherwise. Pass a seeded ``torch.Generator`` (on ``w``'s device)
    for reproducible draws.
    """
    g = _groups(w, per_channel)
    mag = g.abs()
    scale = mag.amax(dim=1, keepdim=True)
    prob = torch.where(scale > 0, mag / scale.clamp(min=torch.finfo(torch.float32).tiny), 0.0)
    u = torch.rand(g.shape, generator=generator, device=g.device, dtype=torch.float32)
    trits = torch.sign(g) * (u < prob)
    return _finish(trits, scale, w.shape)


def quantize_stochastic_nearest(w: torch.Tensor, *, per_channel: bool = False) -> TernaryQuant:
    """The deterministic counterpart of :func:`quantize_stochastic`, used in eval and freeze.

    Same scale (``max|W|``); each entry goes to its nearest level, i.e. sign(W) where
    ``|W| >= max|W| / 2`` (the most likely outcome of the stochastic draw).
    """
    g = _groups(w, per_channel)
    mag = g.abs()
    scale = mag.amax(dim=1, keepdim=True)
    keep = (mag * 2.0 >= scale) & (scale > 0)
    trits = torch.sign(g) * keep
    return _finish(trits, scale, w.shape)


def dequantize_ternary(trits: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``trits * scale`` as float32, the scale broadcast over dim 0 (per channel) or global."""
    t = trits.to(torch.float32)
    s = scale.to(torch.float32).reshape(-1)
    if s.numel() == 1:
        return t * s
    return t * s.reshape((-1,) + (1,) * (t.dim() - 1))


# --- registry ---------------------------------------------------------------------------

_CANONICAL: dict[str, WeightQuantizer] = {
    "twn": quantize_twn,
    "absmean": quantize_absmean,
    "threshold": quantize_threshold,
    "stochastic": quantize_stochastic,
}
_ALIASES: dict[str, str] = {
    "bitnet": "absmean",
    "b1.58": "absmean",
    "deterministic": "threshold",
    "fixed": "threshold",
    "adaptive_ternary": "twn",   # per output channel (vocab.PER_CHANNEL_QUANTIZERS)
    "adaptive": "twn",
}
QUANTIZER_NAMES: tuple[str, ...] = tuple(_CANONICAL) + tuple(_ALIASES)
"""Every name :func:`get_quantizer` accepts (canonical names first, then aliases)."""


def canonical_quantizer_name(name: str) -> str:
    """The canonical registry name for ``name`` (``"bitnet"`` -> ``"absmean"``)."""
    if not isinstance(name, str):
        raise ValueError(f"quantizer name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _CANONICAL:
        valid = ", ".join(repr(n) for n in QUANTIZER_NAMES)
        raise ValueError(f"unknown quantizer {name!r}; valid names are: {valid}")
    return key


def get_quantizer(name: str) -> WeightQuantizer:
    """The ternary weight quantizer called ``name`` (case-insensitive, aliases accepted).

    ``"twn"``; ``"absmean"`` (aliases ``"bitnet"``, ``"b1.58"``); ``"threshold"`` (aliases
    ``"deterministic"``, ``"fixed"``; needs a ``threshold`` argument); ``"stochastic"``.
    Raises ``ValueError`` listing the valid names for an unknown one.
    """
    return _CANONICAL[canonical_quantizer_name(name)]


# --- activations ------------------------------------------------------------------------


def quantize_activations_int8(x: torch.Tensor) -> IntQuant:
    """int8 absmax quantization per token (per row of the last dimension).

    ``scale = max|x| / 127`` over the last dim (shape ``(..., 1)``; 1 for an all-zero row);
    ``q = clamp(round(x / scale), -127, 127)`` as int8, so ``q * scale`` approximates ``x``.
    These are exactly the numbers the int8 kernels of :mod:`tritium.runtime.kernels` use.
    """
    xf = x.detach().to(torch.float32)
    scale = _int8_token_scale(xf)
    q = torch.clamp(torch.round(xf / scale), -127.0, 127.0).to(torch.int8)
    return IntQuant(q, scale)


def _int8_token_scale(x: torch.Tensor) -> torch.Tensor:
    scale = x.abs().amax(dim=-1, keepdim=True) / 127.0
    return torch.where(scale == 0, torch.ones_like(scale), scale)


def ternarize_activations(
    x: torch.Tensor, threshold: float = DEFAULT_ACTIVATION_THRESHOLD
) -> torch.Tensor:
    """``x -> sign(x)`` where ``|x| > threshold``, else 0; same dtype as ``x`` (no gradient).

    The differentiable version (straight-through) is
    :func:`tritium.runtime.ste.ternary_activation`.
    """
    return torch.sign(x) * (x.abs() > threshold).to(x.dtype)


# --- int8 / int4 weights ----------------------------------------------------------------


def quantize_int8_weights(w: torch.Tensor) -> IntQuant:
    """Symmetric int8 per output channel: ``scale[n] = max|W[n]| / 127`` (shape ``(N,)``).

    Rows that are all zero get scale 0 (and zeros).
    """
    g = _groups(w, per_channel=True)
    absmax = g.abs().amax(dim=1)
    scale = absmax / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(g / safe[:, None]), -127.0, 127.0).to(torch.int8)
    return IntQuant(q.reshape(w.shape), scale.contiguous())


def quantize_int4_weights(w: torch.Tensor, group_size: int | None = None) -> IntQuant:
    """Symmetric int4 (values in [-7, 7]) per output channel, or per ``group_size`` inputs.

    ``w`` is 2-D ``(N, K)``. Without ``group_size`` the scale has shape ``(N, 1)``; with it,
    ``(N, ceil(K / group_size))``, group ``j`` covering columns ``j*group_size`` up to
    ``(j+1)*group_size``. ``scale = max|W| / 7`` per group.
    """
    if w.dim() != 2:
        raise ValueError(f"int4 weight quantization expects a 2-D weight, got shape {tuple(w.shape)}")
    n, k = w.shape
    gs = k if group_size is None else int(group_size)
    if gs <= 0:
        raise ValueError(f"group_size must be positive, got {group_size!r}")
    n_groups = -(-k // gs)
    wf = w.detach().to(torch.float32)
    padded = torch.zeros(n, n_groups * gs, dtype=torch.float32, device=w.device)
    padded[:, :k] = wf
    grouped = padded.reshape(n, n_groups, gs)
    scale = grouped.abs().amax(dim=2) / 7.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(grouped / safe[:, :, None]), -7.0, 7.0)
    q = q.reshape(n, n_groups * gs)[:, :k].to(torch.int8).contiguous()
    return IntQuant(q, scale.contiguous())


def dequantize_int(q: torch.Tensor, scale: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """Float32 weights from per-channel (``scale`` ``(N,)`` or ``(N, 1)``) or grouped int values."""
    qf = q.to(torch.float32)
    s = scale.to(torch.float32)
    if s.dim() == 1:
        s = s[:, None]
    if s.shape[1] == 1:
        return qf * s
    n, k = q.shape
    gs = k if group_size is None else int(group_size)
    expanded = s.repeat_interleave(gs, dim=1)[:, :k]
    if expanded.shape[1] != k:
        raise ValueError(
            f"scale of shape {tuple(scale.shape)} with group_size {group_size} does not cover {k} columns"
        )
    return qf * expanded


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack int4 values (int8 tensor in [-8, 7], 2-D ``(N, K)``) two per byte.

    Column ``2j`` goes in the low nibble of byte ``j``, column ``2j+1`` in the high nibble,
    each as a 4-bit two's complement; an odd ``K`` pads the last high nibble with 0.
    Result: uint8 ``(N, ceil(K/2))``.
    """
    if q.dim() != 2:
        raise ValueError(f"pack_int4 expects a 2-D tensor, got shape {tuple(q.shape)}")
    if q.numel() and (int(q.min()) < -8 or int(q.max()) > 7):
        raise ValueError("pack_int4: values must lie in [-8, 7]")
    n, k = q.shape
    nib = (q.to(torch.int16) & 0xF).to(torch.uint8)
    if k % 2:
        nib = torch.cat([nib, torch.zeros(n, 1, dtype=torch.uint8, device=q.device)], dim=1)
    lo = nib[:, 0::2]
    hi = nib[:, 1::2]
    return (lo | (hi << 4)).contiguous()


def unpack_int4(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: int8 ``(N, k)`` values in [-8, 7]."""
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError("unpack_int4 expects a 2-D uint8 tensor")
    if packed.shape[1] != -(-k // 2):
        raise ValueError(
            f"unpack_int4: {packed.shape[1]} bytes per row cannot hold {k} int4 values"
        )
    p = packed.to(torch.int16)
    lo = p & 0xF
    hi = (p >> 4) & 0xF
    both = torch.stack([lo, hi], dim=2).reshape(packed.shape[0], -1)[:, :k]
    signed = torch.where(both >= 8, both - 16, both)
    return signed.to(torch.int8).contiguous()


def quantize_weight(
    name: str,
    w: torch.Tensor,
    *,
    per_channel: bool,
    threshold: float | None,
    training: bool,
    generator: torch.Generator | None = None,
) -> TernaryQuant:
    """Quantize ``w`` the way a layer configured with ``name``/``threshold`` does.

    The stochastic quantizer draws only in training; in eval (and at freeze time) it uses
    :func:`quantize_stochastic_nearest` so that inference is deterministic.
    """
    key = canonical_quantizer_name(name)
    kwargs: dict[str, Any] = {"per_channel": per_channel}
    if key == "threshold":
        if threshold is None:
            raise ValueError("the 'threshold' quantizer needs a threshold value")
        return quantize_threshold(w, threshold, **kwargs)
    if key == "stochastic":
        if training:
            return quantize_stochastic(w, generator=generator, **kwargs)
        return quantize_stochastic_nearest(w, **kwargs)
    return _CANONICAL[key](w, **kwargs)
