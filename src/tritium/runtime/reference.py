"""The ternary linear in pure PyTorch: the kernels' fallback and the reference they are
checked against (:mod:`tritium.runtime.kernels`, the tuner's checked measurement)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# per-token absmax int8, the kernels' activation quantization: one home, in quant
from tritium.runtime.quant import quantize_activations_int8

__all__ = ["apply_activation", "int_matmul_exact", "quantize_activations_int8",
           "reference_linear"]


def apply_activation(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    """``activation`` (one of the kernels' fused activations, or None) applied to ``y``."""
    if activation is None:
        return y
    if activation == "relu":
        return F.relu(y)
    if activation == "relu6":
        return F.relu6(y)
    if activation == "gelu":
        return F.gelu(y)
    if activation == "silu":
        return F.silu(y)
    if activation == "sigmoid":
        return torch.sigmoid(y)
    return torch.tanh(y)


def int_matmul_exact(xq: torch.Tensor, trits: torch.Tensor) -> torch.Tensor:
    """Exact int32 ``xq @ trits^T`` via floating point (exact while K * 127 < 2**24 in fp32)."""
    k = xq.shape[-1]
    dt = torch.float32 if k * 127 < 2**24 else torch.float64
    return (xq.to(dt) @ trits.to(dt).t()).to(torch.int32)


def reference_linear(
    x: torch.Tensor,
    trits: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor | None,
    activation: str | None,
    act_quant: str,
) -> torch.Tensor:
    """``act((x' @ trits^T) * scale + bias + residual)`` in PyTorch: the kernels' fallback and
    the reference a tuner checks every config against (bit-exact on the int8 path)."""
    x = x.float()
    if act_quant == "int8":
        xq, s = quantize_activations_int8(x)
        y = int_matmul_exact(xq, trits).float() * s
    else:
        y = x @ trits.to(x.dtype).t()
    y = y * scale.float().reshape(-1)
    if bias is not None:
        y = y + bias.float()
    if residual is not None:
        y = y + residual.float()
    return apply_activation(y, activation)
