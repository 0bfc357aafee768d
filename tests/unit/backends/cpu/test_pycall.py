"""The fast-call module (csrc/tritium_pycall.c, backends/cpu/pycall.py): every per-call entry
point gives through it exactly what it gives through ctypes, bad arguments are errors (never a
call with a made-up pointer), and a Python without its C headers, a damaged cached module or
an unknown TRITIUM_CPU_CALLS fall back or rebuild instead of failing."""

from __future__ import annotations

import ctypes
import hashlib
import textwrap
from pathlib import Path

import pytest
import torch

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu import build as build_mod
from tritium.backends.cpu import pycall
from tritium.driver.models import build_model
from tritium.runtime import freeze_model
from tritium.runtime.decoding import DecodeSession
from tritium.runtime.layers import TernaryLinear

_BITNET = Path(__file__).resolve().parents[4] / "examples" / "bitnet_b158.tri"

CNN = """
model C {
    layer conv1: Conv2d { in_channels: 1, out_channels: 4, kernel_size: 3, padding: 1 }
    layer bn1: BatchNorm2d { num_features: 4 }
    layer pool1: MaxPool2d { kernel_size: 2 }
    layer conv2: TernaryConv2d { in_channels: 4, out_channels: 6, kernel_size: 3, padding: 1 }
    layer pool2: AvgPool2d { kernel_size: 2 }
    layer conv3: TernaryConv2d { in_channels: 6, out_channels: 6, kernel_size: 3, padding: 1,
                                 act_quant: "int8" }
    layer pool3: MaxPool2d { kernel_size: 2 }
    layer fc1: TernaryLinear { in_features: 24, out_features: 16, act_quant: "int8" }
    layer fc2: TernaryLinear { in_features: 16, out_features: 10 }
    forward(x: Tensor[b, 1, 16, 16]) -> Tensor[b, 10] {
        x = pool1(relu(bn1(conv1(x))))
        x = pool2(tanh(conv2(x)))
        x = pool3(conv3(x))
        x = flatten(x, start_dim: 1)
        x = relu(fc1(x))
        return fc2(x)
    }
}
"""


def _outputs(tmp_path: Path) -> list[torch.Tensor]:
    """Every native fast path once: a CNN (fp32 conv with its norm and pool, a ternary conv
    alone, a pooling alone, a ternary conv with its pool, a chain of linear layers), a frozen layer with a residual, and a BitNet
    decoder with an int8 head (BitLinear's norm-and-product, a shared-input group)."""
    import tritium

    path = tmp_path / "c.tri"
    path.write_text(textwrap.dedent(CNN))
    torch.manual_seed(0)
    cnn = freeze_model(build_model(path).model.eval())
    lin = TernaryLinear(24, 8).freeze()
    torch.manual_seed(0)
    lm = freeze_model(tritium.load(str(_BITNET), "BitNetB158", dim=32, layers=1, heads=2,
                                   ffn=48).eval(), head="int8")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 16, 16, generator=gen)
    v = torch.randn(5, 24, generator=gen)
    r = torch.randn(5, 8, generator=gen)
    ids = torch.randint(0, 256, (1, 7), generator=gen)
    with torch.no_grad(), DecodeSession() as s:
        out = [cnn(x), lin(v, activation="relu", residual=r), s.forward(lm, ids[:, :4])]
        out += [s.forward(lm, ids[:, i:i + 1]) for i in range(4, 7)]
    return out


