"""Property tests for the packed ternary formats (native and pure-PyTorch implementations).

TRITIUM_FUZZ_EXAMPLES scales the number of examples (``make fuzz`` runs 20,000+).
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.runtime import packing
from tritium.runtime.packing import (
    PackedDataError,
    PackedTernary,
    TernaryValueError,
    pack_ternary,
    packed_row_bytes,
    unpack_ternary,
)

EXAMPLES = int(os.environ.get("TRITIUM_FUZZ_EXAMPLES", "100"))
PROPS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FORMATS = st.sampled_from(["t2", "t1.6"])
IMPLS = ["native", "torch"]


def _use(impl: str, monkeypatch) -> None:
    if impl == "torch":
        monkeypatch.setattr(packing, "_native_for", lambda t: None)
    elif packing._native_for(torch.zeros(1)) is None:
        pytest.skip("native kernels unavailable")


@st.composite
def trit_matrices(draw):
    n = draw(st.integers(1, 5))
    k = draw(st.integers(1, 700))
    seed = draw(st.integers(0, 2**31 - 1))
    density = draw(st.sampled_from([0.0, 0.3, 1.0]))
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8)
    mask = torch.rand((n, k), generator=g) < density
    return torch.where(mask, t, torch.zeros_like(t))


@pytest.mark.parametrize("impl", IMPLS)
@PROPS
@given(trits=trit_matrices(), fmt=FORMATS)
def test_round_trip_any_length(impl, monkeypatch, trits, fmt):
    _use(impl, monkeypatch)
    p = pack_ternary(trits, fmt)
    n, k = trits.shape
    assert tuple(p.data.shape) == (n, packed_row_bytes(k, fmt))
    assert torch.equal(unpack_ternary(p), trits)
    # packing is canonical: the same bytes from either implementation
    assert torch.equal(p.data, packing._pack_torch(trits, fmt))


@pytest.mark.parametrize("impl", IMPLS)
@PROPS
@given(
    trits=trit_matrices(),
    fmt=FORMATS,
    where=st.tuples(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True)),
    bad=st.one_of(
        st.integers(2, 127), st.integers(-128, -2),
        st.floats(allow_nan=True).filter(lambda v: v not in (-1.0, 0.0, 1.0)),
    ),
)
def test_invalid_values_are_rejected_with_position(impl, monkeypatch, trits, fmt, where, bad):
    _use(impl, monkeypatch)
    n, k = trits.shape
    r, c = int(where[0] * n), int(where[1] * k)
    t = trits.to(torch.float64 if isinstance(bad, float) else torch.int8).clone()
    t[r, c] = bad
    with pytest.raises(TernaryValueError, match=rf"\(row {r}, col {c}\)"):
        pack_ternary(t, fmt)


@pytest.mark.parametrize("impl", IMPLS)
@PROPS
@given(
    fmt=FORMATS,
    n=st.integers(1, 4),
    k=st.integers(1, 400),
    seed=st.integers(0, 2**31 - 1),
    corrupt=st.floats(0, 1),
)
def test_fuzz_unpack_random_bytes(impl, monkeypatch, fmt, n, k, seed, corrupt):
    """Random bytes either decode to trits that re-pack to the same bytes, or raise a clear error."""
    _use(impl, monkeypatch)
    rb = packed_row_bytes(k, fmt)
    g = torch.Generator().manual_seed(seed)
    valid = pack_ternary(torch.randint(-1, 2, (n, k), generator=g, dtype=torch.int8), fmt).data
    noise = torch.randint(0, 256, (n, rb), generator=g, dtype=torch.int32).to(torch.uint8)
    mask = torch.rand((n, rb), generator=g) < corrupt
    data = torch.where(mask, noise, valid)
    p = PackedTernary(fmt, data, (n, k))
    try:
        trits = unpack_ternary(p)
    except PackedDataError as err:
        # the reported byte really is invalid, and nothing before it (row-major) is
        ref_bad = _invalid_bytes(data, fmt, k)
        assert ref_bad, "error raised for valid data"
        assert (err.row, err.byte) == ref_bad[0]
        assert f"(row {err.row}, byte {err.byte})" in str(err)
        return
    assert not _invalid_bytes(data, fmt, k)
    assert trits.dtype == torch.int8 and tuple(trits.shape) == (n, k)
    assert torch.equal(pack_ternary(trits, fmt).data, data)


def _invalid_bytes(data: torch.Tensor, fmt: str, k: int) -> list[tuple[int, int]]:
    """A slow, obviously-correct oracle for which bytes no valid row can contain."""
    out = []
    be = 128 if fmt == "t2" else 160
    for r, row in enumerate(data.tolist()):
        for i, byte in enumerate(row):
            blk, j = divmod(i, 32)
            if fmt == "t2":
                codes = [(byte >> (2 * s)) & 3 for s in range(4)]
            else:
                if byte > 242:
                    out.append((r, i))
                    continue
                codes = [(byte // 3 ** (4 - s)) % 3 for s in range(5)]
            bad = any(c == 3 for c in codes) or any(
                blk * be + 32 * s + j >= k and c != 1 for s, c in enumerate(codes)
            )
            if bad:
                out.append((r, i))
    return out
