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
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu.build import KernelConfig
from tritium.runtime import tuned
from tritium.runtime.packing import (
    FORMAT_CODE,
    PackedTernary,
    num_threads,
    packed_row_bytes,
    unpack_ternary,
)
from tritium.runtime.reference import apply_activation as _apply_activation
from tritium.runtime.reference import int_matmul_exact as _int_matmul_exact
from tritium.runtime.reference import quantize_activations_int8
from tritium.runtime.reference import reference_linear as _reference_linear

ACTIVATIONS: tuple[str | None, ...] = (None, "relu", "relu6", "gelu", "silu", "sigmoid", "tanh")
ACT_QUANT_MODES = ("none", "int8")
_ACT_CODE = {None: 0, "relu": 1, "relu6": 2, "gelu": 3, "silu": 4, "sigmoid": 5, "tanh": 6}

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
    "tuned_configs_used",
]


# ---------------------------------------------------------------------------------------------
# Native library and the validated-weights cache
# ---------------------------------------------------------------------------------------------


def _lib():
    return cpu_backend.load()


def native_available() -> bool:
    """Whether the C kernels built and loaded (this may build them on first call)."""
    return _lib() is not None


def openmp_runtimes() -> list[str]:
    """The OpenMP runtime files (libgomp, libomp, libiomp) mapped into this process, from
    ``/proc/self/maps`` (an empty list where that file does not exist)."""
    found: set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    name = os.path.basename(parts[5].strip())
                    if name.startswith(("libgomp", "libomp", "libiomp")):
                        found.add(os.path.realpath(parts[5].strip()))
    except OSError:
        return []
    return sorted(found)


def kernel_info() -> dict[str, Any]:
    """Which kernels run: ISA, compiler, cached binary, threads, thread pool.

    ``pool`` is ``"openmp"`` or ``"pthread"``; with OpenMP, ``omp_library`` is the runtime the
    kernels are bound to and ``omp_shared_with_torch`` says whether it is the only OpenMP
    runtime in the process (then the kernels and PyTorch's ops share one team of threads).
    ``pool_fallback`` says why an OpenMP build was replaced by the pthread pool, if it was.
    ``pool_stats`` holds the pool's counters (``tritium.backends.cpu.POOL_STATS``): how many
    calls ran in parallel, how often a caller waited for a thread the OS had not scheduled
    (``stalls``, ``wait_ns``), and the smaller team of a back-off in progress (``cap``);
    ``$TRITIUM_POOL_DEBUG=1`` reports each back-off on stderr.
    """
    lib = _lib()
    info: dict[str, Any] = {"native": lib is not None, "threads": num_threads()}
    if lib is None:
        info.update(isa="torch", error=cpu_backend.load_error())
        return info
    b = lib.built
    info.update(
        isa=lib.isa,
        compiler=b.compiler,
        compiler_version=b.compiler_version,
        flags=" ".join(b.flags),
        threading=lib.threading,
        pool=lib.pool,
        pool_fallback=b.pool_fallback or None,
        cache_path=str(b.path),
        key=b.key,
        pool_stats=lib.pool_stats(),
    )
    if lib.pool == "openmp":
        runtimes = openmp_runtimes()
        info.update(omp_library=lib.omp_library, openmp_runtimes=runtimes,
                    omp_shared_with_torch=runtimes == [lib.omp_library])
    return info


# id(data tensor) -> (weakref to it, data_ptr, _version): packed bytes already checked once.
_VALIDATED: dict[int, tuple[weakref.ref, int, int]] = {}


def _ensure_valid(lib, wdata: torch.Tensor, n: int, k: int, fmt: str) -> None:
    key = id(wdata)
    hit = _VALIDATED.get(key)
    ptr, ver = wdata.data_ptr(), wdata._version
    if hit is not None and hit[0]() is wdata and hit[1] == ptr and hit[2] == ver:
        return
    PackedTernary(fmt, wdata, (n, k)).validate()
    if len(_VALIDATED) > 4096:
        _VALIDATED.clear()
    _VALIDATED[key] = (weakref.ref(wdata), ptr, ver)


