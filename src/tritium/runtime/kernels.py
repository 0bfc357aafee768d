"""Ternary linear and conv2d kernels: dispatch to the native CPU kernels or pure PyTorch.

``ternary_linear`` computes ``act((x' @ W^T) * scale + bias + residual)`` with ``W`` a packed
trit matrix. With ``act_quant="int8"`` the activations are quantized per token
(``s = max|x_row| / 127``, 1 when that is 0; ``xq = clamp(round(x / s), -127, 127)``), the
product ``xq @ W^T`` is computed exactly in int32 and ``x' @ W^T := y_int * s``.

The core is registered as the custom op ``tritium::ternary_linear`` (with a fake kernel and an
autograd formula), so ``torch.compile`` traces through models that use it and autograd works
(the gradient of the int8 path treats the activation quantizer as identity, the usual STE).
In eager mode without autograd the op's implementation is called directly to save the
dispatcher's per-call overhead on small problems.

The modules below it, by job: :mod:`tritium.runtime.native` (the loaded library,
``kernel_info``, weight validation and the int8 GEMM's weight layouts),
:mod:`tritium.runtime.plan` (a frozen layer's resolved native call, ``LinearPlan``, and the
kernel configs chosen per problem) and :mod:`tritium.runtime.chain` (consecutive frozen
layers of a generated model run as one plan); their public names are importable from here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu.build import KernelConfig
from tritium.runtime.capture import capturing
from tritium.runtime.native import (  # noqa: F401 - re-exported: the runtime's kernel API
    _ACT_CODE,
    _G2_LAYOUTS,
    ACT_QUANT_MODES,
    ACTIVATIONS,
    _checked_scale_bias,
    _ensure_valid,
    _g2_layout,
    _lib,
    native_available,
    openmp_runtimes,
)
from tritium.runtime.native import kernel_info as _native_kernel_info
from tritium.runtime.packing import (
    FORMAT_CODE,
    PackedTernary,
    num_threads,
    packed_row_bytes,
    unpack_ternary,
)
from tritium.runtime.plan import (  # noqa: F401 - re-exported: the runtime's kernel API
    _RESOLVED,
    ConfigResolver,
    LinearPlan,
    conv_out_size,
    get_config_resolver,
    linear_plan,
    m_bucket,
    plan_usable,
    set_config_resolver,
    stop_tuned_configs,
    tuned_configs_used,
    use_tuned_configs,
    use_tuned_configs_if_recorded,
)
from tritium.runtime.reference import apply_activation as _apply_activation
from tritium.runtime.reference import int_matmul_exact as _int_matmul_exact
from tritium.runtime.reference import quantize_activations_int8
from tritium.runtime.reference import reference_linear as _reference_linear
from tritium.runtime.tuned import refusals as tuned_configs_refused
from tritium.vocab import CONV_ACT_QUANTS

__all__ = [
    "ACTIVATIONS",
    "ACT_QUANT_MODES",
    "kernel_info",
    "native_available",
    "quantize_activations_int8",
    "ternary_conv2d",
    "ternary_linear",
    "ternary_matmul_int8",
    "get_config_resolver",
    "m_bucket",
    "run_linear",
    "set_config_resolver",
    "tuned_configs_refused",
    "tuned_configs_used",
]


def kernel_info() -> dict:
    """Which kernels run (:func:`tritium.runtime.native.kernel_info`: ISA, compiler, binary,
    threads, the pool and its counters) and ``tuned_configs``: the problems that ran a tuned
    config (``used``) and those that ran the default although the tuner studied their shape,
    with why (``refused``)."""
    info = _native_kernel_info()
    info["tuned_configs"] = {"used": tuned_configs_used(), "refused": tuned_configs_refused()}
    return info


# ---------------------------------------------------------------------------------------------
# The implementation behind the custom op (x is 2-D float32 contiguous)
# ---------------------------------------------------------------------------------------------


def _linear_impl(
    x: torch.Tensor,
    wdata: torch.Tensor,
    n: int,
    k: int,
    fmt: str,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor | None,
    activation: str,
    act_quant: str,
) -> torch.Tensor:
    act = activation or None
    # every tensor the native call reads on the CPU (else torch's own device error, or the
    # reference on meta tensors: a shape-only run)
    on_cpu = all(t is None or t.is_cpu for t in (x, wdata, scale, bias, residual))
    lib = _lib() if on_cpu else None
    if lib is None:
        trits = unpack_ternary(PackedTernary(fmt, wdata, (n, k)))
        return _reference_linear(x, trits, scale, bias, residual, act, act_quant)
    _ensure_valid(lib, wdata, n, k, fmt)
    scale = scale.float().contiguous()
    if bias is not None:
        bias = bias.float().contiguous()
    if residual is not None:
        residual = residual.float().contiguous()
    return LinearPlan(lib, wdata, n, k, fmt, scale, bias, act_quant)(x, act, residual)



@torch.library.custom_op("tritium::ternary_linear", mutates_args=())
def _ternary_linear_op(
    x: torch.Tensor,
    wdata: torch.Tensor,
    n: int,
    k: int,
    fmt: str,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor | None,
    activation: str,
    act_quant: str,
) -> torch.Tensor:
    return _linear_impl(x, wdata, n, k, fmt, scale, bias, residual, activation, act_quant)


@_ternary_linear_op.register_fake
def _ternary_linear_fake(x, wdata, n, k, fmt, scale, bias, residual, activation, act_quant):
    return x.new_empty((x.shape[0], n), dtype=torch.float32)


def _setup_context(ctx, inputs, output) -> None:
    x, wdata, n, k, fmt, scale, bias, residual, activation, act_quant = inputs
    ctx.meta = (n, k, fmt, activation, act_quant, bias is not None, residual is not None)
    ctx.save_for_backward(x, wdata, scale, bias, residual)


def _backward(ctx, grad):
    x, wdata, scale, bias, residual = ctx.saved_tensors
    n, k, fmt, activation, act_quant, has_bias, has_res = ctx.meta
    needs = ctx.needs_input_grad
    trits = unpack_ternary(PackedTernary(fmt, wdata, (n, k)))
    with torch.enable_grad():
        xs = x.detach().requires_grad_(needs[0])
        ss = scale.detach().float().requires_grad_(needs[5])
        bs = bias.detach().float().requires_grad_(needs[6]) if has_bias else None
        rs = residual.detach().float().requires_grad_(needs[7]) if has_res else None
        # STE: the int8 activation quantizer is treated as identity in the backward pass;
        # the activation's derivative is taken where the forward's pre-activation is (that
        # of the quantized input), as in the fake-quantized layer
        y = _reference_linear(xs, trits, ss, bs, rs, None, "none")
        if act_quant != "none" and activation:
            with torch.no_grad():
                z = _reference_linear(x, trits, scale, bias, residual, None, act_quant)
            y = z + (y - y.detach())
        y = _apply_activation(y, activation or None)
        wrt = [t for t in (xs, ss, bs, rs) if t is not None and t.requires_grad]
        grads = iter(torch.autograd.grad(y, wrt, grad)) if wrt else iter(())
    gx = next(grads) if needs[0] else None
    gs = next(grads).reshape(scale.shape).to(scale.dtype) if needs[5] else None
    gb = next(grads).to(bias.dtype) if has_bias and needs[6] else None
    gr = next(grads).to(residual.dtype) if has_res and needs[7] else None
    return gx, None, None, None, None, gs, gb, gr, None, None


_ternary_linear_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _use_triton(*tensors: torch.Tensor | None) -> bool:
    """CUDA tensors go to the generated Triton kernels (tritium.backends.triton, imported
    lazily: triton is optional) unless autograd or torch.compile needs the custom-op path."""
    if capturing():
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    from tritium.backends.triton import dispatch

    return dispatch.available()


def _check_common(w: PackedTernary, activation: str | None, act_quant: str,
                  modes: tuple[str, ...] = ACT_QUANT_MODES) -> None:
    if not isinstance(w, PackedTernary):
        raise TypeError(f"w must be a PackedTernary, got {type(w).__name__}")
    if activation not in _ACT_CODE:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of "
            f"{', '.join(repr(a) for a in ACTIVATIONS)}"
        )
    if act_quant not in modes:
        raise ValueError(f"act_quant must be one of {', '.join(repr(m) for m in modes)}, "
                         f"got {act_quant!r}")


def ternary_linear(
    x: torch.Tensor,
    w: PackedTernary,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    act_quant: str = "none",
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``act((x' @ W^T) * scale + bias + residual)`` for x [..., K]; returns [..., N] in x's dtype."""
    _check_common(w, activation, act_quant)
    n, k = w.shape
    if x.shape[-1] != k:
        raise ValueError(f"x has {x.shape[-1]} features but the ternary weight has K={k}")
    scale = _checked_scale_bias(n, scale, bias)
    if x.is_cuda and _use_triton(x, scale, bias, residual):  # GPU: Triton kernels
        from tritium.backends.triton import dispatch

        return dispatch.ternary_linear(x, w, scale, bias, activation, act_quant, residual)
    out_dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    if x2.dtype != torch.float32:
        x2 = x2.float()
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    scale = scale.reshape(-1)
    if bias is not None:
        bias = bias.reshape(-1)
    if residual is not None:
        residual = residual.expand(*lead, n).reshape(-1, n)
    act = activation or ""
    args = (x2, w.data, n, k, w.format, scale, bias, residual, act, act_quant)
    grad_needed = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x2, scale, bias, residual)
    )
    if grad_needed or capturing():
        y = torch.ops.tritium.ternary_linear(*args)
    else:
        y = _linear_impl(*args)
    if out_dtype != torch.float32:
        y = y.to(out_dtype)
    return y.reshape(*lead, n)


