"""A frozen layer's native call, resolved once: :class:`LinearPlan` (and its conv2d entry),
and the kernel configs chosen per problem (the autotuner's hook, ``set_config_resolver``).

A plan holds everything a call of ``tri_linear_planned``/``tri_conv2d_planned`` needs but the
input: the kernel function, the weight/scale/bias pointers converted to C once, the format,
the thread count rule and the int8 GEMM's weight layout. Chains of frozen layers run through
several plans in one native call (:mod:`tritium.runtime.chain`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu.build import KernelConfig
from tritium.runtime import tuned
from tritium.runtime.capture import capturing
from tritium.runtime.native import (
    _ACT_CODE,
    _checked_scale_bias,
    _ensure_valid,
    _g2_layout,
    _g2_min_m,
    _lib,
)
from tritium.runtime.packing import FORMAT_CODE, num_threads

ConfigResolver = Callable[[int, int, int, str, str, str], "KernelConfig | None"]

_RESOLVER: ConfigResolver | None = None
_RESOLVER_GENERATION = 0  # bumped by set_config_resolver: plans drop the answers they kept
# (m bucket, n, k, fmt, act_quant, isa) -> (tri_linear_planned, thread cap, G2 minimum batch,
# library) of the chosen config
_RESOLVED: dict[tuple, tuple[Any, int, int, Any]] = {}
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
             ) -> tuple[Any, int, int, Any]:
    """The (tri_linear_planned, thread cap, G2 minimum batch, library) to run for this
    problem: the resolver's config or the default (cap 0: the user's thread count). A tuned
    thread count only ever lowers the user's: it is a cap, never an override."""
    key = (m_bucket(m), n, k, fmt, act_quant, default_lib.isa)
    hit = _RESOLVED.get(key)
    if hit is not None:
        return hit
    choice = (default_lib.call.tri_linear_planned, 0, _g2_min_m(default_lib), default_lib)
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
                choice = (lib.call.tri_linear_planned, config.threads, _g2_min_m(lib), lib)
                if _RESOLVER is resolver:
                    _TUNED_USED[key] = config
    if _RESOLVER is resolver:
        _RESOLVED[key] = choice
    return choice


def _dropped() -> None:
    """What a copied or unpickled plan becomes: nothing (its holder builds its own)."""
    return None


