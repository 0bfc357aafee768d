"""The int8 output head of a frozen language model: :class:`Int8Head` and :func:`quantize_head`.

A language model's full-precision output projection (``lm_head``: vocabulary x hidden) is the
largest single matrix a decode step reads: 32000 x 768 fp32 is 98 MB per token, more than all
the ternary layers of a 125M model together. ``freeze_model(model, head="int8")`` replaces it by
an :class:`Int8Head`, as llama.cpp quantizes the output tensor of its TQ1_0/TQ2_0 files:

    w_q[n, :] = clamp(round(w[n, :] / s_w[n]), -127, 127),  s_w[n] = max |w[n, :]| / 127
    x_q[t, :] = clamp(round(x[t, :] / s_x[t]), -127, 127),  s_x[t] = max |x[t, :]| / 127
    y[t, n]   = float(sum_k x_q[t, k] w_q[n, k]) * s_x[t] * s_w[n] + bias[n]

(rounding half to even, a zero row or token keeps scale 1). The sum is exact in int32; the
native kernel (``tri_i8_linear``, ``csrc/tritium_lm.h``) and the PyTorch fallback compute the
same float operations in the same order, so they agree bit for bit. The error against the fp32
head is that of two absmax int8 roundings: each product term is off by at most
``|x| s_w / 2 + |w| s_x / 2`` (plus a second-order term), i.e. a logit moves by at most about
``(||x||_1 max|w[n]| + ||w[n]||_1 max|x|) / 254`` -- in practice under 1% of the logits' spread,
which changes a greedy choice only between near-ties.

The frozen head's state_dict holds ``weight`` (the dequantized ``w_q * s_w``, float32) and
``bias`` as an ``nn.Linear``'s would, so a checkpoint written from a model with an int8 head
loads as a plain fp32 head, and quantizing that again gives the same ``w_q`` and ``s_w``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tritium import vocab
from tritium.runtime.layers.half import HalfLinear
from tritium.runtime.native import _lib

HEADS: tuple[str, ...] = vocab.LM_HEADS
HEAD_NAMES: tuple[str, ...] = ("lm_head",)
"""The attribute names :func:`quantize_head` treats as a language model's output head."""

PANEL = 16


