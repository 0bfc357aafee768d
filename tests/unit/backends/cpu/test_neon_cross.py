"""The NEON (aarch64) kernel path, cross-compiled and run under qemu-user on any host.

The ``neon`` specialization of the kernel template is rendered exactly as the runtime renders
it, linked statically with ``neon_driver.c`` by ``aarch64-linux-gnu-gcc`` in two variants (with
the armv8.2 dot product instructions, run on ``qemu-aarch64 -cpu max``; without them, run on a
Cortex-A57, which has none), and its outputs are compared with numpy/torch references: packing
and the int32 GEMM bit-exact, the fp32 and int8-activation linears to fp32 rounding.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tritium.backends.cpu import isa as isa_mod
from tritium.backends.cpu.build import (
    BASE_FLAGS,
    POOL_FLAGS,
    KernelConfig,
    opt_flags,
    render_source,
)

CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
APT = "apt-get install -y gcc-aarch64-linux-gnu qemu-user"
CSRC = Path(isa_mod.__file__).parent / "csrc"
DRIVER = Path(__file__).parent / "neon_driver.c"


FMTS = {"t2": (0, 128), "t1.6": (1, 160)}
ACTS = {None: 0, "relu": 1, "relu6": 2, "gelu": 3, "silu": 4, "sigmoid": 5, "tanh": 6}
# variant -> (CPU flags the build assumes, qemu CPU model to run it on)
VARIANTS = {"dotprod": (frozenset({"asimd", "asimddp"}), "max"), "base": (frozenset({"asimd"}), "cortex-a57")}


@dataclass(frozen=True)
class Driver:
    exe: Path
    cpu: str
    flags: tuple[str, ...]


@pytest.fixture(scope="module")
def drivers(tmp_path_factory) -> dict[str, Driver]:
    if shutil.which(CC) is None or shutil.which(QEMU) is None:
        pytest.skip(f"needs {CC} and {QEMU} on PATH (install them with: {APT}, or `make cross-tools`)")
    tmp = tmp_path_factory.mktemp("neon")
    src = tmp / "tritium_kernels.c"
    cfg = KernelConfig(isa="neon")  # the OpenMP pool, linked statically with libgomp.a
    src.write_text(render_source(cfg), encoding="utf-8")
    base = (opt_flags(cfg.isa) + [f for f in BASE_FLAGS if f not in ("-shared", "-fPIC")]
            + list(POOL_FLAGS[cfg.pool]))
    out = {}
    for name, (cpu_flags, qemu_cpu) in VARIANTS.items():
        flags = tuple(base + isa_mod.compile_flags("neon", cpu_flags))
        exe = tmp / f"driver_{name}"
        proc = subprocess.run(
            [CC, *flags, "-static", f"-I{CSRC}", str(src), str(DRIVER), "-o", str(exe), "-lm"],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, f"{CC} failed for the {name} build:\n{proc.stderr[:4000]}"
        out[name] = Driver(exe, qemu_cpu, flags)
    return out


@pytest.fixture(params=sorted(VARIANTS))
def drv(request, drivers) -> Driver:
    return drivers[request.param]


def _row_bytes(fmt: str, k: int) -> int:
    be = FMTS[fmt][1]
    return (k + be - 1) // be * 32


def _pack_ref(trits: np.ndarray, fmt: str) -> np.ndarray:
    """docs/formats.md: codes c = trit + 1 padded with 1s to whole blocks; t2 byte j of a block
    is c[j] | c[j+32] << 2 | c[j+64] << 4 | c[j+96] << 6, t1.6 byte j is sum c[j+32i] 3^(4-i)."""
    n, k = trits.shape
    be = FMTS[fmt][1]
    nb = (k + be - 1) // be
    codes = np.ones((n, nb * be), np.int32)
    codes[:, :k] = trits.astype(np.int32) + 1
    c = codes.reshape(n, nb, be // 32, 32)
    if fmt == "t2":
        b = c[:, :, 0] | c[:, :, 1] << 2 | c[:, :, 2] << 4 | c[:, :, 3] << 6
    else:
        b = c[:, :, 0] * 81 + c[:, :, 1] * 27 + c[:, :, 2] * 9 + c[:, :, 3] * 3 + c[:, :, 4]
    return b.reshape(n, nb * 32).astype(np.uint8)


@dataclass
class Batch:
    """Cases for one driver run: the input bytes and, per case, how to read its outputs."""

    data: list[bytes] = field(default_factory=list)
    outs: list[list[tuple[type, int]]] = field(default_factory=list)

    def add(self, op: int, params: list[int], arrays: list[np.ndarray], outs: list[tuple[type, int]]) -> int:
        self.data.append(struct.pack(f"<{1 + len(params)}q", op, *params))
        self.data += [np.ascontiguousarray(a).tobytes() for a in arrays]
        self.outs.append(outs)
        return len(self.outs) - 1

    def run(self, d: Driver, tmp_path: Path) -> list[tuple[int, list[np.ndarray]]]:
        inp, outp = tmp_path / "in.bin", tmp_path / "out.bin"
        inp.write_bytes(b"".join(self.data))
        proc = subprocess.run(
            [QEMU, "-cpu", d.cpu, str(d.exe), str(inp), str(outp)], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"driver failed under qemu -cpu {d.cpu}: {proc.stderr[:2000]}"
        raw, pos, results = outp.read_bytes(), 0, []
        for outs in self.outs:
            (rc,) = struct.unpack_from("<q", raw, pos)
            pos += 8
            arrays = []
            for dtype, count in outs:
                a = np.frombuffer(raw, dtype=dtype, count=count, offset=pos)
                pos += a.nbytes
                arrays.append(a)
            results.append((rc, arrays))
        assert pos == len(raw), "driver output has trailing bytes"
        return results


def _gemm(b: Batch, fmt: str, xq: np.ndarray, w: np.ndarray, n: int, nthreads: int = 1) -> int:
    m, k = xq.shape
    return b.add(4, [FMTS[fmt][0], m, k, n, nthreads], [xq.astype(np.int8), w], [(np.int32, m * n)])


def _linear(b: Batch, fmt, x, w, n, scale, bias, res, act, act_quant, nthreads=1) -> int:
    m, k = x.shape
    arrays = [x.astype(np.float32), w, scale.astype(np.float32)]
    arrays += [a.astype(np.float32) for a in (bias, res) if a is not None]
    params = [FMTS[fmt][0], m, k, n, scale.size, bias is not None, res is not None, ACTS[act], act_quant, nthreads]
    return b.add(3, [int(p) for p in params], arrays, [(np.float32, m * n)])


def _quantize_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmax int8 in float32 arithmetic, round half to even (the kernels' rule)."""
    x = x.astype(np.float32)
    s = (np.abs(x).max(axis=1) / np.float32(127)).astype(np.float32)
    s[s == 0] = 1
    q = np.clip(np.rint(x / s[:, None]), -127, 127).astype(np.int8)
    return q, s


