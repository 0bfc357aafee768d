"""Full-precision tables kept in their checkpoint's 16-bit dtype: :class:`HalfEmbedding` and
:class:`HalfLinear` (a language model's output head), and :func:`keep_half`, which checkpoint
loading calls.

A language model's token embeddings are its largest full-precision tensor (32000 x 768 is
98 MB in float32, 128256 x 2560 is 1.3 GB) and a tied output head is a second copy. Imported
from a bf16 or f16 checkpoint, widening them to float32 is exact but doubles their memory, so
they stay in the stored 16-bit dtype and are widened only where they are read: an embedding
widens the rows it looks up (one row per token), so its output is the float32 tensor an
``nn.Embedding`` holding the widened table returns, bit for bit. A 16-bit output head is kept
only until :func:`tritium.runtime.layers.head.quantize_head` makes it an int8 head (row by
row, never widening the whole table) or a float32 ``nn.Linear`` (``--head fp32``); called on
its own it widens its weight per call (the same values as the float32 layer, slowly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HALF", "HalfEmbedding", "HalfLinear", "keep_half"]

#: the 16-bit float dtypes kept as stored
HALF = (torch.bfloat16, torch.float16)


class HalfEmbedding(nn.Embedding):
    """An ``nn.Embedding`` whose table is bf16 or f16; lookups return float32 rows."""

    @classmethod
    def like(cls, emb: nn.Embedding, dtype: torch.dtype) -> HalfEmbedding:
        """An uninitialized twin of `emb` (same options) with a `dtype` table."""
        table = torch.empty(emb.num_embeddings, emb.embedding_dim, dtype=dtype)
        return cls(emb.num_embeddings, emb.embedding_dim, padding_idx=emb.padding_idx,
                   max_norm=emb.max_norm, norm_type=emb.norm_type,
                   scale_grad_by_freq=emb.scale_grad_by_freq, sparse=emb.sparse,
                   _weight=table, _freeze=not emb.weight.requires_grad)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Embedding's name
        rows = F.embedding(input, self.weight, self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)
        return rows.to(torch.float32)


class HalfLinear(nn.Linear):
    """An ``nn.Linear`` whose weight (and bias) are bf16 or f16, computing in the input's
    dtype with the weight widened per call (see the module's documentation)."""

    @classmethod
    def like(cls, lin: nn.Linear, dtype: torch.dtype) -> HalfLinear:
        with torch.device("meta"):
            out = cls(lin.in_features, lin.out_features, bias=lin.bias is not None,
                      dtype=dtype)
        out = out.to_empty(device="cpu")
        out.requires_grad_(lin.weight.requires_grad)
        return out

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Linear's name
        bias = None if self.bias is None else self.bias.to(input.dtype)
        return F.linear(input, self.weight.to(input.dtype), bias)

    def widened(self) -> nn.Linear:
        """The float32 ``nn.Linear`` of the same values."""
        with torch.device("meta"):
            out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        out = out.to_empty(device="cpu")
        with torch.no_grad():
            out.weight.copy_(self.weight)
            if self.bias is not None:
                out.bias.copy_(self.bias)
        out.requires_grad_(self.weight.requires_grad)
        return out


def keep_half(model: nn.Module, state: dict[str, torch.Tensor],
              heads: tuple[str, ...] = ("lm_head",)) -> list[str]:
    """Before `state` is loaded into `model`: every ``nn.Embedding`` (and every ``nn.Linear``
    named in `heads`) whose weight `state` holds in bf16 or f16 becomes its 16-bit twin, so
    that loading keeps the stored dtype instead of widening it. Returns the names replaced."""
    done = []
    for prefix, mod in list(model.named_modules()):
        for name, child in list(mod._modules.items()):
            kind = type(child)
            if kind is not nn.Embedding and not (kind is nn.Linear and name in heads):
                continue
            dot = f"{prefix}.{name}." if prefix else f"{name}."
            w = state.get(dot + "weight")
            if not isinstance(w, torch.Tensor) or w.dtype not in HALF:
                continue
            b = state.get(dot + "bias")
            if kind is nn.Linear and b is not None and b.dtype != w.dtype:
                continue
            twin = (HalfEmbedding if kind is nn.Embedding else HalfLinear).like(child, w.dtype)
            twin.train(child.training)
            setattr(mod, name, twin)
            done.append(dot[:-1])
    return done
