"""Batch-norm folding into frozen ternary layers: exactness, the pairs that fold (and the
ones that must not), the checkpoint round trip of a folded model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from tritium.driver import compile_program
from tritium.runtime import (
    BitLinear,
    TernaryConv2d,
    TernaryLinear,
    fold_batchnorm,
    fold_batchnorms,
    freeze_model,
    load_checkpoint,
    save_checkpoint,
)

# runs once per ISA path of this CPU (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("every_isa")


def _randomize_bn(bn: nn.modules.batchnorm._BatchNorm, seed: int) -> None:
    """Running statistics and affine parameters far from their defaults (negative gammas
    included, so the folded scales change sign)."""
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.05)
        if bn.weight is not None:
            bn.weight.copy_(torch.randn(n, generator=g) * 2)
            bn.bias.copy_(torch.randn(n, generator=g))


def _pair(layer: nn.Module, bn: nn.Module, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    _randomize_bn(bn, seed)  # type: ignore[arg-type]
    return nn.Sequential(layer, bn).eval()


def _assert_fold_exact(model: nn.Sequential, x: torch.Tensor) -> nn.Sequential:
    plain = freeze_model(copy.deepcopy(model), fold_bn=False).eval()
    folded = freeze_model(copy.deepcopy(model)).eval()
    assert isinstance(folded[1], nn.Identity), "the batch norm was not folded"
    assert folded[0].folded and folded[0].bias is not None
    assert folded[0].weight_scale.numel() == folded[0].out_dim
    with torch.no_grad():
        ref = plain(x)
        got = folded(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # the trits are the same: only scale and bias carry the batch norm
    assert torch.equal(folded[0].weight_packed, plain[0].weight_packed)
    return folded


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_linear_fold_is_exact(bias: bool, per_channel: bool, affine: bool) -> None:
    model = _pair(TernaryLinear(24, 16, bias=bias, per_channel=per_channel),
                  nn.BatchNorm1d(16, affine=affine), seed=1)
    x = torch.randn(5, 24)
    folded = _assert_fold_exact(model, x)
    plain = freeze_model(copy.deepcopy(model), fold_bn=False).eval()
    with torch.inference_mode():  # the cached native path (batch 1) agrees too
        torch.testing.assert_close(folded(x[:1]), plain(x[:1]), rtol=1e-5, atol=1e-5)


def test_bitlinear_and_int8_activation_fold_is_exact() -> None:
    _assert_fold_exact(_pair(BitLinear(32, 8), nn.BatchNorm1d(8), seed=2), torch.randn(4, 32))
    _assert_fold_exact(_pair(TernaryLinear(32, 8, act_quant="int8"), nn.BatchNorm1d(8),
                             seed=3), torch.randn(4, 32))


@pytest.mark.parametrize(("groups", "bias", "stride", "padding"), [
    (1, True, 1, 1), (1, False, 2, 0), (2, True, 1, 1), (4, False, 1, 2), (8, True, 2, 1),
])
def test_conv_fold_is_exact(groups: int, bias: bool, stride: int, padding: int) -> None:
    model = _pair(TernaryConv2d(8, 8, 3, stride=stride, padding=padding, groups=groups,
                                bias=bias), nn.BatchNorm2d(8), seed=groups)
    _assert_fold_exact(model, torch.randn(2, 8, 9, 9))


def test_folded_linear_refuses_inputs_the_fold_is_not_exact_for() -> None:
    folded = freeze_model(_pair(TernaryLinear(6, 4), nn.BatchNorm1d(4), seed=0))
    with pytest.raises(ValueError, match="exact only for 2-D"):
        folded(torch.randn(2, 4, 6))


def test_fold_batchnorm_names_what_prevents_it() -> None:
    layer = TernaryLinear(6, 4).freeze()
    with pytest.raises(ValueError, match="folds a BatchNorm1d, not a BatchNorm2d"):
        fold_batchnorm(layer, nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="has 5 features but the layer has 4"):
        fold_batchnorm(layer, nn.BatchNorm1d(5))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        fold_batchnorm(layer, nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(RuntimeError, match="must be frozen"):
        fold_batchnorm(TernaryLinear(6, 4), nn.BatchNorm1d(4))
    fold_batchnorm(layer, nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="already has a batch norm folded"):
        fold_batchnorm(layer, nn.BatchNorm1d(4))


def test_sequential_pairs_that_do_not_qualify_stay() -> None:
    model = nn.Sequential(TernaryLinear(6, 4), nn.BatchNorm1d(4, track_running_stats=False),
                          nn.Linear(4, 4), nn.BatchNorm1d(4), TernaryLinear(4, 3)).eval()
    freeze_model(model)
    assert [type(m).__name__ for m in model] == [
        "TernaryLinear", "BatchNorm1d", "Linear", "BatchNorm1d", "TernaryLinear"]
    assert fold_batchnorms(model) == []


# --- generated models: which pairs the code generator lists ---------------------------

SOURCE = """
block Unit {
    params { c: int }
    layer conv: TernaryConv2d { in_channels: c, out_channels: c, kernel_size: 3, padding: 1, groups: 2, bias: false }
    layer bn: BatchNorm2d { num_features: c }
    forward(x: Tensor[b, c, h, w]) -> Tensor[b, c, h, w] {
        return relu(bn(conv(x)) + x)
    }
}