def _linear_ref(x, trits, scale, bias, res, act, act_quant) -> np.ndarray:
    w = trits.astype(np.float64)
    if act_quant:
        q, s = _quantize_ref(x)
        y = (q.astype(np.int64) @ trits.astype(np.int64).T).astype(np.float64) * s[:, None]
    else:
        y = x.astype(np.float64) @ w.T
    y = y * scale.astype(np.float64).reshape(1, -1)
    if bias is not None:
        y = y + bias
    if res is not None:
        y = y + res
    fn = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu,
          "sigmoid": torch.sigmoid, "tanh": torch.tanh}[act]
    return fn(torch.from_numpy(y)).numpy()


def _close(y: np.ndarray, ref: np.ndarray, rtol: float, what: str) -> None:
    tol = rtol * (1.0 + float(np.abs(ref).max(initial=0.0)))
    err = float(np.abs(y.astype(np.float64) - ref).max(initial=0.0))
    assert err <= tol, f"{what}: max abs error {err} > {tol}"


def test_builds_are_the_neon_path_with_and_without_dotprod(drivers, tmp_path):
    for name, d in drivers.items():
        b = Batch()
        b.add(0, [], [], [(np.uint8, 16)])
        ((dotprod, (isa_name,)),) = b.run(d, tmp_path)
        assert bytes(isa_name).rstrip(b"\0") == b"neon"
        assert dotprod == (name == "dotprod"), f"{name} build: __ARM_FEATURE_DOTPROD={dotprod}"
        objdump = shutil.which("aarch64-linux-gnu-objdump")
        if objdump:
            asm = subprocess.run([objdump, "-d", str(d.exe)], capture_output=True, text=True, timeout=120).stdout
            assert ("sdot" in asm) == (name == "dotprod"), f"{name} build: sdot present={'sdot' in asm}"
            assert "fmla" in asm and "tbl" in asm


