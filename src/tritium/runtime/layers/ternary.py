"""Ternary layers (the base classes, TernaryLinear, BitLinear, TernaryConv2d,
TernaryActivation) and their shared checks; see :mod:`tritium.runtime.layers`."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import nn

from tritium.runtime import kernels
from tritium.runtime import plan as _plan_mod
from tritium.runtime.kernels import _pair  # a conv's pairs, checked as nn.Conv2d checks them
from tritium.runtime.native import _ACT_CODE, _g2_layout
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
    dequantize_ternary,
    quantize_weight,
)
from tritium.runtime.ste import (
    fake_quant_int8,
    get_ste,
    ste_clipped,
    ste_identity,
    ternary_activation,
)
from tritium.vocab import CONV_ACT_QUANTS, quantizer_per_channel

TERNARY_FORMATS: tuple[str, ...] = ("t2", "t1.6")
ACT_QUANT_MODES: tuple[str, ...] = ("none", "int8")
CONV_ACT_QUANT_MODES: tuple[str, ...] = CONV_ACT_QUANTS
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
        act_quants: tuple[str, ...] = ACT_QUANT_MODES,
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
        # `adaptive_ternary` is TWN with a threshold per output channel
        self.per_channel = bool(per_channel) or quantizer_per_channel(quantizer)
        self.threshold = None if threshold is None else float(threshold)
        self.act_quant = _check_choice("act_quant", act_quant, act_quants)
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

    def _frozen_plan(self, x: torch.Tensor, residual: torch.Tensor | None
                     ) -> kernels.LinearPlan | None:
        """The cached native call of this frozen layer (rebuilt when its tensors changed), or
        None when a plan may not serve this call (autograd, torch.compile, non-float32 CPU
        input) or no native kernels exist: the caller then takes the general path."""
        if not kernels.plan_usable(x, residual, self._parameters.get("bias")):
            return None
        return self._current_plan()

    def _current_plan(self) -> kernels.LinearPlan | None:
        """The cached native call of this frozen layer, rebuilt when its tensors changed (None
        without native kernels or for tensors a plan cannot take)."""
        if "parametrizations" in self._modules:   # its tensors are computed on each access
            return None
        bufs = self._buffers
        wdata, scale, bias = bufs["weight_packed"], bufs["weight_scale"], \
            self._parameters.get("bias")
        plan = self._plan
        if plan is None or plan.act_quant != self.act_quant \
                or not plan.valid_for(wdata, scale, bias):
            plan = self._plan = kernels.linear_plan(
                wdata, self.out_dim, self.reduce_dim, self.format, scale, bias, self.act_quant)
        return plan

    def __getstate__(self) -> dict[str, Any]:
        # the cached plan holds ctypes pointers into this layer's tensors: copies and pickles
        # build their own on first use
        state = super().__getstate__()
        return {**state, "_plan": None} if state.get("_plan") is not None else state

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
            shape = x.shape
            if self.folded and len(shape) != 2:
                raise ValueError(
                    f"{type(self).__name__}: a batch norm was folded into this layer, which is "
                    f"exact only for 2-D (batch, features) inputs; got shape {tuple(x.shape)} "
                    "(freeze with fold_bn=False to keep the batch norm)")
            # fast path: a cached native call (no autograd, eager mode, float32 CPU input);
            # leading dims are flattened into tokens, as a generated model's [b, s, dim]
            if residual is None and len(shape) >= 2 and shape[-1] == self.in_features:
                plan = self._frozen_plan(x, None)
                if plan is not None:
                    # (a 2-D input skips the reshape: it costs about a microsecond, as much
                    # as a small layer's quantization)
                    x2 = x if len(shape) == 2 else x.reshape(-1, shape[-1])
                    y = plan.run(x2 if x2.is_contiguous() else x2.contiguous(),
                                 _ACT_CODE[activation])
                    return y if len(shape) == 2 else y.view(*shape[:-1], self.out_features)
            # the residual broadcasts against the output [..., N] as in `y + residual`
            # (kernels.ternary_linear expands it over the leading dims); one that makes the
            # result larger than the output is added after the product, as unfrozen
            out = (*x.shape[:-1], self.out_features)
            late = residual is not None and torch.broadcast_shapes(out, residual.shape) != out
            y = kernels.ternary_linear(
                x,
                self.packed_weight(),
                self.weight_scale,
                self.bias,
                activation=None if late else activation,
                act_quant=self.act_quant,
                residual=None if late else residual,
            )
            return _epilogue(y, activation, residual) if late else y
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

    def forward(
        self,
        x: torch.Tensor,
        activation: str | None = None,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``act(Q_int8(rmsnorm(x)) W^T + b + residual)``. Frozen, on a float32 CPU input
        without autograd or residual, the RMSNorm, the quantization and the product run in one
        native call (``tri_rms_linear_planned``: the norm's mean of squares in double)."""
        if self.frozen and residual is None and not self.folded:
            shape = x.shape
            if len(shape) >= 2 and shape[-1] == self.in_features:
                group = self.__dict__.get("_group")
                if group is not None and activation is None:
                    y = group.serve(self, x)
                    if y is not None:
                        return y
                y = self._rms_native(x, activation)
                if y is not None:
                    return y
        return super().forward(x, activation, residual)

    def _rms_native(self, x: torch.Tensor, activation: str | None) -> torch.Tensor | None:
        """The one-call frozen path, or None when it may not serve this call (the plan's
        conditions, or a tuned config for this layer at this batch: it then runs its
        resolved plan)."""
        plan = self._frozen_plan(x, None)
        if plan is None:
            return None
        code = _ACT_CODE[_check_activation(activation)]
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        m = x2.shape[0]
        # a tuned config for this batch: the layer's own (resolved) call
        if _plan_mod._RESOLVER is not None and not plan.runs_default(m):
            return None
        gw = None
        if plan.aq and m >= plan.g2_min:   # the int8 GEMM's weight layout, as plan.run
            if plan.g2 is None:
                plan.g2 = _g2_layout(plan.lib, plan.tensors[0], plan.n, plan.k,
                                            plan.fmt)
            gw = None if plan.g2 is None else plan.g2.data_ptr()
        y = x2.new(m, plan.n)
        if plan.lib.call.tri_rms_linear_planned(
                plan.args_ptr, x2.data_ptr(), m, self.eps, code, y.data_ptr(),
                plan.env_threads or torch.get_num_threads(), gw):
            raise MemoryError("tritium: the native BitLinear kernel could not allocate its "
                              "buffers")
        return y if len(shape) == 2 else y.view(*shape[:-1], plan.n)

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
    the position reads), as the int8 conv kernel does. With ``act_quant="int8_image"`` each
    sample (image) is fake-quantized once with one int8 absmax scale over all its values, so
    that frozen, the conv is an exact int32 implicit GEMM on the int8 image (the fast int8
    conv kernel): ``y = (sum q * t) * s_sample * scale + bias``.
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
        self._init_quant(quantizer, per_channel, threshold, act_quant, ste, ste_clip,
                         CONV_ACT_QUANT_MODES)
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
        """``act(conv(x, W) + b + residual)``; ``activation``/``residual`` are optional fusions.
        ``x`` is ``(N, C, H, W)``, or one unbatched ``(C, H, W)`` sample as ``nn.Conv2d`` takes."""
        _check_activation(activation)
        if x.dim() == 3:
            r = residual.unsqueeze(0) if residual is not None and residual.dim() == 3 \
                else residual
            return self.forward(x.unsqueeze(0), activation, r).squeeze(0)
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects (N, C, H, W) or unbatched (C, H, W) "
                             f"input, got shape {tuple(x.shape)}")
        if self.frozen:
            if residual is not None:
                ho, wo = kernels.conv_out_size(x.shape[2], x.shape[3], self.kernel_size,
                                               self.stride, self.padding, self.dilation)
                out = (x.shape[0], self.out_channels, ho, wo)
                if torch.broadcast_shapes(out, residual.shape) != out:
                    # a residual that makes the result larger than the output: added after
                    # the conv, as unfrozen (the kernels expand it to the output)
                    return _epilogue(self.forward(x), activation, residual)
            # fast path: a cached native call (no autograd, eager, float32 CPU NCHW; grouped
            # convs when the native kernels take them, see LinearPlan.conv2d)
            if x.dim() == 4 and x.shape[1] == self.in_channels:
                plan = self._frozen_plan(x, residual)
                if plan is not None:
                    y = plan.conv2d(x if x.is_contiguous() else x.contiguous(),
                                    self.kernel_size, self.stride, self.padding, self.dilation,
                                    activation, residual, None, self.groups)
                    if y is not None:
                        return y
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
        elif self.act_quant == "int8_image":
            # one absmax scale per sample: the image flattened is one token
            xq = fake_quant_int8(x.flatten(1)).reshape(x.shape)
            y = F.conv2d(xq, w_q, self.bias, self.stride, self.padding, self.dilation,
                         self.groups)
        else:
            y = F.conv2d(x, w_q, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return _epilogue(y, activation, residual)

    def _conv_int8_tokens(self, x: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
        """Convolution with each im2col column (one output position, one group) fake-quantized
        to int8 on its own, as :func:`~tritium.runtime.kernels.ternary_conv2d` quantizes."""
        b, _, h, w = x.shape
        kh, kw = self.kernel_size
        ho, wo = kernels.conv_out_size(h, w, self.kernel_size, self.stride, self.padding,
                                       self.dilation)
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


