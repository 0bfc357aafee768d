"""Everything that differs between the Triton versions the backend supports, in one place.

Supported: Triton 3.5 and newer (torch 2.9 pins 3.5, torch 2.10 and 2.11 pin 3.6). The rest of
the backend calls these helpers instead of reaching into Triton where versions differ:

* **Interpreter mode.** ``interpreting()`` / ``interpret_mode(on)`` read and scope
  ``triton.knobs.runtime.interpret`` (the knob mirrors ``TRITON_INTERPRET``; every supported
  version has it). ``compiler_stdlib_loaded()`` says whether this process's Triton built its
  standard library for the compiler (then it cannot interpret) or for the interpreter (then
  it cannot ``triton.compile``).
* **The interpreter's scalar bug.** Triton 3.5 and 3.6 turn a runtime scalar used as a loop
  bound (``range(0, tl.cdiv(K, BLOCK_K))``) into a Python int with ``int(array)`` on a
  one-element array, which NumPy 2.4 and newer reject ("only 0-dimensional arrays can be
  converted to Python scalars"); Triton 3.7 reads the element instead. ``prepare_interpreter()``
  checks the interpreter's behaviour on such a scalar and, only when it fails, wraps the
  interpreter's tensor patching so the scalar is read as its one element, the newer
  versions' behaviour.
* **Options.** ``enable_fp_fusion=False`` (no FMA contraction, so the epilogue rounds like the
  CPU kernels) exists everywhere. ``enable_reflect_ftz`` (libdevice without flush-to-zero)
  exists from 3.6; where it does not, libdevice flushes subnormals, and ``tl.div_rn`` goes
  through libdevice's ``__nv_fdiv_rn`` and so compiles to ``div.rn.ftz.f32``
  (``exact_division()`` is False): the int8 quantization then equals torch's except for rows
  whose absmax is below 127 * 2**-126 (about 1.5e-36), whose scale would be subnormal.
* **Ahead-of-time compiles.** ``compile_kernel`` builds a ``triton.compiler.ASTSource`` (the
  ``fn, signature, constexprs, attrs`` form every supported version takes) for a
  ``GPUTarget("cuda", capability, 32)``.
* **Versions.** ``available()`` is True when an importable Triton is 3.5 or newer; an older one
  is reported once and the runtime keeps CUDA tensors on its PyTorch path.

Nothing here imports Triton at module import time.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import inspect
import operator
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

MIN_VERSION = (3, 5)
SUPPORTED = ">=3.5"

_LOCK = threading.Lock()


def parse_version(text: str) -> tuple[int, int, int]:
    """``"3.6.0"`` → (3, 6, 0); pre-release and local suffixes are ignored
    (``"3.5.0+git1a2b"`` → (3, 5, 0)). ValueError when no version number leads the text."""
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
    if m is None:
        raise ValueError(f"not a version: {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def installed_version() -> str | None:
    """The installed Triton's version, read without importing it; None when not installed."""
    if importlib.util.find_spec("triton") is None:
        return None
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        import triton  # a source checkout without metadata: ask the module

        return str(triton.__version__)


def version_supported(version: str) -> bool:
    try:
        return parse_version(version)[:2] >= MIN_VERSION
    except ValueError:
        return False


@functools.cache
def available() -> bool:
    """Whether a supported Triton (3.5 or newer) is installed. An older one is reported once
    (a RuntimeWarning) and treated as absent."""
    version = installed_version()
    if version is None:
        return False
    if not version_supported(version):
        warnings.warn(f"triton {version} is older than the {'.'.join(map(str, MIN_VERSION))} "
                      "the Tritium Triton backend needs; CUDA tensors use the PyTorch path "
                      "(pip install 'triton>=3.5')", RuntimeWarning, stacklevel=2)
        return False
    return True


def require() -> str:
    """The installed Triton's version; RuntimeError with one clear line when it is missing or
    too old (for entry points that cannot fall back)."""
    version = installed_version()
    if version is None:
        raise RuntimeError("the Triton backend needs the triton package: pip install "
                           "'triton>=3.5' (or tritium[gpu])")
    if not version_supported(version):
        raise RuntimeError(f"the Triton backend needs triton {SUPPORTED}, found {version}: "
                           "pip install 'triton>=3.5'")
    return version


# ----------------------------------------------------------------------------- modes

def interpreting() -> bool:
    """Whether newly loaded kernels run on Triton's interpreter (TRITON_INTERPRET)."""
    from triton import knobs

    return bool(knobs.runtime.interpret)


@contextmanager
def interpret_mode(on: bool) -> Iterator[None]:
    """Temporarily force TRITON_INTERPRET on or off (the knob and the variable it mirrors)."""
    from triton import knobs

    with knobs.runtime.scope():
        knobs.runtime.interpret = on
        yield


