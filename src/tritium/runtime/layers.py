"""Tritium layers: ternary, BitNet and low-bit ``nn.Module`` s with a training and a frozen mode.

Training mode (as constructed): each layer holds a latent float ``weight``
``nn.Parameter`` and quantizes it on the fly in ``forward``; the quantized weight reaches
the computation through a straight-through estimator (:mod:`tritium.runtime.ste`), so
gradients flow to the latent weight.

Frozen mode (after ``layer.freeze()``, in place): the weight is quantized once and packed,
the packed data and the scales become buffers, the float ``weight`` parameter is deleted
and ``forward`` calls the packed kernels (:func:`tritium.runtime.kernels.ternary_linear`,
:func:`tritium.runtime.kernels.ternary_conv2d`). A frozen layer's ``state_dict`` holds only
the packed uint8 (or int8) data, the float32 scales and the bias.

Batch-norm folding (:func:`fold_batchnorm`, done by :func:`freeze_model` for the pairs a
generated model lists in its ``tritium_folds`` attribute and for consecutive children of an
``nn.Sequential``, see :func:`fold_batchnorms`): an eval-mode ``BatchNorm1d``/
``BatchNorm2d`` applied directly to a frozen ternary layer's output becomes that layer's
per-output-channel scale and bias (the trits are untouched) and the batch norm is removed
(``None``, which the generated code skips, or ``nn.Identity`` in an ``nn.Sequential``).
A folded layer's ``weight_scale`` has one entry per output channel and it always has a
``bias``.

To load a frozen checkpoint, build the frozen skeleton first -- ``Layer.frozen_skeleton(...)`` or
``layer.freeze_skeleton(format)`` on a freshly constructed layer allocates correctly sized
buffers holding an all-zero weight without quantizing anything -- then ``load_state_dict``.

Buffer names of a frozen layer:

* ternary layers: ``weight_packed`` (uint8, ``(N, packed_row_bytes(K, format))`` where
  ``K`` is ``in_features`` or ``in_channels/groups * kh * kw``) and ``weight_scale``
  (float32 ``(1,)`` per tensor or ``(N,)`` per channel);
* :class:`Int8Linear`: ``weight_int8`` (int8 ``(N, K)``) and ``weight_scale`` (``(N,)``);
* :class:`Int4Linear`: ``weight_packed`` (uint8 ``(N, ceil(K/2))``, see
  :func:`tritium.runtime.quant.pack_int4`) and ``weight_scale`` (``(N, groups)``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import nn

from tritium.runtime import kernels
from tritium.runtime.packing import (
    FORMAT_VERSION,
    PackedTernary,
    pack_ternary,
    unpack_ternary,
)
from tritium.runtime.quant import (
    DEFAULT_ACTIVATION_THRESHOLD,
    TernaryQuant,
    canonical_quantizer_name,
    dequantize_int,
    dequantize_ternary,
    pack_int4,
    quantize_int4_weights,
    quantize_int8_weights,
    quantize_weight,
    unpack_int4,
)
from tritium.runtime.ste import (
    fake_quant_int8,
    get_ste,
    ste_clipped,
    ste_identity,
    ternary_activation,
)

__all__ = [
    "TritiumLayer",
    "TernaryLayer",
    "TernaryLinear",
    "TernaryConv2d",
    "BitLinear",
    "TernaryActivation",
    "Int8Linear",
    "Int4Linear",
    "TERNARY_FORMATS",
    "ACT_QUANT_MODES",
    "ACTIVATIONS",
    "fold_batchnorm",
    "fold_batchnorms",
    "freeze_model",
    "tritium_layers",
]

TERNARY_FORMATS: tuple[str, ...] = ("t2", "t1.6")
ACT_QUANT_MODES: tuple[str, ...] = ("none", "int8")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "gelu": F.gelu,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}
"""The fused activations a layer's ``forward(..., activation=...)`` accepts (as the kernels do)."""


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        names = ", ".join(repr(v) for v in valid)
        raise ValueError(f"unknown {what} {value!r}; valid values are: {names}")
    return value


