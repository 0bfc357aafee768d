"""Runtime dispatch to the Triton kernels, the module loader, and the GPU-only checks."""

from __future__ import annotations

import os

import pytest
import torch

from tritium.backends.triton import dispatch
from tritium.backends.triton.codegen import runtime_source
from tritium.backends.triton.loader import load_source, source_path
from tritium.backends.triton.specs import LinearSpec
from tritium.runtime import kernels as cpu
from tritium.runtime.packing import PackedDataError, PackedTernary, pack_ternary

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _weights(n: int, k: int, fmt: str = "t2", seed: int = 0) -> tuple[PackedTernary, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(-1, 2, (n, k), generator=g).float()
    return pack_ternary(t, fmt), t


@pytest.mark.usefixtures("interpreted")
def test_dispatch_linear_and_conv_match_the_cpu_kernels():
    w, _ = _weights(12, 45, "t1.6")
    x = torch.randn(5, 45)
    scale = torch.rand(12) + 0.5
    y = dispatch.ternary_linear(x, w, scale, None, "relu", "int8", None)
    assert torch.equal(y, cpu.ternary_linear(x, w, scale, None, "relu", "int8"))
    wc, t = _weights(6, 2 * 9, "t2", 1)
    xc = torch.randn(1, 2, 5, 5)
    yc = dispatch.ternary_conv2d(xc, wc, (6, 2, 3, 3), torch.tensor(1.0), None, 1, 1, 1, 1,
                                 None, "none", None)
    ref = torch.nn.functional.conv2d(xc, t.reshape(6, 2, 3, 3), padding=1)
    torch.testing.assert_close(yc, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.usefixtures("interpreted")
def test_dispatch_validates_packed_bytes_again_after_a_change():
    w, _ = _weights(3, 20, "t2", 2)
    x = torch.randn(2, 20)
    dispatch.ternary_linear(x, w, torch.tensor(1.0), None, None, "none", None)
    w.data[1, 0] = 0xFF  # code 3 in every field: not a trit
    with pytest.raises(PackedDataError, match=r"row 1, byte 0"):
        dispatch.ternary_linear(x, w, torch.tensor(1.0), None, None, "none", None)


def test_runtime_keeps_autograd_on_the_differentiable_path():
    x = torch.randn(2, 8, requires_grad=True)
    assert not cpu._use_triton(x, torch.tensor(1.0), None, None)
    with torch.no_grad():
        assert cpu._use_triton(x, torch.tensor(1.0), None, None) == dispatch.available()
    assert dispatch.available()  # triton is part of the test install


def test_loader_keeps_interpreted_and_compiled_modules_apart():
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    spec = LinearSpec("t2", "relu")
    before = os.environ.get("TRITON_INTERPRET")
    jit_mod = load_source(runtime_source(spec), interpret=False)
    interp_mod = load_source(runtime_source(spec), interpret=True)
    assert isinstance(getattr(jit_mod, spec.name).fn, JITFunction)
    assert isinstance(getattr(interp_mod, spec.name).fn, InterpretedFunction)
    assert load_source(runtime_source(spec), interpret=False) is jit_mod
    assert os.environ.get("TRITON_INTERPRET") == before
    path = source_path(runtime_source(spec))
    assert path.read_text() == runtime_source(spec)
    assert path.stem[:16] in jit_mod.__name__


@pytest.mark.parametrize("kind", ["symlink-zero", "fifo", "other-bytes", "longer"])
def test_a_cached_kernel_source_that_is_not_exactly_the_source_is_rewritten(
        tmp_path, monkeypatch, kind):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    source = runtime_source(LinearSpec("t2", "relu"))
    path = source_path(source)
    path.unlink()
    if kind == "symlink-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "other-bytes":
        path.write_text(source.replace("tl.", "xx", 1))
    else:
        path.write_text(source + "import os\n")
    assert source_path(source) == path           # no hang, no OOM: rewritten
    assert not path.is_symlink() and path.read_text() == source


# The GPU checks run in a process of their own: this one runs Triton's interpreter
# (conftest.py sets TRITON_INTERPRET=1), which would interpret kernels on CUDA tensors too.
GPU_SCRIPT = """
import torch
from triton.runtime.jit import JITFunction

from tritium.backends.triton import compat, launch
from tritium.backends.triton.specs import Conv2dSpec, LinearSpec
from tritium.runtime import kernels as cpu
from tritium.runtime.packing import PackedTernary, pack_ternary

assert not compat.interpreting() and compat.compiler_stdlib_loaded()


def weights(n, k, fmt, seed):
    g = torch.Generator().manual_seed(seed)
    return pack_ternary(torch.randint(-1, 2, (n, k), generator=g).float(), fmt)


def on_gpu(w):
    return PackedTernary(w.format, w.data.cuda(), w.shape)


# linear: int8 bit-exact with the CPU kernels, the float path within the tests' tolerance
w = weights(130, 300, "t2", 3)
x = torch.randn(17, 300)
scale = torch.rand(130) + 0.5
bias = torch.randn(130)
y_cpu = cpu.ternary_linear(x, w, scale, bias, "relu", "int8")
y_gpu = cpu.ternary_linear(x.cuda(), on_gpu(w), scale.cuda(), bias.cuda(), "relu", "int8")
assert y_gpu.is_cuda and torch.equal(y_gpu.cpu(), y_cpu)
yf = cpu.ternary_linear(x.cuda(), on_gpu(w), scale.cuda(), bias.cuda(), "gelu")
torch.testing.assert_close(yf.cpu(), cpu.ternary_linear(x, w, scale, bias, "gelu"),
                           rtol=1e-5, atol=1e-4)
assert isinstance(launch._kernel(LinearSpec("t2", "relu", "int8", True), False).fn,
                  JITFunction)

# conv2d: the implicit GEMM, int8, bit-exact
wc = weights(16, 8 * 9, "t1.6", 4)
xc = torch.randn(2, 8, 9, 9)
yc_cpu = cpu.ternary_conv2d(xc, wc, (16, 8, 3, 3), torch.tensor(0.5), None, 2, 1,
                            act_quant="int8")
yc_gpu = cpu.ternary_conv2d(xc.cuda(), on_gpu(wc), (16, 8, 3, 3), torch.tensor(0.5).cuda(),
                            None, 2, 1, act_quant="int8")
assert yc_gpu.is_cuda and torch.equal(yc_gpu.cpu(), yc_cpu)
assert isinstance(launch._kernel(Conv2dSpec("t1.6", "none", "int8"), False).fn, JITFunction)
print("gpu ok")
"""


@pytest.mark.gpu
@needs_cuda
def test_cuda_tensors_run_the_compiled_triton_kernels(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITIUM_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", GPU_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0 and "gpu ok" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.usefixtures("interpreted")
def test_aot_compiles_in_a_process_that_runs_the_interpreter(tmp_path, monkeypatch):
    from tritium.backends.triton import aot

    # Triton's standard library was built for the interpreter here, so the compile runs in a
    # helper process; a fresh Triton cache makes it a real compile.
    assert not aot._process_can_compile()
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    x = torch.randn(3, 40)
    assert torch.equal(dispatch.ternary_linear(x, _weights(4, 40)[0], torch.tensor(1.0), None,
                                               None, "int8", None),
                       cpu.ternary_linear(x, _weights(4, 40)[0], torch.tensor(1.0),
                                          act_quant="int8"))
    kernel = aot.compile_request(aot.quant_request(16, 64), "cuda:sm_80", use_cache=False)
    assert kernel.entries() == ["tri_quantize_int8"] and not kernel.cached
    assert os.environ["TRITON_INTERPRET"] == "1"