def tensor_stamp(wdata: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> tuple:
    """What a plan built on these tensors depends on besides their identity: their version
    counters (in-place changes) and data pointers (``t.data = other`` swaps the storage of the
    same tensor object without touching its version: a plan holding the old pointer would
    read freed memory)."""
    return (wdata._version, scale._version, None if bias is None else bias._version,
            wdata.data_ptr(), scale.data_ptr(), None if bias is None else bias.data_ptr())


def stamp_holds(stamp: tuple, wdata: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None) -> bool:
    """``stamp == tensor_stamp(wdata, scale, bias)`` without building the tuple, stopping at
    the first difference (what every frozen layer's call checks: the tuple and the comparison
    of six values cost as much as reading them)."""
    vw, vs, vb, pw, ps, pb = stamp
    return (wdata._version == vw and scale._version == vs and wdata.data_ptr() == pw
            and scale.data_ptr() == ps
            and (bias is None or bias._version == vb and bias.data_ptr() == pb))


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
                 "geoms", "cpanel")

    def __init__(self, lib, wdata: torch.Tensor, n: int, k: int, fmt: str, scale: torch.Tensor,
                 bias: torch.Tensor | None, act_quant: str,
                 config: KernelConfig | None = None) -> None:
        self.lib = lib
        self.fn = lib.call.tri_linear_planned
        self.n, self.k, self.fmt = n, k, fmt
        # 1: int8 per token (per patch in a conv); 2: int8 per sample (convs, "int8_image")
        self.aq = {"int8": 1, "int8_image": 2}.get(act_quant, 0)
        self.act_quant = act_quant
        self.tensors = (wdata, scale, bias)
        self.versions = tensor_stamp(wdata, scale, bias)
        # the constant arguments, converted to C once (the tensors above keep them alive)
        self.args = cpu_backend.LinearPlanArgs(
            w=wdata.data_ptr(), k=k, n=n, row_bytes=wdata.shape[1], scale=scale.data_ptr(),
            nscale=scale.numel(), bias=None if bias is None else bias.data_ptr(),
            fmt=FORMAT_CODE[fmt], act_quant=self.aq)
        self.args_ptr = ctypes.addressof(self.args)
        self.fixed = config is not None
        self.g2_min = _g2_min_m(lib) if self.aq == 1 else 1 << 62
        self.g2: torch.Tensor | None = None
        self.resolved: dict[int, tuple] = {}
        self.env_threads = (config.threads if config is not None and config.threads
                            else _default_threads())
        self.geoms: dict[tuple, tuple] = {}   # conv2d: (input C, H, W, conv params) -> geometry
        # conv2d, fp32: the panel layout; int8_image: tri_conv8_pack's layout (made once: it
        # depends on the weight's C, kh and kw only, fixed for a layer)
        self.cpanel: torch.Tensor | None = None

    def __reduce__(self):
        # ctypes pointers into the original's tensors: a copy (a deepcopy that bypasses the
        # layer's __getstate__, as a parametrized module's does) gets no plan
        return (_dropped, ())

    def valid_for(self, wdata: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None
                  ) -> bool:
        w0, s0, b0 = self.tensors
        return (w0 is wdata and s0 is scale and b0 is bias
                and stamp_holds(self.versions, wdata, scale, bias))

    def _choice(self, m: int) -> tuple[Any, int, int]:
        """(kernel function, threads, G2 minimum batch) of a call with ``m`` rows: the
        default kernels, or the resolver's answer for this batch size, kept by the plan until
        the resolver changes (a per-call lookup would cost more than a small layer's kernel)."""
        if _RESOLVER is None or self.fixed:
            return self.fn, _call_threads(self.env_threads, 0), self.g2_min
        hit = self.resolved.get(m)
        if hit is None or hit[0] != _RESOLVER_GENERATION:
            hit = (_RESOLVER_GENERATION,
                   *_resolve(self.lib, m, self.n, self.k, self.fmt, self.act_quant))
            self.resolved[m] = hit
        _, fn, cap, g2_min, _ = hit
        return fn, _call_threads(self.env_threads, cap), g2_min

    def chain_choice(self, m: int) -> tuple[Any, int, int]:
        """(library, thread cap, G2 minimum batch) of a call with ``m`` rows, what
        :meth:`run` picks, for a native chain of layers (``tri_chain_planned`` of that
        library); the cap is 0 when the user's thread count runs."""
        if _RESOLVER is None or self.fixed:
            return self.lib, 0, self.g2_min
        self._choice(m)
        _, _, cap, g2_min, lib = self.resolved[m]
        return lib, cap, g2_min if self.aq == 1 else 1 << 62

    def runs_default(self, m: int) -> bool:
        """Whether a call with ``m`` rows runs this plan's own kernels on the user's threads
        (no resolver, a fixed config, or the resolver's answer is the default kernels): what a
        fused native call of several layers may run in its place."""
        if _RESOLVER is None or self.fixed:
            return True
        lib, cap, _ = self.chain_choice(m)
        return not cap and lib.lib._handle == self.lib.lib._handle

    def run(self, x2: torch.Tensor, act_code: int) -> torch.Tensor:
        """A frozen layer's call, the lean way: ``x2`` a contiguous float32 [M, K], no
        residual, ``act_code`` the kernels' activation code; the default kernels unless a
        resolver is installed (then the config it picked for this batch size, kept by the
        plan: the tuned path costs what the default one does)."""
        m = x2.shape[0]
        threads = self.env_threads or torch.get_num_threads()
        if _RESOLVER is None or self.fixed:   # the common case, without a method call
            fn, g2_min = self.fn, self.g2_min
        else:
            # _choice inlined: the tuned path must cost what the default one does
            hit = self.resolved.get(m)
            if hit is None or hit[0] != _RESOLVER_GENERATION:
                self._choice(m)
                hit = self.resolved[m]
            _, fn, cap, g2_min, _ = hit
            if cap and cap < threads:
                threads = cap
        gw = None
        if self.aq and m >= g2_min:
            if self.g2 is None:
                self.g2 = _g2_layout(self.lib, self.tensors[0], self.n, self.k, self.fmt)
            gw = None if self.g2 is None else self.g2.data_ptr()
        y = x2.new(m, self.n)
        if fn(self.args_ptr, x2.data_ptr(), m, None, act_code, y.data_ptr(), threads, gw):
            raise MemoryError("tritium: the native ternary_linear kernel could not allocate "
                              "its buffers")
        return y

    def __call__(self, x2: torch.Tensor, activation: str | None,
                 residual: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
        """``x2`` is a contiguous float32 [M, K]; the result is written to ``out`` (a contiguous
        float32 [M, N] on the CPU, what a tuner poisons before each run) or a new tensor."""
        m = x2.shape[0]
        # (is_cpu and torch.Size == tuple: 0.3 us where device.type and tuple(shape) took 0.75)
        if out is not None and (out.dtype is not torch.float32 or not out.is_cpu
                                or out.shape != (m, self.n) or not out.is_contiguous()):
            raise ValueError(f"out must be a contiguous float32 CPU tensor of shape {(m, self.n)}, "
                             f"got {out.dtype} {tuple(out.shape)} on {out.device}")
        fn, threads, g2_min = self._choice(m)
        gw = None
        if self.aq and m >= g2_min:
            if self.g2 is None:
                self.g2 = _g2_layout(self.lib, self.tensors[0], self.n, self.k, self.fmt)
            gw = None if self.g2 is None else self.g2.data_ptr()
        # x2.new: an uninitialized float32 CPU tensor, half the cost of torch.empty(dtype=)
        y = x2.new(m, self.n) if out is None else out
        rc = fn(self.args_ptr, x2.data_ptr(), m,
                None if residual is None else residual.data_ptr(), _ACT_CODE[activation],
                y.data_ptr(), threads, gw)
        if rc != 0:
            raise MemoryError("tritium: the native ternary_linear kernel could not allocate "
                              "its buffers")
        return y


    def conv2d(self, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], dilation: tuple[int, int], activation: str | None,
               residual: torch.Tensor | None, pool: PoolPlan | None = None,
               groups: int = 1, out: torch.Tensor | None = None) -> torch.Tensor | None:
        """A conv2d with groups = 1 in one native call (`tri_conv2d_planned`): ``x`` is a
        contiguous float32 NCHW tensor, the weight this plan's (O, C*kh*kw); returns NCHW.
        The patches are gathered (and, in int8 mode, quantized one by one) in C, the result
        written as NCHW with the residual and activation fused. The default kernels run (a
        tuned linear config is measured for a linear layer's rows, not for a patch gather).
        With ``pool`` the pooling module it stands for runs on the result in the same call
        (`tri_conv2d_pool_planned`), or after it when the native pooling does not take it.
        ``groups`` > 1 (the weight then (O, C/groups*kh*kw)) runs natively only with float
        activations (the flat conv); otherwise, and for an input the conv does not fit, None
        is returned and the caller takes the general path. ``out``, when it is a contiguous float32 CPU tensor of the result's
        shape (pooling aside), receives the result in place of a new tensor."""
        b, c, h, w = x.shape
        key = (c, h, w, kernel, stride, padding, dilation, groups)
        hit = self.geoms.get(key)
        if hit is None:
            kh, kw = kernel
            ho, wo = conv_out_size(h, w, kernel, stride, padding, dilation)
            if ho <= 0 or wo <= 0 or c % groups or self.n % groups \
                    or c // groups * kh * kw != self.k:
                return None   # the caller's general path raises its error, naming the problem
            geom = cpu_backend.ConvGeomArgs(c, h, w, kh, kw, *stride, *padding, *dilation, ho, wo,
                                            groups)
            gptr = ctypes.addressof(geom)
            # fp32 activations: whether the kernels want the weight's panel layout here;
            # int8_image: the size of its own layout (0 for a geometry it does not take)
            if self.aq == 2:
                panel = self.lib.lib.tri_conv8_bytes(self.args_ptr, gptr)
            else:
                panel = 0 if self.aq else self.lib.lib.tri_conv_panel_bytes(self.args_ptr, gptr)
            hit = self.geoms[key] = (geom, gptr, ho, wo, panel)
        _, gptr, ho, wo, panel = hit
        m = b * ho * wo
        gw = None
        if self.aq == 2:
            if not panel:   # a grouped int8_image conv: the caller's PyTorch path
                return None
            gw = self._conv_panel(panel, gptr)
        elif self.aq and groups == 1 and m >= self.g2_min:
            if self.g2 is None:
                self.g2 = _g2_layout(self.lib, self.tensors[0], self.n, self.k, self.fmt)
            gw = None if self.g2 is None else self.g2.data_ptr()
        elif panel:
            gw = self._conv_panel(panel, gptr)
        if residual is not None:
            residual = residual.float().expand(b, self.n, ho, wo).contiguous()
        rptr = None if residual is None else residual.data_ptr()
        if pool is not None:
            pg = pool.geom(ho, wo)
            if pg is None:   # a window the native pooling does not take: the module's forward
                y = self.conv2d(x, kernel, stride, padding, dilation, activation, residual,
                                None, groups)
                return None if y is None else pool.module(y)
            y = x.new(b, self.n, pg[2], pg[3])
            rc = self.lib.call.tri_conv2d_pool_planned(
                self.args_ptr, gptr, x.data_ptr(), b, rptr, _ACT_CODE[activation], pg[1],
                y.data_ptr(), _call_threads(self.env_threads, 0), gw)
        else:
            y = out if out is not None and out.shape == (b, self.n, ho, wo) \
                and out.dtype == torch.float32 and out.device.type == "cpu" \
                and out.is_contiguous() else x.new(b, self.n, ho, wo)
            rc = self.lib.call.tri_conv2d_planned(
                self.args_ptr, gptr, x.data_ptr(), b, rptr, _ACT_CODE[activation],
                y.data_ptr(), _call_threads(self.env_threads, 0), gw)
        if rc == 3:   # a grouped conv the native kernels do not take
            return None
        if rc != 0:
            raise MemoryError("tritium: the native ternary conv2d kernel could not allocate its "
                              "buffers")
        return y


    def _conv_panel(self, nbytes: int, gptr: int) -> int:
        """The address of the weight's layout for the implicit-GEMM convs, made on the first
        call that wants it and kept with the plan (a changed weight rebuilds the plan, so the
        layout too): with fp32 activations `tri_conv_panel_pack`'s (int8 trits, k-major, in
        panels of output channels), in int8_image mode `tri_conv8_pack`'s (trits in panels of
        16 channels x 4 input channels per tap, then the channels' trit sums)."""
        if self.cpanel is None or self.cpanel.numel() != nbytes:
            out = torch.empty(nbytes, dtype=torch.int8)
            rc = (self.lib.lib.tri_conv8_pack(self.args_ptr, gptr, out.data_ptr()) if self.aq == 2
                  else self.lib.lib.tri_conv_panel_pack(self.args_ptr, out.data_ptr()))
            if rc:
                raise MemoryError("tritium: could not allocate the conv's weight layout")
            self.cpanel = out
        return self.cpanel.data_ptr()