def _check_activation(activation: str | None) -> str | None:
    if activation is not None and activation not in ACTIVATIONS:
        names = ", ".join(repr(v) for v in ACTIVATIONS)
        raise ValueError(f"unknown activation {activation!r}; valid values are: None, {names}")
    return activation


def _epilogue(
    y: torch.Tensor, activation: str | None, residual: torch.Tensor | None
) -> torch.Tensor:
    """The reference epilogue of the fused kernels: ``act(y + residual)``."""
    if residual is not None:
        y = y + residual
    if activation is not None:
        y = ACTIVATIONS[activation](y)
    return y


def _pair(v: int | tuple[int, int], what: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(e) for e in v)
    if len(t) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {v!r}")
    return (t[0], t[1])



def _linear_params(module: nn.Module, in_features: int, out_features: int, bias: bool,
                   device: torch.device | str | None, dtype: torch.dtype | None) -> None:
    """`nn.Linear`'s shape checks and uninitialized `weight` [out, in] and `bias` [out]."""
    if in_features <= 0 or out_features <= 0:
        raise ValueError(
            f"in_features and out_features must be positive, got {in_features}, {out_features}"
        )
    module.in_features = int(in_features)
    module.out_features = int(out_features)
    factory: dict[str, Any] = {"device": device, "dtype": dtype}
    module.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
    if bias:
        module.bias = nn.Parameter(torch.empty(out_features, **factory))
    else:
        module.register_parameter("bias", None)


class TritiumLayer(nn.Module, ABC):
    """Base class of the layers :func:`freeze_model` and the checkpoint code know about."""

    frozen: bool
    """True once :meth:`freeze` (or :meth:`freeze_skeleton`) has run."""

    @property
    @abstractmethod
    def packing_format(self) -> str | None:
        """Storage format of the frozen weight (``"t2"``, ``"t1.6"``, ``"int8"``, ``"int4"``)."""

    @property
    @abstractmethod
    def quantizer_name(self) -> str:
        """The weight quantizer, for checkpoint metadata and summaries."""

    @property
    @abstractmethod
    def weight_shape(self) -> tuple[int, ...]:
        """The logical (unpacked) shape of the weight."""

    @abstractmethod
    def freeze(self, format: str | None = None) -> Self:
        """Quantize and pack the weight in place; returns ``self``."""

    @abstractmethod
    def freeze_skeleton(self, format: str | None = None) -> Self:
        """Turn into a frozen layer with buffers of the right sizes holding an all-zero
        weight, without quantizing anything (to load a state_dict into)."""

    @classmethod
    def frozen_skeleton(cls, *args: Any, format: str | None = None, **kwargs: Any) -> Self:
        """Construct a frozen skeleton to load a state_dict into:
        ``cls(*args, **kwargs).freeze_skeleton(format)``."""
        return cls(*args, **kwargs).freeze_skeleton(format)


