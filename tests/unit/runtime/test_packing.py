"""Packed ternary formats: exact byte layouts, round trips, validation, native vs PyTorch."""

from __future__ import annotations

import math

import pytest
import torch

from tritium.runtime import packing
from tritium.runtime.packing import (
    FORMAT_VERSION,
    PackedDataError,
    PackedTernary,
    TernaryValueError,
    pack_ternary,
    packed_row_bytes,
    unpack_ternary,
)

# runs once per ISA path of this CPU (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("every_isa")

FORMATS = ["t2", "t1.6"]


@pytest.fixture(params=["native", "torch"])
def impl(request, monkeypatch):
    """Run a test against the native packer and against the pure-PyTorch one."""
    if request.param == "torch":
        monkeypatch.setattr(packing, "_native_for", lambda t: None)
    elif packing._native_for(torch.zeros(1)) is None:
        pytest.skip("native kernels unavailable")
    return request.param


def test_format_version_and_row_bytes():
    assert FORMAT_VERSION == 1
    assert packed_row_bytes(1, "t2") == 32
    assert packed_row_bytes(128, "t2") == 32
    assert packed_row_bytes(129, "t2") == 64
    assert packed_row_bytes(4096, "t2") == 1024
    assert packed_row_bytes(160, "t1.6") == 32
    assert packed_row_bytes(161, "t1.6") == 64
    assert packed_row_bytes(4096, "t1.6") == 26 * 32
    assert packed_row_bytes(0, "t2") == 0
    with pytest.raises(ValueError, match="unknown ternary format"):
        packed_row_bytes(4, "t3")


def test_t2_layout_is_the_documented_one(impl):
    # element e of a block lives in byte e % 32 at bits 2*(e // 32)
    k = 128
    trits = torch.zeros((1, k), dtype=torch.int8)
    trits[0, 0] = 1  # byte 0 bits 0-1 -> code 2
    trits[0, 33] = -1  # byte 1 bits 2-3 -> code 0
    trits[0, 95] = 1  # byte 31 bits 4-5 -> code 2
    trits[0, 127] = -1  # byte 31 bits 6-7 -> code 0
    data = pack_ternary(trits, "t2").data[0].tolist()
    assert data[0] == 0b01_01_01_10
    assert data[1] == 0b01_01_00_01
    assert data[31] == 0b00_10_01_01
    assert all(b == 0x55 for b in data[2:31])


def test_t1_6_layout_is_the_documented_one(impl):
    k = 200  # one full block and a padded one
    trits = torch.zeros((1, k), dtype=torch.int8)
    trits[0, 3] = 1  # most significant digit of byte 3
    trits[0, 3 + 128] = -1  # least significant digit of byte 3
    trits[0, 160] = 1  # block 1, byte 0, digit 0
    data = pack_ternary(trits, "t1.6").data[0].tolist()
    assert len(data) == 64
    assert data[3] == 2 * 81 + 27 + 9 + 3 + 0
    assert data[0] == 121 and data[32 + 1] == 121
    assert data[32] == 2 * 81 + 27 + 9 + 3 + 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 127), (4, 128), (5, 129), (3, 160), (7, 161), (37, 130), (16, 1000),
                                   (0, 5), (0, 200), (3, 0), (0, 0)])   # (no rows: unpack raised)
def test_round_trip(impl, fmt, shape):
    g = torch.Generator().manual_seed(hash(shape) % 1000)
    trits = torch.randint(-1, 2, shape, generator=g, dtype=torch.int8)
    p = pack_ternary(trits, fmt)
    assert p.format == fmt and p.shape == shape and p.version == FORMAT_VERSION
    assert p.data.dtype == torch.uint8 and p.data.is_contiguous()
    assert tuple(p.data.shape) == (shape[0], packed_row_bytes(shape[1], fmt))
    assert p.nbytes() == p.data.numel()
    out = unpack_ternary(p)
    assert out.dtype == torch.int8
    assert torch.equal(out, trits)


@pytest.mark.parametrize("fmt", FORMATS)
def test_native_and_torch_produce_identical_bytes(fmt):
    trits = torch.randint(-1, 2, (33, 777), dtype=torch.int8)
    native = pack_ternary(trits, fmt)
    ref = packing._pack_torch(trits, fmt)
    assert torch.equal(native.data, ref)
    assert torch.equal(packing._unpack_torch(native), trits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.int32, torch.int16])
def test_accepts_any_real_dtype(impl, dtype):
    trits = torch.randint(-1, 2, (4, 50), dtype=torch.int8)
    p = pack_ternary(trits.to(dtype), "t2")
    assert torch.equal(unpack_ternary(p), trits)


def test_bool_input(impl):
    b = torch.tensor([[True, False, True]])
    assert unpack_ternary(pack_ternary(b)).tolist() == [[1, 0, 1]]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "value,dtype",
    [(2, torch.int8), (-2, torch.int8), (127, torch.int8), (-128, torch.int8), (0.5, torch.float32),
     (-1.0001, torch.float64), (float("nan"), torch.float32), (300, torch.int64), (255, torch.int32)],
)
def test_invalid_values_name_their_position(impl, fmt, value, dtype):
    trits = torch.zeros((5, 300), dtype=dtype)
    trits[3, 217] = value
    trits[4, 10] = value  # a later one must not be reported first
    with pytest.raises(TernaryValueError, match=r"\(row 3, col 217\)") as info:
        pack_ternary(trits, fmt)
    assert info.value.row == 3 and info.value.col == 217
    assert isinstance(info.value, ValueError)


