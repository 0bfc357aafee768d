"""CPU feature detection and the choice of kernel ISA path.

The kernels ship three specializations of one C source: ``avx512`` (AVX-512 BW/VL with
VNNI), ``avx2`` (AVX2 + FMA) and ``scalar`` (portable C; also what ARM machines build).
``$TRITIUM_CPU_ISA`` forces one of them (tests use ``scalar`` to exercise the portable path on
an x86 machine); a forced path the CPU cannot run falls back to the best one it can.
"""

from __future__ import annotations

import functools
import os
import platform
import warnings

# The compiler flags of each path; the C source picks its code by the TRI_ISA_* macro.
ISA_FLAGS: dict[str, tuple[str, ...]] = {
    "avx512": ("-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"),
    "avx2": ("-mavx2", "-mfma"),
    "scalar": (),
}

# CPU flags (as spelled in /proc/cpuinfo) each path needs.
ISA_REQUIRES: dict[str, tuple[str, ...]] = {
    "avx512": ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"),
    "avx2": ("avx2", "fma"),
    "scalar": (),
}

ISA_ORDER: tuple[str, ...] = ("avx512", "avx2", "scalar")

# Extensions a path uses when the CPU has them (the C source tests the compiler's macros).
ISA_OPTIONAL: dict[str, tuple[tuple[str, str], ...]] = {
    "avx512": (("avx512vbmi", "-mavx512vbmi"),),  # t1.6 decode by byte-table lookups
}


def optional_flags(isa: str, flags: frozenset[str] | None = None) -> list[str]:
    flags = cpu_flags() if flags is None else flags
    return [flag for cpu, flag in ISA_OPTIONAL.get(isa, ()) if cpu in flags]


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where that file is absent)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def supported_isas(flags: frozenset[str] | None = None) -> list[str]:
    """ISA paths this CPU can run, best first (always ends with ``scalar``)."""
    flags = cpu_flags() if flags is None else flags
    is_x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
    out = []
    for isa in ISA_ORDER:
        needs = ISA_REQUIRES[isa]
        if needs and not is_x86:
            continue
        if all(f in flags for f in needs):
            out.append(isa)
    return out


def select_isa(requested: str | None = None) -> str:
    """The path to build: ``requested``, else ``$TRITIUM_CPU_ISA``, else the best supported."""
    want = requested or os.environ.get("TRITIUM_CPU_ISA") or ""
    want = want.strip().lower()
    available = supported_isas()
    if not want or want in ("auto", "native"):
        return available[0]
    if want not in ISA_FLAGS:
        warnings.warn(
            f"TRITIUM_CPU_ISA={want!r} is not one of {', '.join(ISA_ORDER)}; using {available[0]}",
            RuntimeWarning,
            stacklevel=3,
        )
        return available[0]
    if want not in available:
        warnings.warn(
            f"this CPU cannot run the {want} kernels; using {available[0]}",
            RuntimeWarning,
            stacklevel=3,
        )
        return available[0]
    return want