# id(data tensor) -> (weakref to it, data_ptr, _version, n, k, fmt, G2 layout): the int8 GEMM's
# 2-bit panel layout of a weight, made once per weight on its first batch that uses the GEMM.
_G2_LAYOUTS: dict[int, tuple] = {}


_G2_MIN: dict[int, int] = {}  # id(ctypes library) -> G2 minimum batch


def _g2_min_m(lib) -> int:
    """The batch size from which ``lib`` runs the G2 GEMM (a huge number when it has none)."""
    hit = _G2_MIN.get(id(lib.lib))
    if hit is None:
        has_g2 = lib.lib.tri_g2_bytes(0, 16, 16) > 0
        hit = _G2_MIN[id(lib.lib)] = lib.built.config.gemm_min_m if has_g2 else 1 << 62
    return hit


def _g2_layout(lib, wdata: torch.Tensor, n: int, k: int, fmt: str) -> torch.Tensor | None:
    """The cached G2 layout of a (validated) packed weight, made on first use."""
    key = id(wdata)
    hit = _G2_LAYOUTS.get(key)
    if (hit is not None and hit[0]() is wdata
            and hit[1:6] == (wdata.data_ptr(), wdata._version, n, k, fmt)):
        return hit[6]
    nbytes = lib.lib.tri_g2_bytes(FORMAT_CODE[fmt], n, k)
    if nbytes <= 0:
        return None
    out = torch.empty(nbytes, dtype=torch.uint8)
    if lib.lib.tri_g2_pack(FORMAT_CODE[fmt], wdata.data_ptr(), n, k, wdata.shape[1],
                           out.data_ptr(), num_threads()):
        raise MemoryError("tritium: could not allocate the int8 GEMM's weight layout")

    def _drop(ref: weakref.ref, key: int = key) -> None:
        entry = _G2_LAYOUTS.get(key)
        if entry is not None and entry[0] is ref:
            del _G2_LAYOUTS[key]

    _G2_LAYOUTS[key] = (weakref.ref(wdata, _drop), wdata.data_ptr(), wdata._version, n, k, fmt,
                        out)
    return out


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
    lib = _lib() if x.device.type == "cpu" and wdata.device.type == "cpu" else None
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


# ---------------------------------------------------------------------------------------------
# Kernel configs chosen per problem (the autotuner's hook)
# ---------------------------------------------------------------------------------------------

ConfigResolver = Callable[[int, int, int, str, str, str], "KernelConfig | None"]

_RESOLVER: ConfigResolver | None = None
_RESOLVER_GENERATION = 0  # bumped by set_config_resolver: plans drop the answers they kept
# (m bucket, n, k, fmt, act_quant, isa) -> (tri_linear_planned, thread cap, G2 minimum batch)
# of the chosen config
_RESOLVED: dict[tuple, tuple[Any, int, int]] = {}
# (m bucket, n, k, fmt, act_quant, isa) -> the resolver's config, for the problems it answered
# with one (what tuned_configs_used reports)
_TUNED_USED: dict[tuple, KernelConfig] = {}
_resolver_warned = False


m_bucket = tuned.m_bucket


def set_config_resolver(fn: ConfigResolver | None) -> None:
    """Install (or with None remove) the function that picks a kernel specialization.

    ``fn(m, n, k, fmt, act_quant, isa)`` gets the batch-size bucket ``m`` (see
    :func:`m_bucket`), the weight shape, the packed format (``"t2"``/``"t1.6"``), the
    activation mode (``"none"``/``"int8"``) and the ISA path of the default kernels, and returns
    a :class:`~tritium.backends.cpu.KernelConfig` or None (the default config). The answer is
    cached per (bucket, n, k, fmt, act_quant, isa) until the resolver is set again. A resolver
    never breaks inference: if it raises, returns something else than a config, or returns a
    config that cannot be built, the default kernels run and one warning says so.
    """
    global _RESOLVER
    if fn is not None and not callable(fn):
        raise TypeError(f"the config resolver must be callable or None, got {type(fn).__name__}")
    global _RESOLVER_GENERATION
    _RESOLVER = fn
    _RESOLVER_GENERATION += 1
    _RESOLVED.clear()
    _TUNED_USED.clear()


