"""Ahead-of-time builds of the example models' Triton kernels for sm_80 and sm_90 (no GPU).

The examples go through the real pipeline: check → lowering → -O2 (with `fuse`) → fused ops →
kernel specs → generated Triton source → `triton.compile` for a `GPUTarget`. Builds are cached
in a cache root shared by the pytest-xdist workers of one run, so each binary is compiled once
per run; tests that need a compile of their own say so.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.backends.triton import compat
from tritium.backends.triton.aot import (
    AotBuild,
    build_model,
    compile_request,
    ptx_entries,
    quant_request,
)
from tritium.check import check_file
from tritium.cli import main
from tritium.ir import Module
from tritium.ir.lowering import lower
from tritium.passes import pipeline

EX = Path(__file__).resolve().parents[2] / "examples"
TARGETS = {"cuda:sm_80": ("sm_80", "cuda:80"), "cuda:sm_90": ("sm_90a", "cuda:90")}
ELF = b"\x7fELF"


@pytest.fixture(scope="session")
def aot_cache_root(tmp_path_factory, worker_id) -> Path:
    base = tmp_path_factory.getbasetemp()
    return (base if worker_id == "master" else base.parent) / "tritium-aot-cache"


@pytest.fixture(autouse=True)
def _cache(aot_cache_root, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(aot_cache_root))


def _optimized(name: str) -> Module:
    lowered = lower(check_file(str(EX / f"{name}.tri")))
    pipeline("O2").run(lowered.module)
    return lowered.module


def _check_stages(build: AotBuild, target: str) -> None:
    ptx_target, ttg_target = TARGETS[target]
    for k in build.kernels:
        assert f"tt.func public @{k.name}" in k.text("ttir")
        assert f'ttg.target = "{ttg_target}"' in k.text("ttgir")
        assert f"@{k.name}(" in k.text("llir")
        assert f".target {ptx_target}" in k.text("ptx")
        assert k.entries() == [k.name]
        cubin = k.stages["cubin"]
        assert isinstance(cubin, bytes) and cubin[:4] == ELF


@pytest.mark.parametrize("target", list(TARGETS))
def test_mlp_and_resnet18_kernels_build(target):
    mlp = build_model(_optimized("mlp"), target, assumed_m=16)
    assert [k.name for k in mlp.kernels] == ["tri_linear_t2_q8_bias"]
    assert len(mlp.kernels[0].uses) == 2  # fc1 and fc2 share one binary
    _check_stages(mlp, target)

    resnet = build_model(_optimized("resnet18"), target, assumed_m=16)
    assert {e for k in resnet.kernels for e in k.entries()} == {"tri_conv2d_t2"}
    geometries = {(k.constexprs["KH"], k.constexprs["SH"], k.constexprs["PH"])
                  for k in resnet.kernels}
    assert geometries == {(3, 1, 1), (3, 2, 1), (1, 2, 0)}
    # 7 distinct blocks after monomorphization: 14 3x3 convs and 3 1x1 shortcut convs
    assert sum(len(k.uses) for k in resnet.kernels) == 17
    _check_stages(resnet, target)

    again = build_model(_optimized("resnet18"), target, assumed_m=16)
    assert all(k.cached for k in again.kernels)
    assert [k.stages["cubin"] for k in again.kernels] == [k.stages["cubin"] for k in resnet.kernels]


def test_int8_kernels_keep_exact_rounding_in_ptx():
    # the BitNet block's projections: fused RMSNorm + int8 BitLinear
    build = build_model(_optimized("bitnet_block"), "cuda:sm_90", assumed_m=16)
    names = {k.name for k in build.kernels}
    assert "tri_linear_t2_rms_q8" in names
    assert all(n.startswith("tri_linear_t2_rms_q8") for n in names)
    quant = compile_request(quant_request(16, 128), "cuda:sm_90")
    assert quant.entries() == ["tri_quantize_int8"]
    for k in [*build.kernels, quant]:
        ptx = k.text("ptx")
        if compat.exact_division():
            assert "div.rn.f32" in ptx             # IEEE x / s, as torch divides
            assert ".ftz" not in ptx.replace("approx.ftz", "")  # no libdevice flush-to-zero
        else:  # Triton 3.5: libdevice's division, flushing subnormals (docs/triton.md)
            assert "div.rn.ftz.f32" in ptx
        assert "0f4B400000" in ptx                 # 1.5 * 2**23: round half to even survived
    assert any("mma.sync" in k.text("ptx") or "wgmma" in k.text("ptx") for k in build.kernels)


_GOOD_STAGES = {"ttir": "t", "ttgir": "g", "llir": "l", "ptx": "p", "cubin": "f0VMRg=="}


@pytest.mark.parametrize("entry", [
    {"stages": {**_GOOD_STAGES, "cubin": "%%% not base64"}},
    {"stages": {**_GOOD_STAGES, "ptx": 7}},
    {"stages": ["ttir", "ttgir", "llir", "ptx", "cubin"]},
    {"stages": _GOOD_STAGES, "shared": "lots"},
    {"stages": _GOOD_STAGES, "seconds": [1]},
])
def test_a_malformed_cache_entry_is_rebuilt_not_served(entry, tmp_path, monkeypatch):
    # A compile-cache entry is untrusted (its checksum anyone can recompute): one with a stage
    # that is not text, a cubin that is not base64 or a non-numeric field raised mid-build
    # (binascii.Error, ValueError) or was served as the build; it is now dropped and rebuilt.
    import triton

    from tritium.backends.triton import aot
    from tritium.compile_cache import CompileCache

    req, target = quant_request(16, 128), "cuda:sm_90"
    store = CompileCache(tmp_path / "compile")
    store.put(aot._key(req, target, triton.__version__), entry)
    fresh = {"stages": {**_GOOD_STAGES, "ptx": "fresh"}, "seconds": 0.5, "shared": 0}
    monkeypatch.setattr(aot, "_compile_here", lambda r, t: fresh)
    monkeypatch.setattr(aot, "_compile_in_subprocess", lambda rs, t: [fresh for _ in rs])
    k = compile_request(req, target, cache=store)
    assert not k.cached and k.text("ptx") == "fresh" and k.stages["cubin"] == ELF
    assert compile_request(req, target, cache=store).cached   # the rebuilt entry is served


def test_cli_emits_ptx_and_writes_cubins(capsys, tmp_path):
    assert main(["compile", str(EX / "mlp.tri"), "--target", "cuda:sm_80", "--emit", "ptx"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("// ===== tri_linear_t2_q8_bias [PER_CHANNEL=0, BLOCK_M=")
    assert ptx_entries(out) == ["tri_linear_t2_q8_bias"] and ".target sm_80" in out
    assert main(["compile", str(EX / "mlp.tri"), "--target", "cuda:sm_80", "--emit", "cubin",
                 "-o", str(tmp_path / "bin")]) == 0
    [cubin] = sorted((tmp_path / "bin").glob("*.cubin"))
    assert cubin.name.startswith("mlp.tri_linear_t2_q8_bias.") and cubin.read_bytes()[:4] == ELF
    assert main(["compile", str(EX / "mlp.tri"), "--target", "cuda:sm_80", "--emit", "llir",
                 "-o", str(tmp_path / "mlp.ll")]) == 0
    assert "define" in (tmp_path / "mlp.ll").read_text()


@pytest.mark.parametrize("argv,message", [
    (["--target", "cuda:sm_90", "--emit", "cubin"], "-o DIR"),
    (["--emit", "ptx"], "--target cuda:sm_80|cuda:sm_90"),
    (["--emit", "triton"], "--target triton"),
    (["--target", "triton", "--emit", "ptx"], "needs `--target cuda"),
    (["--target", "cuda:sm_80", "--emit", "py"], "emits triton, ttir"),
])
def test_cli_usage_errors_exit_2(argv, message, capsys):
    assert main(["compile", str(EX / "mlp.tri"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_prints_the_generated_triton_source(capsys):
    assert main(["compile", str(EX / "resnet18.tri"), "--target", "triton"]) == 0
    first = capsys.readouterr().out
    assert main(["compile", str(EX / "resnet18.tri"), "--target", "triton", "--emit",
                 "triton"]) == 0
    assert capsys.readouterr().out == first
    funcs = {n.name for n in ast.parse(first).body if isinstance(n, ast.FunctionDef)}
    assert "tri_conv2d_t2" in funcs and "_dot_f32_trits" in funcs
    assert first.count("#   BasicBlock__") == 17


def test_emitting_triton_source_imports_neither_torch_nor_triton(tmp_path):
    code = (
        "import contextlib, io, sys\n"
        "from tritium.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    rc = main(['compile', {str(EX / 'mlp.tri')!r}, '--target', 'triton'])\n"
        "assert rc == 0 and 'def tri_linear_t2_q8_bias(' in out.getvalue()\n"
        "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))\n"
    )
    env = {**os.environ, "TRITIUM_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
