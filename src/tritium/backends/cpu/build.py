"""Render, compile, cache and load the C kernels.

A specialization (ISA path, tile sizes) is rendered into one C translation unit: a prelude of
``#define`` lines followed by ``csrc/tritium_kernels.h`` and ``csrc/tritium_kernels.c``, with
``csrc/tritium_pool.h`` (the thread pool) and, for the ``neon`` path, ``csrc/tritium_neon.h``
in place of their ``#include`` lines. The
shared object is cached under ``cache_subdir("kernels")`` by a key over the source text, the
compiler flags, the compiler's ``--version`` output and the CPU flags. Writes are atomic
(compile to a temp name in the same directory, then ``os.replace``), a sidecar file holds the
sha256 of the binary and is checked before every load (a mismatch rebuilds), and an exclusive
file lock serializes concurrent builders of the same key (pytest-xdist workers, several
processes).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritium.backends.cpu import isa as isa_mod
from tritium.cachedir import atomic_write_text, cache_subdir, digest

if TYPE_CHECKING:  # the runtime must not import the tuner; Param is built on demand
    from tritium.tune.space import Param

SOURCE_FILES = ("tritium_kernels.h", "tritium_pool.h", "tritium_neon.h", "tritium_kernels.c")
BASE_FLAGS = (
    "-O3", "-std=gnu11", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden", "-fno-math-errno",
    "-Werror=implicit-function-declaration",
)


class BuildError(RuntimeError):
    """The C compiler is missing or failed; the message carries its output."""


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
    def search_params(cls, isa: str) -> tuple[Param, ...]:
        """The tunable fields on ``isa`` with their legal values and defaults."""
        if isa not in _ALL:
            raise ValueError(
                f"unknown kernel ISA {isa!r}; expected one of {', '.join(_ALL)}"
            )
        from tritium.tune.space import Param

        return tuple(Param(p.name, p.values, p.default, p.help)
                     for p in _PARAMS if isa in p_isas(p.name))

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
_SIMD = ("avx512", "avx2", "neon")  # the paths with a direct-decode GEMV (TRI_HAVE_DIRECT)
_G2 = ("avx512",)  # the paths with the G2 GEMM (TRI_HAVE_G2)

@dataclass(frozen=True)
class _P:
    """A tunable field (turned into a ``tritium.tune.space.Param`` by ``search_params``)."""

    name: str
    values: tuple[Any, ...]
    default: Any
    help: str


# (parameter, ISA paths where it changes the code or the run)
_PARAM_TABLE: tuple[tuple[_P, tuple[str, ...]], ...] = (
    (_P("tok_chunk", (16, 32, 64, 128, 256), 64,
           "tokens per parallel task of the decoded-tile GEMM (a tile of 4 weight rows is "
           "decoded once per chunk)"), _ALL),
    (_P("gemv_max_m", (1, 2, 3, 4, 6, 8), 2,
           "int8 batches up to this size decode the packed weights in registers (GEMV) "
           "instead of decoding a tile once per token chunk"), _SIMD),
    (_P("gemm_min_m", (1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256, 512), 2,
           "int8 batches from this size run the G2 GEMM (weights re-laid out once as 2-bit "
           "panels of 16 channels, VNNI micro-kernel with broadcast activations)"), _G2),
    (_P("gemm_mr", (1, 2, 4, 6, 8, 10, 12), 8,
           "G2 micro-kernel tokens (rows of register accumulators)"), _G2),
    (_P("gemm_nrv", (1, 2, 3, 4), 3,
           "G2 micro-kernel zmm of 16 output channels (columns of register accumulators); "
           "gemm_mr * gemm_nrv above ~26 spills registers"), _G2),
    (_P("gemm_mc", (8, 16, 32, 64, 128, 256), 256,
           "G2 tokens per parallel task (the activation rows one weight panel group meets)"),
     _G2),
    (_P("gemm_kc", (0, 256, 512, 1024, 2048), 0,
           "G2 K block in elements (0: whole rows; else partial sums go through an L1 tile)"),
     _G2),
    (_P("gemm_pf", (0, 256, 512, 1024), 512,
           "G2 software prefetch distance in bytes along each weight panel (0: none)"), _G2),
    (_P("gemm_unpack", (0, 1), 1,
           "G2: expand each weight block to int8 codes once per task into a per-thread buffer "
           "reused by all its micro-kernel calls (1), or expand in registers at every use (0); "
           "tasks of at most gemm_mr tokens always expand in registers"), _G2),
    (_P("threads", (0, 1, 2, 4), 0,
           "threads per call (0: TRITIUM_NUM_THREADS or torch.get_num_threads())"), _ALL),
    (_P("pool", POOLS, "openmp",
           "thread pool: 'openmp' runs on the OpenMP team PyTorch uses (one shared pool), "
           "'pthread' on the kernels' own work-claiming pool"), _ALL),
)
_PARAMS: tuple[_P, ...] = tuple(p for p, _ in _PARAM_TABLE)


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


def render_source(config: KernelConfig) -> str:
    """The complete C translation unit of a specialization (what ``--emit c`` shows)."""
    lines = ["/* generated by tritium.backends.cpu.build: one specialization */"]
    lines += [f"#define {k} {v}" for k, v in config.defines().items()]
    header = _read_source("tritium_kernels.h")
    body = _read_source("tritium_kernels.c").replace('#include "tritium_kernels.h"\n', "")
    # the NEON micro-kernels live in their own header; only the neon path carries them
    neon = _read_source("tritium_neon.h") if config.isa == "neon" else ""
    body = body.replace('#include "tritium_neon.h"', neon)
    body = body.replace('#include "tritium_pool.h"', _read_source("tritium_pool.h"))
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
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on ``path`` (no-op where fcntl is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _verified(so: Path) -> bool:
    sidecar = so.with_suffix(".sha256")
    try:
        return so.is_file() and sidecar.read_text("utf-8").strip() == _sha256_file(so)
    except OSError:
        return False


def _compile(cc: str, source: str, flags: list[str], out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tritium-cc-") as tmp:
        src = Path(tmp) / "tritium_kernels.c"
        src.write_text(source, encoding="utf-8")
        fd, tmp_so = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        try:
            proc = subprocess.run(
                [cc, *flags, str(src), "-o", tmp_so, "-lm"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode != 0:
                raise BuildError(
                    f"{cc} failed (exit {proc.returncode}):\n{proc.stderr.strip()[:4000]}"
                )
            with open(tmp_so, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_so, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_so)


def _build_one(cc: str, version: str, config: KernelConfig, kdir: Path) -> BuiltKernel:
    flags = (list(BASE_FLAGS) + list(isa_mod.ISA_FLAGS[config.isa])
             + isa_mod.optional_flags(config.isa) + list(POOL_FLAGS[config.pool]))
    source = render_source(config)
    cpu = " ".join(sorted(isa_mod.cpu_flags()))
    key = digest(source, " ".join(flags), version, cpu)
    so = kdir / f"tritium_{config.isa}_{key[:20]}.so"
    failed = so.with_suffix(".failed")
    built_now = False
    if not _verified(so):
        with _locked(kdir / f".{so.name}.lock"):
            if not _verified(so):
                if config.pool == "openmp" and failed.is_file():
                    # this compiler already failed on this very source and flags: do not
                    # pay for the failing compile in every process
                    raise BuildError(failed.read_text("utf-8", errors="replace"))
                try:
                    _compile(cc, source, flags, so)
                except BuildError as exc:
                    if config.pool == "openmp":
                        atomic_write_text(failed, str(exc))
                    raise
                atomic_write_text(so.with_suffix(".sha256"), _sha256_file(so))
                built_now = True
    return BuiltKernel(so, config, cc, version.splitlines()[0], tuple(flags), key, built_now)


def build(config: KernelConfig, cache_dir: Path | None = None) -> BuiltKernel:
    """Return a verified shared object for ``config``, compiling it if needed.

    A config with ``pool="openmp"`` that the compiler cannot build (no OpenMP support, e.g.
    clang without libomp) is built with ``pool="pthread"`` instead; the returned
    ``BuiltKernel.config`` says which, and ``pool_fallback`` holds the compiler's reason.
    """
    cc = find_compiler()
    if cc is None:
        raise BuildError(
            "no C compiler found (set $CC or install cc/gcc/clang)"
            if not os.environ.get("CC")
            else f"the C compiler $CC={os.environ['CC']!r} does not exist"
        )
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
