"""Render, compile, cache and load the C kernels.

A specialization (ISA path, tile sizes) is rendered into one C translation unit: a prelude of
``#define`` lines followed by ``csrc/tritium_kernels.h`` and ``csrc/tritium_kernels.c``, with
each section header it includes (:data:`SECTIONS`: the thread pool, packing, epilogue, the
micro-kernels of each ISA, the GEMV/tile driver, the fp32 panel GEMM, the G2 GEMM, the conv2d
entry) in place of its ``#include``
line; the NEON micro-kernels only on the ``neon`` path. The file is compiled on its own, so a
section that was not inlined fails the build, and the key below covers every section. The
shared object is cached under ``cache_subdir("kernels")`` by a key over the source text, the
compiler flags, the compiler's ``--version`` output and the CPU flags. Writes are atomic
(compile to a temp name in the same directory, then ``os.replace``), a sidecar file holds the
sha256 of the binary and is checked before every load (a mismatch rebuilds), and an exclusive
file lock serializes concurrent builders of the same key (pytest-xdist workers, several
processes).

Everything in the kernel cache is read back as untrusted: the binary and its sidecar only as
regular files, never through a symbolic link, never more than a bound
(:func:`tritium.cachedir.read_file_bounded`); a sidecar that is a link (to ``/dev/zero``, say),
a FIFO, too large or wrong means a rebuild. The lock file is opened without following links.

A failed OpenMP build leaves a ``.failed`` marker (JSON: why, when, the compiler, its version
and the build key) so that later processes go straight to the pthread pool instead of paying
for the failing compile again. It is honoured only when the failure was a verdict of the
compiler on this source (it exited with an error status), for the same key and compiler, and
for :data:`FAILED_MARKER_TTL_S` seconds; a compiler killed by a signal, timed out or that could
not be started leaves a marker that is never honoured, so the next process retries.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from tritium.backends.cpu import isa as isa_mod
from tritium.cachedir import (
    atomic_write_text,
    cache_subdir,
    digest,
    parse_json,
    read_file_bounded,
)

# the sections tritium_kernels.c includes, in the order it includes them
SECTIONS = ("tritium_pool.h", "tritium_pack.h", "tritium_epilogue.h", "tritium_x86.h",
            "tritium_neon.h", "tritium_scalar.h", "tritium_driver.h", "tritium_f32p.h",
            "tritium_g2avx2.h", "tritium_g2.h", "tritium_pool2d.h", "tritium_dw.h",
            "tritium_conv8.h", "tritium_conv.h", "tritium_lm.h", "tritium_lmblock.h")
SOURCE_FILES = ("tritium_kernels.h", *SECTIONS, "tritium_kernels.c")
# the CPython module of the fast calls (built on its own, see build_pycall)
PYCALL_SOURCE = "tritium_pycall.c"
_INCLUDE = re.compile(r'^#include "(tritium_[a-z0-9_]+\.h)"[^\n]*$', re.MULTILINE)
BASE_FLAGS = (
    "-std=gnu11", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden", "-fno-math-errno",
    "-Werror=implicit-function-declaration",
)


class BuildError(RuntimeError):
    """The C compiler is missing or failed; the message carries its output.

    ``deterministic`` is True when the compiler itself rejected the source (it ran to the end
    and exited with an error status): the same build would fail again. A compiler killed by
    a signal or a timeout, or one that could not be started, is not a verdict on the source.
    """

    def __init__(self, message: str, *, deterministic: bool = False) -> None:
        super().__init__(message)
        self.deterministic = deterministic


MAX_BINARY_BYTES = 256 * 1024 * 1024   # a kernel library is a few hundred KiB
MAX_SIDECAR_BYTES = 4096
MAX_MARKER_BYTES = 64 * 1024
FAILED_MARKER_TTL_S = 24 * 3600.0
"""How long a deterministic build failure is remembered (then the build is tried again)."""
MARKER_FORMAT = 1
# what a compiler driver prints when the program it runs was killed (gcc: "Killed signal
# terminated program cc1"; clang: "clang frontend command failed due to signal")
_KILLED = ("signal terminated program", "due to signal", "Killed", "out of memory",
           "Cannot allocate memory")


@dataclass(frozen=True)
class KernelConfig:
    """One specialization of the kernel template, plus the run-time thread count.

    Every field but ``threads`` becomes a ``#define`` of the rendered C source (so each config
    is its own cached shared object); ``threads`` (0 = the runtime default) only changes how
    the kernel is called. :meth:`search_params` lists the fields an autotuner may change on an
    ISA path with their legal values, :meth:`from_params` turns a tuner config back into a
    ``KernelConfig``.
    """

    isa: str = "avx2"
    tok_chunk: int = 64  # tokens per parallel task of the decoded-tile path
    gemv_max_m: int = 2  # int8 batches up to this size use the direct-decode GEMV (SIMD paths)
    gemm_min_m: int = 2  # int8 batches from this size use the G2 GEMM (avx512)
    gemm_mr: int = 8  # G2 micro-kernel tokens
    gemm_nrv: int = 3  # G2 micro-kernel zmm of 16 output channels
    gemm_mc: int = 256  # G2 tokens per parallel task
    gemm_kc: int = 0  # G2 K block in elements (0: whole rows)
    gemm_pf: int = 512  # G2 weight prefetch distance in bytes (0: none)
    gemm_unpack: int = 1  # G2: expand weight blocks into a buffer once per task (1) or not (0)
    threads: int = 0  # threads per call; 0 = runtime default (TRITIUM_NUM_THREADS / torch)
    pool: str = "openmp"  # thread pool: "openmp" (torch's libgomp team) or "pthread" (our own)

    def __post_init__(self) -> None:
        if self.isa not in _ALL:
            raise ValueError(
                f"unknown kernel ISA {self.isa!r}; expected one of {', '.join(_ALL)}"
            )
        for p in _PARAMS:
            v = getattr(self, p.name)
            if type(v) is not type(p.default) or v not in p.values:
                raise ValueError(f"KernelConfig.{p.name}={v!r} is not one of {list(p.values)}")

    def defines(self) -> dict[str, int]:
        d = {f"TRI_ISA_{name.upper()}": int(name == self.isa) for name in isa_mod.ISA_ORDER}
        d.update(TRI_ROW_TILE=4, TRI_TOK_CHUNK=self.tok_chunk, TRI_GEMV_MAX_M=self.gemv_max_m,
                 TRI_POOL_OPENMP=int(self.pool == "openmp"))
        if self.isa == "avx512":
            d.update(TRI_GEMM_MIN_M=self.gemm_min_m, TRI_GEMM_MR=self.gemm_mr,
                     TRI_GEMM_NRV=self.gemm_nrv, TRI_GEMM_MC=self.gemm_mc,
                     TRI_GEMM_KC=self.gemm_kc, TRI_GEMM_PF=self.gemm_pf,
                     TRI_GEMM_UNPACK=self.gemm_unpack)
        return d

    def build_config(self) -> KernelConfig:
        """The same specialization with the run-time-only fields at their defaults (what the
        shared object depends on)."""
        return replace(self, threads=0)

    @classmethod
    def search_params(cls, isa: str) -> tuple[TunableField, ...]:
        """The tunable fields on ``isa`` with their legal values and defaults (the tuner's
        ``tritium.tune.cpu.search_params`` makes its ``Param``s of them)."""
        if isa not in _ALL:
            raise ValueError(
                f"unknown kernel ISA {isa!r}; expected one of {', '.join(_ALL)}"
            )
        return tuple(p for p in _PARAMS if isa in p_isas(p.name))

    @classmethod
    def from_params(cls, isa: str, params: Mapping[str, Any]) -> KernelConfig:
        """The config of ``isa`` with ``params`` (a subset of :meth:`search_params` names)."""
        known = {p.name for p in cls.search_params(isa)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"unknown kernel parameter(s) {', '.join(map(repr, unknown))} for {isa}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(isa=isa, **dict(params))


_ALL = ("avx512", "avx2", "neon", "scalar")
POOLS = ("openmp", "pthread")
# compiler flags of each thread pool (the OpenMP one needs the compiler's OpenMP support)
POOL_FLAGS: dict[str, tuple[str, ...]] = {"openmp": ("-fopenmp",), "pthread": ()}

# The optimization level of each ISA path. The portable scalar path writes its 16-lane vectors
# as GCC vector types that a plain x86-64/other target lowers to scalar code; at -O3 that
# lowering, unrolled, costs gcc 27 s of partial-redundancy elimination for a path whose kernels
# run no faster for it (measured: benchmarks/ternary_kernels.py --isa scalar, 1024x1024 batch 1 and
# 64), so it builds at -O2 with the loop vectorizer (2.5 s).
OPT_FLAGS: dict[str, tuple[str, ...]] = {"scalar": ("-O2", "-ftree-vectorize")}
DEFAULT_OPT_FLAGS = ("-O3",)


def opt_flags(isa: str) -> list[str]:
    return list(OPT_FLAGS.get(isa, DEFAULT_OPT_FLAGS))


def compile_flags(config: KernelConfig) -> list[str]:
    """The compiler flags of one kernel specialization (its cache key hashes them)."""
    return (opt_flags(config.isa) + list(BASE_FLAGS)
            + list(isa_mod.ISA_FLAGS[config.isa]) + isa_mod.optional_flags(config.isa)
            + list(POOL_FLAGS[config.pool]))


_SIMD = ("avx512", "avx2", "neon")  # the paths with a direct-decode GEMV (TRI_HAVE_DIRECT)
_G2 = ("avx512",)  # the paths with the G2 GEMM (TRI_HAVE_G2)

@dataclass(frozen=True)
class TunableField:
    """A tunable field of the kernels: its legal values and default (the kernel's own record;
    the tuner turns it into a ``tritium.tune.space.Param``)."""

    name: str
    values: tuple[Any, ...]
    default: Any
    help: str


# (parameter, ISA paths where it changes the code or the run)
_PARAM_TABLE: tuple[tuple[TunableField, tuple[str, ...]], ...] = (
    (TunableField("tok_chunk", (16, 32, 64, 128, 256), 64,
           "tokens per parallel task of the decoded-tile GEMM (a tile of 4 weight rows is "
           "decoded once per chunk)"), _ALL),
    (TunableField("gemv_max_m", (1, 2, 3, 4, 6, 8), 2,
           "int8 batches up to this size decode the packed weights in registers (GEMV) "
           "instead of decoding a tile once per token chunk"), _SIMD),
    (TunableField("gemm_min_m", (1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256, 512), 2,
           "int8 batches from this size run the G2 GEMM (weights re-laid out once as 2-bit "
           "panels of 16 channels, VNNI micro-kernel with broadcast activations)"), _G2),
    (TunableField("gemm_mr", (1, 2, 4, 6, 8, 10, 12), 8,
           "G2 micro-kernel tokens (rows of register accumulators)"), _G2),
    (TunableField("gemm_nrv", (1, 2, 3, 4), 3,
           "G2 micro-kernel zmm of 16 output channels (columns of register accumulators); "
           "gemm_mr * gemm_nrv above ~26 spills registers"), _G2),
    (TunableField("gemm_mc", (8, 16, 32, 64, 128, 256), 256,
           "G2 tokens per parallel task (the activation rows one weight panel group meets)"),
     _G2),
    (TunableField("gemm_kc", (0, 256, 512, 1024, 2048), 0,
           "G2 K block in elements (0: whole rows; else partial sums go through an L1 tile)"),
     _G2),
    (TunableField("gemm_pf", (0, 256, 512, 1024), 512,
           "G2 software prefetch distance in bytes along each weight panel (0: none)"), _G2),
    (TunableField("gemm_unpack", (0, 1), 1,
           "G2: expand each weight block to int8 codes once per task into a per-thread buffer "
           "reused by all its micro-kernel calls (1), or expand in registers at every use (0); "
           "tasks of at most gemm_mr tokens always expand in registers"), _G2),
    (TunableField("threads", (0, 1, 2, 4), 0,
           "threads per call (0: TRITIUM_NUM_THREADS or torch.get_num_threads())"), _ALL),
    (TunableField("pool", POOLS, "openmp",
           "thread pool: 'openmp' runs on the OpenMP team PyTorch uses (one shared pool), "
           "'pthread' on the kernels' own work-claiming pool"), _ALL),
)
_PARAMS: tuple[TunableField, ...] = tuple(p for p, _ in _PARAM_TABLE)


def p_isas(name: str) -> tuple[str, ...]:
    """The ISA paths on which parameter ``name`` has an effect."""
    for p, isas in _PARAM_TABLE:
        if p.name == name:
            return isas
    raise KeyError(name)


@dataclass(frozen=True)
class BuiltKernel:
    path: Path
    config: KernelConfig
    compiler: str
    compiler_version: str
    flags: tuple[str, ...]
    key: str
    built_now: bool
    # why the requested OpenMP pool was replaced by the pthread pool ("" when it was not)
    pool_fallback: str = ""


def _read_source(name: str) -> str:
    return resources.files("tritium.backends.cpu").joinpath("csrc", name).read_text("utf-8")


@functools.cache
def source_hash() -> str:
    """A hash of every C kernel source file: tuned configs measured on other sources are not
    reused (the tuner records it with each study; the runtime compares it)."""
    h = hashlib.sha256()
    for name in SOURCE_FILES:
        h.update(name.encode())
        h.update(resources.files("tritium.backends.cpu").joinpath("csrc", name).read_bytes())
    return h.hexdigest()[:16]


def render_source(config: KernelConfig) -> str:
    """The complete C translation unit of a specialization (what ``--emit c`` shows)."""
    lines = ["/* generated by tritium.backends.cpu.build: one specialization */"]
    lines += [f"#define {k} {v}" for k, v in config.defines().items()]
    header = _read_source("tritium_kernels.h")
    body = _read_source("tritium_kernels.c").replace('#include "tritium_kernels.h"\n', "")

    def section(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in SECTIONS:
            raise BuildError(f"tritium_kernels.c includes {name}, which is not in SECTIONS")
        # the NEON micro-kernels live in their own header; only the neon path carries them
        if name == "tritium_neon.h" and config.isa != "neon":
            return f"/* {name}: not on this path */"
        return f"/* ---- {name} ---- */\n" + _read_source(name)

    body = _INCLUDE.sub(section, body)
    return "\n".join(lines) + "\n" + header + "\n" + body


def find_compiler() -> str | None:
    """``$CC`` if set (even when it does not exist: then there is no compiler), else cc/gcc/clang."""
    env = os.environ.get("CC")
    if env:
        return shutil.which(env) or (env if os.path.isfile(env) and os.access(env, os.X_OK) else None)
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


@functools.cache
def compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"cannot run the C compiler {cc!r}: {exc}") from exc
    if out.returncode != 0:
        raise BuildError(f"{cc} --version failed: {out.stderr.strip()}")
    return out.stdout.strip()


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(read_file_bounded(path, MAX_BINARY_BYTES)).hexdigest()


def _open_lock(path: Path) -> int:
    """A descriptor of the lock file, created if needed, never through a symbolic link (a
    link there is removed: a lock file holds nothing)."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
    path.unlink()
    return os.open(path, flags | os.O_EXCL, 0o644)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on ``path`` (no-op where fcntl is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_sidecar(so: Path) -> str | None:
    """The sha256 a binary's sidecar records, or None when the sidecar is missing, not a
    regular file (a link, a FIFO, a device), too large or not a digest."""
    try:
        text = read_file_bounded(so.with_suffix(".sha256"), MAX_SIDECAR_BYTES).decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None
    text = text.strip()
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _verified(so: Path) -> bool:
    want = read_sidecar(so)
    if want is None:
        return False
    try:
        return _sha256_file(so) == want
    except OSError:
        return False


def _write_marker(failed: Path, key: str, cc: str, version: str, exc: BuildError) -> None:
    """Record a failed build: why, when, which compiler, which key, and whether it is a
    verdict of the compiler (only then is it honoured)."""
    now = time.time()
    record = {"format": MARKER_FORMAT, "key": key, "compiler": cc,
              "compiler_version": version.splitlines()[0] if version else "",
              "when": now, "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
              "deterministic": bool(exc.deterministic), "reason": str(exc)[:8000]}
    with contextlib.suppress(OSError):
        atomic_write_text(failed, json.dumps(record, indent=1, sort_keys=True) + "\n")


def honoured_failure(failed: Path, key: str, cc: str, version: str,
                     now: float | None = None) -> str | None:
    """The message of a ``.failed`` marker that still stands for this build, or None (no
    marker, unreadable or malformed, another key or compiler, a failure that was not the
    compiler's verdict, older than :data:`FAILED_MARKER_TTL_S` or dated in the future)."""
    try:
        record = parse_json(read_file_bounded(failed, MAX_MARKER_BYTES), max_depth=4)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != MARKER_FORMAT:
        return None
    when = record.get("when")
    if not isinstance(when, int | float) or isinstance(when, bool):
        return None
    age = (time.time() if now is None else now) - when
    first = version.splitlines()[0] if version else ""
    if (record.get("key") != key or record.get("compiler") != cc
            or record.get("compiler_version") != first or record.get("deterministic") is not True
            or not 0 <= age <= FAILED_MARKER_TTL_S or not isinstance(record.get("reason"), str)):
        return None
    return (f"{record['reason']} (recorded {record.get('when_utc', '')} in {failed.name}; "
            "delete it to retry now)")


def _compile(cc: str, source: str, flags: list[str], out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tritium-cc-") as tmp:
        src = Path(tmp) / "tritium_kernels.c"
        src.write_text(source, encoding="utf-8")
        fd, tmp_so = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        try:
            try:
                proc = subprocess.run(
                    [cc, *flags, str(src), "-o", tmp_so, "-lm"],
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=300,
                )
            except subprocess.TimeoutExpired:
                raise BuildError(f"{cc} did not finish within 300 s") from None
            except OSError as e:
                raise BuildError(f"cannot run the C compiler {cc!r}: {e.strerror or e}") from None
            if proc.returncode != 0:
                err = proc.stderr.strip()
                # a verdict on the source: a normal exit with an error status, not a kill
                verdict = 0 < proc.returncode < 128 and not any(k in err for k in _KILLED)
                how = (f"exit {proc.returncode}" if proc.returncode > 0
                       else f"killed by signal {-proc.returncode}")
                raise BuildError(f"{cc} failed ({how}):\n{err[:4000]}", deterministic=verdict)
            with open(tmp_so, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_so, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_so)


def _compile_cached(cc: str, version: str, key: str, source: str, flags: list[str], so: Path,
                    markers: bool) -> bool:
    """Compile ``source`` into ``so`` unless a verified binary is already there (under the
    build lock); True when it compiled now. With ``markers`` a failure leaves a ``.failed``
    marker, and a standing one (:func:`honoured_failure`) is raised without compiling."""
    failed = so.with_suffix(".failed")
    if _verified(so):
        return False
    with _locked(so.parent / f".{so.name}.lock"):
        if _verified(so):
            return False
        if markers:
            # this compiler already rejected this very source and flags: do not pay for the
            # failing compile in every process (for a while)
            known = honoured_failure(failed, key, cc, version)
            if known is not None:
                raise BuildError(known, deterministic=True)
        try:
            _compile(cc, source, flags, so)
        except BuildError as exc:
            if markers:
                _write_marker(failed, key, cc, version, exc)
            raise
        with contextlib.suppress(OSError):
            failed.unlink()
        atomic_write_text(so.with_suffix(".sha256"), _sha256_file(so))
        return True


def _build_one(cc: str, version: str, config: KernelConfig, kdir: Path) -> BuiltKernel:
    flags = compile_flags(config)
    source = render_source(config)
    cpu = " ".join(sorted(isa_mod.cpu_flags()))
    key = digest(source, " ".join(flags), version, cpu)
    so = kdir / f"tritium_{config.isa}_{key[:20]}.so"
    built_now = _compile_cached(cc, version, key, source, flags, so,
                                markers=config.pool == "openmp")
    return BuiltKernel(so, config, cc, version.splitlines()[0], tuple(flags), key, built_now)


def _compiler() -> str:
    cc = find_compiler()
    if cc is None:
        raise BuildError(
            "no C compiler found (set $CC or install cc/gcc/clang)"
            if not os.environ.get("CC")
            else f"the C compiler $CC={os.environ['CC']!r} does not exist"
        )
    return cc


def python_include() -> Path | None:
    """The directory of this interpreter's ``Python.h``, or None (a Python installed without
    its C headers: Debian's ``python3`` without ``python3-dev``, say)."""
    paths = sysconfig.get_paths()
    for name in ("include", "platinclude"):
        d = paths.get(name)
        if d and os.path.isfile(os.path.join(d, "Python.h")):
            return Path(d)
    return None


def build_pycall(cache_dir: Path | None = None) -> Path:
    """A verified build of ``csrc/tritium_pycall.c`` (the CPython module that calls the kernel
    libraries' per-call entry points without ctypes' argument conversion) for this interpreter,
    compiling it if needed; cached beside the kernels by a key over its source (with the
    kernels' header), the flags, the compiler and the interpreter. BuildError when there is
    no compiler, no ``Python.h`` or the compile fails (a failure is remembered for a while, as
    a failed OpenMP build is)."""
    cc = _compiler()
    include = python_include()
    if include is None:
        raise BuildError("this Python has no C headers (Python.h): install its development "
                         "package (python3-dev) for the fast native calls")
    version = compiler_version(cc)
    body = _read_source(PYCALL_SOURCE)
    if '#include "tritium_kernels.h"\n' not in body:
        raise BuildError(f"{PYCALL_SOURCE} must include tritium_kernels.h")
    source = body.replace('#include "tritium_kernels.h"\n', _read_source("tritium_kernels.h"))
    flags = ["-O2", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{include}"]
    plat = sysconfig.get_paths().get("platinclude")
    if plat and Path(plat) != include and os.path.isdir(plat):   # pyconfig.h may live there
        flags.append(f"-I{plat}")
    key = digest(source, " ".join(flags), version, sys.version,
                 str(sysconfig.get_config_var("EXT_SUFFIX")))
    kdir = cache_dir or cache_subdir("kernels")
    kdir.mkdir(parents=True, exist_ok=True)
    so = kdir / f"tritium_pycall_{key[:20]}.so"
    _compile_cached(cc, version, key, source, flags, so, markers=True)
    return so


def build(config: KernelConfig, cache_dir: Path | None = None) -> BuiltKernel:
    """Return a verified shared object for ``config``, compiling it if needed.

    A config with ``pool="openmp"`` that the compiler cannot build (no OpenMP support, e.g.
    clang without libomp) is built with ``pool="pthread"`` instead; the returned
    ``BuiltKernel.config`` says which, and ``pool_fallback`` holds the compiler's reason.
    """
    cc = _compiler()
    version = compiler_version(cc)
    kdir = cache_dir or cache_subdir("kernels")
    kdir.mkdir(parents=True, exist_ok=True)
    try:
        return _build_one(cc, version, config, kdir)
    except BuildError as exc:
        if config.pool != "openmp":
            raise
        reason = f"the OpenMP build failed, using the pthread pool: {exc}"
    fallback = _build_one(cc, version, replace(config, pool="pthread"), kdir)
    return replace(fallback, pool_fallback=reason)
