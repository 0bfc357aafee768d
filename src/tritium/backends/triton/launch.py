"""Launchers: call the generated Triton kernels with the CPU kernels' contract.

    y = triton_ternary_linear(x, packed, scale, bias, "relu", "int8", residual)

Each launcher turns its arguments into a kernel spec, generates (once per spec and process)
the Triton module for that spec, loads it and launches the kernel on x's device: a CUDA
device, or CPU tensors under `TRITON_INTERPRET=1`. Autotuning picks the block sizes; pass
``config={"BLOCK_M": 16, "BLOCK_N": 32}`` to force one (tests use it to get several tiles; the
tuner passes whole configs, ``num_warps`` and ``num_stages`` included). The linear and
quantizer launchers also take ``out=``, the caller's output buffer(s) to write into (the tuner
poisons them before each checked run).

Numerics: float paths accumulate in fp32 (tensor cores via an exact two-term tf32 split);
``act_quant="int8"`` quantizes per token exactly as `tritium.runtime.kernels` does and
accumulates int8 × trit products in int32, so the integer core is bit-exact.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping

import torch

from ...runtime.packing import PackedTernary
from . import compat
from .codegen import runtime_source
from .loader import interpreting, load_source
from .specs import Conv2dSpec, KernelSpec, LinearSpec, QuantInt8Spec

__all__ = [
    "kernel_for",
    "triton_quantize_int8",
    "triton_rmsnorm_bitlinear",
    "triton_ternary_conv2d",
    "triton_ternary_linear",
]


def kernel_for(spec: KernelSpec) -> object:
    """The autotuned kernel object for `spec` (generated and loaded on first use)."""
    return _kernel(spec, interpreting())


@functools.lru_cache(maxsize=256)
def _kernel(spec: KernelSpec, interpret: bool) -> object:
    mod: types.ModuleType = load_source(runtime_source(spec), interpret)
    return getattr(mod, spec.name)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _launch(kernel: object, grid_of, args: list, constexprs: dict,
            config: Mapping[str, int] | None) -> None:
    # No FMA contraction (the epilogue then rounds exactly like the CPU kernels, the int8 path
    # stays bit-exact on a GPU) and no libdevice flush-to-zero where Triton allows it
    # (`compat.numeric_options`); the interpreter ignores the options.
    device = args[0].device
    if device.type != "cuda" and not interpreting():
        # Triton itself would say "0 active drivers ([]). There should only be one."
        raise RuntimeError(
            f"the Triton kernels run on CUDA tensors, or on CPU tensors under Triton's "
            f"interpreter (TRITON_INTERPRET=1, set before triton is imported); the input is on "
            f"{device}")
    options = compat.numeric_options()
    if config is None:
        kernel[lambda meta: grid_of(meta)](*args, **constexprs, **options)  # type: ignore[index]
    else:
        meta = dict(config)
        kernel.fn[grid_of(meta)](*args, **constexprs, **meta,  # type: ignore[attr-defined]
                                 **options)


def _out_buffer(out: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype,
                device: torch.device, what: str) -> torch.Tensor:
    if out is None:
        return torch.empty(shape, dtype=dtype, device=device)
    if (tuple(out.shape) != shape or out.dtype != dtype or out.device != device
            or not out.is_contiguous()):
        raise ValueError(f"{what} must be a contiguous {dtype} tensor of shape {list(shape)} on "
                         f"{device}, got {out.dtype} {list(out.shape)} on {out.device}")
    return out


def _activation(activation: str | None) -> str:
    return "none" if activation in (None, "", "none") else str(activation)


def _prepare_scale(scale: torch.Tensor | float, n: int, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(scale):
        scale = torch.tensor([float(scale)])
    scale = scale.reshape(-1).to(device=device, dtype=torch.float32).contiguous()
    if scale.numel() not in (1, n):
        raise ValueError(f"scale must have 1 or {n} elements, got {scale.numel()}")
    return scale


def _vector(t: torch.Tensor, n: int, what: str, device: torch.device) -> torch.Tensor:
    t = t.reshape(-1).to(device=device, dtype=torch.float32).contiguous()
    if t.numel() != n:
        raise ValueError(f"{what} must have {n} elements, got {t.numel()}")
    return t


def _check_packed(w: PackedTernary, device: torch.device) -> torch.Tensor:
    if not isinstance(w, PackedTernary):
        raise TypeError(f"w must be a PackedTernary, got {type(w).__name__}")
    data = w.data
    if data.device != device:
        data = data.to(device)
    return data.contiguous()


def triton_ternary_linear(
    x: torch.Tensor,
    w: PackedTernary,
    scale: torch.Tensor | float,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    act_quant: str = "none",
    residual: torch.Tensor | None = None,
    *,
    config: Mapping[str, int] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``act((x' @ W^T) * scale + bias + residual)`` for x [..., K]; returns [..., N]."""
    return _linear(x, w, scale, bias, activation, act_quant, residual, "none", None, 0.0, config,
                   out)


