"""Forms of the seed language's quantization primitives the other runtime modules lack
(docs/language.md, "Quantization primitives"): a quantile threshold, stochastic rounding
with a temperature, the hard soft quantizer, asymmetric learned thresholds, sparse random
trits and the depthwise convolution. Each evaluates its tensor arguments once."""

from __future__ import annotations

import torch
from torch import nn

from tritium.runtime.functional import (
    random_ternary,
    soft_quantize,
    stochastic_quantize,
    threshold_quantize,
)

#: the most elements torch.quantile takes ("quantile() input tensor is too large" past it)
_QUANTILE_MAX = 1 << 24


def _quantile(v: torch.Tensor, p: float) -> torch.Tensor:
    """torch.quantile(v, p) of a 1-d float tensor (linear interpolation between the two
    order statistics around p * (n - 1)), for any number of elements: past torch.quantile's
    2**24 (a 4096 x 4096 weight has more) from the k-th smallest value instead of a sort."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"the quantile must be in [0, 1], got {p}")
    n = v.numel()
    if n <= _QUANTILE_MAX:
        return torch.quantile(v, p)
    pos = p * (n - 1)
    lo = min(int(pos), n - 1)
    a = torch.kthvalue(v, lo + 1).values
    if lo + 1 == n or pos == lo:
        return a
    # the next order statistic: a again when it repeats, else the least value above it
    b = a if int((v <= a).sum()) > lo + 1 else v[v > a].min()
    return a + (b - a) * (pos - lo)


def quantile_threshold_quantize(x: torch.Tensor, p: float) -> torch.Tensor:
    """sign(x) where |x| > the p-quantile of |x| (a fraction p of zeros), identity STE."""
    t = _quantile(x.detach().abs().flatten().to(torch.float32), p)
    return threshold_quantize(x, t.to(x.dtype))


def tempered_stochastic_quantize(x: torch.Tensor, temperature: float = 1.0,
                                 seed: int | None = None, training: bool = True
                                 ) -> torch.Tensor:
    """Stochastic rounding of x / temperature (sign with probability min(|x| / T, 1));
    training=False: the deterministic sign(x) where |x| > T / 2; identity STE to x."""
    if not training:
        return threshold_quantize(x, 0.5 * temperature)
    q = stochastic_quantize(x.detach() / temperature, seed=seed)
    return q + (x - x.detach())


def hard_soft_quantize(x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The levels round(clamp(x, -1, 1)) forward, the soft staircase's gradient backward."""
    s = soft_quantize(x, temperature)
    return s + (torch.round(torch.clamp(x.detach(), -1.0, 1.0)) - s).detach()


def learned_threshold_quantize(x: torch.Tensor, pos_threshold, neg_threshold,
                               pos_scale=1.0, neg_scale=1.0) -> torch.Tensor:
    """pos_scale where x > pos_threshold, -neg_scale where x < neg_threshold, else 0; the
    gradient reaches x (identity STE) and the scales."""
    d = x.detach()
    one = torch.ones((), dtype=x.dtype, device=x.device)
    pos = (d > torch.as_tensor(pos_threshold, device=x.device)).to(x.dtype)
    neg = (d < torch.as_tensor(neg_threshold, device=x.device)).to(x.dtype)
    return pos * (one * pos_scale) - neg * (one * neg_scale) + (x - d)


def sparse_random_ternary(shape, sparsity: float) -> torch.Tensor:
    """Random trits (int8) of `shape`: 0 with probability `sparsity`, else -1 or 1."""
    dims = tuple(random_ternary(shape).shape)
    zero = torch.rand(dims) < float(sparsity)
    sign = torch.where(torch.rand(dims) < 0.5, -1, 1)
    return torch.where(zero, 0, sign).to(torch.int8)


def depthwise_conv2d(x: torch.Tensor, w: torch.Tensor, bias=None, stride=1, padding=0,
                     dilation=1) -> torch.Tensor:
    """conv2d with one kernel per channel (groups = the kernel's first dim)."""
    return nn.functional.conv2d(x, w.to(x.dtype), bias, stride=stride, padding=padding,
                                dilation=dilation, groups=w.shape[0])