class TernaryLayer(TritiumLayer):
    """Shared machinery of the ternary-weight layers (quantizer, STE, packing, freezing)."""

    weight: nn.Parameter
    weight_packed: torch.Tensor
    weight_scale: torch.Tensor
    bias: nn.Parameter | None
    # the batch-norm class whose inference form folds into the layer (None: none folds)
    folds_batchnorm: type[nn.Module] | None = None

    def _init_quant(
        self,
        quantizer: str,
        per_channel: bool,
        threshold: float | None,
        act_quant: str,
        ste: str,
        ste_clip: float,
    ) -> None:
        self.quantizer = canonical_quantizer_name(quantizer)
        if self.quantizer == "threshold":
            if threshold is None or not threshold >= 0.0:
                raise ValueError(
                    f"quantizer {quantizer!r} needs a threshold >= 0 (e.g. threshold=0.05), "
                    f"got {threshold!r}"
                )
        elif threshold is not None:
            raise ValueError(
                f"threshold={threshold!r} only applies to the fixed-threshold quantizer "
                f"('threshold', 'deterministic', 'fixed'), not to {quantizer!r}"
            )
        self.per_channel = bool(per_channel)
        self.threshold = None if threshold is None else float(threshold)
        self.act_quant = _check_choice("act_quant", act_quant, ACT_QUANT_MODES)
        get_ste(ste, ste_clip)  # raises for an unknown name
        self.ste = ste.strip().lower()
        self.ste_clip = float(ste_clip)
        self.frozen = False
        self.format: str | None = None
        # the format `freeze()` uses when none is given (a .tri layer's `format:` key)
        self.preferred_format: str | None = None
        # a batch norm folded into weight_scale and bias (see fold_batchnorm), and the name
        # of the sibling attribute that held it ("" when not known)
        self.folded = False
        self.folded_bn = ""
        self._plan: kernels.LinearPlan | None = None   # cached native call (frozen, eager)

    # -- properties used by checkpoints and summaries ------------------------------------

    @property
    def packing_format(self) -> str | None:
        return self.format

    @property
    def quantizer_name(self) -> str:
        return self.quantizer

    @property
    def out_dim(self) -> int:
        return self.weight_shape[0]

    @property
    def reduce_dim(self) -> int:
        """``K``: the number of weights per output channel."""
        return math.prod(self.weight_shape[1:])

    # -- quantization --------------------------------------------------------------------

    def ternary_weight(self, training: bool | None = None) -> TernaryQuant:
        """The current ``(trits, scale)`` of the weight (no gradient).

        The stochastic quantizer draws only when ``training`` (default: ``self.training``)
        is true; otherwise it rounds to nearest, as freezing does.
        """
        if self.frozen:
            trits = unpack_ternary(self.packed_weight()).reshape(self.weight_shape)
            return TernaryQuant(trits, self.weight_scale)
        with torch.no_grad():
            return quantize_weight(
                self.quantizer,
                self.weight,
                per_channel=self.per_channel,
                threshold=self.threshold,
                training=self.training if training is None else training,
            )

    def quantized_weight(self) -> torch.Tensor:
        """``trits * scale`` as a float tensor wired to the latent weight through the STE."""
        q = self.ternary_weight()
        w_q = dequantize_ternary(q.trits, q.scale).to(self.weight.dtype)
        if self.ste == "clipped":
            return ste_clipped(self.weight, w_q, self.ste_clip)
        return ste_identity(self.weight, w_q)

    def packed_weight(self) -> PackedTernary:
        """The frozen weight as a :class:`PackedTernary` view of the buffers."""
        if not self.frozen:
            raise RuntimeError(f"{type(self).__name__} is not frozen; call freeze() first")
        assert self.format is not None
        return PackedTernary(
            format=self.format,
            data=self.weight_packed,
            shape=(self.out_dim, self.reduce_dim),
            version=FORMAT_VERSION,
        )

    def _scale_len(self) -> int:
        return self.out_dim if self.per_channel or self.folded else 1

    def fold_affine(self, k: torch.Tensor, shift: torch.Tensor) -> Self:
        """Fold ``y -> y * k + shift`` (per output channel) into this frozen layer: the scale
        becomes ``scale * k`` (one per channel) and the bias ``bias * k + shift``; the trits
        stay as they are. Computed in float64, stored as float32."""
        if not self.frozen:
            raise RuntimeError(f"{type(self).__name__} must be frozen before folding into it")
        n = self.out_dim
        if k.numel() != n or shift.numel() != n:
            raise ValueError(f"a fold into {n} output channels needs {n} factors and shifts, "
                             f"got {k.numel()} and {shift.numel()}")
        with torch.no_grad():
            k64 = k.detach().to(torch.float64).reshape(n)
            s64 = self.weight_scale.detach().to(torch.float64).reshape(-1).expand(n) * k64
            b64 = shift.detach().to(torch.float64).reshape(n)
            if self.bias is not None:
                b64 = b64 + self.bias.detach().to(torch.float64) * k64
            device = self.weight_packed.device
            self.register_buffer("weight_scale", s64.to(torch.float32, copy=True).to(device))
            self.bias = nn.Parameter(b64.to(torch.float32).to(device), requires_grad=False)
        self.folded = True
        self._plan = None
        return self

    def fold_skeleton(self) -> Self:
        """A frozen skeleton shaped like a folded layer (per-channel scale, a bias), all
        zeros: the structure :func:`tritium.runtime.load_checkpoint` loads folded layers into."""
        if not self.frozen:
            raise RuntimeError(f"{type(self).__name__} must be a frozen skeleton first")
        n = self.out_dim
        device = self.weight_packed.device
        self.register_buffer("weight_scale", torch.zeros(n, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(n, dtype=torch.float32, device=device),
                                 requires_grad=False)
        self.folded = True
        self._plan = None
        return self

    def freeze(self, format: str | None = None) -> Self:
        """Quantize once, pack (``format`` ``"t2"`` default, or ``"t1.6"``), drop the float weight.

        Freezing a frozen layer with another format re-packs it; with the same format it is a
        no-op.
        """
        fmt = _check_choice("packing format", format or self.preferred_format or "t2",
                            TERNARY_FORMATS)
        if self.frozen:
            if fmt != self.format:
                trits = unpack_ternary(self.packed_weight())
                packed = pack_ternary(trits, fmt)
                self.weight_packed = packed.data.contiguous()
                self.format = fmt
            return self
        q = self.ternary_weight(training=False)
        packed = pack_ternary(q.trits.reshape(self.out_dim, self.reduce_dim), fmt)
        self._become_frozen(packed.data.contiguous(), q.scale.detach().clone(), fmt)
        return self

    def freeze_skeleton(self, format: str | None = None) -> Self:
        """Frozen layer whose buffers are sized for ``format`` and hold an all-zero weight
        (valid packed zero trits, scale 0); no quantization happens. Load a state_dict next."""
        fmt = _check_choice("packing format", format or self.preferred_format or "t2",
                            TERNARY_FORMATS)
        if self.frozen:
            raise RuntimeError(f"{type(self).__name__} is already frozen")
        device = self.weight.device
        zeros = torch.zeros(self.out_dim, self.reduce_dim, dtype=torch.int8)
        data = pack_ternary(zeros, fmt).data.to(device)
        scale = torch.zeros(self._scale_len(), dtype=torch.float32, device=device)
        self._become_frozen(data, scale, fmt)
        return self

    def _become_frozen(self, data: torch.Tensor, scale: torch.Tensor, fmt: str) -> None:
        del self.weight
        self.register_buffer("weight_packed", data)
        self.register_buffer("weight_scale", scale.to(torch.float32))
        self.format = fmt
        self.frozen = True

    def _quant_repr(self) -> str:
        s = f"quantizer={self.quantizer!r}, per_channel={self.per_channel}"
        if self.threshold is not None:
            s += f", threshold={self.threshold}"
        if self.act_quant != "none":
            s += f", act_quant={self.act_quant!r}"
        if self.ste != "identity":
            s += f", ste={self.ste!r}"
        if self.frozen:
            s += f", frozen={self.format!r}"
        if self.folded:
            s += ", folded_bn=True"
        return s


class TernaryLinear(TernaryLayer):
    """``y = x W^T + b`` with ternary ``W`` (trits times a per-tensor or per-channel scale).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        quantizer: a :func:`tritium.runtime.quant.get_quantizer` name (default ``"twn"``).
        per_channel: one scale per output feature instead of one per tensor.
        threshold: the threshold of the ``"threshold"`` quantizer (required by it only).
        act_quant: ``"none"`` or ``"int8"`` (per-token absmax fake quantization of ``x``).
        ste: ``"identity"`` or ``"clipped"`` (gradient zero where ``|w| > ste_clip``).
    """

    folds_batchnorm = nn.BatchNorm1d

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        quantizer: str = "twn",
        per_channel: bool = False,
        threshold: float | None = None,
        act_quant: str = "none",
        ste: str = "identity",
        ste_clip: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _linear_params(self, in_features, out_features, bias, device, dtype)
        self._init_quant(quantizer, per_channel, threshold, act_quant, ste, ste_clip)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialization (Kaiming-uniform weight, uniform bias)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        """Input transform before the matmul (identity here; RMSNorm in :class:`BitLinear`)."""
        return x

    def forward(
        self,
        x: torch.Tensor,
        activation: str | None = None,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``act(x W^T + b + residual)``; ``activation``/``residual`` are optional fusions."""
        if activation is not None:
            _check_activation(activation)
        x = self._pre(x)
        if self.frozen:
            if self.folded and x.dim() != 2:
                raise ValueError(
                    f"{type(self).__name__}: a batch norm was folded into this layer, which is "
                    f"exact only for 2-D (batch, features) inputs; got shape {tuple(x.shape)} "
                    "(freeze with fold_bn=False to keep the batch norm)")
            # fast path: a cached native call (no autograd, eager mode, float32 CPU input)
            if residual is None and x.dim() == 2 and x.shape[1] == self.in_features:
                bufs = self._buffers
                wdata, scale, bias = bufs["weight_packed"], bufs["weight_scale"], \
                    self._parameters.get("bias")
                if kernels.plan_usable(x, None, bias):
                    plan = self._plan
                    if plan is None or not plan.valid_for(wdata, scale, bias):
                        plan = self._plan = kernels.linear_plan(
                            wdata, self.out_features, self.in_features, self.format, scale,
                            bias, self.act_quant)
                    if plan is not None:
                        return plan(x if x.is_contiguous() else x.contiguous(), activation,
                                    None)
            lead = x.shape[:-1]
            x2 = x.reshape(-1, x.shape[-1])
            r2 = None if residual is None else residual.reshape(-1, self.out_features)
            y = kernels.ternary_linear(
                x2,
                self.packed_weight(),
                self.weight_scale,
                self.bias,
                activation=activation,
                act_quant=self.act_quant,
                residual=r2,
            )
            return y.reshape(*lead, self.out_features)
        if self.act_quant == "int8":
            x = fake_quant_int8(x)
        y = F.linear(x, self.quantized_weight(), self.bias)
        return _epilogue(y, activation, residual)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {self._quant_repr()}"
        )


class BitLinear(TernaryLinear):
    """BitNet b1.58 linear layer: parameter-free RMSNorm, int8 absmax activations per token,
    absmean ternary weights (per tensor), identity STE.

    ``y = Q_int8(rmsnorm(x)) · (absmean_ternary(W))^T + b``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_features,
            out_features,
            bias=bias,
            quantizer="absmean",
            per_channel=False,
            act_quant="int8",
            device=device,
            dtype=dtype,
        )
        self.eps = float(eps)

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (self.in_features,), eps=self.eps)

    def extra_repr(self) -> str:
        s = (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, eps={self.eps}"
        )
        if self.frozen:
            s += f", frozen={self.format!r}"
        return s