model Net {
    layer unit: Unit { c: 4 }
    layer fc1: TernaryLinear { in_features: 64, out_features: 16 }
    layer bn1: BatchNorm1d { num_features: 16 }
    layer fc2: TernaryLinear { in_features: 16, out_features: 16 }
    layer bn2: BatchNorm1d { num_features: 16 }
    layer fc3: TernaryLinear { in_features: 16, out_features: 16 }
    layer bn3: BatchNorm1d { num_features: 16 }
    forward(x: Tensor[b, 4, 4, 4]) -> Tensor[b, 16] {
        x = flatten(unit(x), start_dim: 1)
        h = relu(bn1(fc1(x)))
        y = fc2(h)
        z = bn2(y) + y
        return bn3(fc3(z)) + bn3(z)
    }
}
"""


def _net() -> nn.Module:
    compiled = compile_program(source=SOURCE, with_ir=False, use_cache=False, file="fold.tri")
    torch.manual_seed(0)
    net = compiled.classes["Net"]()
    net.train()
    for _ in range(3):
        net(torch.randn(16, 4, 4, 4))
    return net.eval()


def test_codegen_lists_only_exclusive_pairs() -> None:
    net = _net()
    # fc2's output is used without bn2 too, bn3 also normalizes something else: no fold
    assert net.tritium_identity_folds == [["fc1", "bn1"]]
    assert net.unit.tritium_identity_folds == [["conv", "bn"]]


def test_generated_model_folds_exactly_and_round_trips(tmp_path: Path) -> None:
    net = _net()
    x = torch.randn(3, 4, 4, 4)
    plain = freeze_model(copy.deepcopy(net), fold_bn=False)
    folded = freeze_model(copy.deepcopy(net))
    # removed: a folded batch norm becomes nn.Identity (no parameters, no statistics)
    assert type(folded.bn1) is nn.Identity and type(folded.unit.bn) is nn.Identity
    assert "bn1" in folded._modules and not any(k.startswith("bn1.") for k in folded.state_dict())
    assert isinstance(folded.bn2, nn.BatchNorm1d) and isinstance(folded.bn3, nn.BatchNorm1d)
    with torch.no_grad():
        ref = plain(x)
        torch.testing.assert_close(folded(x), ref, rtol=1e-5, atol=1e-5)
    path = tmp_path / "folded.safetensors"
    meta = save_checkpoint(path, folded)
    assert meta.folds == {"fc1": "bn1", "unit.conv": "bn"}
    state, loaded = load_checkpoint(path)
    assert loaded.folds == meta.folds
    assert not any(k.startswith(("bn1.", "unit.bn.")) for k in state)
    # a fresh, unfrozen model takes the checkpoint: layers frozen and folded, norms gone
    fresh = _net()
    load_checkpoint(path, fresh)
    assert fresh.fc1.folded and fresh.unit.conv.folded and not fresh.fc2.folded
    assert type(fresh.bn1) is nn.Identity and type(fresh.unit.bn) is nn.Identity
    with torch.no_grad():
        # float16 scales and biases in the file: within float16 rounding of the model
        torch.testing.assert_close(fresh.eval()(x), ref, rtol=2e-3, atol=2e-3)
    # exact when the file keeps float32
    save_checkpoint(path, folded, float16_scales=False)
    exact = _net()
    load_checkpoint(path, exact)
    with torch.no_grad():
        torch.testing.assert_close(exact.eval()(x), folded(x), rtol=0, atol=0)


def test_folded_checkpoint_rejects_models_without_the_norm(tmp_path: Path) -> None:
    from tritium.runtime import CheckpointError

    path = tmp_path / "f.safetensors"
    save_checkpoint(path, freeze_model(_pair(TernaryLinear(6, 4), nn.BatchNorm1d(4), seed=0)))
    other = nn.Sequential(TernaryLinear(6, 4), nn.ReLU())
    with pytest.raises(CheckpointError, match=r"folded the batch norm '1' into '0', but the "
                                              r"model holds ReLU"):
        load_checkpoint(path, other)
    assert not other[0].frozen
    # a model frozen without the fold takes it and becomes folded
    unfolded = freeze_model(_pair(TernaryLinear(6, 4), nn.BatchNorm1d(4), seed=0),
                            fold_bn=False)
    target = copy.deepcopy(unfolded)
    assert load_checkpoint(path, target)[1].folds == {"0": "1"}
    assert target[0].folded and isinstance(target[1], nn.Identity)
    # but a folded model cannot take an unfolded checkpoint
    save_checkpoint(path, unfolded)
    with pytest.raises(CheckpointError, match="has a batch norm folded into it but"):
        load_checkpoint(path, freeze_model(_pair(TernaryLinear(6, 4), nn.BatchNorm1d(4),
                                                 seed=0)))


def test_a_fold_by_hand_round_trips_without_a_norm_to_remove(tmp_path: Path) -> None:
    layer = TernaryConv2d(4, 6, 3, padding=1, bias=False).freeze("t1.6")
    bn = nn.BatchNorm2d(6)
    _randomize_bn(bn, 7)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        ref = bn.eval()(layer(x))
        fold_batchnorm(layer, bn)
        torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
    path = tmp_path / "conv.safetensors"
    assert save_checkpoint(path, layer, float16_scales=False).folds == {"": ""}
    fresh = TernaryConv2d(4, 6, 3, padding=1, bias=False)
    load_checkpoint(path, fresh)
    assert fresh.frozen and fresh.folded and fresh.format == "t1.6"
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)
