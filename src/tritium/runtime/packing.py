"""Packed ternary weight formats ``t2`` and ``t1.6`` (format version 1; see docs/formats.md).

Both formats pack each row of an (N rows, K cols) trit matrix independently into 32-byte
blocks laid out for SIMD decoding:

* ``t2`` -- 128 trits per block, code = trit + 1 in 2 bits; byte j of a block holds elements
  j, j+32, j+64, j+96 at bits 0-1, 2-3, 4-5, 6-7.
* ``t1.6`` -- 160 trits per block, byte j = 81 c(j) + 27 c(j+32) + 9 c(j+64) + 3 c(j+96)
  + c(j+128) with c = trit + 1 (values 0..242).

Rows are padded with zero trits to whole blocks. Packing and unpacking run in the native
kernels when they are available (multi-threaded C) and in vectorized PyTorch otherwise; both
validate their input: a value outside {-1, 0, 1} raises :class:`TernaryValueError` naming its
(row, col), and packed bytes that no valid row produces (a t2 code 3, a t1.6 byte above 242,
a non-zero padding trit) raise :class:`PackedDataError` naming (row, byte).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from tritium import vocab
from tritium.runtime.capture import capturing

FORMAT_VERSION = vocab.FORMAT_VERSION
FORMATS = vocab.FORMATS
BLOCK_BYTES = vocab.BLOCK_BYTES
BLOCK_ELEMS = vocab.BLOCK_TRITS
FORMAT_CODE = vocab.FORMAT_CODE
# The byte of a packed block whose trits are all zero (every code 1).
ZERO_BYTE = vocab.ZERO_BYTE


class TernaryValueError(ValueError):
    """A value handed to :func:`pack_ternary` is not exactly -1, 0 or +1."""

    def __init__(self, row: int, col: int, value: object):
        self.row, self.col, self.value = row, col, value
        super().__init__(
            f"invalid ternary value {value!r} at (row {row}, col {col}): "
            "trits must be exactly -1, 0 or +1"
        )


class PackedDataError(ValueError):
    """Packed bytes that no valid trit row produces (corrupt or foreign data)."""

    def __init__(self, format: str, row: int, byte: int, value: int):
        self.format, self.row, self.byte, self.value = format, row, byte, value
        what = {
            "t2": "holds code 3 (only 0, 1, 2 are trits) or a non-zero padding code",
            "t1.6": "is above 242 (not five base-3 digits) or encodes a non-zero padding trit",
        }[format]
        super().__init__(
            f"invalid {format} data at (row {row}, byte {byte}): byte 0x{value:02x} {what}"
        )


def packed_row_bytes(k: int, format: str) -> int:
    """Bytes per packed row of ``k`` trits (whole 32-byte blocks)."""
    _check_format(format)
    if k < 0:
        raise ValueError(f"row length must be >= 0, got {k}")
    be = BLOCK_ELEMS[format]
    return (k + be - 1) // be * BLOCK_BYTES


def _check_format(format: str) -> None:
    if format not in BLOCK_ELEMS:
        raise ValueError(f"unknown ternary format {format!r}; expected one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class PackedTernary:
    """A packed (N, K) trit matrix: ``data`` is uint8 (N, packed_row_bytes(K, format))."""

    format: str
    data: torch.Tensor
    shape: tuple[int, int]
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _check_format(self.format)
        if self.version != FORMAT_VERSION:
            raise ValueError(
                f"packed ternary format version {self.version} is not supported "
                f"(this build reads version {FORMAT_VERSION})"
            )
        if len(self.shape) != 2:
            raise ValueError(f"shape must be (rows, cols), got {self.shape!r}")
        n, k = (int(s) for s in self.shape)
        if n < 0 or k < 0:
            raise ValueError(f"shape must be non-negative, got {self.shape!r}")
        object.__setattr__(self, "shape", (n, k))
        data = self.data
        if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
            raise ValueError("packed data must be a uint8 torch.Tensor")
        want = (n, packed_row_bytes(k, self.format))
        if tuple(data.shape) != want:
            raise ValueError(
                f"{self.format} data for shape {(n, k)} must be {want}, got {tuple(data.shape)}"
            )
        if not data.is_contiguous():
            object.__setattr__(self, "data", data.contiguous())

    def nbytes(self) -> int:
        return self.data.numel()

    def validate(self) -> None:
        """Check every byte (raises :class:`PackedDataError`); O(bytes), done by unpack too."""
        lib = _native_for(self.data)
        if lib is not None:
            n, k = self.shape
            idx = lib.lib.tri_unpack(
                FORMAT_CODE[self.format], self.data.data_ptr(), n, k, self.data.shape[1], None,
                _pack_threads(n * k),
            )
            if idx >= 0:
                self._raise_at(int(idx))
        else:
            _unpack_torch(self)

    def _raise_at(self, flat: int) -> None:
        rb = self.data.shape[1]
        r, b = divmod(flat, rb)
        raise PackedDataError(self.format, r, b, int(self.data[r, b]))


def num_threads() -> int:
    """Threads for the native kernels: ``$TRITIUM_NUM_THREADS`` or ``torch.get_num_threads()``."""
    env = os.environ.get("TRITIUM_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return max(1, torch.get_num_threads())


def _pack_threads(elements: int) -> int:
    """Packing is memory-bound: one thread streams ~20 G trits/s, so split only huge matrices
    (an extra thread on a busy machine costs more in barrier waits than it saves)."""
    return 1 if elements < (1 << 24) else num_threads()


def _native_for(t: torch.Tensor):
    """The native kernels for a CPU tensor (None elsewhere, and while torch records a graph:
    the pure-torch path is what a trace can see)."""
    if t.device.type != "cpu" or capturing():
        return None
    from tritium.backends import cpu

    return cpu.load()


def _to_int8(trits: torch.Tensor) -> torch.Tensor:
    """int8 copy of ``trits`` after one exactness check (catches 0.5, 300, nan, ...)."""
    if trits.dtype == torch.int8:
        return trits.contiguous()
    if trits.dtype == torch.bool:
        return trits.to(torch.int8).contiguous()
    if trits.is_complex():
        raise TypeError("trits must be a real tensor")
    t8 = trits.to(torch.int8)
    ok = t8 == trits
    if not bool(ok.all()):
        r, c = (int(i) for i in (~ok).nonzero()[0])
        raise TernaryValueError(r, c, trits[r, c].item())
    return t8.contiguous()


def pack_ternary(trits: torch.Tensor, format: str = "t2") -> PackedTernary:
    """Pack a 2-D tensor of trits (any real dtype, values exactly in {-1, 0, 1})."""
    _check_format(format)
    if not isinstance(trits, torch.Tensor):
        trits = torch.as_tensor(trits)
    if trits.dim() != 2:
        raise ValueError(f"pack_ternary expects a 2-D (rows, cols) tensor, got shape {tuple(trits.shape)}")
    trits = trits.detach().cpu()
    n, k = trits.shape
    rb = packed_row_bytes(k, format)
    lib = _native_for(trits)
    if lib is not None and trits.dtype == torch.float32 and n * k > 0:
        src = trits.contiguous()
        out = torch.empty((n, rb), dtype=torch.uint8)
        idx = lib.lib.tri_pack_f32(
            FORMAT_CODE[format], src.data_ptr(), n, k, out.data_ptr(), rb, _pack_threads(n * k)
        )
        if idx == -2:
            raise MemoryError("tritium: pack_ternary could not allocate a row buffer")
        if idx >= 0:
            r, c = divmod(int(idx), k)
            raise TernaryValueError(r, c, trits[r, c].item())
        return PackedTernary(format=format, data=out, shape=(n, k))
    t8 = _to_int8(trits)
    if lib is not None and n * k > 0:
        out = torch.empty((n, rb), dtype=torch.uint8)
        idx = lib.lib.tri_pack(FORMAT_CODE[format], t8.data_ptr(), n, k, out.data_ptr(), rb, _pack_threads(n * k))
        if idx >= 0:
            r, c = divmod(int(idx), k)
            raise TernaryValueError(r, c, trits[r, c].item())
    else:
        out = _pack_torch(t8, format)
    return PackedTernary(format=format, data=out, shape=(n, k))


def unpack_ternary(p: PackedTernary) -> torch.Tensor:
    """The int8 (N, K) trits of ``p`` (validates every byte)."""
    n, k = p.shape
    lib = _native_for(p.data)
    if lib is not None and n * k > 0:
        out = torch.empty((n, k), dtype=torch.int8)
        idx = lib.lib.tri_unpack(
            FORMAT_CODE[p.format], p.data.data_ptr(), n, k, p.data.shape[1], out.data_ptr(), _pack_threads(n * k)
        )
        if idx >= 0:
            p._raise_at(int(idx))
        return out
    return _unpack_torch(p)


# ---------------------------------------------------------------------------------------------
# Pure-PyTorch implementations (fallback and reference)
# ---------------------------------------------------------------------------------------------


def _pack_torch(t8: torch.Tensor, format: str) -> torch.Tensor:
    n, k = t8.shape
    bad = (t8 < -1) | (t8 > 1)
    if bool(bad.any()):
        r, c = (int(i) for i in bad.nonzero()[0])
        raise TernaryValueError(r, c, int(t8[r, c]))
    be = BLOCK_ELEMS[format]
    nb = (k + be - 1) // be
    codes = torch.ones((n, nb * be), dtype=torch.uint8)
    codes[:, :k] = (t8 + 1).to(torch.uint8)
    if format == "t2":
        c = codes.view(n, nb, 4, 32)
        out = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
    else:
        c = codes.view(n, nb, 5, 32)
        out = c[:, :, 0] * 81 + c[:, :, 1] * 27 + c[:, :, 2] * 9 + c[:, :, 3] * 3 + c[:, :, 4]
    return out.reshape(n, nb * BLOCK_BYTES).contiguous()


_T2_SHIFTS = torch.tensor([0, 2, 4, 6], dtype=torch.uint8).view(1, 1, 4, 1)
_T16_POWERS = torch.tensor([81, 27, 9, 3, 1], dtype=torch.int16).view(1, 1, 5, 1)


def _unpack_torch(p: PackedTernary) -> torch.Tensor:
    n, k = p.shape
    data = p.data
    be = BLOCK_ELEMS[p.format]
    nb = data.shape[1] // BLOCK_BYTES
    blocks = data.view(n, nb, 1, BLOCK_BYTES)
    if p.format == "t2":
        codes = (blocks >> _T2_SHIFTS.to(data.device)) & 3
        badbyte = (data & (data >> 1) & 0x55) != 0
    else:
        v = blocks.to(torch.int16)
        codes = torch.div(v, _T16_POWERS.to(data.device), rounding_mode="floor") % 3
        badbyte = data > 242
    codes = codes.reshape(n, nb * be)
    if k < nb * be:
        # padding must hold zero trits (code 1); mark the bytes that hold a non-zero one
        pad = torch.zeros((n, nb * be), dtype=torch.bool, device=data.device)
        pad[:, k:] = codes[:, k:] != 1
        per_byte = pad.view(n, nb, be // BLOCK_BYTES, BLOCK_BYTES).any(dim=2).reshape(
            n, nb * BLOCK_BYTES)   # (not -1: a matrix of no rows has no size to infer)
        badbyte = badbyte | per_byte
    # (a meta tensor has no bytes to check: a shape-only run of a model moved to "meta")
    if not data.is_meta and bool(badbyte.any()):
        r, b = (int(i) for i in badbyte.nonzero()[0])
        raise PackedDataError(p.format, r, b, int(data[r, b]))
    return (codes[:, :k].to(torch.int8) - 1).contiguous()
