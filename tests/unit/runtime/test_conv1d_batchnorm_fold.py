"""Conv1d -> BatchNorm1d pairs fold like Conv2d -> BatchNorm2d: in the ternary freeze of a
ternarized model (`TernaryConv1d`) and in the fp32 baseline (`fold_fp32_batchnorms`), both
in an `nn.Sequential` and in a plain module whose pair `ternarize` proves with torch.fx."""

from __future__ import annotations

import copy

import torch
from torch import nn

import tritium
from tritium.driver.models import float_twin
from tritium.runtime import TernaryConv1d, freeze_model, load_checkpoint, save_checkpoint
from tritium.runtime.baseline import fold_fp32_batchnorms


class KeywordNet(nn.Module):
    """A keyword-spotting style 1-D CNN: pairs called as `self.bn(self.conv(x))`."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(4, 8, 3, padding=1)
        self.conv1 = nn.Conv1d(8, 12, 5, stride=2, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(12)
        self.conv2 = nn.Conv1d(12, 12, 3, padding=2, dilation=2, groups=3)
        self.bn2 = nn.BatchNorm1d(12)
        self.tail = nn.Sequential(nn.Conv1d(12, 6, 1), nn.BatchNorm1d(6), nn.ReLU())
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.head(self.tail(x).mean(-1))


def _perturb(model: nn.Module, seed: int) -> None:
    """Running statistics and affine parameters far from the identity, so a fold that is
    wrong (or missing) shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g))
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.3)
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=g))


def _norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_ternary_conv1d_folds_its_batchnorm1d_in_a_plain_module_and_a_sequential(tmp_path):
    torch.manual_seed(0)
    model = KeywordNet()
    _perturb(model, 1)
    _, report = tritium.ternarize(model, per_channel=True)
    assert isinstance(model.conv1, TernaryConv1d) and isinstance(model.tail[0], TernaryConv1d)
    assert {("conv1", "bn1"), ("conv2", "bn2")} <= set(report.folds)
    model.eval()
    x = torch.randn(3, 4, 23)
    unfolded = freeze_model(copy.deepcopy(model), fold_bn=False)
    freeze_model(model)
    # all three pairs folded: the two proven ones and the Sequential's
    assert _norms(model) == 0 and _norms(unfolded) == 3
    assert model.conv1.folded and model.conv2.folded and model.tail[0].folded
    assert model.conv1.folded_bn == "bn1" and isinstance(model.bn1, nn.Identity)
    with torch.no_grad():
        want, got = unfolded(x), model(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * (1 + want.abs().max().item()))
    # the checkpoint records the folds; a fresh ternarized model loads them
    save_checkpoint(model, tmp_path / "kws.safetensors")
    torch.manual_seed(0)
    fresh = KeywordNet()
    tritium.ternarize(fresh, per_channel=True)
    load_checkpoint(fresh, tmp_path / "kws.safetensors")
    assert _norms(fresh) == 0 and fresh.conv1.folded
    with torch.no_grad():
        # scales and biases are stored as float16 (relative error at most 2**-11)
        torch.testing.assert_close(fresh.eval()(x), got, rtol=2e-3, atol=2e-3)


def test_a_ternary_conv1d_does_not_fold_a_batchnorm2d_and_a_conv2d_not_a_batchnorm1d():
    seq = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm2d(3))
    tritium.ternarize(seq, keep_first_last=False)
    freeze_model(seq.eval())
    assert isinstance(seq[1], nn.BatchNorm2d) and not seq[0].folded
    seq2 = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm1d(3))
    tritium.ternarize(seq2, keep_first_last=False)
    freeze_model(seq2.eval())
    assert isinstance(seq2[1], nn.BatchNorm1d) and not seq2[0].folded


def test_fp32_baseline_folds_conv1d_batchnorm1d_pairs_exactly():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv1d(3, 5, 3, padding=1), nn.BatchNorm1d(5), nn.ReLU(),
                        nn.Conv1d(5, 4, 3, bias=False), nn.BatchNorm1d(4),
                        nn.Conv1d(4, 4, 1), nn.BatchNorm2d(4))   # wrong kind: left alone
    _perturb(seq, 2)
    seq.eval()
    x = torch.randn(2, 3, 11)
    with torch.no_grad():
        want = seq[:6](x)
        assert fold_fp32_batchnorms(seq) == [("0", "1"), ("3", "4")]
        got = seq[:6](x)
    assert isinstance(seq[1], nn.Identity) and isinstance(seq[4], nn.Identity)
    assert isinstance(seq[6], nn.BatchNorm2d)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fp32_twin_of_a_ternarized_1d_model_folds_its_batchnorm1d_pairs():
    torch.manual_seed(0)
    model = KeywordNet()
    _perturb(model, 3)
    tritium.ternarize(model)
    twin, _ = float_twin(model)
    twin.eval()
    x = torch.randn(2, 4, 19)
    with torch.no_grad():
        want = twin(x)
        done = fold_fp32_batchnorms(twin)
        got = twin(x)
    assert set(done) == {("conv1", "bn1"), ("conv2", "bn2"), ("tail.0", "tail.1")}
    assert _norms(twin) == 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * (1 + want.abs().max().item()))