def test_the_fast_calls_give_what_ctypes_gives(tmp_path, monkeypatch):
    lib = cpu_backend.load()
    if lib is None:
        pytest.skip("no native kernels")
    if lib.call.mode != "fast":
        pytest.skip(f"the fast calls did not build here: {lib.call.reason}")
    fast = _outputs(tmp_path)
    monkeypatch.setenv("TRITIUM_CPU_CALLS", "ctypes")
    slow_lib = cpu_backend.load()
    assert slow_lib.call.mode == "ctypes" and "TRITIUM_CPU_CALLS" in slow_lib.call.reason
    called = set()
    for name in pycall.FAST_ENTRY_POINTS:   # count the ctypes calls of each entry point
        fn = getattr(slow_lib.call, name)
        monkeypatch.setattr(slow_lib.call, name,
                            lambda *a, _fn=fn, _name=name: called.add(_name) or _fn(*a))
    slow = _outputs(tmp_path)
    assert called == set(pycall.FAST_ENTRY_POINTS), "an entry point the test does not reach"
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a, b)


def test_bad_arguments_are_errors_not_calls():
    lib = cpu_backend.load()
    if lib is None or lib.call.mode != "fast":
        pytest.skip("no fast calls here")
    f = lib.call.tri_pool2d
    with pytest.raises(TypeError, match="5 arguments"):
        f(0, 0, 0)
    with pytest.raises(TypeError, match="pointer argument"):
        f(0, 1.5, 1, 0, 1)
    with pytest.raises(TypeError, match="pointer argument"):
        f(ctypes.c_void_p(0), None, 1, None, 1)
    with pytest.raises(OverflowError):
        f(None, None, 1, None, 1 << 40)
    module, _ = pycall._module()
    assert {n for n in dir(module) if n.startswith("tri_")} == set(pycall.FAST_ENTRY_POINTS)
    with pytest.raises(ValueError, match="address is 0"):
        module.tri_pool2d(0, None, None, 1, None, 1)
    with pytest.raises(TypeError, match="entry point"):
        module.tri_pool2d(None, None, None, 1, None, 1)
    # a geometry the kernels refuse still comes back as their return code
    g = cpu_backend.PoolGeomArgs()
    assert f(ctypes.addressof(g), None, 1, None, 1) == 2


def test_without_python_headers_the_calls_go_through_ctypes(tmp_path, monkeypatch):
    native = cpu_backend.load()
    if native is None:
        pytest.skip("no native kernels")
    lib = ctypes.CDLL(str(native.path))
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path))   # no fast-call module built there
    monkeypatch.setattr(build_mod, "python_include", lambda: None)
    calls = pycall.Calls(lib)
    assert calls.mode == "ctypes" and "Python.h" in calls.reason
    assert calls.tri_pool2d is lib.tri_pool2d


def test_an_unknown_mode_warns_and_runs_fast(monkeypatch):
    monkeypatch.setenv("TRITIUM_CPU_CALLS", "turbo")
    with pytest.warns(RuntimeWarning, match="TRITIUM_CPU_CALLS='turbo'"):
        assert pycall.requested_mode() == "fast"


def test_a_damaged_cached_module_is_rebuilt(tmp_path, monkeypatch):
    if build_mod.python_include() is None or build_mod.find_compiler() is None:
        pytest.skip("no Python.h or compiler")
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path))
    so = build_mod.build_pycall()
    so.write_bytes(b"not an ELF file")   # and a sidecar that matches it: it is verified
    so.with_suffix(".sha256").write_text(hashlib.sha256(so.read_bytes()).hexdigest())
    module, why = pycall._module()
    assert why == "" and module.ABI == pycall.PYCALL_ABI
    assert so.read_bytes()[:4] == b"\x7fELF"


def test_a_module_that_fails_to_load_leaves_the_ctypes_calls(tmp_path, monkeypatch):
    native = cpu_backend.load()
    if native is None or build_mod.python_include() is None:
        pytest.skip("no native kernels or no Python.h")
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path))

    def broken(path):
        raise SystemError("initialization of _tritium_pycall raised unreported exception")

    monkeypatch.setattr(pycall, "_import", broken)
    calls = pycall.Calls(native.lib)
    assert calls.mode == "ctypes" and "unreported exception" in calls.reason
    assert calls.tri_linear_planned is native.lib.tri_linear_planned
