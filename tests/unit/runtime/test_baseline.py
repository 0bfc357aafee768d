"""The fp32 baseline with batch norms folded: the same function, no batch norm left."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tritium.driver.models import build_model, float_twin
from tritium.runtime.baseline import fold_fp32_batchnorms

ROOT = Path(__file__).resolve().parents[3]


def _perturb(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g))
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.3)
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=g))


@pytest.mark.parametrize("example, shape, left", [
    ("mlp.tri", (5, 64), 0),
    ("lenet5.tri", (3, 1, 32, 32), 0),
    ("resnet18.tri", (2, 3, 32, 32), None),
])
def test_folding_keeps_the_function_and_removes_the_batch_norms(example, shape, left):
    torch.manual_seed(0)
    twin, _ = float_twin(build_model(ROOT / "examples" / example).model)
    _perturb(twin, 1)
    twin.eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        want = twin(x)
        done = fold_fp32_batchnorms(twin)
        got = twin(x)
    before = len(done) + sum(isinstance(m, nn.modules.batchnorm._BatchNorm)
                             for m in twin.modules())
    remaining = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in twin.modules())
    assert done and remaining < before
    if left is not None:
        assert remaining == left
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * (1 + want.abs().max().item()))


def test_a_sequential_conv_bn_pair_is_folded_to_identity_and_training_mode_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.BatchNorm1d(5))
    _perturb(model, 2)
    with pytest.raises(ValueError, match="eval mode"):
        fold_fp32_batchnorms(model)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
        assert fold_fp32_batchnorms(model) == [("0", "1"), ("4", "5")]
        got = model(x)
    assert isinstance(model[1], nn.Identity) and isinstance(model[5], nn.Identity)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_batch_norm_that_does_not_match_its_layer_is_left_alone():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3),
                          nn.BatchNorm2d(3)).eval()   # wrong kind after the second linear
    assert fold_fp32_batchnorms(model) == [("0", "1")]
    assert isinstance(model[3], nn.BatchNorm2d)