class TernaryConv2d(TernaryLayer):
    """2-D convolution with ternary weights; arguments as ``nn.Conv2d`` plus the quantizer ones
    of :class:`TernaryLinear`. Only zero padding is supported.

    With ``act_quant="int8"`` the input is fake-quantized per token, a token being one output
    position's im2col column (the ``in_channels/groups * kh * kw`` inputs of one group that
    the position reads), as the int8 conv kernel does.
    """

    folds_batchnorm = nn.BatchNorm2d

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        quantizer: str = "twn",
        per_channel: bool = False,
        threshold: float | None = None,
        act_quant: str = "none",
        ste: str = "identity",
        ste_clip: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0 or groups <= 0:
            raise ValueError("in_channels, out_channels and groups must be positive")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                f"divisible by groups ({groups})"
            )
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.groups = int(groups)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self._init_quant(quantizer, per_channel, threshold, act_quant, ste, ste_clip)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialization."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def forward(
        self,
        x: torch.Tensor,
        activation: str | None = None,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``act(conv(x, W) + b + residual)``; ``activation``/``residual`` are optional fusions."""
        _check_activation(activation)
        if self.frozen:
            return kernels.ternary_conv2d(
                x,
                self.packed_weight(),
                self.weight_shape,
                self.weight_scale,
                self.bias,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
                groups=self.groups,
                activation=activation,
                act_quant=self.act_quant,
                residual=residual,
            )
        w_q = self.quantized_weight()
        if self.act_quant == "int8":
            y = self._conv_int8_tokens(x, w_q)
        else:
            y = F.conv2d(x, w_q, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return _epilogue(y, activation, residual)

    def _conv_int8_tokens(self, x: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
        """Convolution with each im2col column (one output position, one group) fake-quantized
        to int8 on its own, as :func:`~tritium.runtime.kernels.ternary_conv2d` quantizes."""
        b, _, h, w = x.shape
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, (kh, kw), dilation=self.dilation, padding=self.padding, stride=self.stride)
        g = self.groups
        kg = self.reduce_dim
        colg = cols.reshape(b, g, kg, ho * wo).transpose(2, 3)  # (B, G, L, kg)
        xq = fake_quant_int8(colg)
        wg = w_q.reshape(g, self.out_channels // g, kg)
        y = torch.einsum("bglk,gok->bgol", xq, wg).reshape(b, self.out_channels, ho, wo)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + f", bias={self.bias is not None}, {self._quant_repr()}"


class TernaryActivation(nn.Module):
    """``x -> {-1, 0, +1}``: ``sign(x)`` where ``|x| > threshold`` (default 0.5), else 0.

    The backward pass is a clipped straight-through estimator: the gradient passes where
    ``|x| <= clip`` (default 1.0) and is zero elsewhere. Nothing to freeze.
    """

    def __init__(self, threshold: float = DEFAULT_ACTIVATION_THRESHOLD, clip: float = 1.0) -> None:
        super().__init__()
        if not threshold >= 0.0:
            raise ValueError(f"threshold must be >= 0, got {threshold!r}")
        self.threshold = float(threshold)
        self.clip = float(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ternary_activation(x, self.threshold, self.clip)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, clip={self.clip}"


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


def tritium_layers(model: nn.Module) -> list[tuple[str, TritiumLayer]]:
    """Every :class:`TritiumLayer` in ``model`` (including ``model`` itself), with its name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, TritiumLayer)]