def test_flags_follow_the_cpu_features():
    assert isa_mod.compile_flags("neon", frozenset({"asimd", "asimddp"}))[-1] == "-march=armv8.2-a+dotprod"
    assert isa_mod.compile_flags("neon", frozenset({"asimd"})) == ["-march=armv8-a"]
    assert isa_mod.supported_isas(frozenset({"fp", "asimd"}), machine="aarch64") == ["neon", "scalar"]
    assert "neon" not in isa_mod.supported_isas(frozenset({"avx2", "fma", "asimd"}), machine="x86_64")
    assert "avx2" not in isa_mod.supported_isas(frozenset({"avx2", "fma"}), machine="aarch64")


@pytest.mark.skipif(isa_mod.platform.machine().lower() in isa_mod.ARM64_MACHINES, reason="aarch64 host")
def test_forcing_neon_on_x86_falls_back_with_a_clear_warning(monkeypatch):
    monkeypatch.setenv("TRITIUM_CPU_ISA", "neon")
    with pytest.warns(RuntimeWarning, match=r"neon kernels need an aarch64 \(64-bit ARM\) CPU"):
        assert isa_mod.select_isa() == isa_mod.supported_isas()[0]


def test_an_aarch64_host_selects_neon_and_refuses_x86_paths(monkeypatch):
    """What isa.py decides on an aarch64 machine, simulated through its two inputs."""
    monkeypatch.setattr(isa_mod.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(isa_mod, "cpu_flags", lambda: frozenset({"fp", "asimd", "asimddp"}))
    monkeypatch.delenv("TRITIUM_CPU_ISA", raising=False)
    assert isa_mod.supported_isas() == ["neon", "scalar"]
    assert isa_mod.select_isa() == "neon"
    assert isa_mod.compile_flags("neon")[-1] == "-march=armv8.2-a+dotprod"
    monkeypatch.setenv("TRITIUM_CPU_ISA", "scalar")
    assert isa_mod.select_isa() == "scalar"
    monkeypatch.setenv("TRITIUM_CPU_ISA", "avx2")
    with pytest.warns(RuntimeWarning, match="avx2 kernels need an x86-64 CPU and this machine is aarch64"):
        assert isa_mod.select_isa() == "neon"
    monkeypatch.setattr(isa_mod, "cpu_flags", lambda: frozenset({"fp", "asimd"}))
    assert isa_mod.compile_flags("neon") == ["-march=armv8-a"]


def test_pack_unpack_round_trip_and_invalid_input(drv, tmp_path):
    rng = np.random.default_rng(1)
    b, cases = Batch(), []
    for fmt in FMTS:
        for rows, k in ((1, 1), (3, 127), (5, 161), (7, 333)):
            trits = rng.integers(-1, 2, (rows, k), dtype=np.int8)
            packed = _pack_ref(trits, fmt)
            rb = _row_bytes(fmt, k)
            cases.append(("pack", b.add(1, [FMTS[fmt][0], rows, k, 2], [trits], [(np.uint8, rows * rb)]), packed))
            cases.append(("unpack", b.add(2, [FMTS[fmt][0], rows, k, 2], [packed], [(np.int8, rows * k)]), trits))
        bad = rng.integers(-1, 2, (4, 200), dtype=np.int8)
        bad[2, 150] = 2
        cases.append(("bad trit", b.add(1, [FMTS[fmt][0], 4, 200, 1], [bad], [(np.uint8, 4 * _row_bytes(fmt, 200))]),
                      2 * 200 + 150))
        corrupt = _pack_ref(rng.integers(-1, 2, (3, 200), dtype=np.int8), fmt)
        corrupt[1, 40] = 0xFF  # t2: code 3; t1.6: byte > 242
        cases.append(("bad byte", b.add(2, [FMTS[fmt][0], 3, 200, 1], [corrupt], [(np.int8, 600)]),
                      1 * corrupt.shape[1] + 40))
    results = b.run(drv, tmp_path)
    for what, i, want in cases:
        rc, (out,) = results[i]
        if what in ("pack", "unpack"):
            assert rc == -1, what
            assert np.array_equal(out, want.reshape(-1)), f"{what} differs"
        else:
            assert rc == want, f"{what}: index {rc} != {want}"


def test_every_t16_byte_decodes_on_every_path(drv, tmp_path):
    """All 243 valid t1.6 bytes in one row, through the direct GEMV (m <= 3) and the decoded
    tile path (m > 3), int8 and fp32."""
    rng = np.random.default_rng(2)
    k = 160 * 8
    row = np.concatenate([rng.permutation(243), np.full(256 - 243, 121)]).astype(np.uint8)
    w = np.stack([row, np.roll(row, 37), row[::-1].copy()])
    digits = np.stack([(w.astype(np.int32) // 3 ** (4 - i)) % 3 for i in range(5)], axis=2)  # n, byte, digit
    trits = (digits.reshape(3, 8, 32, 5).transpose(0, 1, 3, 2).reshape(3, k) - 1).astype(np.int8)
    assert np.array_equal(_pack_ref(trits, "t1.6"), w)
    b, cases = Batch(), []
    one = np.ones(1, np.float32)
    for m in (1, 2, 5):
        xq = rng.integers(-127, 128, (m, k), dtype=np.int8)
        cases.append(("gemm", _gemm(b, "t1.6", xq, w, 3), xq.astype(np.int64) @ trits.astype(np.int64).T))
        x = rng.standard_normal((m, k)).astype(np.float32)
        cases.append(("f32", _linear(b, "t1.6", x, w, 3, one, None, None, None, 0),
                      _linear_ref(x, trits, one, None, None, None, 0)))
    results = b.run(drv, tmp_path)
    for what, i, ref in cases:
        rc, (y,) = results[i]
        assert rc == 0
        if what == "gemm":
            assert np.array_equal(y.reshape(ref.shape), ref), "int32 GEMM differs"
        else:
            _close(y.reshape(ref.shape), ref, 1e-4, "fp32 linear")


def test_extreme_int8_values_do_not_overflow(drv, tmp_path):
    """|x| = 127 against all +1 / all -1 weights over long rows: the int16 partial sums of the
    path without dotprod are flushed before they can overflow."""
    k = 2900
    b, cases = Batch(), []
    for fmt in FMTS:
        trits = np.stack([np.ones(k), -np.ones(k), np.zeros(k), np.ones(k), -np.ones(k)]).astype(np.int8)
        w = _pack_ref(trits, fmt)
        for m in (1, 5):
            xq = np.where(np.arange(m)[:, None] % 2 == 0, 127, -127) * np.ones((1, k), np.int64)
            cases.append((_gemm(b, fmt, xq, w, 5), xq @ trits.astype(np.int64).T))
    results = b.run(drv, tmp_path)
    for i, ref in cases:
        rc, (y,) = results[i]
        assert rc == 0 and np.array_equal(y.reshape(ref.shape), ref)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    k=st.integers(1, 1400).filter(lambda v: v % 5 and v % 16),
    n=st.integers(1, 23).map(lambda v: 2 * v - 1),
    m_big=st.integers(4, 70),
    act=st.sampled_from(sorted(ACTS, key=str)),
    per_channel=st.booleans(),
    bias=st.booleans(),
    res=st.booleans(),
    nthreads=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**31 - 1),
)
@example(k=1, n=1, m_big=4, act=None, per_channel=False, bias=False, res=False, nthreads=1, seed=0)
@example(k=1111, n=9, m_big=67, act="gelu", per_channel=True, bias=True, res=True, nthreads=2, seed=3)
def test_linear_and_gemm_match_references(drivers, tmp_path_factory, k, n, m_big, act, per_channel,
                                          bias, res, nthreads, seed):
    """Both formats, every batch regime (int8 direct GEMV m <= 2, fp32 direct m <= 3, the
    4x4/4x2/4x1 tiles above), on the dotprod and the base builds."""
    rng = np.random.default_rng(seed)
    tmp = tmp_path_factory.mktemp("case")
    b, cases = Batch(), []
    for fmt in FMTS:
        trits = rng.integers(-1, 2, (n, k), dtype=np.int8)
        w = _pack_ref(trits, fmt)
        scale = (rng.random(n if per_channel else 1) + 0.5).astype(np.float32)
        bv = rng.standard_normal(n).astype(np.float32) if bias else None
        for m in (1, 2, 3, m_big):
            xq = rng.integers(-127, 128, (m, k), dtype=np.int8)
            cases.append(("gemm", _gemm(b, fmt, xq, w, n, nthreads), xq.astype(np.int64) @ trits.astype(np.int64).T))
            x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
            rv = rng.standard_normal((m, n)).astype(np.float32) if res else None
            for aq in (0, 1):
                ref = _linear_ref(x, trits, scale, bv, rv, act, aq)
                cases.append((f"{fmt} m={m} act_quant={aq}", _linear(b, fmt, x, w, n, scale, bv, rv, act, aq, nthreads), ref))
        xf = rng.standard_normal((m_big, k)).astype(np.float32)
        cases.append(("quant", b.add(5, [m_big, k, nthreads], [xf], [(np.int8, m_big * k), (np.float32, m_big)]),
                      _quantize_ref(xf)))
    for name, d in drivers.items():
        results = b.run(d, tmp)
        for what, i, ref in cases:
            rc, outs = results[i]
            assert rc == 0, f"{name} {what}: rc {rc}"
            if what == "gemm":
                assert np.array_equal(outs[0].reshape(ref.shape), ref), f"{name}: int32 GEMM differs"
            elif what == "quant":
                assert np.array_equal(outs[0].reshape(ref[0].shape), ref[0]), f"{name}: quantized x differs"
                assert np.array_equal(outs[1], ref[1]), f"{name}: scales differ"
            else:
                _close(outs[0].reshape(ref.shape), ref, 1e-4, f"{name} {what}")


def _pool_fields(kind: int, h: int, w: int, k: int, s: int, p: int, d: int, cip: int = 1) -> list[int]:
    """TriPoolGeom's 15 fields (square window), the output size as torch computes it."""
    meta = torch.empty(1, 1, h, w, device="meta")
    out = F.max_pool2d(meta, k, s, p, d) if kind == 0 else F.avg_pool2d(meta, k, s, p, False, bool(cip))
    return [kind, h, w, k, k, s, s, p, p, d, d, out.shape[2], out.shape[3], cip, 0]


@pytest.mark.parametrize("pool", [None, (0, 2, 2, 0, 1), (0, 3, 2, 1, 2), (1, 3, 1, 1, 1)])
def test_flat_conv_and_pooling_match_torch(drivers, tmp_path, pool):
    """The register-blocked flat conv (LeNet-5's shapes, ragged ones, a strided depthwise one)
    alone and with a max/avg pooling fused, and tri_pool2d alone (bit for bit with torch, NaN and +-0
    included), on the NEON builds."""
    rng = np.random.default_rng(7)
    b, cases = Batch(), []
    for fmt, (bs, c, h, w, o, kk, pad, stride, grp, act) in zip(
            ["t2", "t1.6", "t2", "t1.6"],
            [(3, 1, 32, 32, 6, 5, 0, 1, 1, "relu"), (2, 6, 14, 14, 16, 5, 0, 1, 1, "relu"),
             (2, 5, 13, 21, 11, 3, 1, 1, 1, None), (2, 12, 17, 16, 12, 3, 1, 2, 12, "relu")],
            strict=True):
        trits = rng.integers(-1, 2, (o, c // grp * kk * kk), dtype=np.int8)
        scale = (rng.random(o) + 0.5).astype(np.float32)
        bias = rng.standard_normal(o).astype(np.float32)
        x = rng.standard_normal((bs, c, h, w)).astype(np.float32)
        ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(trits).double().reshape(o, c // grp, kk, kk),
                       None, stride, pad, 1, grp) * torch.from_numpy(scale).double().reshape(1, -1, 1, 1) \
            + torch.from_numpy(bias).double().reshape(1, -1, 1, 1)
        ref = F.relu(ref) if act else ref
        ho, wo, extra = (h + 2 * pad - kk) // stride + 1, (w + 2 * pad - kk) // stride + 1, []
        if pool is not None:
            extra = _pool_fields(pool[0], ho, wo, *pool[1:])
            ref = (F.max_pool2d(ref, *pool[1:]) if pool[0] == 0 else F.avg_pool2d(ref, *pool[1:4]))
        params = [FMTS[fmt][0], bs, c, h, w, o, kk, kk, pad, pad, stride, grp, o, 1, ACTS[act], pool is not None,
                  ref.shape[2], ref.shape[3], 2, *extra]
        cases.append((f"conv {fmt} {c}x{h}x{w}->{o}", b.add(
            6, [int(v) for v in params], [x, _pack_ref(trits, fmt), scale, bias],
            [(np.float32, ref.numel())]), ref.numpy()))
    if pool is not None:
        xp = rng.standard_normal((5, 3, 11, 17)).astype(np.float32)
        xp.reshape(-1)[rng.integers(0, xp.size, 40)] = np.array([np.nan, -0.0, 0.0, np.inf], np.float32).repeat(10)
        t = torch.from_numpy(xp)
        want = F.max_pool2d(t, *pool[1:]) if pool[0] == 0 else F.avg_pool2d(t, *pool[1:4])
        fields = _pool_fields(pool[0], 11, 17, *pool[1:])
        cases.append(("pool", b.add(7, [15, *fields, 1], [xp], [(np.float32, want.numel())]), want.numpy()))
    for name, d in drivers.items():
        results = b.run(d, tmp_path)
        for what, i, ref in cases:
            rc, outs = results[i]
            assert rc == 0, f"{name} {what}: rc {rc}"
            got = outs[0].reshape(ref.shape)
            if what == "pool":
                assert np.array_equal(got.view(np.int32), ref.view(np.int32)), f"{name}: pooling differs"
            else:
                _close(got, ref, 1e-5, f"{name} {what}")


def test_int8_head_kernel_is_exact(drv, tmp_path):
    """The int8 head's GEMM (csrc/tritium_lm.h: sdot, or smull and pairwise adds) against
    int64 products, odd shapes and +-127 extremes; the linear against its float reference."""
    rng = np.random.default_rng(7)
    b, cases = Batch(), []
    for m, k, n in ((1, 1, 1), (1, 768, 40), (3, 5, 17), (70, 130, 33), (2, 4096, 3)):
        w = rng.integers(-127, 128, (n, k), dtype=np.int8)
        xq = rng.integers(-127, 128, (m, k), dtype=np.int8)
        if k == 4096:
            w[0], w[1], xq[0] = 127, -127, -127
        cases.append(("gemm", b.add(8, [m, k, n, 2], [xq, w], [(np.int32, m * n)]),
                      xq.astype(np.int64) @ w.astype(np.int64).T))
        x = rng.standard_normal((m, k)).astype(np.float32)
        ws = (rng.random(n) * 0.01).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        q, s = _quantize_ref(x)
        ref = (q.astype(np.int64) @ w.astype(np.int64).T) * s[:, None].astype(np.float64) * ws + bias
        cases.append(("linear", b.add(9, [m, k, n, 1, 1], [x, w, ws, bias], [(np.float32, m * n)]), ref))
    results = b.run(drv, tmp_path)
    for what, i, ref in cases:
        rc, (y,) = results[i]
        assert rc == 0, what
        if what == "gemm":
            assert np.array_equal(y.reshape(ref.shape), ref), "int8 head GEMM differs"
        else:
            _close(y.reshape(ref.shape), ref, 1e-5, "int8 head linear")
