"""Straight-through estimators as real ``torch.autograd.Function`` s.

Quantization is piecewise constant, so its true gradient is zero almost everywhere. A
straight-through estimator (STE) uses the quantized value in the forward pass and a
surrogate gradient in the backward pass:

* :class:`IdentitySTE` -- ``d w_q / d w := 1``: the gradient passes through unchanged.
* :class:`ClippedSTE` -- ``d w_q / d w := 1`` where ``|w| <= clip``, else 0 (the
  hard-tanh STE of BinaryConnect/BinaryNet): latent weights that drift far outside the
  quantizer's range stop being pushed further.

The weight STEs take the latent float tensor and its already-quantized (dequantized,
``trits * scale``) counterpart computed without gradient, so any quantizer can be used
with any STE. Activation STEs quantize inside the Function.

Every helper below honours the quantization strength of
:func:`tritium.runtime.quant.quantization_strength` (progressive QAT): at strength 0 it
returns its float input (quantizer off), at 1 (the default) the quantized value, and in
between ``(1 - lam) * x + lam * STE(x)``. The ``Function`` classes themselves always
quantize.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tritium.runtime.quant import (
    DEFAULT_ACTIVATION_THRESHOLD,
    blend_quantized,
    current_strength,
    quantize_activations_int8,
)

__all__ = [
    "IdentitySTE",
    "ClippedSTE",
    "Int8ActivationSTE",
    "TernaryActivationSTE",
    "STE_NAMES",
    "ste_identity",
    "ste_clipped",
    "get_ste",
    "fake_quant_int8",
    "ternary_activation",
]


class IdentitySTE(torch.autograd.Function):
    """Forward: ``w_q``. Backward: the incoming gradient goes to ``w`` unchanged."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
        return w_q.detach().to(w.dtype).clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output, None


class ClippedSTE(torch.autograd.Function):
    """Forward: ``w_q``. Backward: gradient to ``w`` where ``|w| <= clip``, zero elsewhere."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, w_q: torch.Tensor, clip: float) -> torch.Tensor:
        ctx.save_for_backward(w)
        ctx.clip = float(clip)
        return w_q.detach().to(w.dtype).clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (w,) = ctx.saved_tensors
        mask = (w.abs() <= ctx.clip).to(grad_output.dtype)
        return grad_output * mask, None, None


class Int8ActivationSTE(torch.autograd.Function):
    """Fake int8 absmax quantization per token (last dim); identity gradient.

    Forward computes ``q * scale`` with ``scale = max|x| / 127`` per row (1 for a zero row)
    and ``q = clamp(round(x / scale), -127, 127)``: the numbers the int8 kernels use.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        q, scale = quantize_activations_int8(x)
        return (q.to(torch.float32) * scale).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


class TernaryActivationSTE(torch.autograd.Function):
    """``x -> sign(x) * (|x| > threshold)``; backward passes the gradient where ``|x| <= clip``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, threshold: float, clip: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip = float(clip)
        return torch.sign(x) * (x.abs() > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        mask = (x.abs() <= ctx.clip).to(grad_output.dtype)
        return grad_output * mask, None, None


def ste_identity(w: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """``w_q`` in the forward pass, identity gradient to ``w`` (blended with ``w`` below
    full quantization strength)."""
    if current_strength() <= 0.0:
        return w
    return blend_quantized(w, IdentitySTE.apply(w, w_q))


def with_gradient_from(value, source: torch.Tensor) -> torch.Tensor:
    """The seed's `value with_gradient_from source`: `value` in the forward pass (broadcast
    with `source`, as a float), the gradient to `source` as if through the identity."""
    v = torch.as_tensor(value, device=source.device)
    if not v.is_floating_point():
        v = v.to(source.dtype if source.is_floating_point() else torch.float32)
    return source + (v - source).detach()


def ste_clipped(w: torch.Tensor, w_q: torch.Tensor, clip: float = 1.0) -> torch.Tensor:
    """``w_q`` in the forward pass, gradient to ``w`` only where ``|w| <= clip`` (blended
    with ``w`` below full quantization strength)."""
    if current_strength() <= 0.0:
        return w
    return blend_quantized(w, ClippedSTE.apply(w, w_q, clip))


STE_NAMES: tuple[str, ...] = ("identity", "clipped")


def get_ste(name: str, clip: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The weight STE called ``name`` (``"identity"`` or ``"clipped"``) as ``fn(w, w_q)``."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "identity":
        return ste_identity
    if key == "clipped":

        def clipped(w: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
            return ste_clipped(w, w_q, clip)

        return clipped
    valid = ", ".join(repr(n) for n in STE_NAMES)
    raise ValueError(f"unknown STE {name!r}; valid names are: {valid}")


def fake_quant_int8(x: torch.Tensor) -> torch.Tensor:
    """Per-token (last dim) int8 absmax fake quantization with a straight-through gradient
    (``x`` itself at quantization strength 0)."""
    if current_strength() <= 0.0:
        return x
    return blend_quantized(x, Int8ActivationSTE.apply(x))


def ternary_activation(
    x: torch.Tensor, threshold: float = DEFAULT_ACTIVATION_THRESHOLD, clip: float = 1.0
) -> torch.Tensor:
    """Ternary activation ``{-1, 0, +1}`` with a clipped straight-through gradient (``x``
    itself at quantization strength 0)."""
    if current_strength() <= 0.0:
        return x
    return blend_quantized(x, TernaryActivationSTE.apply(x, threshold, clip))
