"""Multi-head self-attention with separate q/k/v/o projections, full precision or ternary."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tritium.runtime.layers import TernaryLinear


class SelfAttention(nn.Module):
    """`x [batch, seq, embed] -> [batch, seq, embed]`: project to q, k, v, split into
    `num_heads` heads, scaled dot-product attention (causal on request), merge, project.

    With `ternary=True` the four projections are :class:`TernaryLinear` layers (they freeze
    to packed weights with the rest of the model); otherwise `nn.Linear`.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = False, causal: bool = False,
                 dropout: float = 0.0, ternary: bool = False, quantizer: str = "twn",
                 per_channel: bool = False, threshold: float | None = None,
                 act_quant: str = "none", ste: str = "identity") -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.causal, self.dropout = bool(causal), float(dropout)

        def proj() -> nn.Module:
            if ternary:
                return TernaryLinear(embed_dim, embed_dim, bias=bias, quantizer=quantizer,
                                     per_channel=per_channel, threshold=threshold,
                                     act_quant=act_quant, ste=ste)
            return nn.Linear(embed_dim, embed_dim, bias=bias)

        self.q_proj, self.k_proj, self.v_proj, self.o_proj = proj(), proj(), proj(), proj()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, e = x.shape
        h = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, s, h, e // h).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        if self.training and self.dropout > 0:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                               dropout_p=self.dropout)
        else:   # through the runtime: a decode session's KV cache (runtime.decoding)
            from tritium.runtime.functional import attention
            a = attention(q, k, v, is_causal=self.causal)
        return self.o_proj(a.transpose(1, 2).reshape(b, s, e))

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}"