def _bn_fold_problem(layer: nn.Module, bn: nn.Module) -> str | None:
    """Why ``bn`` cannot be folded into ``layer`` (None when it can)."""
    want = layer.folds_batchnorm if isinstance(layer, TernaryLayer) else None
    if want is None:
        return f"{type(layer).__name__} is not a ternary linear or convolution layer"
    if not isinstance(bn, want):
        return f"a {type(layer).__name__} folds a {want.__name__}, not a {type(bn).__name__}"
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
    if bn.running_mean is None or bn.running_var is None:
        return "the batch norm keeps no running statistics (track_running_stats=False)"
    if bn.num_features != layer.out_dim:
        return (f"the batch norm has {bn.num_features} features but the layer has "
                f"{layer.out_dim} output channels")
    if layer.folded:
        return "the layer already has a batch norm folded into it"
    return None


def fold_batchnorm(layer: TernaryLayer, bn: nn.Module) -> TernaryLayer:
    """Fold the inference form of ``bn`` (running statistics) into the frozen ``layer``
    whose output it normalizes, in place: with ``k = gamma / sqrt(running_var + eps)``
    the layer's scale becomes ``scale * k`` and its bias ``bias * k + beta - mean * k``.
    The caller removes ``bn`` (:func:`fold_batchnorms` does). For a
    :class:`TernaryLinear` the result is exact for 2-D inputs only (the layer then refuses
    others). Raises ``ValueError`` naming what prevents the fold."""
    problem = _bn_fold_problem(layer, bn)
    if problem is not None:
        raise ValueError(f"cannot fold the batch norm: {problem}")
    if not layer.frozen:
        raise RuntimeError(f"{type(layer).__name__} must be frozen before folding into it")
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        k = 1.0 / torch.sqrt(bn.running_var.to(torch.float64) + bn.eps)
        if bn.weight is not None:
            k = k * bn.weight.to(torch.float64)
        shift = -bn.running_mean.to(torch.float64) * k
        if bn.bias is not None:
            shift = shift + bn.bias.to(torch.float64)
    return layer.fold_affine(k, shift)