def quantize_rows_int8(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row absmax int8 of a float32 [rows, k] tensor: ``(q int8, scale float32 [rows])``,
    the arithmetic of the kernels' activation quantizer (IEEE division by ``max|row| / 127``,
    round half to even, clamp to +-127; scale 1 for an all-zero row)."""
    t = t.detach().to(torch.float32)
    s = t.abs().amax(dim=-1) / 127.0
    s = torch.where(s == 0, torch.ones_like(s), s)
    q = torch.round(t / s.unsqueeze(-1)).clamp_(-127, 127).to(torch.int8)
    return q, s


def pack_panels(q: torch.Tensor) -> torch.Tensor:
    """The kernels' int8 panel layout of ``q`` [n, k] (``csrc/tritium_lm.h``): rows padded to
    whole panels of 16, k to a multiple of 4; per panel and group of 4 k, 16 channels x 4."""
    n, k = q.shape
    npan, kp = -(-n // PANEL), -(-k // 4) * 4
    full = torch.zeros(npan * PANEL, kp, dtype=torch.int8)
    full[:n, :k] = q
    return full.reshape(npan, PANEL, kp // 4, 4).permute(0, 2, 1, 3).contiguous().reshape(-1)


def unpack_panels(panels: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """``q`` [n, k] back from :func:`pack_panels`."""
    npan, kp = -(-n // PANEL), -(-k // 4) * 4
    full = panels.reshape(npan, kp // 4, PANEL, 4).permute(0, 2, 1, 3).reshape(npan * PANEL, kp)
    return full[:n, :k]


class Int8Head(nn.Module):
    """A frozen linear layer with int8 weights (one absmax scale per output row) and int8
    activations per token: see the module's documentation. Inference only (no gradients).
    Made from an ``nn.Linear`` by :meth:`from_linear`."""

    weight_panels: torch.Tensor
    weight_sums: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.frozen = True
        self._set(torch.zeros(self.out_features, self.in_features, dtype=torch.int8),
                  torch.ones(self.out_features))
        self.bias: torch.Tensor | None = (
            torch.zeros(self.out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Head:
        head = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        head._quantize(linear.weight, linear.bias)
        return head

    def _quantize(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        w = weight.detach()
        if tuple(w.shape) != (self.out_features, self.in_features):
            raise ValueError(f"Int8Head: weight of shape {tuple(w.shape)}, expected "
                             f"{(self.out_features, self.in_features)}")
        # row blocks (the quantization is per row): never a float32 copy of a whole 16-bit
        # table, nor the temporaries of a whole one
        parts = [quantize_rows_int8(w[i:i + 4096].to("cpu", torch.float32))
                 for i in range(0, w.shape[0], 4096)] or [quantize_rows_int8(w.float())]
        q, s = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        del parts
        self._set(q, s)
        if bias is not None:
            self.bias = bias.detach().to("cpu", torch.float32).clone()

    def _set(self, q: torch.Tensor, scale: torch.Tensor) -> None:
        # not persistent: the state_dict holds the dequantized weight (see _save_to_state_dict)
        self.register_buffer("weight_panels", pack_panels(q), persistent=False)
        self.register_buffer("weight_sums", q.sum(dim=1, dtype=torch.int32), persistent=False)
        self.register_buffer("weight_scale", scale.to(torch.float32).contiguous(),
                             persistent=False)

    def int8_weight(self) -> torch.Tensor:
        """The int8 weights [out_features, in_features]."""
        return unpack_panels(self.weight_panels, self.out_features, self.in_features)

    def dequantized_weight(self) -> torch.Tensor:
        return self.int8_weight().to(torch.float32) * self.weight_scale[:, None]

    # -- state_dict: an nn.Linear's keys ------------------------------------------------------

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.dequantized_weight()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: Any,
                              strict: bool, missing_keys: list, unexpected_keys: list,
                              error_msgs: list) -> None:
        key = prefix + "weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        bias = state_dict.get(prefix + "bias")
        if (bias is None) != (self.bias is None):
            (missing_keys if bias is None else unexpected_keys).append(prefix + "bias")
            return
        try:
            self._quantize(state_dict[key], bias)
        except ValueError as exc:
            error_msgs.append(str(exc))

    # -- forward ------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if shape[-1] != self.in_features:
            raise ValueError(f"Int8Head: input of shape {tuple(shape)}, expected the last dim "
                             f"{self.in_features}")
        x2 = x.detach().reshape(-1, self.in_features).to(torch.float32)
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        lib = _lib() if x2.device.type == "cpu" else None
        if lib is None:
            y = self.reference(x2)
        else:
            m = x2.shape[0]
            y = x2.new(m, self.out_features)
            bias = self.bias
            if lib.call.tri_i8_linear(
                    x2.data_ptr(), m, self.in_features, self.weight_panels.data_ptr(),
                    self.out_features, self.weight_scale.data_ptr(),
                    self.weight_sums.data_ptr(), None if bias is None else bias.data_ptr(),
                    y.data_ptr(), torch.get_num_threads()):
                raise MemoryError("tritium: the int8 head kernel could not allocate its "
                                  "buffers")
        return y.reshape(*shape[:-1], self.out_features)

    def reference(self, x2: torch.Tensor) -> torch.Tensor:
        """The PyTorch form of the native kernel (the same float operations in the same
        order): ``x2`` float32 [m, in_features]."""
        xq, sx = quantize_rows_int8(x2)
        acc = _int_matmul(xq, self.int8_weight())
        y = acc.to(torch.float32) * sx[:, None] * self.weight_scale[None, :]
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weights=int8 per row, activations=int8 "
                "per token")


def _int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact ``a @ b.T`` of int8 matrices as int32: in float64 every product (at most 127^2)
    and partial sum is an integer below 2^53 for any k under 2^39, so no rounding happens."""
    return (a.to(torch.float64) @ b.to(torch.float64).T).to(torch.int32)


def quantize_head(model: nn.Module, head: str = "int8") -> list[str]:
    """Replace every full-precision ``nn.Linear`` named ``lm_head`` in ``model`` by its
    :class:`Int8Head` (``head="int8"``), in place; ``head="fp32"`` leaves them. Returns the
    dotted names replaced. A model with no such layer (a ternary ``lm_head`` is already
    packed) is left as it is."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid values are: "
                         + ", ".join(repr(h) for h in HEADS))
    done: list[str] = []
    for prefix, mod in list(model.named_modules()):
        for name in HEAD_NAMES:
            child = mod._modules.get(name)
            if head == "fp32" and type(child) is HalfLinear:   # a 16-bit head: widened once
                setattr(mod, name, child.widened())
            elif head != "fp32" and type(child) in (nn.Linear, HalfLinear):
                setattr(mod, name, Int8Head.from_linear(child))
                done.append(f"{prefix}.{name}" if prefix else name)
    if done:     # the float table and the quantization's temporaries are gone
        from tritium.runtime.heap import release_free_memory
        release_free_memory()
    return done