def set_interpreting() -> None:
    """Make kernels loaded from now on interpreted (the caller set TRITON_INTERPRET=1)."""
    from triton import knobs

    knobs.runtime.interpret = True


def compiler_stdlib_loaded() -> bool:
    """Whether Triton's standard library (``tl.cdiv``, ``tl.max``, ...) was built for the
    compiler in this process (decided when Triton is first imported, from TRITON_INTERPRET):
    then ``triton.compile`` works here and the interpreter does not; else the reverse."""
    from triton.language import standard
    from triton.runtime.jit import JITFunction

    return isinstance(standard.cdiv, JITFunction)


# ----------------------------------------------------------------------------- interpreter

class _Probe:
    """A stand-in for ``tl.tensor`` to see how the interpreter turns a scalar into an int."""


def _patch_probe(patch: Any, cls: type) -> None:
    from triton.runtime import interpreter

    if len(inspect.signature(patch).parameters) >= 2:  # 3.6+: (tensor, scope)
        scope = interpreter._LangPatchScope()
        patch(cls, scope)
    else:  # 3.5: (tensor)
        patch(cls)


def _index_of_scalar_works(patch: Any) -> bool:
    import numpy as np

    cls = type("_ProbeTensor", (_Probe,), {})
    _patch_probe(patch, cls)
    probe = cls()
    probe.handle = type("_Handle", (), {})()
    probe.handle.data = np.array([3], dtype=np.int32)
    try:
        return operator.index(probe) == 3
    except TypeError:
        return False


def _index_scalar(self: Any) -> int:
    data = self.handle.data
    return int(data.reshape(-1)[0]) if getattr(data, "size", 0) == 1 else int(data)


_INTERPRETER_FIX: list[bool] = []  # [whether a fix was installed], once probed


def prepare_interpreter() -> bool:
    """Make the interpreter read one-element scalars as ints where its own patch fails on the
    installed NumPy (Triton 3.5/3.6 with NumPy >= 2.4). Idempotent; returns whether a fix was
    installed in this process (False: the interpreter already works, or cannot be probed)."""
    with _LOCK:
        if not _INTERPRETER_FIX:
            _INTERPRETER_FIX.append(_install_interpreter_fix())
        return _INTERPRETER_FIX[0]


def _install_interpreter_fix() -> bool:
    try:
        from triton.runtime import interpreter

        original = interpreter._patch_lang_tensor
        if _index_of_scalar_works(original):
            return False
    except Exception:  # noqa: BLE001 - an interpreter we cannot probe: leave it alone
        return False

    @functools.wraps(original)
    def _patch_lang_tensor(tensor, *rest, **kw):
        original(tensor, *rest, **kw)
        # Set after the original: 3.6 restores the pre-interpreter attribute from the scope
        # it recorded when the launch ends, 3.5 sets it again on every launch.
        tensor.__index__ = _index_scalar

    interpreter._patch_lang_tensor = _patch_lang_tensor
    return True


# ----------------------------------------------------------------------------- options

@functools.cache
def _cuda_option_fields() -> frozenset[str]:
    try:
        import dataclasses

        from triton.backends.nvidia.compiler import CUDAOptions

        return frozenset(f.name for f in dataclasses.fields(CUDAOptions))
    except Exception:  # noqa: BLE001 - no NVIDIA backend in this Triton build
        return frozenset()


def exact_division() -> bool:
    """Whether ``tl.div_rn`` compiles to IEEE ``div.rn.f32`` without flush-to-zero (3.6+,
    with ``enable_reflect_ftz=False``); on 3.5 it is ``div.rn.ftz.f32``."""
    return "enable_reflect_ftz" in _cuda_option_fields()


def numeric_options() -> dict[str, bool]:
    """Compile options every kernel gets: no FMA contraction, and no libdevice flush-to-zero
    where the installed Triton lets it be turned off. The interpreter ignores them."""
    out = {"enable_fp_fusion": False}
    if exact_division():
        out["enable_reflect_ftz"] = False
    return out


def compile_options(num_warps: int, num_stages: int) -> dict[str, int | bool]:
    return {"num_warps": int(num_warps), "num_stages": int(num_stages), **numeric_options()}


# ----------------------------------------------------------------------------- compiling

def compile_kernel(jit_fn: Any, signature: Mapping[str, str], constexprs: Mapping[str, Any],
                   attrs: Mapping[tuple[int, ...], list], capability: int,
                   options: Mapping[str, Any]) -> Any:
    """``triton.compile`` of one ``@triton.jit`` function for ``sm_<capability>``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(fn=jit_fn, signature=dict(signature), constexprs=dict(constexprs),
                    attrs=dict(attrs))
    return triton.compile(src, target=GPUTarget("cuda", int(capability), 32),
                          options=dict(options))