def _fold_pairs_of(mod: nn.Module) -> list[tuple[str, str, bool]]:
    """The sibling (layer, batch norm) attribute pairs of ``mod`` whose dataflow is known to
    be ``bn(layer(x))`` and nothing else, with whether a folded batch norm becomes ``None``
    (a generated module's ``tritium_folds``: its code calls them through
    :func:`tritium.runtime.norm`) or ``nn.Identity`` (consecutive children of a plain
    ``nn.Sequential``, and a module's ``tritium_identity_folds``, which
    :func:`tritium.runtime.ternarize` declares)."""
    pairs = [(str(a), str(b), True) for a, b in getattr(mod, "tritium_folds", None) or ()]
    # pairs :func:`tritium.runtime.ternarize` proved in plain PyTorch modules, whose code
    # calls the batch norm itself: a folded one becomes ``nn.Identity``
    pairs += [(str(a), str(b), False)
              for a, b in getattr(mod, "tritium_identity_folds", None) or ()]
    if type(mod) is nn.Sequential:
        names = list(mod._modules)
        pairs += [(a, b, False) for a, b in zip(names, names[1:])]
    return pairs


def folded_norm_replacement(mod: nn.Module, bname: str) -> nn.Module | None:
    """What the batch norm ``bname`` of ``mod`` becomes once folded: ``None`` when ``mod``
    lists it in ``tritium_folds`` (no call at all), else ``nn.Identity()``."""
    listed = any(str(b) == bname for _, b in getattr(mod, "tritium_folds", None) or ())
    return None if listed else nn.Identity()


