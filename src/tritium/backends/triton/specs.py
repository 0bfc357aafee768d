"""What a generated Triton kernel computes: one frozen spec per distinct kernel.

A spec fixes everything that changes the kernel's *code* (packed format, which operands
exist, the activation epilogue, int8 activation quantization, an RMSNorm prologue). Block
sizes are not part of a spec: they are `tl.constexpr` parameters chosen by `@triton.autotune`
(or fixed for an ahead-of-time build). Conv geometry (kernel size, stride, padding, dilation)
is also passed as `tl.constexpr` values, so one conv kernel serves every geometry and the
compiler still sees the constants.

This module imports neither torch nor triton.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import vocab

FORMATS = vocab.FORMATS
ACTIVATIONS = vocab.ACTIVATIONS
ACT_QUANTS = vocab.ACT_QUANTS
PRENORMS = ("none", "rms", "rms_weight")

# Packed geometry per format (docs/formats.md, format version 1; tritium.vocab): a 32-byte
# block holds FIELDS fields of 32 consecutive elements each.
BLOCK_BYTES = vocab.BLOCK_BYTES
FIELDS = vocab.FIELDS
BLOCK_TRITS = vocab.BLOCK_TRITS
ZERO_BYTE = vocab.ZERO_BYTE


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def _suffix(format: str, prenorm: str, act_quant: str, activation: str, has_bias: bool,
            has_residual: bool) -> str:
    parts = ["t2" if format == "t2" else "t16"]
    if prenorm != "none":
        parts.append({"rms": "rms", "rms_weight": "rmsw"}[prenorm])
    if act_quant == "int8":
        parts.append("q8")
    if activation != "none":
        parts.append(activation)
    if has_bias:
        parts.append("bias")
    if has_residual:
        parts.append("res")
    return "_".join(parts)


@dataclass(frozen=True, order=True)
class LinearSpec:
    """``y = act((pre(x) @ W^T) * scale + bias + residual)`` with W packed [N, K].

    ``prenorm`` is an RMSNorm of x over K computed in the kernel's prologue ("rms" without a
    weight, "rms_weight" with one): with ``act_quant="int8"`` this is the fused
    RMSNorm + BitLinear kernel.
    """

    format: str = "t2"
    activation: str = "none"
    act_quant: str = "none"
    has_bias: bool = False
    has_residual: bool = False
    prenorm: str = "none"

    def __post_init__(self) -> None:
        _check(self.format, FORMATS, "format")
        _check(self.activation, ACTIVATIONS, "activation")
        _check(self.act_quant, ACT_QUANTS, "act_quant")
        _check(self.prenorm, PRENORMS, "prenorm")

    @property
    def kind(self) -> str:
        return "linear"

    @property
    def name(self) -> str:
        return "tri_linear_" + _suffix(self.format, self.prenorm, self.act_quant,
                                       self.activation, self.has_bias, self.has_residual)


@dataclass(frozen=True, order=True)
class Conv2dSpec:
    """``y = act(conv2d(x, W) * scale[c] + bias[c] + residual)``, NCHW, W packed as
    [O, C/groups * kh * kw], computed as an implicit GEMM (no im2col buffer)."""

    format: str = "t2"
    activation: str = "none"
    act_quant: str = "none"
    has_bias: bool = False
    has_residual: bool = False

    def __post_init__(self) -> None:
        _check(self.format, FORMATS, "format")
        _check(self.activation, ACTIVATIONS, "activation")
        _check(self.act_quant, ACT_QUANTS, "act_quant")

    @property
    def kind(self) -> str:
        return "conv2d"

    @property
    def name(self) -> str:
        return "tri_conv2d_" + _suffix(self.format, "none", self.act_quant, self.activation,
                                       self.has_bias, self.has_residual)


@dataclass(frozen=True, order=True)
class QuantInt8Spec:
    """Per-token (row) absmax int8 quantization: ``s = max|x_row| / 127`` (1 for a zero row),
    ``xq = clamp(round_half_even(x / s), -127, 127)``."""

    @property
    def kind(self) -> str:
        return "quant_int8"

    @property
    def name(self) -> str:
        return "tri_quantize_int8"


KernelSpec = LinearSpec | Conv2dSpec | QuantInt8Spec


def spec_sort_key(spec: KernelSpec) -> tuple[str, str]:
    return (spec.kind, spec.name)