def run_linear(
    config: KernelConfig,
    x: torch.Tensor,
    wdata: torch.Tensor,
    n: int,
    k: int,
    fmt: str,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    act_quant: str = "none",
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``ternary_linear`` run by exactly the kernel specialization ``config`` (what a tuner
    times): no resolver, no fallback. ``x`` is [M, K] (any float dtype), ``wdata`` the packed
    bytes of an N x K weight in ``fmt``; returns float32 [M, N]. Raises RuntimeError when the
    config cannot be built or loaded on this machine."""
    if not isinstance(config, KernelConfig):
        raise TypeError(f"config must be a KernelConfig, got {type(config).__name__}")
    w = PackedTernary(fmt, wdata, (n, k))
    _check_common(w, activation, act_quant)
    if x.dim() != 2 or x.shape[1] != k:
        raise ValueError(f"x must be [M, K={k}], got {tuple(x.shape)}")
    if x.device.type != "cpu" or wdata.device.type != "cpu":
        raise ValueError("run_linear runs the CPU kernels: x and the weights must be on the CPU")
    scale = _checked_scale_bias(n, scale, bias).float().reshape(-1)
    if bias is not None:
        bias = bias.float().reshape(-1).contiguous()
    if residual is not None:
        residual = residual.float().expand(x.shape[0], n).contiguous()
    lib = cpu_backend.load(config=config)
    if lib is None:
        raise RuntimeError(f"kernel config {config} could not be loaded: "
                           f"{cpu_backend.load_error(config)}")
    _ensure_valid(lib, w.data, n, k, fmt)   # (w.data: the bytes made contiguous)
    x2 = x.float().contiguous()
    plan = LinearPlan(lib, w.data, n, k, fmt, scale.contiguous(), bias, act_quant,
                      config=config)
    return plan(x2, activation, residual)


def ternary_matmul_int8(xq: torch.Tensor, w: PackedTernary) -> torch.Tensor:
    """Exact ``xq @ W^T`` in int32 for int8 ``xq`` [M, K] (the integer core of the int8 path)."""
    if not isinstance(w, PackedTernary):
        raise TypeError(f"w must be a PackedTernary, got {type(w).__name__}")
    if xq.dtype != torch.int8 or xq.dim() != 2:
        raise ValueError("xq must be a 2-D int8 tensor")
    n, k = w.shape
    if xq.shape[1] != k:
        raise ValueError(f"xq has {xq.shape[1]} features but the ternary weight has K={k}")
    lib = _lib() if xq.device.type == "cpu" else None
    if lib is None:
        return _int_matmul_exact(xq, unpack_ternary(w))
    _ensure_valid(lib, w.data, n, k, w.format)
    xq = xq.contiguous()
    m = xq.shape[0]
    y = torch.empty((m, n), dtype=torch.int32)
    rc = lib.lib.tri_gemm_i8(
        xq.data_ptr(), m, k, w.data.data_ptr(), n, packed_row_bytes(k, w.format),
        FORMAT_CODE[w.format], y.data_ptr(), num_threads(),
    )
    if rc != 0:
        raise MemoryError("tritium: the native int8 GEMM could not allocate its buffers")
    return y


def _pair(v: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """A conv's stride, padding or dilation as a pair, checked as nn.Conv2d checks it: a
    stride or dilation of at least 1, a padding of at least 0 (ValueError otherwise: a stride
    of 0 divided by zero, a negative dilation or padding computed what torch refuses)."""
    t = (v, v) if isinstance(v, int) else tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    least = 0 if name == "padding" else 1
    if min(t) < least:
        raise ValueError(f"{name} must be at least {least}, got {v!r}")
    return t  # type: ignore[return-value]


def ternary_conv2d(
    x: torch.Tensor,
    w: PackedTernary,
    weight_shape: tuple[int, int, int, int],
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    activation: str | None = None,
    act_quant: str = "none",
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """NCHW conv with ternary weights packed as 2-D (O, I/groups * kh * kw), via im2col + GEMM.

    With ``act_quant="int8"`` a token is one output position's im2col column of one group;
    with ``"int8_image"`` each sample is quantized once (one absmax scale over all its values)
    and the integer conv is exact: ``y = conv(q, trits) * s_sample * scale + bias``.
    """
    _check_common(w, activation, act_quant, CONV_ACT_QUANTS)
    o, ig, kh, kw = (int(v) for v in weight_shape)
    if w.shape != (o, ig * kh * kw):
        raise ValueError(f"packed weight shape {w.shape} does not match weight_shape {tuple(weight_shape)}")
    if x.dim() != 4:
        raise ValueError(f"ternary_conv2d expects NCHW input, got shape {tuple(x.shape)}")
    b, c, h, wd = x.shape
    if groups < 1 or c != ig * groups or o % groups != 0:
        raise ValueError(
            f"channels mismatch: input has {c} channels, weight expects {ig} x groups={groups} "
            f"and {o} outputs must divide into {groups} groups"
        )
    st, pd, dl = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    ho, wo = conv_out_size(h, wd, (kh, kw), st, pd, dl)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"input {h}x{wd} is too small for kernel {kh}x{kw} with this padding")
    scale = _checked_scale_bias(o, scale, bias, "O").reshape(-1)
    # GPU: Triton kernels (they have no int8_image mode: that one runs in PyTorch below)
    if x.is_cuda and act_quant != "int8_image" and _use_triton(x, scale, bias, residual):
        from tritium.backends.triton import dispatch

        return dispatch.ternary_conv2d(x, w, (o, ig, kh, kw), scale, bias, st, pd, dl, groups,
                                       activation, act_quant, residual)
    out_dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    xf = x.float()
    if plan_usable(xf, scale, bias, residual):
        plan = linear_plan(w.data, o, ig * kh * kw, w.format, scale.float().contiguous(),
                           None if bias is None else bias.float().reshape(-1).contiguous(),
                           act_quant)
        y = None if plan is None else plan.conv2d(xf.contiguous(), (kh, kw), st, pd, dl,
                                                  activation, residual, None, groups)
        if y is not None:   # None: a grouped conv the native kernels do not take
            return y.to(out_dtype)
    if act_quant == "int8_image":
        return _conv2d_int8_image(xf, w, (o, ig, kh, kw), scale, bias, st, pd, dl, groups,
                                  activation, residual).to(out_dtype)
    cols = F.unfold(xf, (kh, kw), dilation=dl, padding=pd, stride=st)  # (B, C*kh*kw, L)
    L = ho * wo
    kg = ig * kh * kw
    if groups == 1 or (groups <= 4 and native_available()):
        og = o // groups
        res2 = None
        if residual is not None:
            res2 = residual.float().expand(b, o, ho, wo).permute(0, 2, 3, 1).reshape(b * L, o)
        outs = []
        for g in range(groups):
            xg = cols[:, g * kg : (g + 1) * kg, :].transpose(1, 2).reshape(b * L, kg)
            if groups == 1:
                wg, sg, bg, rg = w, scale, bias, res2
            else:
                rows = slice(g * og, (g + 1) * og)
                wg = PackedTernary(w.format, w.data[rows], (og, kg))
                sg = scale if scale.numel() == 1 else scale[rows]
                bg = None if bias is None else bias.reshape(-1)[rows]
                rg = None if res2 is None else res2[:, rows]
            outs.append(ternary_linear(xg, wg, sg, bg, activation, act_quant, rg))
        y2 = outs[0] if groups == 1 else torch.cat(outs, dim=1)
        y = y2.reshape(b, ho, wo, o).permute(0, 3, 1, 2).contiguous()
        return y.to(out_dtype)
    # Many groups (depthwise and friends): the per-group weights are small, so unpack them once
    # and compute all groups in one batched product.
    trits = unpack_ternary(w).reshape(groups, o // groups, kg).float()
    colg = cols.reshape(b, groups, kg, L)
    if act_quant == "int8":
        xq, s = quantize_activations_int8(colg.transpose(2, 3))  # (B, G, L, kg), (B, G, L, 1)
        yi = torch.einsum("bglk,gok->bgol", xq.float(), trits)  # exact: |sum| < 2**24
        y = _with_ste_gradient(yi * s.transpose(2, 3), xf,
                               lambda: torch.einsum("bgkl,gok->bgol", colg, trits))
    else:
        y = torch.einsum("bgkl,gok->bgol", colg, trits)
    y = y.reshape(b, o, ho, wo) * scale.float().reshape(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.float().reshape(1, o, 1, 1)
    if residual is not None:
        y = y + residual.float()
    return _apply_activation(y, activation).to(out_dtype)


def _with_ste_gradient(y: torch.Tensor, x: torch.Tensor, float_product) -> torch.Tensor:
    """``y``, the exact product of an int8 path, with the gradient of ``float_product()``
    (the same product of the unquantized ``x``) when ``x`` needs one: the activation
    quantizer is identity in the backward pass, the STE of the custom op's formula. The values
    stay ``y``'s (``g - g.detach()`` is 0)."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return y
    g = float_product()
    return y.detach() + (g - g.detach())


def _conv2d_int8_image(x: torch.Tensor, w: PackedTernary, shape: tuple[int, int, int, int],
                       scale: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                       padding: tuple[int, int], dilation: tuple[int, int], groups: int,
                       activation: str | None, residual: torch.Tensor | None) -> torch.Tensor:
    """The ``int8_image`` conv in PyTorch (the reference of the native kernel, and its path
    where that does not run): each sample quantized as one token, the integer conv in float
    (exact: every partial sum of int8 values times trits is an integer below 2**24 for
    K * 127 < 2**24), then ``* s_sample * scale + bias + residual`` and the activation."""
    b = x.shape[0]
    xq, s = quantize_activations_int8(x.flatten(1))
    trits = unpack_ternary(w).reshape(shape).float()
    yi = F.conv2d(xq.reshape(x.shape).float(), trits, None, stride, padding, dilation, groups)
    y = yi * s.reshape(b, 1, 1, 1)
    y = _with_ste_gradient(y, x, lambda: F.conv2d(x, trits, None, stride, padding, dilation,
                                                  groups))
    y = y * scale.float().reshape(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.float().reshape(1, -1, 1, 1)
    if residual is not None:
        y = y + residual.float()
    return _apply_activation(y, activation)
