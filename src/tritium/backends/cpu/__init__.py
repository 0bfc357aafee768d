"""The CPU kernel backend: C sources specialized per ISA, built at first use, loaded with ctypes.

``load()`` returns a :class:`NativeLibrary` (or ``None`` when the kernels are disabled with
``$TRITIUM_DISABLE_NATIVE=1``, there is no C compiler, or the build fails; one warning per
process says so and the runtime falls back to pure PyTorch). The result is cached per
(ISA, compiler, cache dir) so tests may switch ``$TRITIUM_CPU_ISA`` within one process.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from tritium.backends.cpu import build as _build
from tritium.backends.cpu import isa as isa_mod
from tritium.backends.cpu.build import BuildError, BuiltKernel, KernelConfig, render_source
from tritium.backends.cpu.pycall import Calls

__all__ = [
    "BuildError",
    "KernelConfig",
    "NativeLibrary",
    "load",
    "load_error",
    "render_source",
]

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_I = ctypes.c_int

ABI_VERSION = 11


# The counters of the kernels' thread pool, in the order tri_pool_stats writes them:
# calls asking for more than one thread; of which ran in parallel; got fewer threads because
# of a back-off; ran serially because another call owned the team; stalled (the caller waited
# for a thread that was not scheduled); total and longest wait of callers for their team; the
# team cap of the back-off in progress (0: none) and its remaining time; the length of the
# current (or last) back-off; the team of the last parallel call; whether adaptation and debug
# reports are on; the capped calls the back-off still lasts for and its total; stalls in a row;
# stalls taken for lone hiccups (short, none among the last calls: no back-off).
POOL_STATS = ("calls", "parallel", "capped", "busy", "stalls", "wait_ns", "max_wait_ns", "cap",
              "backoff_left_ns", "backoff_ns", "last_team", "adaptive", "debug",
              "backoff_calls_left", "backoff_calls", "streak", "lone")


class LinearPlanArgs(ctypes.Structure):
    """``TriLinearPlan`` of tritium_kernels.h: a frozen layer's constant arguments of
    ``tri_linear``, passed to ``tri_linear_planned`` by address."""

    _fields_ = [("w", ctypes.c_void_p), ("k", ctypes.c_int64), ("n", ctypes.c_int64),
                ("row_bytes", ctypes.c_int64), ("scale", ctypes.c_void_p),
                ("nscale", ctypes.c_int64), ("bias", ctypes.c_void_p),
                ("fmt", ctypes.c_int32), ("act_quant", ctypes.c_int32)]


class ChainPlanArgs(ctypes.Structure):
    """``TriChainPlan`` of tritium_kernels.h: consecutive frozen linear layers (an array of
    ``TriLinearPlan``), the activation each applies and, optionally, each one's thread cap,
    for ``tri_chain_planned``."""

    _fields_ = [("nlayers", ctypes.c_int64), ("layers", ctypes.c_void_p),
                ("acts", ctypes.c_void_p), ("max_n", ctypes.c_int64),
                ("caps", ctypes.c_void_p)]


class ConvGeomArgs(ctypes.Structure):
    """``TriConvGeom`` of tritium_kernels.h: the geometry of a conv2d for
    ``tri_conv2d_planned``."""

    _fields_ = [(f, ctypes.c_int64) for f in
                ("c", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "ho", "wo",
                 "groups")]


POOL_MAX, POOL_AVG = 0, 1   # TriPoolGeom.kind


class PoolGeomArgs(ctypes.Structure):
    """``TriPoolGeom`` of tritium_kernels.h: a max or average pooling window on NCHW planes,
    for ``tri_pool2d`` and ``tri_conv2d_pool_planned``."""

    _fields_ = [(f, ctypes.c_int64) for f in
                ("kind", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "ho", "wo",
                 "count_include_pad", "divisor")]


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class NativeLibrary:
    """A loaded kernel binary: ``lib`` its typed ctypes entry points, ``call`` the per-call
    ones (:data:`pycall.FAST_ENTRY_POINTS`) through the fast-call module where it builds
    (:mod:`tritium.backends.cpu.pycall`). Both release the GIL during a call."""

    lib: ctypes.CDLL
    built: BuiltKernel
    call: Calls

    @property
    def isa(self) -> str:
        return self.built.config.isa

    @property
    def path(self) -> Path:
        return self.built.path

    @property
    def pool(self) -> str:
        """The thread pool the binary parallelizes with: ``"openmp"`` or ``"pthread"``."""
        return self.lib.tri_pool().decode()

    @property
    def omp_library(self) -> str | None:
        """The OpenMP runtime file the kernels are bound to (None for the pthread pool).

        After ``import torch`` this is PyTorch's own ``libgomp.so.1``: the kernels and
        torch's ops then run on one shared team of worker threads.
        """
        path = self.lib.tri_omp_library().decode()
        return os.path.realpath(path) if path else None

    def pool_stats(self) -> dict[str, int]:
        """The thread pool's counters since the library was loaded (or last configured): see
        :data:`POOL_STATS` and ``csrc/tritium_pool.h``."""
        buf = (ctypes.c_int64 * len(POOL_STATS))()
        self.lib.tri_pool_stats(buf, len(POOL_STATS))
        return dict(zip(POOL_STATS, buf, strict=True))

    def configure_pool(self, adaptive: bool | None = None, debug: bool | None = None) -> None:
        """Turn the team-size adaptation and the stderr reports on or off (None keeps a
        setting); clears the counters and any back-off in progress."""
        self.lib.tri_pool_configure(-1 if adaptive is None else int(bool(adaptive)),
                                    -1 if debug is None else int(bool(debug)))

    @property
    def threading(self) -> str:
        if self.pool == "openmp":
            return f"OpenMP team ({self.omp_library or 'unknown runtime'}), work claiming"
        return "pthread work-claiming pool"


def _bind(lib: ctypes.CDLL) -> None:
    sigs = {
        "tri_isa": (ctypes.c_char_p, []),
        "tri_abi_version": (_I, []),
        "tri_pool": (ctypes.c_char_p, []),
        "tri_omp_library": (ctypes.c_char_p, []),
        "tri_pool_threads": (_I, [_I, _I]),
        "tri_pool_configure": (None, [_I, _I]),
        "tri_pool_stats": (_I, [_P, _I]),
        "tri_pool_stall_probe": (_I, [_I, _I]),
        "tri_pool_spin": (_I, [_I, _I]),
        "tri_pack": (_I64, [_I, _P, _I64, _I64, _P, _I64, _I]),
        "tri_pack_f32": (_I64, [_I, _P, _I64, _I64, _P, _I64, _I]),
        "tri_unpack": (_I64, [_I, _P, _I64, _I64, _I64, _P, _I]),
        "tri_linear": (_I, [_P, _I64, _I64, _P, _I64, _I64, _I, _P, _I64, _P, _P, _I, _I, _P, _I,
                            _P]),
        "tri_linear_planned": (_I, [_P, _P, _I64, _P, _I, _P, _I, _P]),
        "tri_conv2d_planned": (_I, [_P, _P, _P, _I64, _P, _I, _P, _I, _P]),
        "tri_conv2d_pool_planned": (_I, [_P, _P, _P, _I64, _P, _I, _P, _P, _I, _P]),
        "tri_pool2d": (_I, [_P, _P, _I64, _P, _I]),
        "tri_conv2d_f32": (_I, [_P, _P, _P, _I64, _P, _P, _I64, _P, _I, _P, _P, _I]),
        "tri_conv_panel_bytes": (_I64, [_P, _P]),
        "tri_conv_panel_pack": (_I, [_P, _P]),
        "tri_conv8_bytes": (_I64, [_P, _P]),
        "tri_conv8_pack": (_I, [_P, _P, _P]),
        "tri_chain_planned": (_I, [_P, _P, _I64, _P, _I, _P]),
        "tri_g2_bytes": (_I64, [_I, _I64, _I64]),
        "tri_g2_pack": (_I, [_I, _P, _I64, _I64, _I64, _P, _I]),
        "tri_gemm_i8": (_I, [_P, _I64, _I64, _P, _I64, _I64, _I, _P, _I]),
        "tri_quantize_rows": (None, [_P, _I64, _I64, _P, _P, _I]),
        "tri_i8_bytes": (_I64, [_I64, _I64]),
        "tri_i8_pack": (_I, [_P, _I64, _I64, _P, _P]),
        "tri_i8_linear": (_I, [_P, _I64, _I64, _P, _I64, _P, _P, _P, _P, _I]),
        "tri_i8_gemm": (_I, [_P, _I64, _I64, _P, _I64, _P, _P, _I]),
        "tri_rms_linear_planned": (_I, [_P, _P, _I64, ctypes.c_float, _I, _P, _I, _P]),
        "tri_rms_multi_planned": (_I, [_P, _I64, _P, _I64, ctypes.c_float, _P, _I]),
        "tri_lm_block_workspace": (_I64, [_P, _I64]),
        "tri_lm_block_decode": (_I, [_P, _P, _P, _P, _P, _P, _P, _I64, _I64, _P, _I]),
        "tri_lm_block_prefill": (_I, [_P, _P, _P, _I64, _P, _P, _P, _P, _I64, _I64, _P, _I]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


_lock = threading.Lock()
_loaded: dict[tuple, NativeLibrary | None] = {}
_errors: dict[tuple, str] = {}
_warned = False


def _disabled() -> bool:
    return os.environ.get("TRITIUM_DISABLE_NATIVE", "").strip().lower() in ("1", "true", "yes", "on")


def process_pool() -> str | None:
    """The thread pool this process's default kernels run on (``select_pool``'s, or pthread
    where OpenMP did not build), None without native kernels: the one every layer without a
    tuned config shares (``tritium.runtime.tuned.foreign_pool``)."""
    lib = load()
    return None if lib is None else lib.pool


def select_pool() -> str:
    """The thread pool of the default library: ``$TRITIUM_CPU_POOL`` (``openmp`` or
    ``pthread``), else ``openmp``. An unknown value warns and uses ``openmp``."""
    want = os.environ.get("TRITIUM_CPU_POOL", "").strip().lower()
    if not want:
        return "openmp"
    if want not in _build.POOLS:
        warnings.warn(f"TRITIUM_CPU_POOL={want!r} is not one of {', '.join(_build.POOLS)}; "
                      "using openmp", RuntimeWarning, stacklevel=4)
        return "openmp"
    return want


def _key(isa: str | None, config: KernelConfig | None = None) -> tuple:
    return (
        _disabled(),
        isa or os.environ.get("TRITIUM_CPU_ISA", ""),
        os.environ.get("TRITIUM_CPU_MAX_ISA", ""),
        os.environ.get("TRITIUM_CPU_POOL", "") if config is None else "",
        os.environ.get("CC", ""),
        os.environ.get("TRITIUM_CACHE_DIR", ""),
        os.environ.get("TRITIUM_CPU_CALLS", ""),
        None if config is None else config.build_config(),
    )


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def load(isa: str | None = None, config: KernelConfig | None = None) -> NativeLibrary | None:
    """The kernel library for ``isa`` (default: ``$TRITIUM_CPU_ISA`` or the best supported).

    With ``config`` the library is that specialization (``config.isa`` is used as it is: a
    path this CPU cannot run is a load failure, not a silent substitute; ``isa``, if given,
    must agree). Each specialization is its own cached shared object, loaded once per
    process. Failures return None (with the reason in :func:`load_error`); the default
    library warns once per process, a tuned config does not (its caller falls back).
    """
    if config is not None:
        if not isinstance(config, KernelConfig):
            raise TypeError(f"config must be a KernelConfig, got {type(config).__name__}")
        if isa is not None and isa != config.isa:
            raise ValueError(f"isa={isa!r} disagrees with config.isa={config.isa!r}")
        isa = config.isa
    key = _key(isa, config)
    try:
        return _loaded[key]
    except KeyError:
        pass
    with _lock:
        if key in _loaded:
            return _loaded[key]
        result: NativeLibrary | None = None
        if key[0]:
            _errors[key] = "native kernels disabled by TRITIUM_DISABLE_NATIVE"
            if config is None:
                _warn_once(
                    "tritium: native CPU kernels disabled by TRITIUM_DISABLE_NATIVE; "
                    "using the pure-PyTorch path (correct, slower)"
                )
        elif config is not None:
            try:
                if config.isa not in isa_mod.supported_isas():
                    raise BuildError(f"this CPU cannot run the {config.isa} kernels")
                result = _build_and_load(config.build_config())
            except (BuildError, OSError, AttributeError) as exc:
                _errors[key] = str(exc)
        else:
            try:
                result = _build_and_load(KernelConfig(isa=isa_mod.select_isa(isa),
                                                      pool=select_pool()))
                if result.built.pool_fallback:
                    _warn_once(f"tritium: {result.built.pool_fallback}")
            except (BuildError, OSError, AttributeError) as exc:
                _errors[key] = str(exc)
                _warn_once(
                    "tritium: could not build the native CPU kernels, using the pure-PyTorch "
                    f"path (correct, slower). Reason: {exc}"
                )
        if result is not None and result.built.pool_fallback:
            _errors[key] = result.built.pool_fallback
        _loaded[key] = result
        return result


def _build_and_load(config: KernelConfig) -> NativeLibrary:
    built = _build.build(config)
    try:
        lib = ctypes.CDLL(str(built.path))
        _bind(lib)
    except (OSError, AttributeError):
        # A damaged cached binary that still matched its hash is unlikely; rebuild once anyway.
        built.path.unlink(missing_ok=True)
        built = _build.build(config)
        lib = ctypes.CDLL(str(built.path))
        _bind(lib)
    if lib.tri_abi_version() != ABI_VERSION:
        raise BuildError(f"kernel ABI {lib.tri_abi_version()} != expected {ABI_VERSION}")
    lib.tri_pool_configure(int(_env_flag("TRITIUM_POOL_ADAPTIVE", True)),
                           int(_env_flag("TRITIUM_POOL_DEBUG", False)))
    return NativeLibrary(lib, built, Calls(lib))


def load_error(config: KernelConfig | None = None) -> str | None:
    """Why the last ``load()`` (of ``config``) with the current environment returned None, or
    why a library it returned runs the pthread pool instead of the requested OpenMP one."""
    return _errors.get(_key(config.isa if config is not None else None, config))
