"""The generated Triton kernels, run by Triton's interpreter on CPU tensors, against PyTorch.

Float paths: within RTOL/ATOL of `F.linear` / `F.conv2d` on the unpacked trits (the kernels
accumulate in fp32 in another order). int8 paths: bit-exact — the quantizer equals the
runtime's rule bit for bit and int8 x trit products are accumulated in int32, then scaled
in the same order as the CPU kernels' reference. Shapes include ones that are not multiples
of any block size and, with forced small tiles, several tiles along M and N.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tritium.backends.triton.launch import (
    triton_quantize_int8,
    triton_rmsnorm_bitlinear,
    triton_ternary_conv2d,
    triton_ternary_linear,
)
from tritium.runtime import kernels as cpu
from tritium.runtime.packing import PackedTernary, pack_ternary, packed_row_bytes

pytestmark = pytest.mark.usefixtures("interpreted")

RTOL, ATOL = 1e-5, 1e-4
SMALL_TILES = {"BLOCK_M": 16, "BLOCK_N": 32}
ACTS = {
    None: lambda y: y, "relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh,
}


def _trits(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, k), generator=g).float()


def _ref_float(x, t, scale, bias=None, residual=None, act=None):
    y = F.linear(x.float(), t) * scale
    if bias is not None:
        y = y + bias
    if residual is not None:
        y = y + residual
    return ACTS[act](y)


def _ref_int8(x, t, scale, bias=None, residual=None, act=None):
    """Per-token absmax int8, exact integer product, then the CPU kernels' scaling order."""
    xq, s = cpu.quantize_activations_int8(x.reshape(-1, x.shape[-1]))
    yi = (xq.long() @ t.long().t()).to(torch.int32)
    y = yi.float() * s
    y = y * scale.reshape(-1)
    if bias is not None:
        y = y + bias
    if residual is not None:
        y = y + residual.reshape(y.shape)
    return ACTS[act](y).reshape(*x.shape[:-1], t.shape[0])