def get_config_resolver() -> ConfigResolver | None:
    """The installed config resolver, or None."""
    return _RESOLVER


def _resolver_warn(message: str) -> None:
    global _resolver_warned
    if not _resolver_warned:
        _resolver_warned = True
        warnings.warn(f"tritium: {message}; using the default kernel config", RuntimeWarning,
                      stacklevel=4)


def tuned_configs_used() -> list[dict[str, Any]]:
    """The problems for which the installed config resolver (the autotuner's archive) chose a
    specialization since it was installed: batch bucket, shape, format, activation mode, ISA
    and the config. Empty when every layer ran the default kernels."""
    return [{"m_bucket": key[0], "n": key[1], "k": key[2], "fmt": key[3], "act_quant": key[4],
             "isa": key[5], "config": dataclasses.asdict(config)}
            for key, config in list(_TUNED_USED.items())]


def use_tuned_configs(source: tuned.Source | None = None) -> None:
    """Run the tuned configs of ``source`` (None: the records file the tuner writes;
    ``tritium.runtime.tuned``) on the CPU kernels."""
    tuned.reset(source)
    set_config_resolver(tuned.resolve)


def stop_tuned_configs() -> None:
    """Back to the default configs (when the tuned-config resolver is the installed one)."""
    if _RESOLVER is tuned.resolve:
        set_config_resolver(None)
    tuned.reset()


def use_tuned_configs_if_recorded() -> bool:
    """At ``import tritium.runtime``: use the tuned configs when tuned dispatch is enabled and
    the records file exists (one ``stat``; nothing is read until a kernel runs)."""
    if not tuned.enabled():
        return False
    try:
        if not tuned.records_path().is_file():
            return False
    except OSError:
        return False
    use_tuned_configs()
    return True


def _default_threads() -> int:
    return num_threads() if os.environ.get("TRITIUM_NUM_THREADS") else 0


def _call_threads(env_threads: int, cap: int) -> int:
    """The threads of one call: the user's count (``$TRITIUM_NUM_THREADS``, else torch's
    current ``get_num_threads()``), at most ``cap`` when a tuned config has one."""
    user = env_threads or max(1, torch.get_num_threads())
    return min(cap, user) if cap else user


def _resolve(default_lib, m: int, n: int, k: int, fmt: str, act_quant: str
             ) -> tuple[Any, int, int]:
    """The (tri_linear_planned, thread cap, G2 minimum batch) to run for this problem: the
    resolver's config or the default (cap 0: the user's thread count). A tuned thread count
    only ever lowers the user's: it is a cap, never an override."""
    key = (m_bucket(m), n, k, fmt, act_quant, default_lib.isa)
    hit = _RESOLVED.get(key)
    if hit is not None:
        return hit
    choice = (default_lib.lib.tri_linear_planned, 0, _g2_min_m(default_lib))
    resolver = _RESOLVER
    if resolver is not None:
        try:
            config = resolver(key[0], n, k, fmt, act_quant, default_lib.isa)
        except Exception as exc:  # noqa: BLE001 - a resolver must never break inference
            _resolver_warn(f"the kernel config resolver raised {type(exc).__name__}: {exc}")
            config = None
        if config is not None and not isinstance(config, KernelConfig):
            _resolver_warn(f"the kernel config resolver returned a {type(config).__name__}, "
                           "not a KernelConfig")
            config = None
        if config is not None:
            lib = cpu_backend.load(config=config)
            if lib is None:
                _resolver_warn(f"kernel config {config} could not be loaded "
                               f"({cpu_backend.load_error(config)})")
            else:
                choice = (lib.lib.tri_linear_planned, config.threads, _g2_min_m(lib))
                if _RESOLVER is resolver:
                    _TUNED_USED[key] = config
    if _RESOLVER is resolver:
        _RESOLVED[key] = choice
    return choice