def triton_rmsnorm_bitlinear(
    x: torch.Tensor,
    w: PackedTernary,
    scale: torch.Tensor | float,
    norm_weight: torch.Tensor | None = None,
    eps: float = 1e-6,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    act_quant: str = "int8",
    residual: torch.Tensor | None = None,
    *,
    config: Mapping[str, int] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The fused RMSNorm + BitLinear: ``linear(rms_norm(x, norm_weight, eps), W)`` with the
    normalization computed in the kernel's prologue (one pass for the statistics, one for the
    int8 scale, then the GEMM), never written to memory."""
    prenorm = "rms" if norm_weight is None else "rms_weight"
    return _linear(x, w, scale, bias, activation, act_quant, residual, prenorm, norm_weight,
                   eps, config, out)


def _linear(x: torch.Tensor, w: PackedTernary, scale: torch.Tensor | float,
            bias: torch.Tensor | None, activation: str | None, act_quant: str,
            residual: torch.Tensor | None, prenorm: str, norm_weight: torch.Tensor | None,
            eps: float, config: Mapping[str, int] | None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    n, k = w.shape
    if x.shape[-1] != k:
        raise ValueError(f"x has {x.shape[-1]} features but the ternary weight has K={k}")
    dev = x.device
    spec = LinearSpec(w.format, _activation(activation), act_quant, bias is not None,
                      residual is not None, prenorm)
    data = _check_packed(w, dev)
    lead = x.shape[:-1]
    out_dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    x2 = x.reshape(-1, k).to(torch.float32).contiguous()
    m = x2.shape[0]
    y = _out_buffer(out, (m, n), torch.float32, dev, "out")
    if m == 0 or n == 0:
        return y.to(out_dtype).reshape(*lead, n)
    sc = _prepare_scale(scale, n, dev)
    args: list = [x2, data, sc]
    if norm_weight is not None:
        args.append(_vector(norm_weight, k, "norm_weight", dev))
    if bias is not None:
        args.append(_vector(bias, n, "bias", dev))
    if residual is not None:
        args.append(residual.to(device=dev, dtype=torch.float32).expand(*lead, n)
                    .reshape(m, n).contiguous())
    args += [y, m, n, k, x2.stride(0), data.stride(0), y.stride(0)]
    if prenorm != "none":
        args.append(float(eps))
    _launch(kernel_for(spec),
            lambda meta: (_cdiv(m, meta["BLOCK_M"]), _cdiv(n, meta["BLOCK_N"])),
            args, {"PER_CHANNEL": sc.numel() > 1}, config)
    return y.to(out_dtype).reshape(*lead, n)


def triton_quantize_int8(x: torch.Tensor, *, config: Mapping[str, int] | None = None,
                         out: tuple[torch.Tensor, torch.Tensor] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (last dim) absmax int8: ``(xq int8 [..., K], s float32 [..., 1])``, equal
    bit for bit to `tritium.runtime.kernels.quantize_activations_int8`. ``out=(q, s)``: write
    into an int8 [M, K] and a float32 [M] buffer."""
    k = x.shape[-1]
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k).to(torch.float32).contiguous()
    m = x2.shape[0]
    q = _out_buffer(None if out is None else out[0], (m, k), torch.int8, x.device, "out[0]")
    s = _out_buffer(None if out is None else out[1], (m,), torch.float32, x.device, "out[1]")
    if m and k:
        _launch(kernel_for(QuantInt8Spec()), lambda meta: (_cdiv(m, meta["BLOCK_M"]),),
                [x2, q, s, m, k, x2.stride(0), q.stride(0)], {}, config)
    elif m:
        s.fill_(1.0)
    return q.reshape(*lead, k), s.reshape(*lead, 1)


def _pair(v: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return (t[0], t[1])


def conv_output_size(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    return ho, wo


def triton_ternary_conv2d(
    x: torch.Tensor,
    w: PackedTernary,
    weight_shape: tuple[int, int, int, int],
    scale: torch.Tensor | float,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    activation: str | None = None,
    act_quant: str = "none",
    residual: torch.Tensor | None = None,
    *,
    config: Mapping[str, int] | None = None,
) -> torch.Tensor:
    """NCHW conv with W packed as (O, I/groups * kh * kw): an implicit GEMM, no im2col buffer.
    With ``act_quant="int8"`` a token is one output position's receptive field in one group."""
    o, ig, kh, kw = (int(v) for v in weight_shape)
    if w.shape != (o, ig * kh * kw):
        raise ValueError(f"packed weight shape {w.shape} does not match weight_shape "
                         f"{tuple(weight_shape)}")
    if x.dim() != 4:
        raise ValueError(f"ternary_conv2d expects NCHW input, got shape {tuple(x.shape)}")
    b, c, h, wd = x.shape
    if groups < 1 or c != ig * groups or o % groups != 0:
        raise ValueError(f"channels mismatch: input has {c} channels, weight expects {ig} x "
                         f"groups={groups} and {o} outputs must divide into {groups} groups")
    st, pd, dl = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    ho, wo = conv_output_size(h, wd, (kh, kw), st, pd, dl)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"input {h}x{wd} is too small for kernel {kh}x{kw} with this padding")
    dev = x.device
    spec = Conv2dSpec(w.format, _activation(activation), act_quant, bias is not None,
                      residual is not None)
    data = _check_packed(w, dev)
    out_dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    xf = x.to(torch.float32).contiguous()
    y = torch.empty((b, o, ho, wo), dtype=torch.float32, device=dev)
    m, n, kk = b * ho * wo, o // groups, ig * kh * kw
    if m == 0:
        return y.to(out_dtype)
    sc = _prepare_scale(scale, o, dev)
    args: list = [xf, data, sc]
    if bias is not None:
        args.append(_vector(bias, o, "bias", dev))
    if residual is not None:
        args.append(residual.to(device=dev, dtype=torch.float32).expand(b, o, ho, wo)
                    .contiguous())
    args += [y, m, n, kk, ig, h, wd, o, ho, wo, *xf.stride(), data.stride(0)]
    constexprs = {"KH": kh, "KW": kw, "SH": st[0], "SW": st[1], "PH": pd[0], "PW": pd[1],
                  "DH": dl[0], "DW": dl[1], "PER_CHANNEL": sc.numel() > 1}
    _launch(kernel_for(spec),
            lambda meta: (_cdiv(m, meta["BLOCK_M"]), _cdiv(n, meta["BLOCK_N"]), groups),
            args, constexprs, config)
    return y.to(out_dtype)
