"""benchmarks/peers.py (Tritium against llama.cpp's ggml) without building ggml: argument
parsing, the output check on synthetic products, the activation quantizers it simulates, the
build-cache key and cache reuse, and the clear exit when the build tools are missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def mods(benchmark_module):
    return benchmark_module("peers"), benchmark_module("_ggml")


# ----------------------------------------------------------------------------- arguments

def test_defaults_are_the_issue_grid(mods):
    peers, _ = mods
    args = peers.parse_args([])
    assert args.shapes == [(4096, 4096), (1024, 1024)]
    assert args.batches == [1, 64]
    assert args.threads[0] == 1 and args.threads == sorted(set(args.threads))
    assert args.rounds >= 3 and args.json is None


def test_options_parse(mods):
    peers, _ = mods
    args = peers.parse_args(["--shapes", "11008x4096,256x512", "--batches", "1,8",
                             "--threads", "1,2", "--rounds", "3", "--json", "out.json"])
    assert args.shapes == [(11008, 4096), (256, 512)]
    assert args.batches == [1, 8] and args.threads == [1, 2] and args.rounds == 3
    assert args.json == "out.json"
    quick = peers.parse_args(["--quick"])
    assert quick.shapes == [(1024, 1024)] and quick.rounds == 3 and quick.min_time == 0.01
    mine = peers.parse_args(["--quick", "--shapes", "512x512", "--rounds", "5"])
    assert mine.shapes == [(512, 512)] and mine.rounds == 5


@pytest.mark.parametrize("argv, needle", [
    (["--shapes", "4096x1000"], "multiple of 256"),
    (["--shapes", "4096"], "NxK"),
    (["--shapes", "0x256"], "positive"),
    (["--batches", "0"], "positive"),
    (["--threads", "a"], "integers"),
    (["--rounds", "0"], "--rounds"),
])
def test_bad_arguments_are_usage_errors(mods, capsys, argv, needle):
    peers, _ = mods
    with pytest.raises(SystemExit) as exc:
        peers.parse_args(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


# ----------------------------------------------------------------------------- quantizers

def test_q8_k_matches_ggml_reference_rule(mods):
    peers, _ = mods
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 512)).astype(np.float32)
    x[1, 256:] = 0.0  # an all-zero block stays zero
    x[2, 10] = -9.0  # the block's largest magnitude is negative: its code is -127 again
    deq = peers.quantize_q8_k(x)
    assert deq.shape == x.shape
    assert np.all(deq[1, 256:] == 0)
    for row in range(3):
        for b in range(2):
            blk, got = x[row, b * 256:(b + 1) * 256], deq[row, b * 256:(b + 1) * 256]
            amax = np.abs(blk).max()
            if amax == 0:
                continue
            step = amax / 127
            # codes are integers times the block's step, within half a step of x
            assert np.all(np.abs(got - blk) <= step / 2 + 1e-6 * amax)
            assert np.allclose(np.rint(got / step), got / step, atol=1e-3)
    assert deq[2, 10] == pytest.approx(-9.0, rel=1e-6)
    with pytest.raises(ValueError):
        peers.quantize_q8_k(np.ones((1, 100), dtype=np.float32))


def test_int8_per_token(mods):
    peers, _ = mods
    x = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 0.01]], dtype=np.float32)
    deq = peers.quantize_int8_per_token(x)
    assert np.all(deq[0] == 0)
    assert deq[1, 1] == pytest.approx(-2.0)
    assert np.all(np.abs(deq[1] - x[1]) <= 2.0 / 254 + 1e-7)


# ----------------------------------------------------------------------------- the check

def _products(peers, act_quant, m=4, n=96, k=512, seed=1):
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, size=(n, k)).astype(np.float64) * 0.037
    x = rng.standard_normal((m, k)).astype(np.float32)
    exact = x.astype(np.float64) @ w.T
    sim = peers.simulate_activations(x, act_quant) @ w.T
    return exact, sim


@pytest.mark.parametrize("act_quant", ["q8_K", "int8"])
def test_check_accepts_the_quantized_product(mods, act_quant):
    peers, _ = mods
    exact, sim = _products(peers, act_quant)
    rng = np.random.default_rng(2)
    y = (sim * (1 + 1e-6 * rng.standard_normal(sim.shape))).astype(np.float32)  # fp32 output
    fig = peers.check_output("impl", y, exact, sim)
    assert 0 < fig["rel_err"] < 0.03
    assert fig["rel_err"] == pytest.approx(fig["quant_rel_err"], rel=0.05)
    assert fig["max_err"] <= fig["bound"]


def test_check_exact_path_has_a_tight_bound(mods):
    peers, _ = mods
    exact, sim = _products(peers, "none")
    assert np.array_equal(exact, sim)
    fig = peers.check_output("f32", exact.astype(np.float32), exact, sim)
    assert fig["rel_err"] < 1e-6
    # the int8 quantization error is far above what the exact path is allowed
    _, sim8 = _products(peers, "int8")
    with pytest.raises(peers.OutputMismatch, match="WRONG OUTPUT"):
        peers.check_output("f32", sim8, exact, sim)


@pytest.mark.parametrize("damage", ["one element", "swapped rows", "zeros", "nan", "shape",
                                    "wrong scale"])
def test_check_rejects_wrong_outputs(mods, damage):
    peers, _ = mods
    exact, sim = _products(peers, "q8_K")
    y = sim.copy()
    rms = float(np.sqrt(np.mean(exact ** 2)))
    if damage == "one element":
        y[2, 17] += rms
    elif damage == "swapped rows":
        y[[0, 1]] = y[[1, 0]]
    elif damage == "zeros":
        y[:] = 0
    elif damage == "nan":
        y[3, 3] = np.nan
    elif damage == "shape":
        y = y[:, :-1]
    elif damage == "wrong scale":
        y = y * 1.5
    with pytest.raises(peers.OutputMismatch):
        peers.check_output("impl", y, exact, sim)


def test_check_all_and_ratios(mods):
    peers, _ = mods
    exact, sim = _products(peers, "int8")
    figs = peers.check_all("1x1", {"a": sim, "b": sim}, {"a": (exact, sim), "b": (exact, sim)})
    assert set(figs) == {"a", "b"}
    ms = {"TQ2_0": 2.0, "TQ1_0": 3.0, "T i8/t2": 1.0, "T i8/t1.6": 4.0, "T f32/t2": 0.5}
    r = peers.ratios(ms)
    assert r == {"t2/TQ2_0": 2.0, "t1.6/TQ1_0": 0.75, "best/TQ2_0": 4.0}


def test_ternary_weights_are_absmean_trits(mods):
    peers, _ = mods
    trits, scale = peers.ternary_weights(64, 256, seed=3)
    assert trits.dtype == np.int8 and set(np.unique(trits)) <= {-1, 0, 1}
    assert scale.dtype == np.float32 and 0.01 < scale < 0.03
    again, scale2 = peers.ternary_weights(64, 256, seed=3)
    assert np.array_equal(trits, again) and scale == scale2
    assert not np.array_equal(trits, peers.ternary_weights(64, 256, seed=4)[0])


def test_render_prints_ratios_and_errors(mods):
    peers, _ = mods
    ms = {"TQ2_0": 2.0, "TQ1_0": 3.0, "T i8/t2": 1.0, "T i8/t1.6": 4.0, "T f32/t2": 0.5}
    errs = {name: {"rel_err": 0.01} for name in peers.IMPLS}
    row = {"n": 1024, "k": 1024, "batch": 1, "threads": 2, "ms": ms,
           "ratios": peers.ratios(ms), "errors": errs}
    text = peers.render([row], ["CPU: test"])
    assert "CPU: test" in text and "1024x1024" in text
    assert "2.00x" in text and "0.75x" in text and "4.00x" in text
    assert "relative error" in text


# ----------------------------------------------------------------------------- the build cache

def test_build_key(mods):
    _, g = mods
    flags = ["avx2", "fma", "sse4_2", "ht", "pge", "smep"]
    key = g.build_key("0.25.3", flags, machine="x86_64")
    assert re.fullmatch(r"ggml-0\.25\.3-[0-9a-f]{16}", key)
    # order, duplicates and flags that do not change the code keep the key
    assert g.build_key("0.25.3", ["fma", "avx2", "avx2", "sse4_2"], machine="x86_64") == key
    # a different ISA, option, version, sdist or machine gets its own build
    assert g.build_key("0.25.3", flags + ["avx512f"], machine="x86_64") != key
    opts = tuple((k, "OFF" if k == "GGML_OPENMP" else v) for k, v in g.CMAKE_OPTIONS)
    assert g.build_key("0.25.3", flags, opts, machine="x86_64") != key
    assert g.build_key("0.25.4", flags, machine="x86_64") != key
    assert g.build_key("0.25.3", flags, sdist_sha256="0" * 64, machine="x86_64") != key
    assert g.build_key("0.25.3", flags, machine="aarch64") != key
    assert g.isa_flags(flags) == ["avx2", "fma", "sse4_2"]


def test_a_capped_cpu_builds_the_peer_for_the_cap_not_natively(mods, monkeypatch):
    _, g = mods
    avx512 = ["sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f",
              "avx512_vnni", "avx512vbmi"]
    native = dict(g.isa_options(g.CMAKE_OPTIONS, avx512, capped=False, machine="x86_64"))
    assert native == dict(g.CMAKE_OPTIONS) and native["GGML_NATIVE"] == "ON"
    # the AVX2 cap hides the AVX-512 flags: -march=native would still build AVX-512 code
    capped = [f for f in avx512 if not f.startswith("avx512")]
    opts = dict(g.isa_options(g.CMAKE_OPTIONS, capped, capped=True, machine="x86_64"))
    assert opts["GGML_NATIVE"] == "OFF"
    assert all(opts[k] == "ON" for k in ("GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2"))
    assert all(opts[k] == "OFF" for k in ("GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_VBMI",
                                          "GGML_AVX_VNNI"))
    assert "AVX2" in g._isa_words(opts.items()) and g._isa_words(native.items()) == "native ISA"
    # a scalar cap: every ISA option off; on aarch64 only GGML_NATIVE goes
    bare = dict(g.isa_options(g.CMAKE_OPTIONS, ["sse2"], capped=True, machine="x86_64"))
    assert not any(v == "ON" for k, v in bare.items() if k.startswith(("GGML_AVX", "GGML_F")))
    arm = dict(g.isa_options(g.CMAKE_OPTIONS, [], capped=True, machine="aarch64"))
    assert arm["GGML_NATIVE"] == "OFF" and "GGML_AVX2" not in arm
    # the cap is part of the cache key: the capped build never reuses the native one
    monkeypatch.setenv("TRITIUM_CPU_MAX_ISA", "avx2")
    assert g.isa_options() == g.isa_options(g.CMAKE_OPTIONS, g.cpu_flags(), capped=(
        g.cpu_flags() != g._isa.host_cpu_flags()))
    assert g.build_key("0.25.3", capped, tuple(opts.items()), machine="x86_64") != \
        g.build_key("0.25.3", capped, machine="x86_64")


def test_cache_is_under_tritium_cache_root(mods, tmp_path, monkeypatch):
    _, g = mods
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "root"))
    assert g.peers_cache() == tmp_path / "root" / "peers"
    assert g.peers_cache(tmp_path / "other") == tmp_path / "other" / "peers"


def _fake_build(g, cache: Path) -> Path:
    final = cache / g.build_key(g.GGML_VERSION, g.cpu_flags())
    (final / "lib").mkdir(parents=True)
    for name in g.LIBS:
        (final / "lib" / name).write_bytes(b"")
    (final / "build.json").write_text(json.dumps({"ok": True}))
    return final


def test_a_cached_build_needs_no_tools_and_no_download(mods, tmp_path, monkeypatch):
    _, g = mods
    final = _fake_build(g, tmp_path)

    def no(*a, **k):
        raise AssertionError("must not build or download")

    monkeypatch.setattr(g, "_tools", no)
    monkeypatch.setattr(g, "ensure_sdist", no)
    lib, key = g.ensure_build(tmp_path)
    assert lib == final / "lib" and key == final.name


def test_an_unfinished_build_is_not_reused(mods, tmp_path, monkeypatch):
    _, g = mods
    final = _fake_build(g, tmp_path)
    (final / "build.json").unlink()
    monkeypatch.setattr(g.shutil, "which", lambda name, path=None: None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(g.PeerUnavailable, match="cmake"):
        g.ensure_build(tmp_path)


def test_failed_download_is_a_clear_error(mods, tmp_path, monkeypatch):
    _, g = mods

    class Done:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement\n"

    monkeypatch.setattr(g.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(g.PeerUnavailable, match="could not download") as exc:
        g.ensure_sdist(tmp_path, log=lambda msg: None)
    assert "Could not find a version" in str(exc.value)


def test_a_wrong_sdist_is_refused(mods, tmp_path):
    _, g = mods
    (tmp_path / "sdist").mkdir()
    (tmp_path / "sdist" / g.SDIST_NAME).write_bytes(b"not the sdist")
    with pytest.raises(g.PeerUnavailable, match="SHA-256"):
        g.ensure_sdist(tmp_path, log=lambda msg: None)


def test_main_without_build_tools_exits_2_without_traceback(mods, tmp_path, monkeypatch,
                                                            capsys):
    peers, g = mods
    from tritium.runtime import kernels

    if not kernels.native_available():
        pytest.skip("Tritium's native kernels are unavailable here")
    monkeypatch.setattr(g.shutil, "which", lambda name, path=None: None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    rc = peers.main(["--quick", "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "needs cmake" in err and "Traceback" not in err
