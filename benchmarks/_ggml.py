"""ggml, llama.cpp's tensor library, built from the ``llama-cpp-python`` source distribution
and called through ctypes, for ``benchmarks/peers.py``; and llama.cpp's own programs
(``llama-bench``) built from the same sdist, for ``benchmarks/llm.py`` (``ensure_llama_tools``;
``_llama_check.py`` builds the smaller llama.cpp of the GGUF round-trip check).

The sdist vendors llama.cpp (``vendor/llama.cpp/ggml``). Only the ggml libraries are built
(``ggml-base`` and the CPU backend ``ggml-cpu``; no llama, tools, examples, CUDA or other
backends), Release, with ``GGML_NATIVE`` (``-march=native``: this CPU's ISA; under
``$TRITIUM_CPU_MAX_ISA`` the capped CPU's ISA options instead, see ``isa_options``) and
llama.cpp's own defaults otherwise (OpenMP, llamafile sgemm). The build lives under Tritium's cache root,
``<cache>/peers/ggml-<version>-<key>``, where the key hashes the CPU's ISA flags, the cmake
options and the pinned sdist, so a later run on the same machine reuses it and a different CPU
(or option) builds its own.

The bindings below are written against the headers of exactly the pinned version
(``ggml/include/ggml.h`` and ``ggml-cpu.h`` of llama-cpp-python 0.3.36, ggml 0.25.3): the
struct layouts (``ggml_init_params``, ``ggml_cplan``, ``ggml_threadpool_params``,
``ggml_type_traits``) and the type numbers change between versions, which is why the version
is pinned and the download checks the sdist's SHA-256.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from tritium import cachedir
from tritium.backends.cpu import isa as _isa

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
GGML_VERSION = "0.25.3"  # what the vendored ggml of that sdist reports (ggml_version())
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
GGML_SUBDIR = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/ggml"

# ggml_type values of this ggml version (ggml.h)
GGML_TYPE_F32 = 0
GGML_TYPE_TQ1_0 = 34
GGML_TYPE_TQ2_0 = 35
TYPE_NAMES = {GGML_TYPE_TQ1_0: "TQ1_0", GGML_TYPE_TQ2_0: "TQ2_0"}
QK_K = 256  # the block of TQ1_0, TQ2_0 and q8_K: K must be a multiple of it
GGML_MAX_N_THREADS = 512

# The cmake cache entries of the build (part of the cache key). OpenMP and llamafile are
# llama.cpp's defaults; GGML_NATIVE compiles for this CPU.
CMAKE_OPTIONS: tuple[tuple[str, str], ...] = (
    ("CMAKE_BUILD_TYPE", "Release"),
    ("BUILD_SHARED_LIBS", "ON"),
    ("GGML_NATIVE", "ON"),
    ("GGML_CPU", "ON"),
    ("GGML_OPENMP", "ON"),
    ("GGML_LLAMAFILE", "ON"),
    ("GGML_BACKEND_DL", "OFF"),
    ("GGML_CUDA", "OFF"),
    ("GGML_HIP", "OFF"),
    ("GGML_METAL", "OFF"),
    ("GGML_VULKAN", "OFF"),
    ("GGML_OPENCL", "OFF"),
    ("GGML_BLAS", "OFF"),
    ("GGML_RPC", "OFF"),
    ("GGML_CCACHE", "OFF"),
    ("GGML_BUILD_TESTS", "OFF"),
    ("GGML_BUILD_EXAMPLES", "OFF"),
)

# x86 ISA options of ggml's CMakeLists, with the /proc/cpuinfo flag each needs: what a build
# for a capped CPU ($TRITIUM_CPU_MAX_ISA) turns on explicitly in place of -march=native.
# AVX-VNNI (VEX-coded) stays off: the AVX2 cap models a Zen 3 class machine, which lacks it.
X86_ISA_OPTIONS: tuple[tuple[str, str | None], ...] = (
    ("GGML_SSE42", "sse4_2"), ("GGML_AVX", "avx"), ("GGML_AVX2", "avx2"), ("GGML_BMI2", "bmi2"),
    ("GGML_FMA", "fma"), ("GGML_F16C", "f16c"), ("GGML_AVX_VNNI", None),
    ("GGML_AVX512", "avx512f"), ("GGML_AVX512_VBMI", "avx512vbmi"),
    ("GGML_AVX512_VNNI", "avx512_vnni"), ("GGML_AVX512_BF16", "avx512_bf16"),
)


def isa_options(options=CMAKE_OPTIONS, flags=None, capped: bool | None = None,
                machine: str | None = None) -> tuple[tuple[str, str], ...]:
    """``options`` for the CPU the kernels see (``flags``: this CPU's, capped). Uncapped,
    ``GGML_NATIVE`` (``-march=native``). Under ``$TRITIUM_CPU_MAX_ISA`` (``capped``: by
    default whether the cap hides any of this CPU's flags) ``-march=native`` would build for
    the real CPU, and the peer would run AVX-512 code beside Tritium's AVX2 path: the build
    turns ``GGML_NATIVE`` off and, on x86-64, each ISA option on exactly when ``flags`` have
    it (elsewhere ggml's portable baseline)."""
    import platform

    flags = frozenset(cpu_flags() if flags is None else flags)
    if capped is None:
        capped = _isa.cpu_flags() != _isa.host_cpu_flags()
    if not capped:
        return tuple(options)
    machine = (platform.machine() if machine is None else machine).lower()
    extra: tuple[tuple[str, str], ...] = ()
    if machine in _isa.X86_MACHINES:
        extra = tuple((opt, "ON" if flag is not None and flag in flags else "OFF")
                      for opt, flag in X86_ISA_OPTIONS)
    return tuple((k, "OFF" if k == "GGML_NATIVE" else v) for k, v in options) + extra


# /proc/cpuinfo flags that decide which code -march=native produces (and that the table shows)
ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "amx", "vnni", "asimd", "sve",
                "sme", "i8mm", "dotprod", "fphp", "neon", "vsx", "rvv")
NOT_ISA = frozenset({"smep"})  # x86 supervisor-mode execution protection, not Arm's SME


class PeerUnavailable(RuntimeError):
    """ggml cannot be had here (no cmake, no compiler, no network for the download, a failed
    build): the message says what is missing and what to do. The benchmark exits with 2."""


# ----------------------------------------------------------------------------- the CPU

# the CPU's name and feature flags: the kernels' own reading of /proc/cpuinfo
cpu_model = _isa.cpu_model
cpu_flags = _isa.cpu_flags


def isa_flags(flags: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    """The SIMD flags among ``flags`` (sorted): what ``-march=native`` builds for."""
    return sorted({f for f in flags if f.startswith(ISA_PREFIXES) and f not in NOT_ISA})


def _isa_words(options) -> str:
    opts = dict(options)
    if opts.get("GGML_NATIVE") != "OFF":
        return "native ISA"
    on = [k[5:] for k, v in opts.items() if v == "ON" and k in dict(X86_ISA_OPTIONS)]
    return "ISA capped by TRITIUM_CPU_MAX_ISA: " + (", ".join(on) or "portable baseline")


def build_key(version: str, flags, options=CMAKE_OPTIONS, sdist_sha256: str = SDIST_SHA256,
              machine: str | None = None, name: str = "ggml") -> str:
    """The cache directory name of a build: ``<name>-<version>-<16 hex>``, the hex a digest of the
    machine, the CPU's ISA flags (order and duplicates do not matter), the cmake options and
    the sdist. Flags that do not change the generated code (``ht``, ``pge``...) do not change
    the key."""
    import platform

    machine = platform.machine() if machine is None else machine
    opts = ";".join(f"{k}={v}" for k, v in options)
    h = cachedir.digest(machine, " ".join(isa_flags(flags)), opts, sdist_sha256)
    return f"{name}-{version}-{h[:16]}"


def peers_cache(root: str | os.PathLike[str] | None = None) -> Path:
    """``<cache root>/peers`` (``--cache-dir`` overrides the root)."""
    base = Path(root).expanduser() if root else cachedir.cache_root()
    path = base / "peers"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------- download

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_sdist(cache: Path, log=print) -> Path:
    """The pinned llama-cpp-python sdist in ``cache/sdist``, downloaded with pip when absent
    (``pip download --no-binary :all: --no-deps``), its SHA-256 checked."""
    dest = cache / "sdist"
    path = dest / SDIST_NAME
    if not path.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
               "--disable-pip-version-check", "-d", str(dest),
               f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"]
        log(f"downloading llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} (sdist, ~75 MB): "
            + " ".join(cmd[2:]))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerUnavailable(f"pip download failed: {exc}") from None
        if not path.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
            raise PeerUnavailable(
                "could not download the llama-cpp-python source distribution (no network, or "
                "PyPI unreachable?). pip said:\n    " + "\n    ".join(tail) + "\nDownload "
                f"{SDIST_NAME} elsewhere and put it in {dest}, or pass --sdist PATH.")
    got = _sha256(path)
    if got != SDIST_SHA256:
        raise PeerUnavailable(f"{path}: SHA-256 {got} is not the pinned {SDIST_SHA256} of "
                              f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}; delete it and rerun")
    return path


def _extract(sdist: Path, dest: Path, subdir: str) -> Path:
    """Only ``subdir`` of the sdist (``vendor/llama.cpp/ggml``: 25 MB of its 220), safely (no
    links or paths leaving ``dest``)."""
    prefix = subdir + "/"
    with tarfile.open(sdist, "r:gz") as tar:
        members = [m for m in tar.getmembers()
                   if (m.name.startswith(prefix) and (m.isfile() or m.isdir())
                       and ".." not in Path(m.name).parts)]
        if not members:
            raise PeerUnavailable(f"{sdist} holds no {subdir}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python without extraction filters
            tar.extractall(dest, members=members)
    return dest / subdir


# ----------------------------------------------------------------------------- build

LIBS = ("libggml-base.so", "libggml-cpu.so")


def _tools() -> tuple[str, str, str, str | None]:
    # a system cmake first, else the one of this interpreter's environment (the dev extra)
    cmake = shutil.which("cmake") or shutil.which("cmake", path=str(Path(sys.executable).parent))
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    cxx = (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
           or shutil.which("clang++"))
    missing = [name for name, path in (("cmake", cmake), ("a C compiler (cc/gcc/clang)", cc),
                                       ("a C++ compiler (c++/g++/clang++)", cxx)) if not path]
    if missing:
        raise PeerUnavailable("building ggml needs " + " and ".join(missing)
                              + " on PATH (e.g. `apt-get install cmake build-essential`)")
    return cmake, cc, cxx, shutil.which("ninja")


def built_libs(build_dir: Path) -> Path | None:
    """The directory of a finished build's libraries, or None."""
    lib = build_dir / "lib"
    if (build_dir / "build.json").is_file() and all((lib / name).is_file() for name in LIBS):
        return lib
    return None


def _cmake_build(what: str, source: Path, work: Path, options, targets, jobs: int | None
                 ) -> None:
    """Configure ``source`` into ``work/build`` with ``options`` and build ``targets``, the
    output in ``work/build.log``; a failure is a PeerUnavailable quoting the log's end."""
    cmake, cc, cxx, ninja = _tools()
    configure = [cmake, "-S", str(source), "-B", str(work / "build"),
                 f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_CXX_COMPILER={cxx}",
                 *(f"-D{k}={v}" for k, v in options)]
    if ninja:
        configure += ["-G", "Ninja"]
    if not jobs:
        jobs = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count() or 1)
    build = [cmake, "--build", str(work / "build"), "-j", str(jobs), "--target", *targets]
    with open(work / "build.log", "w", encoding="utf-8") as out:
        for cmd in (configure, build):
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                tail = (work / "build.log").read_text(errors="replace").strip().splitlines()
                raise PeerUnavailable(f"building {what} failed ({cmd[1]} exited {rc}); the "
                                      "end of the log:\n    " + "\n    ".join(tail[-15:]))



def _publish_build(work: Path, final: Path, info: dict, scratch: tuple[str, ...],
                   built) -> None:
    """Finish a build in `work`: drop its scratch directories, keep a trimmed log and
    `build.json` (`info`), then move it to `final` in one rename (a concurrent run that got
    there first wins, if `built(final)` finds its result)."""
    for tmp in scratch:
        shutil.rmtree(work / tmp, ignore_errors=True)
    _trim_log(work / "build.log")
    cachedir.atomic_write_text(work / "build.json", json.dumps(info, indent=2))
    try:
        os.replace(work, final)
    except OSError:  # another run finished the same build first
        if built(final) is None:
            raise

def _trim_log(path: Path, keep: int = 200) -> None:
    """Megabytes of compiler warnings: keep the end."""
    lines = path.read_text(errors="replace").splitlines()[-keep:]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _checked_sdist(cache: Path, sdist: Path | None, log) -> Path:
    if sdist is None:
        return ensure_sdist(cache, log)
    if _sha256(sdist) != SDIST_SHA256:
        raise PeerUnavailable(f"{sdist} is not the pinned llama-cpp-python "
                              f"{LLAMA_CPP_PYTHON_VERSION} sdist (SHA-256 differs)")
    return sdist


def build_once(cache: Path, final: Path, built, sdist: Path | None, log, subdir: str,
               build, scratch: tuple[str, ...] = ("src", "build")):
    """The one skeleton of every build from the pinned sdist: ``built(final)`` when it is
    already there; else extract ``subdir`` into a private work directory, run
    ``build(src, work, cxx)`` (which builds, copies its results out of the build tree and
    returns what ``build.json`` records of it), add the versions, compilers, CPU and time,
    and publish the directory as ``final`` in one rename. Returns ``built(final)``."""
    result = built(final)
    if result is not None:
        return result
    _, cc, cxx, _ = _tools()
    sdist = _checked_sdist(cache, sdist, log)
    work = cache / f".{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        src = _extract(sdist, work / "src", subdir)
        t0 = time.perf_counter()
        info = {"llama_cpp_python": LLAMA_CPP_PYTHON_VERSION, "sdist_sha256": SDIST_SHA256,
                **build(src, work, cxx), "cc": cc, "cxx": cxx, "cpu": cpu_model(),
                "isa_flags": isa_flags(cpu_flags())}
        info["build_seconds"] = round(time.perf_counter() - t0, 1)
        _publish_build(work, final, info, scratch, built)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = built(final)
    assert result is not None
    return result


def _copy_found(work: Path, names, dest: Path, what: str) -> None:
    """Copy each of ``names`` found in ``work/build`` into ``dest``."""
    dest.mkdir()
    for name in names:
        found = [f for f in sorted((work / "build").rglob(name)) if f.is_file()]
        if not found:
            raise PeerUnavailable(f"the {what} build produced no {name}")
        shutil.copy2(found[0].resolve(), dest / name)


def ensure_build(cache: Path, sdist: Path | None = None, jobs: int | None = None,
                 rebuild: bool = False, log=print) -> tuple[Path, str]:
    """Build (or reuse) ggml for this CPU; returns (library directory, key)."""
    options = isa_options()
    key = build_key(GGML_VERSION, cpu_flags(), options)
    final = cache / key
    if rebuild and final.exists():
        shutil.rmtree(final)

    def build(src: Path, work: Path, cxx: str) -> dict:
        # A top-level project that adds ggml as a subdirectory: ggml then builds as a library
        # of a parent project (what llama.cpp does), not standalone (whose pkg-config and
        # install files the sdist does not ship).
        wrap = work / "wrap"
        wrap.mkdir()
        (wrap / "CMakeLists.txt").write_text(
            "cmake_minimum_required(VERSION 3.14)\n"
            "project(tritium_peers_ggml C CXX)\n"
            f'add_subdirectory("{src.as_posix()}" ggml)\n', encoding="utf-8")
        log(f"building ggml {GGML_VERSION} of llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} "
            f"(CPU backend, {_isa_words(options)}) in {final} (a few minutes, once)")
        _cmake_build("ggml", wrap, work, options, ("ggml-cpu",), jobs)
        _copy_found(work, LIBS, work / "lib", "ggml")
        return {"cmake_options": dict(options)}

    lib = build_once(cache, final, built_libs, sdist, log, GGML_SUBDIR, build,
                     ("src", "build", "wrap"))
    return lib, key


def build_info(libdir: Path) -> dict:
    """What the build recorded (``build.json``: versions, cmake options, compilers, CPU)."""
    try:
        return json.loads((libdir.parent / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------- llama.cpp

LLAMA_SUBDIR = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp"
#: the programs built (one build makes all of them; the list is part of the cache key)
LLAMA_TOOLS = ("llama-bench",)
#: llama.cpp's own build as its README describes it for a CPU (Release, native ISA, OpenMP,
#: llamafile sgemm: the same ggml options as the ggml build above), linked statically so that
#: each program is one file that can be copied out of the build tree; nothing that reaches
#: the network (no curl, no OpenSSL, no prebuilt web UI), no server, tests or unified app.
LLAMA_CMAKE_OPTIONS: tuple[tuple[str, str], ...] = tuple(
    (k, "OFF" if k == "BUILD_SHARED_LIBS" else v) for k, v in CMAKE_OPTIONS) + (
    ("LLAMA_BUILD_COMMON", "ON"),
    ("LLAMA_BUILD_TOOLS", "ON"),
    ("LLAMA_BUILD_EXAMPLES", "ON"),
    ("LLAMA_BUILD_TESTS", "OFF"),
    ("LLAMA_BUILD_SERVER", "OFF"),
    ("LLAMA_BUILD_APP", "OFF"),
    ("LLAMA_BUILD_UI", "OFF"),
    ("LLAMA_USE_PREBUILT_UI", "OFF"),
    ("LLAMA_CURL", "OFF"),
    ("LLAMA_OPENSSL", "OFF"),
)


def llama_key(flags=None, machine: str | None = None) -> str:
    """The cache directory name of the llama.cpp programs: ``llama-<version>-<16 hex>``
    (the CPU's ISA flags, the cmake options, the programs and the sdist)."""
    flags = cpu_flags() if flags is None else flags
    return build_key(LLAMA_CPP_PYTHON_VERSION, flags,
                     isa_options(LLAMA_CMAKE_OPTIONS, flags, machine=machine)
                     + (("tools", ",".join(LLAMA_TOOLS)),),
                     machine=machine, name="llama")


def built_llama_tools(build_dir: Path) -> Path | None:
    """The ``bin`` directory of a finished llama.cpp build, or None."""
    bindir = build_dir / "bin"
    if (build_dir / "build.json").is_file() and all(
            os.access(bindir / t, os.X_OK) for t in LLAMA_TOOLS):
        return bindir
    return None


def cached_llama_tools(cache: Path | None = None) -> Path | None:
    """The ``bin`` directory of this CPU's llama.cpp build when it is already cached (builds
    and downloads nothing)."""
    cache = peers_cache() if cache is None else cache
    return built_llama_tools(cache / llama_key())


def ensure_llama_tools(cache: Path | None = None, sdist: Path | None = None,
                       jobs: int | None = None, rebuild: bool = False, log=print) -> Path:
    """Build (or reuse) llama.cpp's ``LLAMA_TOOLS`` for this CPU from the pinned sdist (pip
    downloads it when it is not cached); returns the directory holding them. Raises
    PeerUnavailable, saying what is missing, when that cannot be done here."""
    cache = peers_cache() if cache is None else cache
    final = cache / llama_key()
    if rebuild and final.exists():
        shutil.rmtree(final)

    def build(src: Path, work: Path, cxx: str) -> dict:
        options = isa_options(LLAMA_CMAKE_OPTIONS)
        log(f"building llama.cpp's {', '.join(LLAMA_TOOLS)} of llama-cpp-python "
            f"{LLAMA_CPP_PYTHON_VERSION} (CPU, {_isa_words(options)}) in {final} "
            "(many CPU-minutes, once)")
        _cmake_build("llama.cpp", src, work, options, LLAMA_TOOLS, jobs)
        _copy_found(work, LLAMA_TOOLS, work / "bin", "llama.cpp")
        return {"cmake_options": dict(options), "tools": list(LLAMA_TOOLS)}

    return build_once(cache, final, built_llama_tools, sdist, log, LLAMA_SUBDIR, build)


# ----------------------------------------------------------------------------- bindings

class InitParams(ctypes.Structure):  # struct ggml_init_params
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                ("no_alloc", ctypes.c_bool)]


class Cplan(ctypes.Structure):  # struct ggml_cplan (ggml-cpu.h)
    _fields_ = [("work_size", ctypes.c_size_t), ("work_data", ctypes.c_void_p),
                ("n_threads", ctypes.c_int), ("threadpool", ctypes.c_void_p),
                ("abort_callback", ctypes.c_void_p), ("abort_callback_data", ctypes.c_void_p),
                ("use_ref", ctypes.c_bool)]


class ThreadpoolParams(ctypes.Structure):  # struct ggml_threadpool_params
    _fields_ = [("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS), ("n_threads", ctypes.c_int),
                ("prio", ctypes.c_int), ("poll", ctypes.c_uint32), ("strict_cpu", ctypes.c_bool),
                ("paused", ctypes.c_bool)]


TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class TypeTraits(ctypes.Structure):  # struct ggml_type_traits
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", TO_FLOAT),
                ("from_float_ref", ctypes.c_void_p)]


_P = ctypes.c_void_p
_SIGS: dict[str, tuple[object, list[object]]] = {
    "ggml_version": (ctypes.c_char_p, []),
    "ggml_commit": (ctypes.c_char_p, []),
    "ggml_init": (_P, [InitParams]),
    "ggml_free": (None, [_P]),
    "ggml_tensor_overhead": (ctypes.c_size_t, []),
    "ggml_graph_overhead": (ctypes.c_size_t, []),
    "ggml_row_size": (ctypes.c_size_t, [ctypes.c_int, ctypes.c_int64]),
    "ggml_new_tensor_2d": (_P, [_P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
    "ggml_get_data": (_P, [_P]),
    "ggml_nbytes": (ctypes.c_size_t, [_P]),
    "ggml_mul_mat": (_P, [_P, _P, _P]),
    "ggml_new_graph": (_P, [_P]),
    "ggml_build_forward_expand": (None, [_P, _P]),
    "ggml_quantize_chunk": (ctypes.c_size_t, [ctypes.c_int, _P, _P, ctypes.c_int64,
                                              ctypes.c_int64, ctypes.c_int64, _P]),
    "ggml_get_type_traits": (ctypes.POINTER(TypeTraits), [ctypes.c_int]),
    "ggml_threadpool_params_default": (ThreadpoolParams, [ctypes.c_int]),
    "ggml_cpu_init": (None, []),
    "ggml_threadpool_new": (_P, [ctypes.POINTER(ThreadpoolParams)]),
    "ggml_threadpool_free": (None, [_P]),
    "ggml_graph_plan": (Cplan, [_P, ctypes.c_int, _P]),
    "ggml_graph_compute": (ctypes.c_int, [_P, ctypes.POINTER(Cplan)]),
    "ggml_cpu_has_avx2": (ctypes.c_int, []),
    "ggml_cpu_has_avx512": (ctypes.c_int, []),
    "ggml_cpu_has_avx512_vnni": (ctypes.c_int, []),
    "ggml_cpu_has_avx_vnni": (ctypes.c_int, []),
    "ggml_cpu_has_neon": (ctypes.c_int, []),
    "ggml_cpu_has_dotprod": (ctypes.c_int, []),
    "ggml_cpu_has_llamafile": (ctypes.c_int, []),
}


class Ggml:
    """The loaded ggml libraries (base first, so the CPU backend's dependency on it resolves
    to this copy) and one threadpool per thread count."""

    def __init__(self, libdir: Path) -> None:
        mode = getattr(os, "RTLD_GLOBAL", 0)
        try:
            self.base = ctypes.CDLL(str(libdir / "libggml-base.so"), mode=mode)
            self.cpu = ctypes.CDLL(str(libdir / "libggml-cpu.so"), mode=mode)
        except OSError as exc:
            raise PeerUnavailable(f"cannot load the ggml build in {libdir}: {exc} (rerun with "
                                  "--rebuild)") from None
        self.fn: dict[str, object] = {}
        for name, (res, args) in _SIGS.items():
            f = getattr(self.base, name, None) or getattr(self.cpu, name, None)
            if f is None:
                raise PeerUnavailable(f"the ggml build lacks {name}: not the pinned version?")
            f.restype = res
            f.argtypes = args
            self.fn[name] = f
        self.fn["ggml_cpu_init"]()
        self.pools: dict[int, int] = {}

    def version(self) -> str:
        return f"{self.fn['ggml_version']().decode()} ({self.fn['ggml_commit']().decode()})"

    def features(self) -> list[str]:
        names = ("avx2", "avx512", "avx512_vnni", "avx_vnni", "neon", "dotprod", "llamafile")
        return [n for n in names if self.fn[f"ggml_cpu_has_{n}"]()]

    def threadpool(self, n_threads: int) -> int:
        pool = self.pools.get(n_threads)
        if pool is None:
            params = self.fn["ggml_threadpool_params_default"](n_threads)
            pool = self.fn["ggml_threadpool_new"](ctypes.byref(params))
            if not pool:
                raise MemoryError(f"ggml_threadpool_new({n_threads}) failed")
            self.pools[n_threads] = pool
        return pool

    def close(self) -> None:
        for pool in self.pools.values():
            self.fn["ggml_threadpool_free"](pool)
        self.pools.clear()


def _f32_view(ptr: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(ptr)).reshape(shape)


class GgmlMatmul:
    """One weight matrix quantized by ggml to ``wtype``, and a ``ggml_mul_mat`` graph per batch
    size: ``y[M, N] = x[M, K] @ W[N, K]^T`` (ggml's ``mul_mat(W, x)``, which quantizes the
    activations to q8_K for the TQ types). ``run(m, threads)`` computes the graph with a
    persistent threadpool and a work buffer planned once per (batch, threads)."""

    def __init__(self, g: Ggml, wtype: int, w: np.ndarray, batches: list[int]) -> None:
        n, k = w.shape
        if k % QK_K:
            raise ValueError(f"K={k} must be a multiple of {QK_K} for {TYPE_NAMES[wtype]}")
        self.g, self.wtype, self.n, self.k = g, wtype, n, k
        f = g.fn
        over = f["ggml_tensor_overhead"]()
        size = (f["ggml_row_size"](wtype, k) * n + 4 * (k + n) * sum(batches)
                + over * (1 + 3 * len(batches)) + f["ggml_graph_overhead"]() * len(batches)
                + 64 * 1024 * (1 + len(batches)))
        self.ctx = f["ggml_init"](InitParams(size, None, False))
        if not self.ctx:
            raise MemoryError("ggml_init failed")
        self.w = f["ggml_new_tensor_2d"](self.ctx, wtype, k, n)
        src = np.ascontiguousarray(w, dtype=np.float32)
        written = f["ggml_quantize_chunk"](wtype, src.ctypes.data, f["ggml_get_data"](self.w),
                                           0, n, k, None)
        if written != f["ggml_nbytes"](self.w):
            raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes, expected "
                               f"{f['ggml_nbytes'](self.w)}")
        self.graphs: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        for m in batches:
            x = f["ggml_new_tensor_2d"](self.ctx, GGML_TYPE_F32, k, m)
            y = f["ggml_mul_mat"](self.ctx, self.w, x)
            gf = f["ggml_new_graph"](self.ctx)
            f["ggml_build_forward_expand"](gf, y)
            self.graphs[m] = (gf, _f32_view(f["ggml_get_data"](x), (m, k)),
                              _f32_view(f["ggml_get_data"](y), (m, n)))
        self.plans: dict[tuple[int, int], tuple[Cplan, np.ndarray]] = {}

    def weight_nbytes(self) -> int:
        return int(self.g.fn["ggml_nbytes"](self.w))

    def dequantized(self) -> np.ndarray:
        """The weights as ggml stores them, back in float32 (its ``to_float``)."""
        traits = self.g.fn["ggml_get_type_traits"](self.wtype).contents
        out = np.empty((self.n, self.k), dtype=np.float32)
        traits.to_float(self.g.fn["ggml_get_data"](self.w), out.ctypes.data, self.n * self.k)
        return out

    def set_input(self, m: int, x: np.ndarray) -> None:
        self.graphs[m][1][...] = x

    def output(self, m: int) -> np.ndarray:
        return self.graphs[m][2]

    def runner(self, m: int, threads: int):
        """A no-argument callable computing the batch-``m`` graph on ``threads`` threads."""
        key = (m, threads)
        if key not in self.plans:
            gf = self.graphs[m][0]
            plan = self.g.fn["ggml_graph_plan"](gf, threads, self.g.threadpool(threads))
            work = np.empty(max(1, plan.work_size) + 64, dtype=np.uint8)
            plan.work_data = work.ctypes.data
            self.plans[key] = (plan, work)
        plan, _ = self.plans[key]
        compute, gf, ref = self.g.fn["ggml_graph_compute"], self.graphs[m][0], ctypes.byref(plan)

        def run() -> None:
            rc = compute(gf, ref)
            if rc != 0:
                raise RuntimeError(f"ggml_graph_compute returned status {rc}")

        return run

    def close(self) -> None:
        if self.ctx:
            self.g.fn["ggml_free"](self.ctx)
            self.ctx = None