def fold_batchnorms(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every batch norm that only ever normalizes a frozen ternary layer's output into
    that layer (:func:`fold_batchnorm`) and remove it, in place: ``None`` in a generated
    module (its code skips it), ``nn.Identity`` in an ``nn.Sequential``. The pairs come from each module's ``tritium_folds`` (the generated code lists a pair when
    every use of both is the one expression ``bn(layer(x))``) and from consecutive children
    of ``nn.Sequential`` containers; pairs whose modules do not qualify at run time (an
    absent conditional layer, no running statistics, an unfrozen layer...) are left alone.
    Returns the dotted names of the ``(layer, batch norm)`` pairs folded."""
    done: list[tuple[str, str]] = []
    for prefix, mod in list(model.named_modules()):
        for lname, bname, to_none in _fold_pairs_of(mod):
            layer, bn = mod._modules.get(lname), mod._modules.get(bname)
            if not isinstance(layer, TernaryLayer) or not layer.frozen or bn is None \
                    or _bn_fold_problem(layer, bn) is not None:
                continue
            fold_batchnorm(layer, bn)
            layer.folded_bn = bname
            setattr(mod, bname, None if to_none else nn.Identity())
            dot = f"{prefix}." if prefix else ""
            done.append((dot + lname, dot + bname))
    return done


def freeze_model(model: nn.Module, format: str | None = None, *,
                 fold_bn: bool = True) -> nn.Module:
    """Freeze every Tritium layer in ``model`` in place and return ``model``.

    Ternary layers are packed with ``format`` (``"t2"`` or ``"t1.6"``); with ``None`` each
    layer uses its ``preferred_format`` (set from a .tri ``format:`` key), else ``"t2"``.
    int8/int4 layers use their own formats. With ``fold_bn`` (default) every batch norm that
    only normalizes a ternary layer's output (see :func:`fold_batchnorms`) is folded into it
    and removed: the frozen model is for inference, with the batch norms' running
    statistics.
    """
    if format is not None:
        _check_choice("packing format", format, TERNARY_FORMATS)
    for _, layer in tritium_layers(model):
        if isinstance(layer, TernaryLayer):
            layer.freeze(format)
        else:
            layer.freeze()
    if fold_bn:
        fold_batchnorms(model)
    return model