class LinearPlan:
    """A frozen layer's native call with everything but the input resolved once: the kernel
    function, the weight/scale/bias pointers and the format. Batch-1 inference of small layers
    is dominated by per-call Python work, which this removes. A plan is only used while its
    tensors are unchanged (same objects, same version counters) and rebuilt otherwise; it is
    never used under autograd or torch.compile (the custom op handles those).

    Without ``config`` the plan runs the default kernels, or, when a config resolver is
    installed, the specialization it picks for each batch-size bucket; with ``config`` it
    runs exactly that specialization (``lib`` must be its library)."""

    __slots__ = ("lib", "fn", "n", "k", "fmt", "aq", "act_quant", "tensors", "versions",
                 "args", "args_ptr", "env_threads", "fixed", "g2_min", "g2", "resolved",
                 "geoms")

    def __init__(self, lib, wdata: torch.Tensor, n: int, k: int, fmt: str, scale: torch.Tensor,
                 bias: torch.Tensor | None, act_quant: str,
                 config: KernelConfig | None = None) -> None:
        self.lib = lib
        self.fn = lib.lib.tri_linear_planned
        self.n, self.k, self.fmt = n, k, fmt
        self.aq = 1 if act_quant == "int8" else 0
        self.act_quant = act_quant
        self.tensors = (wdata, scale, bias)
        self.versions = tuple(None if t is None else t._version for t in self.tensors)
        # the constant arguments, converted to C once (the tensors above keep them alive)
        self.args = cpu_backend.LinearPlanArgs(
            w=wdata.data_ptr(), k=k, n=n, row_bytes=wdata.shape[1], scale=scale.data_ptr(),
            nscale=scale.numel(), bias=None if bias is None else bias.data_ptr(),
            fmt=FORMAT_CODE[fmt], act_quant=self.aq)
        self.args_ptr = ctypes.addressof(self.args)
        self.fixed = config is not None
        self.g2_min = _g2_min_m(lib) if self.aq else 1 << 62
        self.g2: torch.Tensor | None = None
        self.resolved: dict[int, tuple] = {}
        self.env_threads = (config.threads if config is not None and config.threads
                            else _default_threads())
        self.geoms: dict[tuple, tuple] = {}   # conv2d: (input C, H, W, conv params) -> geometry

    def valid_for(self, wdata: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None
                  ) -> bool:
        w0, s0, b0 = self.tensors
        return (w0 is wdata and s0 is scale and b0 is bias
                and self.versions == (wdata._version, scale._version,
                                      None if bias is None else bias._version))

    def __call__(self, x2: torch.Tensor, activation: str | None,
                 residual: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
        """``x2`` is a contiguous float32 [M, K]; the result is written to ``out`` (a contiguous
        float32 [M, N] on the CPU, what a tuner poisons before each run) or a new tensor."""
        m = x2.shape[0]
        if out is not None and (out.dtype != torch.float32 or out.device.type != "cpu"
                                or tuple(out.shape) != (m, self.n) or not out.is_contiguous()):
            raise ValueError(f"out must be a contiguous float32 CPU tensor of shape {(m, self.n)}, "
                             f"got {out.dtype} {tuple(out.shape)} on {out.device}")
        if _RESOLVER is None or self.fixed:
            fn, threads, g2_min = self.fn, _call_threads(self.env_threads, 0), self.g2_min
        else:
            # the resolver's answer for this batch size, kept by the plan until the resolver
            # changes: a per-call lookup would cost more than a small layer's kernel
            hit = self.resolved.get(m)
            if hit is None or hit[0] != _RESOLVER_GENERATION:
                hit = (_RESOLVER_GENERATION,
                       *_resolve(self.lib, m, self.n, self.k, self.fmt, self.act_quant))
                self.resolved[m] = hit
            _, fn, cap, g2_min = hit
            threads = _call_threads(self.env_threads, cap)
        gw = None
        if self.aq and m >= g2_min:
            if self.g2 is None:
                self.g2 = _g2_layout(self.lib, self.tensors[0], self.n, self.k, self.fmt)
            gw = None if self.g2 is None else self.g2.data_ptr()
        y = torch.empty((m, self.n), dtype=torch.float32) if out is None else out
        rc = fn(self.args_ptr, x2.data_ptr(), m,
                None if residual is None else residual.data_ptr(), _ACT_CODE[activation],
                y.data_ptr(), threads, gw)
        if rc != 0:
            raise MemoryError("tritium: the native ternary_linear kernel could not allocate "
                              "its buffers")
        return y


    def conv2d(self, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], dilation: tuple[int, int], activation: str | None,
               residual: torch.Tensor | None) -> torch.Tensor:
        """A conv2d with groups = 1 in one native call (`tri_conv2d_planned`): ``x`` is a
        contiguous float32 NCHW tensor, the weight this plan's (O, C*kh*kw); returns NCHW.
        The patches are gathered (and, in int8 mode, quantized one by one) in C, the result
        written as NCHW with the residual and activation fused. The default kernels run (a
        tuned linear config is measured for a linear layer's rows, not for a patch gather)."""
        b, c, h, w = x.shape
        key = (c, h, w, kernel, stride, padding, dilation)
        hit = self.geoms.get(key)
        if hit is None:
            kh, kw = kernel
            ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
            wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
            if ho <= 0 or wo <= 0 or c * kh * kw != self.k:
                raise ValueError(f"input {tuple(x.shape)} does not fit this convolution")
            geom = cpu_backend.ConvGeomArgs(c, h, w, kh, kw, *stride, *padding, *dilation, ho, wo)
            hit = self.geoms[key] = (geom, ctypes.addressof(geom), ho, wo)
        _, gptr, ho, wo = hit
        m = b * ho * wo
        gw = None
        if self.aq and m >= self.g2_min:
            if self.g2 is None:
                self.g2 = _g2_layout(self.lib, self.tensors[0], self.n, self.k, self.fmt)
            gw = None if self.g2 is None else self.g2.data_ptr()
        y = torch.empty((b, self.n, ho, wo), dtype=torch.float32)
        if residual is not None:
            residual = residual.float().expand(b, self.n, ho, wo).contiguous()
        rc = self.lib.lib.tri_conv2d_planned(
            self.args_ptr, gptr, x.data_ptr(), b, None if residual is None else residual.data_ptr(),
            _ACT_CODE[activation], y.data_ptr(), _call_threads(self.env_threads, 0), gw)
        if rc != 0:
            raise MemoryError("tritium: the native ternary conv2d kernel could not allocate its "
                              "buffers")
        return y