def test_rejects_bad_shapes_and_formats():
    with pytest.raises(ValueError, match="2-D"):
        pack_ternary(torch.zeros(5, dtype=torch.int8))
    with pytest.raises(ValueError, match="unknown ternary format"):
        pack_ternary(torch.zeros((2, 2), dtype=torch.int8), "t4")


def test_packed_ternary_checks_its_structure():
    good = torch.full((2, 32), 0x55, dtype=torch.uint8)
    PackedTernary("t2", good, (2, 100))
    with pytest.raises(ValueError, match="uint8"):
        PackedTernary("t2", good.to(torch.int16), (2, 100))
    with pytest.raises(ValueError, match="must be"):
        PackedTernary("t2", good, (2, 200))
    with pytest.raises(ValueError, match="version"):
        PackedTernary("t2", good, (2, 100), version=2)
    with pytest.raises(ValueError, match="unknown ternary format"):
        PackedTernary("t3", good, (2, 100))
    strided = torch.full((2, 64), 0x55, dtype=torch.uint8)[:, ::2]
    p = PackedTernary("t2", strided, (2, 100))
    assert p.data.is_contiguous()


@pytest.mark.parametrize(
    "fmt,k,byte,value",
    [
        ("t2", 128, 5, 0b11_01_01_01),  # code 3 in the first slot
        ("t2", 128, 31, 0b01_11_01_01),
        ("t2", 100, 10, 0b10_01_01_01),  # element 10 + 96 = 106 >= 100 is padding, must be code 1
        ("t1.6", 160, 7, 243),
        ("t1.6", 160, 0, 255),
        ("t1.6", 140, 20, 120),  # digit 4 (element 148 >= 140, padding) is code 0, not 1
    ],
)
def test_unpack_rejects_invalid_bytes(impl, fmt, k, byte, value):
    trits = torch.randint(-1, 2, (3, k), dtype=torch.int8)
    p = pack_ternary(trits, fmt)
    data = p.data.clone()
    data[2, byte] = value
    bad = PackedTernary(fmt, data, (3, k))
    with pytest.raises(PackedDataError, match=rf"\(row 2, byte {byte}\)"):
        unpack_ternary(bad)
    with pytest.raises(PackedDataError):
        bad.validate()


def test_t1_6_decodes_every_byte_value(impl):
    # a row whose 32-byte blocks hold every valid byte value 0..242 (and zero padding blocks)
    values = list(range(243)) + [121] * (8 * 32 - 243)
    data = torch.tensor(values, dtype=torch.uint8).view(1, -1)
    p = PackedTernary("t1.6", data, (1, 8 * 160))
    trits = unpack_ternary(p)[0].view(8, 5, 32)
    for v in range(243):
        blk, j = divmod(v, 32)
        digits = [(v // 3 ** (4 - i)) % 3 - 1 for i in range(5)]
        assert trits[blk, :, j].tolist() == digits, v


def test_avx2_digit_trick_is_exact():
    # the AVX2 t1.6 decoder (docs/formats.md): q = (57 v) >> 9 = v // 9 by two vpmaddubsw,
    # r = v - 9 q; two conditional subtractions min_u8(a, a - 9) leave s = q mod 9, the low
    # nibble of the amount taken maps to q's top digit through one table, s and r give the
    # other digits by two 9-entry tables. Every byte (the invalid ones too) stays within the
    # tables and yields codes 0..2, so the kernels' int16 sums cannot overflow.
    top = [0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    div3 = [0, 0, 0, 1, 1, 1, 2, 2, 2] + [0] * 7
    mod3 = [0, 1, 2, 0, 1, 2, 0, 1, 2] + [0] * 7
    for v in range(256):
        q = ((57 * v) >> 9) & 0xFF
        r = (v - 9 * q) % 256
        a = min(q, (q - 9) % 256)
        s = min(a, (a - 9) % 256)
        assert r < 16 and s < 16, v
        out = [top[((q - s) % 256) & 15], div3[s], mod3[s], div3[r], mod3[r]]
        assert all(0 <= c <= 2 for c in out), v
        if v < 243:
            assert out == [(v // 3 ** (4 - i)) % 3 for i in range(5)], v


def test_vbmi_quotient_digit_trick_is_exact():
    # the AVX-512 VBMI t1.6 decoder (docs/formats.md): q = (57 v) >> 9 is v // 9 for every
    # byte (the invalid ones too: the kernels never index past a table), its three base-3
    # digits by one 27-entry table each, the last two from r = v - 9 q by one 9-entry table
    # each; the products fit vpmaddubsw's int16 and 9 q's byte shift does not carry
    for v in range(256):
        assert 57 * v < 2 ** 15
        q = (57 * v) >> 9
        assert q == v // 9 and q < 32 and (q << 3) < 256
        r = (v - 9 * q) % 256
        assert r < 9
        if v < 243:
            out = [q // 9, q // 3 % 3, q % 3, r // 3, r % 3]
            assert out == [(v // 3 ** (4 - i)) % 3 for i in range(5)], v


def test_fixed_point_digit_trick_is_exact():
    # the portable t1.6 decoder: f = 270 v; digit_i = (3 f) >> 16; f = (3 f) mod 2**16
    for v in range(243):
        f = v * 270
        out = []
        for _ in range(5):
            out.append((3 * f) >> 16)
            f = (3 * f) & 0xFFFF
        assert out == [(v // 3 ** (4 - i)) % 3 for i in range(5)]


def test_compression_ratio():
    trits = torch.zeros((64, 4096), dtype=torch.int8)
    assert pack_ternary(trits, "t2").nbytes() == 64 * 4096 // 4
    p = pack_ternary(trits, "t1.6")
    assert math.isclose(p.nbytes() * 8 / trits.numel(), 1.625)