SHAPES = [(1, 5, 7), (3, 64, 128), (17, 130, 300), (17, 5, 128), (1, 130, 300), (3, 64, 7)]


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_linear_float_matches_torch(fmt, m, n, k):
    t = _trits(n, k, m * 1000 + n + k)
    x = torch.randn(m, k)
    scale = torch.rand(n) + 0.5
    bias = torch.randn(n)
    y = triton_ternary_linear(x, pack_ternary(t, fmt), scale, bias, "relu")
    torch.testing.assert_close(y, _ref_float(x, t, scale, bias, act="relu"), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_linear_int8_bit_exact(fmt, m, n, k):
    t = _trits(n, k, m + n * 7 + k)
    x = torch.randn(m, k) * 4
    scale = torch.rand(n) + 0.5
    bias = torch.randn(n)
    res = torch.randn(m, n)
    y = triton_ternary_linear(x, pack_ternary(t, fmt), scale, bias, None, "int8", res)
    ref = _ref_int8(x, t, scale, bias, res)
    assert torch.equal(y, ref), (y - ref).abs().max()
    # and equal to the runtime's CPU kernel, which the GPU path replaces
    assert torch.equal(y, cpu.ternary_linear(x, pack_ternary(t, fmt), scale, bias, None, "int8",
                                             res))


@pytest.mark.parametrize("act_quant", ["none", "int8"])
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_linear_several_tiles(fmt, act_quant):
    # 17 x 130 with 16 x 32 tiles: 2 x 5 programs, ragged in both dims; K spans 2-3 blocks.
    t = _trits(130, 300, 3)
    x = torch.randn(17, 300)
    scale = torch.tensor(0.37)
    y = triton_ternary_linear(x, pack_ternary(t, fmt), scale, act_quant=act_quant,
                              config=SMALL_TILES)
    if act_quant == "int8":
        assert torch.equal(y, _ref_int8(x, t, scale))
    else:
        torch.testing.assert_close(y, _ref_float(x, t, scale), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("act", ["relu6", "gelu", "silu", "sigmoid", "tanh"])
def test_linear_activations(act):
    t = _trits(40, 96, 5)
    x = torch.randn(3, 96) * 0.3
    scale = torch.rand(40) + 0.5
    res = torch.randn(1, 40)  # broadcast over tokens
    y = triton_ternary_linear(x, pack_ternary(t, "t2"), scale, None, act, "none", res)
    ref = _ref_float(x, t, scale, None, res, act)
    torch.testing.assert_close(y, ref, rtol=RTOL, atol=ATOL)


def test_linear_int8_relu_bit_exact_and_batched_shape():
    t = _trits(33, 200, 11)
    x = torch.randn(2, 3, 200)
    scale = torch.rand(33) + 0.1
    y = triton_ternary_linear(x, pack_ternary(t, "t1.6"), scale, None, "relu", "int8")
    assert y.shape == (2, 3, 33)
    assert torch.equal(y, _ref_int8(x, t, scale, act="relu"))


def test_linear_keeps_half_dtype_and_zero_rows():
    t = _trits(9, 50, 2)
    x = torch.randn(4, 50).half()
    x[1] = 0
    y = triton_ternary_linear(x, pack_ternary(t, "t2"), torch.tensor(1.5), act_quant="int8")
    assert y.dtype == torch.float16
    assert torch.equal(y, _ref_int8(x.float(), t, torch.tensor(1.5)).half())
    assert torch.equal(y[1], torch.zeros(9, dtype=torch.float16))


def _all_bytes_matrix(fmt: str) -> tuple[PackedTernary, torch.Tensor]:
    """A packed matrix whose bytes take every valid value of the format once (rows are one
    32-byte block), with the trits it encodes built independently from the format rules."""
    fields, values = (4, 81) if fmt == "t2" else (5, 243)
    rows = -(-values // 32)
    k = 128 if fmt == "t2" else 160
    data = torch.empty((rows, 32), dtype=torch.uint8)
    trits = torch.zeros((rows, k))
    for r in range(rows):
        for j in range(32):
            v = r * 32 + j
            if v >= values:
                v = 0x55 if fmt == "t2" else 121
            data[r, j] = v
            for f in range(fields):
                code = (v >> (2 * f)) & 3 if fmt == "t2" else (v // 3 ** (fields - 1 - f)) % 3
                trits[r, j + 32 * f] = code - 1
    return PackedTernary(fmt, data, (rows, k)), trits


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_decoder_reads_every_byte_value(fmt):
    w, trits = _all_bytes_matrix(fmt)
    k = trits.shape[1]
    eye = torch.eye(k)
    y = triton_ternary_linear(eye, w, torch.tensor(1.0), act_quant="int8")
    # x = e_i quantizes to 127 * e_i with s = 1/127, so y = W^T exactly
    assert torch.equal(y, trits.t())


def test_quantize_int8_bit_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(17, 300, generator=g) * 5
    x[3] = 0.0                                        # zero row: s = 1, q = 0
    x[4, :8] = torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, 63.5, -126.5])  # ties round to even
    for config in (None, {"BLOCK_M": 4, "BLOCK_K": 64}):
        q, s = triton_quantize_int8(x, config=config)
        q_ref, s_ref = cpu.quantize_activations_int8(x)
        assert q.dtype == torch.int8 and s.shape == (17, 1)
        assert torch.equal(q, q_ref) and torch.equal(s, s_ref)
    assert torch.equal(q[4, :8], torch.tensor([127, 0, 2, 2, 0, -2, 64, -126], dtype=torch.int8))


def _same_with_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit where finite, NaN exactly where the other is NaN, same infinities."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


def _non_finite_tokens(k: int) -> torch.Tensor:
    x = torch.randn(4, k, generator=torch.Generator().manual_seed(3))
    x[0, 5] = float("inf")       # the token's scale is inf: every quotient but inf/inf is 0
    x[1, 2] = float("nan")       # a NaN token: its scale, and every output of it, is NaN
    x[2, 7] = float("-inf")
    return x


def test_quantize_int8_keeps_nan_and_inf_tokens_as_torch():
    # Triton's max ignores NaN: a NaN token was quantized to plausible finite numbers (and its
    # NaN element to -127, as was inf / inf)
    x = _non_finite_tokens(70)
    q, s = triton_quantize_int8(x, config={"BLOCK_M": 4, "BLOCK_K": 64})
    q_ref, s_ref = cpu.quantize_activations_int8(x)
    assert torch.equal(q, q_ref) and _same_with_nan(s, s_ref)
    assert s[1].isnan().all() and torch.isinf(s[0]).all()


@pytest.mark.parametrize("act_quant", ["none", "int8"])
@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_linear_propagates_nan_and_inf_as_torch(act, act_quant):
    # A NaN or inf in the activations or the residual is never turned into finite outputs:
    # int8 tokens with a NaN were quantized as if it were absent, relu/relu6 mapped NaN to 0,
    # and the float path's tf32 split gave NaN (inf - inf) for every output of an inf.
    t = _trits(6, 40, 5)
    x = _non_finite_tokens(40)
    res = torch.zeros(4, 6)
    res[3, 1] = float("nan")
    scale = torch.rand(6, generator=torch.Generator().manual_seed(6)) + 0.5
    y = triton_ternary_linear(x, pack_ternary(t, "t2"), scale, None, act, act_quant, res)
    if act_quant == "int8":
        assert _same_with_nan(y, _ref_int8(x, t, scale, None, res, act))
    else:   # the float path sums in another order: finite outputs within the tolerance
        ref = _ref_float(x, t, scale, None, res, act)
        assert torch.equal(y.isfinite(), ref.isfinite()) and torch.equal(y.isnan(), ref.isnan())
        torch.testing.assert_close(y, ref, rtol=RTOL, atol=ATOL, equal_nan=True)
    assert y[3, 1].isnan() and y[1].isnan().all()


@pytest.mark.parametrize("m,k", [(1, 7), (3, 128)])
def test_quantize_int8_small_shapes(m, k):
    x = torch.randn(m, k)
    q, s = triton_quantize_int8(x)
    q_ref, s_ref = cpu.quantize_activations_int8(x)
    assert torch.equal(q, q_ref) and torch.equal(s, s_ref)


CONVS = [
    # batch, c_in, h, w, c_out, kernel, stride, padding, dilation, groups
    (2, 3, 7, 6, 5, 3, 1, 1, 1, 1),
    (1, 4, 9, 9, 6, 3, 2, 1, 1, 2),
    (2, 8, 5, 5, 16, 1, 2, 0, 1, 1),
    (1, 5, 8, 7, 3, 3, 1, 2, 2, 1),
]


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("b,c,h,w,o,kk,st,pd,dl,g", CONVS)
def test_conv2d_float_matches_torch(fmt, b, c, h, w, o, kk, st, pd, dl, g):
    gen = torch.Generator().manual_seed(b * 100 + c * 10 + o)
    wt = torch.randint(-1, 2, (o, c // g, kk, kk), generator=gen).float()
    x = torch.randn(b, c, h, w, generator=gen)
    scale = torch.rand(o, generator=gen) + 0.5
    bias = torch.randn(o, generator=gen)
    y = triton_ternary_conv2d(x, pack_ternary(wt.reshape(o, -1), fmt), tuple(wt.shape), scale,
                              bias, st, pd, dl, g, "silu")
    ref = F.silu(F.conv2d(x, wt, None, st, pd, dl, g) * scale.view(1, -1, 1, 1)
                 + bias.view(1, -1, 1, 1))
    torch.testing.assert_close(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("b,c,h,w,o,kk,st,pd,dl,g", CONVS[:3])
def test_conv2d_int8_bit_exact_with_residual(b, c, h, w, o, kk, st, pd, dl, g):
    gen = torch.Generator().manual_seed(o)
    wt = torch.randint(-1, 2, (o, c // g, kk, kk), generator=gen).float()
    x = torch.randn(b, c, h, w, generator=gen)
    packed = pack_ternary(wt.reshape(o, -1), "t2")
    scale = torch.tensor(0.8)
    ho = (h + 2 * pd - dl * (kk - 1) - 1) // st + 1
    wo = (w + 2 * pd - dl * (kk - 1) - 1) // st + 1
    res = torch.randn(b, o, ho, wo, generator=gen)
    y = triton_ternary_conv2d(x, packed, tuple(wt.shape), scale, None, st, pd, dl, g, "relu",
                              "int8", res)
    # the CPU kernels define the int8 conv: a token is one position's receptive field per group
    ref = cpu.ternary_conv2d(x, packed, tuple(wt.shape), scale, None, st, pd, dl, g, "relu",
                             "int8", res)
    assert torch.equal(y, ref)


def test_conv2d_several_tiles():
    gen = torch.Generator().manual_seed(9)
    wt = torch.randint(-1, 2, (40, 6, 3, 3), generator=gen).float()
    x = torch.randn(1, 6, 6, 5, generator=gen)
    y = triton_ternary_conv2d(x, pack_ternary(wt.reshape(40, -1), "t1.6"), tuple(wt.shape),
                              torch.tensor(1.0), padding=1, config=SMALL_TILES)
    torch.testing.assert_close(y, F.conv2d(x, wt, padding=1), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_rmsnorm_bitlinear(fmt, weighted):
    gen = torch.Generator().manual_seed(4)
    t = _trits(40, 96, 8)
    x = torch.randn(3, 2, 96, generator=gen)
    nw = torch.rand(96, generator=gen) + 0.5 if weighted else None
    scale = torch.tensor(0.7)
    y = triton_rmsnorm_bitlinear(x, pack_ternary(t, fmt), scale, nw, 1e-5)
    xn = F.rms_norm(x, (96,), nw, 1e-5)
    ref = _ref_int8(xn, t, scale)
    # The normalization's sum runs in another order than torch's, so a normalized value (and
    # the token's int8 scale) may differ in its last bit, and on a rounding tie an element may
    # move one quantization step: allow one step per output.
    step = (xn.abs().amax(-1, keepdim=True) / 127 * scale).expand_as(ref)
    assert ((y - ref).abs() <= step * 1.01 + 1e-5).all()


def test_rmsnorm_linear_float_path():
    t = _trits(24, 70, 1)
    x = torch.randn(5, 70)
    nw = torch.rand(70) + 0.5
    y = triton_rmsnorm_bitlinear(x, pack_ternary(t, "t2"), torch.tensor(2.0), nw, 1e-6,
                                 act_quant="none", activation="gelu")
    ref = _ref_float(F.rms_norm(x, (70,), nw, 1e-6), t, torch.tensor(2.0), act="gelu")
    torch.testing.assert_close(y, ref, rtol=RTOL, atol=ATOL)


def test_bad_arguments_are_rejected():
    w = pack_ternary(_trits(4, 10, 0), "t2")
    with pytest.raises(ValueError, match="features"):
        triton_ternary_linear(torch.randn(2, 11), w, torch.tensor(1.0))
    with pytest.raises(ValueError, match="scale"):
        triton_ternary_linear(torch.randn(2, 10), w, torch.ones(3))
    with pytest.raises(ValueError, match="activation"):
        triton_ternary_linear(torch.randn(2, 10), w, torch.tensor(1.0), activation="swish")
    assert packed_row_bytes(10, "t2") == w.data.shape[1]


def _rows_past_2_31(shape: tuple[int, ...], row_stride: int) -> torch.Tensor:
    """A tensor whose last row starts past element 2**31 of its storage (the storage is
    reserved, not touched: only the rows are written)."""
    try:
        base = torch.empty(row_stride * shape[0], dtype=torch.float32)
    except RuntimeError:   # no 8 GiB of address space to reserve
        pytest.skip("cannot reserve 8 GiB of address space")
    x = base.as_strided(shape, (row_stride, *torch.empty(shape[1:]).stride()))
    x.copy_(torch.randn(shape, generator=torch.Generator().manual_seed(1)))
    return x


def test_row_offsets_past_2_31_elements_are_computed_in_int64():
    # row * stride was int32: activations (or outputs) of more than 2**31 elements, a long
    # prefill through a wide layer, read and wrote at wrapped offsets (a crash or garbage)
    from tritium.backends.triton.launch import kernel_for
    from tritium.backends.triton.specs import Conv2dSpec, LinearSpec, QuantInt8Spec

    stride = 2**30 + 64                        # row 2 starts at element 2**31 + 128
    t = _trits(32, 64, 2)
    w = pack_ternary(t, "t2")
    x = _rows_past_2_31((3, 64), stride)
    y = torch.zeros(3, 32)
    kernel_for(LinearSpec("t2")).fn[(1, 1)](
        x, w.data, torch.ones(1), y, 3, 32, 64, stride, w.data.stride(0), 32,
        PER_CHANNEL=False, BLOCK_M=16, BLOCK_N=32)
    torch.testing.assert_close(y, x.clone() @ t.t(), rtol=RTOL, atol=ATOL)

    q = torch.zeros(3, 64, dtype=torch.int8)
    s = torch.zeros(3)
    kernel_for(QuantInt8Spec()).fn[(1,)](x, q, s, 3, 64, stride, 64, BLOCK_M=4, BLOCK_K=64)
    q_ref, s_ref = cpu.quantize_activations_int8(x.clone())
    assert torch.equal(q, q_ref) and torch.equal(s, s_ref.reshape(-1))

    img = _rows_past_2_31((3, 2, 4, 4), stride)    # image 2 starts past element 2**31
    wt = torch.randint(-1, 2, (4, 2, 3, 3), generator=torch.Generator().manual_seed(3)).float()
    wc = pack_ternary(wt.reshape(4, -1), "t2")
    yc = torch.zeros(3, 4, 4, 4)
    kernel_for(Conv2dSpec("t2")).fn[(3, 1, 1)](
        img, wc.data, torch.ones(1), yc, 48, 4, 18, 2, 4, 4, 4, 4, 4, *img.stride(),
        wc.data.stride(0), KH=3, KW=3, SH=1, SW=1, PH=1, PW=1, DH=1, DW=1, PER_CHANNEL=False,
        BLOCK_M=16, BLOCK_N=32)
    torch.testing.assert_close(yc, F.conv2d(img.clone(), wt, padding=1), rtol=RTOL, atol=ATOL)


def test_cpu_tensors_without_the_interpreter_are_refused_clearly(monkeypatch):
    # Triton said only "0 active drivers ([]). There should only be one." (a user calling a
    # launcher on a CPU machine without TRITON_INTERPRET)
    from tritium.backends.triton import launch

    monkeypatch.setattr(launch, "interpreting", lambda: False)
    w = pack_ternary(_trits(4, 8, 0), "t2")
    with pytest.raises(RuntimeError, match="CUDA tensors.*TRITON_INTERPRET=1.*on cpu"):
        triton_ternary_linear(torch.randn(2, 8), w, torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        triton_quantize_int8(torch.randn(2, 8))