def linear_plan(wdata: torch.Tensor, n: int, k: int, fmt: str, scale: torch.Tensor,
                bias: torch.Tensor | None, act_quant: str) -> LinearPlan | None:
    """A :class:`LinearPlan` for a frozen weight on the CPU, or None (no native kernels, or
    tensors the plan cannot take as they are)."""
    if wdata.device.type != "cpu" or scale.device.type != "cpu":
        return None
    if scale.dtype != torch.float32 or not scale.is_contiguous() or (
            bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous()
                                  or bias.device.type != "cpu")):
        return None
    lib = _lib()
    if lib is None:
        return None
    _ensure_valid(lib, wdata, n, k, fmt)
    return LinearPlan(lib, wdata, n, k, fmt, scale, bias, act_quant)


_is_compiling = torch.compiler.is_compiling


def plan_usable(x: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """True when a plan may serve this call: eager mode, no gradient to track, CPU float32."""
    if x.dtype != torch.float32 or x.is_cuda:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(
            t is not None and t.requires_grad for t in others)):
        return False
    return not _is_compiling()


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
    ctx.meta = (n, k, fmt, activation, bias is not None, residual is not None)
    ctx.save_for_backward(x, wdata, scale, bias, residual)


def _backward(ctx, grad):
    x, wdata, scale, bias, residual = ctx.saved_tensors
    n, k, fmt, activation, has_bias, has_res = ctx.meta
    needs = ctx.needs_input_grad
    trits = unpack_ternary(PackedTernary(fmt, wdata, (n, k)))
    with torch.enable_grad():
        xs = x.detach().requires_grad_(needs[0])
        ss = scale.detach().float().requires_grad_(needs[5])
        bs = bias.detach().float().requires_grad_(needs[6]) if has_bias else None
        rs = residual.detach().float().requires_grad_(needs[7]) if has_res else None
        # STE: the int8 activation quantizer is treated as identity in the backward pass.
        y = _reference_linear(xs, trits, ss, bs, rs, activation or None, "none")
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
    if torch.compiler.is_compiling():
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    from tritium.backends.triton import dispatch

    return dispatch.available()


