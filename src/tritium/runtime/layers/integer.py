"""Integer baselines: Int8Linear and Int4Linear (weight-only int8/int4, the same frozen-mode
contract as the ternary layers); see :mod:`tritium.runtime.layers`."""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

from tritium.runtime.layers.ternary import TritiumLayer, _linear_params
from tritium.runtime.quant import (
    dequantize_int,
    pack_int4,
    quantize_int4_weights,
    quantize_int8_weights,
    unpack_int4,
)
from tritium.runtime.ste import (
    ste_identity,
)


class _IntLinear(TritiumLayer):
    """Shared code of :class:`Int8Linear` and :class:`Int4Linear`."""

    weight: nn.Parameter
    weight_scale: torch.Tensor
    bias: nn.Parameter | None
    bits: int

    def _init_linear(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        _linear_params(self, in_features, out_features, bias, device, dtype)
        self.frozen = False
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    @property
    def packing_format(self) -> str | None:
        return f"int{self.bits}" if self.frozen else None

    @property
    def quantizer_name(self) -> str:
        return f"int{self.bits}-absmax"

    def _check_format(self, format: str | None) -> None:
        if format not in (None, f"int{self.bits}"):
            raise ValueError(
                f"{type(self).__name__} freezes to 'int{self.bits}', not to {format!r}"
            )

    @abstractmethod
    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the layer computes with (no gradient)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)
        w_q = ste_identity(self.weight, self.dequantized_weight().to(self.weight.dtype))
        return F.linear(x, w_q, self.bias)

    def extra_repr(self) -> str:
        s = (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
        return s + (", frozen" if self.frozen else "")


class Int8Linear(_IntLinear):
    """Linear layer with symmetric int8 weights, one scale per output feature.

    Training: the latent float weight is fake-quantized (identity STE). Frozen: ``weight_int8``
    (int8 ``(N, K)``) and ``weight_scale`` (``(N,)``); forward dequantizes.
    """

    bits = 8
    weight_int8: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self._init_linear(in_features, out_features, bias, device, dtype)

    def dequantized_weight(self) -> torch.Tensor:
        if self.frozen:
            return dequantize_int(self.weight_int8, self.weight_scale)
        with torch.no_grad():
            q = quantize_int8_weights(self.weight)
            return dequantize_int(q.q, q.scale)

    def freeze(self, format: str | None = None) -> Self:
        """Quantize to int8 once; keep ``weight_int8`` and ``weight_scale`` buffers."""
        self._check_format(format)
        if self.frozen:
            return self
        q = quantize_int8_weights(self.weight)
        self._set_frozen(q.q.contiguous(), q.scale)
        return self

    def freeze_skeleton(self, format: str | None = None) -> Self:
        self._check_format(format)
        if self.frozen:
            raise RuntimeError("Int8Linear is already frozen")
        dev = self.weight.device
        self._set_frozen(
            torch.zeros(self.out_features, self.in_features, dtype=torch.int8, device=dev),
            torch.zeros(self.out_features, dtype=torch.float32, device=dev),
        )
        return self

    def _set_frozen(self, q: torch.Tensor, scale: torch.Tensor) -> None:
        del self.weight
        self.register_buffer("weight_int8", q)
        self.register_buffer("weight_scale", scale.to(torch.float32))
        self.frozen = True


class Int4Linear(_IntLinear):
    """Linear layer with symmetric int4 weights (values in [-7, 7]), packed two per byte.

    One scale per output feature, or with ``group_size`` one per output feature and group
    of ``group_size`` consecutive inputs. Frozen buffers: ``weight_packed`` (uint8
    ``(N, ceil(K/2))``) and ``weight_scale`` (float32 ``(N, n_groups)``).
    """

    bits = 4
    weight_packed: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        group_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if group_size is not None and group_size <= 0:
            raise ValueError(f"group_size must be positive, got {group_size!r}")
        self.group_size = group_size
        self._init_linear(in_features, out_features, bias, device, dtype)

    @property
    def n_groups(self) -> int:
        gs = self.in_features if self.group_size is None else self.group_size
        return -(-self.in_features // gs)

    def dequantized_weight(self) -> torch.Tensor:
        if self.frozen:
            q = unpack_int4(self.weight_packed, self.in_features)
            return dequantize_int(q, self.weight_scale, self.group_size)
        with torch.no_grad():
            r = quantize_int4_weights(self.weight, self.group_size)
            return dequantize_int(r.q, r.scale, self.group_size)

    def freeze(self, format: str | None = None) -> Self:
        """Quantize to int4 once; keep ``weight_packed`` (two values a byte) and ``weight_scale``."""
        self._check_format(format)
        if self.frozen:
            return self
        r = quantize_int4_weights(self.weight, self.group_size)
        self._set_frozen(pack_int4(r.q), r.scale)
        return self

    def freeze_skeleton(self, format: str | None = None) -> Self:
        self._check_format(format)
        if self.frozen:
            raise RuntimeError("Int4Linear is already frozen")
        dev = self.weight.device
        self._set_frozen(
            torch.zeros(
                self.out_features, -(-self.in_features // 2), dtype=torch.uint8, device=dev
            ),
            torch.zeros(self.out_features, self.n_groups, dtype=torch.float32, device=dev),
        )
        return self

    def _set_frozen(self, packed: torch.Tensor, scale: torch.Tensor) -> None:
        del self.weight
        self.register_buffer("weight_packed", packed)
        self.register_buffer("weight_scale", scale.to(torch.float32))
        self.frozen = True

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", group_size={self.group_size}" if self.group_size is not None else "")


