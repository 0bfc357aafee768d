"""The runtime's door to the Triton kernels.

`tritium.runtime.kernels.ternary_linear` / `ternary_conv2d` call `ternary_linear` /
`ternary_conv2d` here when the activations live on a CUDA device (and no autograd graph is
being recorded; training keeps the differentiable reference path). They import this module
lazily, so the runtime imports without triton; `available()` tells whether a supported
triton (3.5 or newer) is installed. Packed weights are validated once per tensor version, as the CPU kernels do.

On CUDA tensors a linear runs the config `tritium tune` archived for this kernel, shape and
GPU (`tritium.tune.dispatch.triton_config`) when there is one, else `@triton.autotune`
chooses; a tuned config that fails to launch is dropped and autotuning runs instead.
"""

from __future__ import annotations

import functools
import weakref

import torch

from ...runtime.packing import PackedTernary
from . import compat

__all__ = ["available", "ternary_conv2d", "ternary_linear"]

# id(data tensor) -> (weakref to it, data_ptr, _version): packed bytes already checked once.
_VALIDATED: dict[int, tuple[weakref.ref, int, int]] = {}


def available() -> bool:
    """Whether a supported `triton` (3.5 or newer, `compat.available`) is installed."""
    return compat.available()


def _ensure_valid(w: PackedTernary) -> None:
    data = w.data
    hit = _VALIDATED.get(id(data))
    ptr, ver = data.data_ptr(), data._version
    if hit is not None and hit[0]() is data and hit[1] == ptr and hit[2] == ver:
        return
    w.validate()
    if len(_VALIDATED) > 4096:
        _VALIDATED.clear()
    _VALIDATED[id(data)] = (weakref.ref(data), ptr, ver)


def ternary_linear(x: torch.Tensor, w: PackedTernary, scale: torch.Tensor,
                   bias: torch.Tensor | None, activation: str | None, act_quant: str,
                   residual: torch.Tensor | None) -> torch.Tensor:
    """`tritium.runtime.kernels.ternary_linear` on the Triton kernels."""
    from .launch import triton_ternary_linear

    _ensure_valid(w)
    tuned = tuned_linear_config(x, w, bias is not None, activation, act_quant,
                                residual is not None)
    if tuned is not None:
        kernel, config = tuned
        try:
            return triton_ternary_linear(x, w, scale, bias, activation, act_quant, residual,
                                         config=config)
        except Exception as e:  # noqa: BLE001 - a stale tuned config: let autotuning choose
            from ...runtime import tuned as tuned_configs

            n, k = w.shape
            tuned_configs.triton_config_failed(kernel, w.format, _rows(x), n, k,
                                               x.device.index, e)
    return triton_ternary_linear(x, w, scale, bias, activation, act_quant, residual)


@functools.cache
def _tuning_hash(spec) -> str:
    from .codegen import runtime_source
    from .loader import tuning_hash

    return tuning_hash(runtime_source(spec))


def _rows(x: torch.Tensor) -> int:
    return x.numel() // max(x.shape[-1], 1) if x.dim() else 1


def tuned_linear_config(x: torch.Tensor, w: PackedTernary, has_bias: bool,
                        activation: str | None, act_quant: str, has_residual: bool
                        ) -> tuple[str, dict] | None:
    """(tuner kernel name, tuned config) for this linear on x's CUDA device, or None (not
    a CUDA tensor, nothing tuned, or any failure: ``@triton.autotune`` then chooses). The
    configs are data the tuner recorded (``tritium.runtime.tuned``)."""
    if x.device.type != "cuda":
        return None
    try:
        from ...runtime import tuned as tuned_configs
        from .specs import LinearSpec

        act = "none" if activation in (None, "", "none") else str(activation)
        spec = LinearSpec(w.format, act, act_quant, has_bias, has_residual)
        kernel = "triton." + spec.name.removeprefix("tri_")
        n, k = w.shape
        config = tuned_configs.triton_config(kernel, w.format, _rows(x), n, k, x.device.index,
                                             _tuning_hash(spec))
    except Exception:  # noqa: BLE001 - tuned dispatch never breaks inference
        return None
    return None if config is None else (kernel, config)


def ternary_conv2d(x: torch.Tensor, w: PackedTernary, weight_shape: tuple[int, int, int, int],
                   scale: torch.Tensor, bias: torch.Tensor | None,
                   stride: int | tuple[int, int], padding: int | tuple[int, int],
                   dilation: int | tuple[int, int], groups: int, activation: str | None,
                   act_quant: str, residual: torch.Tensor | None) -> torch.Tensor:
    """`tritium.runtime.kernels.ternary_conv2d` on the Triton implicit-GEMM kernel."""
    from .launch import triton_ternary_conv2d

    _ensure_valid(w)
    return triton_ternary_conv2d(x, w, weight_shape, scale, bias, stride, padding, dilation,
                                 groups, activation, act_quant, residual)