def _check_common(w: PackedTernary, activation: str | None, act_quant: str) -> None:
    if not isinstance(w, PackedTernary):
        raise TypeError(f"w must be a PackedTernary, got {type(w).__name__}")
    if activation not in _ACT_CODE:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of "
            f"{', '.join(repr(a) for a in ACTIVATIONS)}"
        )
    if act_quant not in ACT_QUANT_MODES:
        raise ValueError(f"act_quant must be 'none' or 'int8', got {act_quant!r}")


def _checked_scale_bias(n: int, scale, bias: torch.Tensor | None) -> torch.Tensor:
    """``scale`` as a tensor of 1 or N elements, and ``bias`` of N (or None), else ValueError."""
    if not torch.is_tensor(scale):
        scale = torch.tensor(scale, dtype=torch.float32)
    if scale.numel() not in (1, n):
        raise ValueError(f"scale must have 1 or N={n} elements, got {tuple(scale.shape)}")
    if bias is not None and bias.numel() != n:
        raise ValueError(f"bias must have N={n} elements, got {tuple(bias.shape)}")
    return scale


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
    if grad_needed or torch.compiler.is_compiling():
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
    _ensure_valid(lib, wdata, n, k, fmt)
    x2 = x.float().contiguous()
    plan = LinearPlan(lib, wdata, n, k, fmt, scale.contiguous(), bias, act_quant, config=config)
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
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
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

    With ``act_quant="int8"`` a token is one output position's im2col column of one group.
    """
    _check_common(w, activation, act_quant)
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
    ho = (h + 2 * pd[0] - dl[0] * (kh - 1) - 1) // st[0] + 1
    wo = (wd + 2 * pd[1] - dl[1] * (kw - 1) - 1) // st[1] + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"input {h}x{wd} is too small for kernel {kh}x{kw} with this padding")
    if not torch.is_tensor(scale):
        scale = torch.tensor(scale, dtype=torch.float32)
    scale = scale.reshape(-1)
    if scale.numel() not in (1, o):
        raise ValueError(f"scale must have 1 or O={o} elements, got {tuple(scale.shape)}")
    if x.is_cuda and _use_triton(x, scale, bias, residual):  # GPU: Triton kernels
        from tritium.backends.triton import dispatch

        return dispatch.ternary_conv2d(x, w, (o, ig, kh, kw), scale, bias, st, pd, dl, groups,
                                       activation, act_quant, residual)
    out_dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    xf = x.float()
    if groups == 1 and plan_usable(xf, scale, bias, residual):
        plan = linear_plan(w.data, o, ig * kh * kw, w.format, scale.float().contiguous(),
                           None if bias is None else bias.float().reshape(-1).contiguous(),
                           act_quant)
        if plan is not None:
            return plan.conv2d(xf.contiguous(), (kh, kw), st, pd, dl, activation,
                               residual).to(out_dtype)
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
        y = yi * s.transpose(2, 3)
    else:
        y = torch.einsum("bgkl,gok->bgol", colg, trits)
    y = y.reshape(b, o, ho, wo) * scale.float().reshape(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.float().reshape(1, o, 1, 1)
    if residual is not None:
        y = y + residual.float()
    return _apply_activation(y, activation).to(out_dtype)
