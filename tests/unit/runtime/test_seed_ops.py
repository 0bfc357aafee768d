"""The seed language's quantization primitives of `tritium.runtime.seed_ops`."""

from __future__ import annotations

import pytest
import torch

from tritium.runtime import seed_ops


def test_the_quantile_threshold_takes_weights_of_any_size():
    # torch.quantile refuses more than 2**24 elements ("quantile() input tensor is too
    # large"): adaptive_threshold_quantize(w, percentile: p) of a 4096 x 4096 weight raised
    g = torch.Generator().manual_seed(0)
    w = torch.randn((1 << 24) + 3, generator=g)
    q = seed_ops.quantile_threshold_quantize(w, 0.3)
    zeros = int((q == 0).sum())
    assert zeros + int((q == 1).sum()) + int((q == -1).sum()) == w.numel()
    assert zeros / w.numel() == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize("values", [[1.0, 1.0, 1.0, 2.0, 2.0, 3.0], [0.5], [2.0, 2.0],
                                    "random"])
def test_the_large_tensor_quantile_is_torch_quantile(monkeypatch, values):
    v = torch.rand(1001, generator=torch.Generator().manual_seed(1)) if values == "random" \
        else torch.tensor(values)
    monkeypatch.setattr(seed_ops, "_QUANTILE_MAX", 0)      # the path of large tensors
    for p in (0.0, 0.1, 0.2, 0.5, 0.7, 0.9, 0.999, 1.0):
        torch.testing.assert_close(seed_ops._quantile(v, p), torch.quantile(v, p),
                                   rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        seed_ops._quantile(v, 1.5)
