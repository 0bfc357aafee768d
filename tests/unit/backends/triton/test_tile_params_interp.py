"""BLOCK_K (trits per K-loop iteration) and GROUP_M (grouped program order), the GEMM tile
parameters the autotuner searches besides BLOCK_M/BLOCK_N, on Triton's interpreter: every
combination computes the same result as the defaults, with ragged M, N and K."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tritium.backends.triton.launch import triton_ternary_conv2d, triton_ternary_linear
from tritium.backends.triton.specs import BLOCK_TRITS
from tritium.runtime.packing import pack_ternary

pytestmark = pytest.mark.usefixtures("interpreted")


def _trits(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, k), generator=g).float()


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("blocks,group_m", [(1, 3), (2, 1), (3, 2)])
def test_linear_block_k_and_group_m(fmt, blocks, group_m):
    # 37 x 100 with 8 x 32 tiles: 5 x 4 programs (GROUP_M=3 leaves a short last band);
    # K = 500 spans 4 (t2) or 4 (t1.6) packed blocks, so BLOCK_K of 2 or 3 blocks has a
    # partial last step whose missing blocks must read as zeros.
    t = _trits(100, 500, blocks * 10 + group_m)
    x = torch.randn(37, 500)
    w = pack_ternary(t, fmt)
    config = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": blocks * BLOCK_TRITS[fmt],
              "GROUP_M": group_m}
    y = triton_ternary_linear(x, w, torch.tensor(0.5), act_quant="int8", config=config)
    y_default = triton_ternary_linear(x, w, torch.tensor(0.5), act_quant="int8",
                                      config={"BLOCK_M": 16, "BLOCK_N": 32})
    assert torch.equal(y, y_default)
    yf = triton_ternary_linear(x, w, torch.tensor(0.5), config=config)
    torch.testing.assert_close(yf, F.linear(x, t) * 0.5, rtol=1e-5, atol=1e-4)


def test_conv_block_k_and_group_m():
    t = _trits(20, 8 * 9, 7)
    x = torch.randn(2, 8, 7, 7)
    w = pack_ternary(t, "t2")
    config = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 256, "GROUP_M": 2}
    y = triton_ternary_conv2d(x, w, (20, 8, 3, 3), torch.tensor(1.0), None, 1, 1,
                              config=config)
    ref = F.conv2d(x, t.reshape(20, 8, 3, 3), padding=1)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-4)


def test_block_k_must_be_a_multiple_of_the_packed_block():
    t = _trits(8, 64, 1)
    with pytest.raises(Exception, match="BLOCK_K must be a multiple of 128"):
        triton_ternary_linear(torch.randn(2, 64), pack_ternary(t, "t2"), torch.tensor(1.0),
                              config={"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 96})
