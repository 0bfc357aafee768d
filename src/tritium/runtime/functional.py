"""Small functions the generated PyTorch modules call (`trt.<name>`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from tritium.runtime.quant import quantize_weight
from tritium.runtime.ste import ste_identity

_DTYPES = {
    "bool": torch.bool, "int": torch.int64, "int8": torch.int8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8, "float": torch.float32,
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64,
}


def ternary_weight(w: torch.Tensor, quantizer: str = "twn", per_channel: bool = False,
                   threshold: float | None = None, training: bool = False) -> torch.Tensor:
    """The ternarized view `trits * scale` of a latent weight, with an identity
    straight-through gradient to `w` (used for `param`/`let` weights of explicit layers)."""
    q = quantize_weight(quantizer, w.detach(), per_channel=per_channel and w.dim() > 1,
                        threshold=threshold, training=training)
    scale = q.scale.reshape((-1,) + (1,) * (w.dim() - 1)) if q.scale.numel() > 1 else q.scale
    w_q = q.trits.to(w.dtype).reshape(w.shape) * scale.to(w.dtype).reshape(
        scale.shape if q.scale.numel() > 1 else ())
    return ste_identity(w, w_q)


def init_weight(shape: Sequence[int]) -> torch.Tensor:
    """Initial latent values for a declared parameter: Kaiming-uniform for matrices and
    kernels (as nn.Linear), zeros for vectors and scalars."""
    shape = tuple(int(d) for d in shape)
    t = torch.empty(shape)
    if len(shape) >= 2:
        nn.init.kaiming_uniform_(t, a=math.sqrt(5))
    else:
        nn.init.zeros_(t)
    return t


def random_ternary(shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformly random trits in {-1, 0, 1} (int8)."""
    return torch.randint(-1, 2, tuple(int(d) for d in shape), generator=generator,
                         dtype=torch.int8)


def norm(bn: nn.Module | None, y: torch.Tensor) -> torch.Tensor:
    """``bn(y)``, or ``y`` itself once freezing has folded the batch norm ``bn`` into the
    layer that produced ``y`` (the generated code calls the batch norms of its
    ``tritium_folds`` pairs through this, and a folded one is ``None``: no module call)."""
    return y if bn is None else bn(y)


def same_padding(kernel_size: int | Sequence[int], dilation: int | Sequence[int] = 1
                 ) -> tuple[int, int]:
    """The zero padding that keeps the spatial size at stride 1 (odd kernels)."""
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    d = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


def repeat_configs(cls: type, first: dict, n: int, update: Callable[[dict], dict]
                   ) -> list[nn.Module]:
    """`Block[n] { … }`: n instances, each later one configured by `update(previous)`."""
    if int(n) < 1:
        raise ValueError(f"a repetition count must be at least 1, got {n}")
    cfgs = [dict(first)]
    for _ in range(int(n) - 1):
        cfgs.append({**cfgs[-1], **update(cfgs[-1])})
    return [cls(**c) for c in cfgs]


def cast(x, dtype: str):
    """`cast(x, "int8")`, `int32(x)`, `trit(x)`: tensors convert (trit rounds and clips),
    Python numbers follow Python (float -> int truncates)."""
    if isinstance(x, torch.Tensor):
        if dtype == "trit":
            return torch.clamp(torch.round(x), -1, 1).to(torch.int8)
        return x.to(_DTYPES[dtype])
    if dtype == "trit":
        return max(-1, min(1, round(x)))
    if dtype == "bool":
        return bool(x)
    if dtype.startswith(("int", "uint")):
        return int(x)
    return float(x)


def with_format(layer: nn.Module, fmt: str) -> nn.Module:
    """Set the packed format a ternary layer (or every ternary layer inside `layer`) freezes
    to by default; returns `layer` (used for a .tri layer's `format:` key)."""
    from tritium.runtime.layers import TernaryLayer

    for m in layer.modules():
        if isinstance(m, TernaryLayer):
            m.preferred_format = fmt
    return layer
