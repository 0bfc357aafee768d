"""CPU feature detection and the choice of kernel ISA path.

The kernels ship four specializations of one C source: ``avx512`` (AVX-512 BW/VL with
VNNI), ``avx2`` (AVX2 + FMA), ``neon`` (aarch64 Advanced SIMD, with the armv8.2 dot product
instructions when the CPU has them) and ``scalar`` (portable C). A path is only offered on the
architecture it is written for (x86-64 or aarch64). ``$TRITIUM_CPU_ISA`` forces one of them
(tests use ``scalar`` to exercise the portable path on an x86 machine); a forced path the CPU
cannot run falls back to the best one it can, with a warning saying why.

``$TRITIUM_CPU_MAX_ISA`` caps what the CPU is taken to have, as if it were a lesser machine of
its architecture: ``avx2`` makes an AVX-512 x86-64 CPU look like an AVX2-only one (Zen 3 class)
by hiding every AVX-512 and AMX flag from :func:`cpu_flags`, so :func:`supported_isas` is
``["avx2", "scalar"]``, the AVX-512 path is never selected (forcing it falls back with a
warning) and no AVX-512 extension (VBMI) is compiled in; ``scalar`` leaves only the portable
path. A cap names a path; it only removes paths of its own architecture ranked above it (an
``avx2`` cap changes nothing on aarch64). ``make test-avx2`` runs the suite under this cap
together with torch's own ISA caps (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``,
``MKL_ENABLE_INSTRUCTIONS``): the arithmetic of an AVX2-only machine on an AVX-512 one.
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
    "neon": ("-march=armv8-a",),  # Advanced SIMD is part of every armv8-a CPU
    "scalar": (),
}

# CPU flags (as spelled in /proc/cpuinfo) each path needs.
ISA_REQUIRES: dict[str, tuple[str, ...]] = {
    "avx512": ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"),
    "avx2": ("avx2", "fma"),
    "neon": (),
    "scalar": (),
}

ISA_ORDER: tuple[str, ...] = ("avx512", "avx2", "neon", "scalar")

# The machine architecture each SIMD path is written for (platform.machine() spellings).
X86_MACHINES = ("x86_64", "amd64", "i686", "i386")
ARM64_MACHINES = ("aarch64", "arm64")
ISA_ARCH: dict[str, tuple[str, ...]] = {
    "avx512": X86_MACHINES,
    "avx2": X86_MACHINES,
    "neon": ARM64_MACHINES,
}

# The aarch64 dot product instructions (sdot/udot, armv8.2-a): "asimddp" in /proc/cpuinfo,
# bit 20 of AT_HWCAP.
NEON_DOTPROD_FLAGS = ("-march=armv8.2-a+dotprod",)
_AT_HWCAP = 16
_HWCAP_ASIMDDP = 1 << 20

# Extensions a path uses when the CPU has them (the C source tests the compiler's macros).
ISA_OPTIONAL: dict[str, tuple[tuple[str, str], ...]] = {
    "avx512": (("avx512vbmi", "-mavx512vbmi"),),  # t1.6 decode by byte-table lookups
    # sdot for the int8 products; a later -march replaces the earlier one (gcc and clang)
    "neon": (("asimddp", NEON_DOTPROD_FLAGS[0]),),
}


def optional_flags(isa: str, flags: frozenset[str] | None = None) -> list[str]:
    flags = cpu_flags() if flags is None else flags
    return [flag for cpu, flag in ISA_OPTIONAL.get(isa, ()) if cpu in flags]


# The paths of each architecture, best first: a cap removes the ones ranked above it.
_ARCH_CHAINS: tuple[tuple[str, ...], ...] = (("avx512", "avx2", "scalar"), ("neon", "scalar"))

# CPU flags (prefixes, as spelled in /proc/cpuinfo) a machine capped at a path does not have:
# an AVX2-only x86-64 CPU has no AVX-512 (avx512f, avx512_vnni, avx512vbmi, ...), no AVX10
# and no AMX (every AMX CPU also has AVX-512); a scalar one has no SIMD of either architecture.
_CAP_HIDES: dict[str, tuple[str, ...]] = {
    "avx512": (),
    "avx2": ("avx512", "avx10", "amx"),
    "neon": (),
    "scalar": ("avx", "fma", "f16c", "amx", "asimd", "sve", "sme"),
}

_warned_caps: set[str] = set()


def max_isa() -> str | None:
    """The cap ``$TRITIUM_CPU_MAX_ISA`` sets (None: no cap; an unknown name warns and is
    ignored)."""
    cap = os.environ.get("TRITIUM_CPU_MAX_ISA", "").strip().lower()
    if not cap or cap in ("none", "native"):
        return None
    if cap not in _CAP_HIDES:
        if cap not in _warned_caps:
            _warned_caps.add(cap)
            warnings.warn(
                f"TRITIUM_CPU_MAX_ISA={cap!r} is not one of {', '.join(ISA_ORDER)}; ignored",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    return cap


def _capped_out(isa: str, cap: str | None) -> bool:
    """Whether the cap removes ``isa``: a path of the cap's architecture ranked above it."""
    if cap is None:
        return False
    for chain in _ARCH_CHAINS:
        if cap in chain and isa in chain:
            return chain.index(isa) < chain.index(cap)
    return False


def cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where that file is absent),
    less the ones ``$TRITIUM_CPU_MAX_ISA`` hides."""
    flags = host_cpu_flags()
    cap = max_isa()
    if cap is None or not _CAP_HIDES[cap]:
        return flags
    return frozenset(f for f in flags if not f.startswith(_CAP_HIDES[cap]))


@functools.cache
def host_cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo, uncapped."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return _hwcap_flags()


def _hwcap_flags() -> frozenset[str]:
    """aarch64 without a readable /proc/cpuinfo: the dot product bit of the auxiliary vector."""
    if platform.machine().lower() not in ARM64_MACHINES:
        return frozenset()
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        hwcap = int(getauxval(_AT_HWCAP))
    except (OSError, AttributeError):
        return frozenset()
    return frozenset({"asimd", "asimddp"} if hwcap & _HWCAP_ASIMDDP else {"asimd"})


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


def supported_isas(flags: frozenset[str] | None = None, machine: str | None = None) -> list[str]:
    """ISA paths this CPU can run, best first (always ends with ``scalar``); given ``flags``
    (and ``machine``), the paths a CPU with those flags runs, whatever ``$TRITIUM_CPU_MAX_ISA``
    says about this one."""
    cap = max_isa() if flags is None and machine is None else None
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    out = []
    for isa in ISA_ORDER:
        if isa in ISA_ARCH and machine not in ISA_ARCH[isa]:
            continue
        if _capped_out(isa, cap):
            continue
        if all(f in flags for f in ISA_REQUIRES[isa]):
            out.append(isa)
    return out


def _unsupported_reason(isa: str) -> str:
    machine = platform.machine() or "unknown"
    if isa in ISA_ARCH and machine.lower() not in ISA_ARCH[isa]:
        arch = "an x86-64" if ISA_ARCH[isa] == X86_MACHINES else "an aarch64 (64-bit ARM)"
        return f"the {isa} kernels need {arch} CPU and this machine is {machine}"
    if _capped_out(isa, max_isa()):
        return f"TRITIUM_CPU_MAX_ISA={max_isa()} caps this CPU below the {isa} kernels"
    missing = [f for f in ISA_REQUIRES[isa] if f not in cpu_flags()]
    return f"this CPU cannot run the {isa} kernels (missing CPU flags: {', '.join(missing)})"


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
            f"TRITIUM_CPU_ISA={want}: {_unsupported_reason(want)}; using {available[0]}",
            RuntimeWarning,
            stacklevel=3,
        )
        return available[0]
    return want


def compile_flags(isa: str, flags: frozenset[str] | None = None) -> list[str]:
    """The ISA flags of ``isa`` plus the optional ones ``flags`` (default: this CPU) allow;
    e.g. ``compile_flags("neon", frozenset({"asimddp"}))`` is the dot product build."""
    return list(ISA_FLAGS[isa]) + optional_flags(isa, flags)