def _pool_params(mod: torch.nn.Module) -> tuple | None:
    """The window of a pooling module the native pooling computes as torch does (exactly an
    ``nn.MaxPool2d`` without indices or an ``nn.AvgPool2d``), as (kind, kernel, stride,
    padding, dilation, ceil_mode, count_include_pad, divisor); None for any other module."""
    cls = type(mod)
    if cls is torch.nn.MaxPool2d:
        if mod.return_indices:
            return None
        return (cpu_backend.POOL_MAX, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                bool(mod.ceil_mode), True, None)
    if cls is torch.nn.AvgPool2d:
        return (cpu_backend.POOL_AVG, mod.kernel_size, mod.stride, mod.padding, 1,
                bool(mod.ceil_mode), bool(mod.count_include_pad), mod.divisor_override)
    return None


def _two(v: Any) -> tuple[int, int] | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, tuple | list) and len(v) in (1, 2) and all(
            isinstance(e, int) and not isinstance(e, bool) for e in v):
        return (v[0], v[-1])
    return None


def pool_plan(mod: torch.nn.Module) -> PoolPlan | None:
    """A :class:`PoolPlan` for ``mod`` when it is a pooling module the native kernels compute
    (see :func:`_pool_params`) and native kernels exist, else None."""
    if _pool_params(mod) is None or _lib() is None:
        return None
    return PoolPlan(mod)


