"""`trt.rope`: rotary position embedding (the runtime half of the `rope` builtin)."""

from __future__ import annotations

import math

import pytest
import torch

from tritium import runtime as trt


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_position_zero_is_the_identity_and_norms_are_kept():
    x = _x(2, 3, 6, 8)
    y = trt.rope(x)
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])
    # a rotation of each (i, i + d/2) pair keeps every pair's length
    pairs = lambda t: t[..., :4] ** 2 + t[..., 4:] ** 2  # noqa: E731
    torch.testing.assert_close(pairs(y), pairs(x), rtol=1e-5, atol=1e-5)


def test_the_rotation_angle_of_each_pair():
    d, base, pos = 8, 100.0, 3
    x = torch.zeros(1, pos + 1, d)
    x[0, pos, 1] = 1.0            # feature 1 of position 3: pairs with feature 1 + d/2
    y = trt.rope(x, base=base)[0, pos]
    theta = pos * base ** (-2 * 1 / d)
    assert y[1].item() == pytest.approx(math.cos(theta), abs=1e-6)
    assert y[1 + d // 2].item() == pytest.approx(math.sin(theta), abs=1e-6)


def test_dot_products_depend_only_on_relative_position():
    q, k = _x(1, 1, 8, seed=1), _x(1, 1, 8, seed=2)
    def score(m: int, n: int) -> float:
        qm = trt.rope(q.expand(1, m + 1, 8).contiguous())[0, m]
        kn = trt.rope(k.expand(1, n + 1, 8).contiguous())[0, n]
        return float(qm @ kn)
    assert score(5, 2) == pytest.approx(score(9, 6), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("offset", [1, 4])
def test_an_offset_continues_the_positions(offset):
    x = _x(2, 2, 7, 16, seed=3)
    full = trt.rope(x)
    torch.testing.assert_close(trt.rope(x[..., offset:, :], offset=offset), full[..., offset:, :])


def test_an_odd_head_dim_is_refused():
    with pytest.raises(ValueError, match="odd"):
        trt.rope(torch.zeros(1, 2, 5))
