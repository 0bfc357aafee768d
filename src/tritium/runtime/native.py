"""The native CPU kernels as the runtime sees them: the loaded library, what runs
(``kernel_info``), the once-per-weight checks and layouts every native call shares.

- ``_lib()``: the default kernel binary (:func:`tritium.backends.cpu.load`), or None;
- ``_ensure_valid``: a packed weight's bytes are validated once per tensor version;
- ``_g2_layout``: the int8 GEMM's panel layout of a weight, made on its first use;
- the activation codes of the kernels' fused epilogue (``_ACT_CODE``).

:mod:`tritium.runtime.plan` (a frozen layer's native call) and
:mod:`tritium.runtime.kernels` (the public functions and the custom op) build on it.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import torch

from tritium.backends import cpu as cpu_backend
from tritium.runtime.packing import FORMAT_CODE, PackedTernary, num_threads

ACTIVATIONS: tuple[str | None, ...] = (None, "relu", "relu6", "gelu", "silu", "sigmoid", "tanh")
ACT_QUANT_MODES = ("none", "int8")
_ACT_CODE = {None: 0, "relu": 1, "relu6": 2, "gelu": 3, "silu": 4, "sigmoid": 5, "tanh": 6}

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
    ``$TRITIUM_POOL_DEBUG=1`` reports each back-off on stderr. ``calls`` is how Python calls
    the kernels on each layer call: ``"fast"`` (the CPython fast-call module) or ``"ctypes"``,
    with ``calls_reason`` saying why ctypes (``tritium.backends.cpu.pycall``).
    (``tritium.runtime.kernels.kernel_info`` adds ``tuned_configs``.)
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
        calls=lib.call.mode,
        calls_reason=lib.call.reason or None,
    )

    if lib.pool == "openmp":
        runtimes = openmp_runtimes()
        info.update(omp_library=lib.omp_library, openmp_runtimes=runtimes,
                    omp_shared_with_torch=runtimes == [lib.omp_library])
    return info


def _checked_scale_bias(n: int, scale, bias: torch.Tensor | None,
                        dim: str = "N") -> torch.Tensor:
    """``scale`` as a tensor of 1 or ``n`` elements, and ``bias`` of ``n`` (or None), else
    ValueError (``dim`` names ``n`` in it): what every native call assumes when it reads
    them (a plan reads ``n`` biases and 1 or ``n`` scales)."""
    if not torch.is_tensor(scale):
        scale = torch.tensor(scale, dtype=torch.float32)
    if scale.numel() not in (1, n):
        raise ValueError(f"scale must have 1 or {dim}={n} elements, got {tuple(scale.shape)}")
    if bias is not None and bias.numel() != n:
        raise ValueError(f"bias must have {dim}={n} elements, got {tuple(bias.shape)}")
    return scale


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


# id(data tensor) -> (weakref to it, data_ptr, _version, n, k, fmt, G2 layout, ISA): the int8
# GEMM's 2-bit panel layout of a weight (its own on each ISA path), made once per weight on its
# first batch that uses the GEMM.
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
            and hit[1:6] == (wdata.data_ptr(), wdata._version, n, k, fmt) and hit[7] == lib.isa):
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
                        out, lib.isa)
    return out