class PoolPlan:
    """A 2-D max or average pooling module run natively on float32 NCHW input
    (``tri_pool2d``), alone or fused after a frozen conv (:meth:`LinearPlan.conv2d`): the
    same window walk as ATen's CPU kernels, so the same values bit for bit. The module's
    parameters are read at every call (a module changed in place is followed); the output
    size is torch's own (its shape function on a meta tensor); a window torch rejects, or one
    the native pooling does not take, runs the module's forward (its error, its result)."""

    __slots__ = ("module", "lib", "geoms", "env_threads")

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.lib = _lib()
        self.geoms: dict[tuple, tuple | None] = {}
        self.env_threads = _default_threads()

    def geom(self, h: int, w: int) -> tuple | None:
        """(the TriPoolGeom, its address, ho, wo) for an h x w input plane, or None."""
        params = _pool_params(self.module)
        if params is None:
            return None
        key = (params, h, w)
        try:
            return self.geoms[key]
        except KeyError:
            pass
        except TypeError:   # unhashable parameters: not a window torch takes as they are
            return None
        hit = None
        kind, kernel, stride, padding, dilation, ceil, cip, divisor = params
        k2, p2, d2 = _two(kernel), _two(padding), _two(dilation)
        s2 = k2 if stride is None or stride == () or stride == [] else _two(stride)
        if None not in (k2, s2, p2, d2) and (divisor is None or isinstance(divisor, int)):
            meta = torch.empty(1, 1, h, w, device="meta")
            try:
                if kind == cpu_backend.POOL_MAX:
                    out = torch.nn.functional.max_pool2d(meta, kernel, stride, padding, dilation,
                                                         ceil)
                else:
                    out = torch.nn.functional.avg_pool2d(meta, kernel, stride, padding, ceil, cip,
                                                         divisor)
            except (RuntimeError, ValueError, TypeError):
                out = None
            if out is not None and out.shape[2] > 0 and out.shape[3] > 0 and min(
                    *k2, *s2, *d2) > 0 and min(p2) >= 0:
                ho, wo = int(out.shape[2]), int(out.shape[3])
                g = cpu_backend.PoolGeomArgs(kind, h, w, *k2, *s2, *p2, *d2, ho, wo, int(cip),
                                             int(divisor or 0))
                hit = (g, ctypes.addressof(g), ho, wo)
        self.geoms[key] = hit
        return hit

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The module's result for ``x``; natively for a float32 CPU NCHW tensor that needs
        no gradient."""
        if x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu" or (
                x.requires_grad and torch.is_grad_enabled()) or capturing():
            return self.module(x)
        b, c, h, w = x.shape
        g = self.geom(h, w)
        if g is None or b * c == 0:
            return self.module(x)
        if not x.is_contiguous():
            x = x.contiguous()
        y = x.new(b, c, g[2], g[3])
        if self.lib.call.tri_pool2d(g[1], x.data_ptr(), b * c, y.data_ptr(),
                                   _call_threads(self.env_threads, 0)):
            return self.module(x)
        return y


def _float_conv_params(conv: torch.nn.Module) -> tuple | None:
    """(kernel, stride, padding, dilation) of a plain ``nn.Conv2d`` the native float conv
    computes (zero padding given as numbers, float32 weights on the CPU), else None."""
    if type(conv) is not torch.nn.Conv2d or conv.padding_mode != "zeros":
        return None
    w, b = conv.weight, conv.bias
    if not isinstance(w, torch.Tensor) or w.dtype != torch.float32 or w.device.type != "cpu" \
            or w.dim() != 4 or b is not None and (b.dtype != torch.float32
                                                  or b.device.type != "cpu"):
        return None
    two = [_two(v) for v in (conv.kernel_size, conv.stride, conv.padding, conv.dilation)]
    if None in two or min(*two[0], *two[1], *two[3]) <= 0 or min(two[2]) < 0:
        return None
    return tuple(two)


def _inference_norm(bn: torch.nn.Module | None, channels: int) -> bool:
    """Whether ``bn`` is a 2-D batch norm that normalizes ``channels`` channels with running
    statistics (its inference form, an affine map per channel) in its current mode."""
    return type(bn) is torch.nn.BatchNorm2d and not bn.training \
        and bn.running_mean is not None and bn.running_var is not None \
        and bn.num_features == channels and all(
            t is None or t.dtype == torch.float32 and t.device.type == "cpu"
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))


class FloatConvPlan:
    """A full-precision ``nn.Conv2d``, with the batch norm in inference form, the ``relu`` or
    ``relu6`` and the max/avg pooling that follow it, in one native call (``tri_conv2d_f32``:
    the flat convolution of :meth:`LinearPlan.conv2d` on the model's own float weights). The
    batch norm folds into a factor and a shift per channel applied in the epilogue (computed
    from the modules' current tensors, again whenever one of them changes), the activation is
    exact, the pooling is torch's own bit for bit; the sums run in another order than oneDNN's,
    so the values are the modules' within float rounding (the tests bound it). A call the
    plan does not take (autograd, a batch norm in training mode, a long K on a short plane...)
    returns None: the caller runs the modules."""

    __slots__ = ("conv", "bn", "lib", "env_threads", "key", "folded", "geoms")

    def __init__(self, conv: torch.nn.Module, bn: torch.nn.Module | None) -> None:
        self.conv, self.bn = conv, bn
        self.lib = _lib()
        self.env_threads = _default_threads()
        self.key: tuple | None = None
        self.folded: tuple | None = None
        self.geoms: dict[tuple, tuple | None] = {}

    def _tensors(self) -> tuple:
        conv, bn = self.conv, self.bn
        if bn is None:
            return (conv.weight, conv.bias)
        return (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)

    def _fold(self) -> tuple | None:
        """(weight, scale or None, bias or None), float32 and contiguous, for the modules'
        current tensors; None when a bias or a batch norm tensor is not one value per output
        channel (the modules then raise their error)."""
        tensors = self._tensors()
        # (the data pointer too: ``t.data = other`` changes neither identity nor version)
        key = tuple(None if t is None else (id(t), t._version, t.data_ptr())
                    for t in tensors) + (
            None if self.bn is None else float(self.bn.eps),)
        if key != self.key:
            n = self.conv.out_channels
            if any(t is not None and t.shape != (n,) for t in tensors[1:]):
                self.key, self.folded = key, None
                return None
            with torch.no_grad():
                w = self.conv.weight.detach().contiguous()
                b = self.conv.bias
                b = None if b is None else b.detach().float().contiguous()
                scale = None
                if self.bn is not None:
                    bn = self.bn
                    k = torch.rsqrt(bn.running_var.detach().float() + bn.eps)
                    if bn.weight is not None:
                        k = k * bn.weight.detach().float()
                    shift = -bn.running_mean.detach().float() * k
                    if bn.bias is not None:
                        shift = shift + bn.bias.detach().float()
                    if b is not None:
                        shift = b * k + shift
                    scale, b = k.contiguous(), shift.contiguous()
            self.key, self.folded = key, (w, scale, b)
        return self.folded

    def __call__(self, x: torch.Tensor, activation: str | None,
                 pool: PoolPlan | None) -> torch.Tensor | None:
        conv, bn = self.conv, self.bn
        params = _float_conv_params(conv)
        if params is None or self.lib is None or x.dim() != 4 or x.dtype != torch.float32 \
                or x.device.type != "cpu" or x.shape[1] != conv.in_channels or capturing():
            return None
        if bn is not None and not _inference_norm(bn, conv.out_channels):
            return None
        if torch.is_grad_enabled() and (x.requires_grad or any(
                t is not None and t.requires_grad for t in self._tensors())):
            return None
        kernel, stride, padding, dilation = params
        b, c, h, w = x.shape
        n, groups = conv.out_channels, conv.groups
        # (the weight's shape too: a weight replaced by one of another kernel size is what
        # torch's conv follows, not the module's kernel_size)
        key = (c, h, w, params, groups, n, conv.weight.shape)
        hit = self.geoms.get(key, False)
        if hit is False:
            ho, wo = conv_out_size(h, w, kernel, stride, padding, dilation)
            hit = None
            if ho > 0 and wo > 0 and groups > 0 and c % groups == 0 and n % groups == 0 \
                    and tuple(conv.weight.shape) == (n, c // groups, *kernel):
                g = cpu_backend.ConvGeomArgs(c, h, w, *kernel, *stride, *padding, *dilation,
                                             ho, wo, groups)
                hit = (g, ctypes.addressof(g), ho, wo)
            self.geoms[key] = hit
        if hit is None:
            return None
        _, gptr, ho, wo = hit
        pg = None if pool is None else pool.geom(ho, wo)
        if pool is not None and pg is None:   # a window the native pooling does not take
            y = self(x, activation, None)
            return None if y is None else pool.module(y)
        folded = self._fold()
        if folded is None:
            return None
        wt, scale, bias = folded
        if not x.is_contiguous():
            x = x.contiguous()
        y = x.new(b, n, ho, wo) if pg is None else x.new(b, n, pg[2], pg[3])
        rc = self.lib.call.tri_conv2d_f32(
            wt.data_ptr(), None if scale is None else scale.data_ptr(),
            None if bias is None else bias.data_ptr(), n, gptr, x.data_ptr(), b, None,
            _ACT_CODE[activation], None if pg is None else pg[1], y.data_ptr(),
            _call_threads(self.env_threads, 0))
        if rc == 3:   # a shape the flat conv does not take: torch's conv
            self.geoms[key] = None
            return None
        if rc != 0:
            raise MemoryError("tritium: the native float conv2d could not allocate its buffers")
        return y


def linear_plan(wdata: torch.Tensor, n: int, k: int, fmt: str, scale: torch.Tensor,
                bias: torch.Tensor | None, act_quant: str) -> LinearPlan | None:
    """A :class:`LinearPlan` for a frozen weight on the CPU, or None (no native kernels, or
    tensors the plan cannot take as they are: the kernels read the bytes as N rows of
    ``wdata.shape[1]`` from its data pointer, so a view with other strides, say a buffer
    loaded with ``load_state_dict(assign=True)``, goes the general way). A scale of other
    than 1 or N elements, or a bias of other than N, is a ValueError (the kernels would read
    past them)."""
    if wdata.device.type != "cpu" or scale.device.type != "cpu" or not wdata.is_contiguous():
        return None
    _checked_scale_bias(n, scale, bias)
    if scale.dtype != torch.float32 or not scale.is_contiguous() or (
            bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous()
                                  or bias.device.type != "cpu")):
        return None
    lib = _lib()
    if lib is None:
        return None
    _ensure_valid(lib, wdata, n, k, fmt)
    return LinearPlan(lib, wdata, n, k, fmt, scale, bias, act_quant)


def conv_out_size(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """The output plane (height, width) of a zero-padded 2-D convolution of an h x w input."""
    return ((h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1,
            (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1)


def plan_usable(x: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """True when a plan may serve this call: eager mode, no gradient to track, CPU float32
    (not merely "not CUDA": a meta tensor's data pointer is 0, and the kernels would read it)."""
    if x.dtype != torch.float32 or not x.is_cpu:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(
            t is not None and t.requires_grad for t in others)):
        return False
    return not capturing()

