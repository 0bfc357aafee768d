"""``llama_logits``: a small program of ours (``benchmarks/llama_check/llama_logits.cpp``)
linked against llama.cpp, which prints what llama.cpp computes on a GGUF file: the prompt's
token ids under the file's own vocabulary, the logits of every prompt position and a greedy
continuation. ``benchmarks/gguf_parity.py`` and ``make test``
(``tests/e2e/test_llama_cpp_roundtrip.py``) compare them with Tritium's own forward pass of
the checkpoint the file was exported from.

The build is the smallest llama.cpp that loads a model: only the ``llama`` library target
(ggml, its CPU backend and libllama, static; no common library, tools, examples, OpenMP or
llamafile sgemm), ``-O1`` (a correctness check of tiny models, not a benchmark: a minute on
two cores where the full Release build of ``benchmarks/llm.py`` takes ten), native ISA. The
sdist is the pinned one of ``_ggml`` (downloaded with pip when absent, SHA-256 checked); the
result lives under ``<cache root>/peers/llama-check-<version>-<key>``, the key hashing the CPU's
ISA flags, the options, the sdist and the program's source.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import _ggml
from _ggml import PeerUnavailable

SOURCE = Path(__file__).resolve().parent / "llama_check" / "llama_logits.cpp"
PROGRAM = "llama_logits"
OPT = "-O1"

CHECK_CMAKE_OPTIONS: tuple[tuple[str, str], ...] = (
    ("CMAKE_BUILD_TYPE", "None"),
    ("CMAKE_C_FLAGS", OPT),
    ("CMAKE_CXX_FLAGS", OPT),
    ("BUILD_SHARED_LIBS", "OFF"),
    ("GGML_NATIVE", "ON"),
    ("GGML_CPU", "ON"),
    ("GGML_OPENMP", "OFF"),
    ("GGML_LLAMAFILE", "OFF"),
    ("GGML_BACKEND_DL", "OFF"),
    ("GGML_CUDA", "OFF"),
    ("GGML_METAL", "OFF"),
    ("GGML_VULKAN", "OFF"),
    ("GGML_BLAS", "OFF"),
    ("GGML_CCACHE", "OFF"),
    ("GGML_BUILD_TESTS", "OFF"),
    ("GGML_BUILD_EXAMPLES", "OFF"),
    ("LLAMA_BUILD_COMMON", "OFF"),
    ("LLAMA_BUILD_TOOLS", "OFF"),
    ("LLAMA_BUILD_EXAMPLES", "OFF"),
    ("LLAMA_BUILD_TESTS", "OFF"),
    ("LLAMA_BUILD_SERVER", "OFF"),
    ("LLAMA_CURL", "OFF"),
    ("LLAMA_OPENSSL", "OFF"),
)
# the static libraries of the `llama` target, in link order (each needs the ones after it)
STATIC_LIBS = ("src/libllama.a", "ggml/src/libggml.a", "ggml/src/libggml-cpu.a",
               "ggml/src/libggml-base.a")


def check_key(flags=None, machine: str | None = None) -> str:
    """``llama-check-<version>-<16 hex>``: the CPU's ISA flags, the options, the sdist and
    the program's source."""
    flags = _ggml.cpu_flags() if flags is None else flags
    source = _ggml.cachedir.digest(SOURCE.read_bytes())
    return _ggml.build_key(_ggml.LLAMA_CPP_PYTHON_VERSION, flags,
                           CHECK_CMAKE_OPTIONS + (("source", source),), machine=machine,
                           name="llama-check")


def built_program(build_dir: Path) -> Path | None:
    exe = build_dir / "bin" / PROGRAM
    if (build_dir / "build.json").is_file() and os.access(exe, os.X_OK):
        return exe
    return None


def ensure_llama_check(cache: Path | None = None, sdist: Path | None = None,
                       jobs: int | None = None, log=print) -> Path:
    """The ``llama_logits`` program for this CPU, built when it is not cached. Raises
    PeerUnavailable, saying what is missing, when that cannot be done here."""
    cache = _ggml.peers_cache() if cache is None else cache
    final = cache / check_key()

    def build(src: Path, work: Path, cxx: str) -> dict:
        log(f"building llama.cpp's library of llama-cpp-python "
            f"{_ggml.LLAMA_CPP_PYTHON_VERSION} ({OPT}, native ISA) and {PROGRAM} in {final} "
            "(about a minute on two cores, once)")
        _ggml._cmake_build("llama.cpp", src, work, CHECK_CMAKE_OPTIONS, ("llama",), jobs)
        (work / "bin").mkdir()
        link = [cxx, OPT, "-std=c++17", f"-I{src / 'include'}", f"-I{src / 'ggml' / 'include'}",
                str(SOURCE), *(str(work / "build" / lib) for lib in STATIC_LIBS),
                "-lpthread", "-o", str(work / "bin" / PROGRAM)]
        p = subprocess.run(link, capture_output=True, text=True)
        if p.returncode != 0:
            raise PeerUnavailable(f"compiling {SOURCE.name} failed:\n    "
                                  + "\n    ".join((p.stdout + p.stderr).splitlines()[-15:]))
        return {"cmake_options": dict(CHECK_CMAKE_OPTIONS), "program": PROGRAM}

    return _ggml.build_once(cache, final, built_program, sdist, log, _ggml.LLAMA_SUBDIR, build)


# ----------------------------------------------------------------------------- running it

class LlamaRun:
    """What one run of ``llama_logits`` printed."""

    def __init__(self, vocab: int, tokens: list[int], logits: list[list[float]],
                 greedy: list[int]) -> None:
        self.vocab, self.tokens, self.logits, self.greedy = vocab, tokens, logits, greedy


def parse_output(text: str) -> LlamaRun:
    """The records of ``llama_logits``'s output (see the program's header)."""
    vocab, tokens, greedy, logits = None, None, None, []
    for line in text.splitlines():
        kind, *rest = line.split()
        if kind == "vocab":
            vocab = int(rest[0])
        elif kind == "tokens":
            tokens = [int(t) for t in rest]
        elif kind == "logits":
            if int(rest[0]) != len(logits):
                raise ValueError(f"logits of position {rest[0]} out of order")
            logits.append([float(v) for v in rest[1:]])
        elif kind == "greedy":
            greedy = [int(t) for t in rest]
    if vocab is None or tokens is None or greedy is None or len(logits) != len(tokens):
        raise ValueError("llama_logits printed an incomplete record")
    if any(len(row) != vocab for row in logits):
        raise ValueError("a logits row is not the vocabulary's length")
    return LlamaRun(vocab, tokens, logits, greedy)


def run_llama_logits(exe: Path, gguf: Path, text: str, n_gen: int,
                     timeout: float = 300) -> LlamaRun:
    """llama.cpp on `gguf`: the tokens of `text`, its logits and `n_gen` greedy tokens."""
    p = subprocess.run([str(exe), str(gguf), str(n_gen), text], capture_output=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{exe.name} failed ({p.returncode}): "
                           f"{p.stderr.decode(errors='replace')[-2000:]}")
    return parse_output(p.stdout.decode())
