"""Forms the sweep of the seed corpus (issue 13, helper seed13) found missing, compiled and
run against a PyTorch reference: the seed's `learnable: false` parameter spec, ..."""

from __future__ import annotations

from pathlib import Path

import torch

import tritium

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"


def test_learnable_false_is_a_frozen_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    model = tritium.load(SEED / "probe_learnable_spec.tri")
    scale = model.fc1.weight_scale
    assert not scale.requires_grad and model.fc1.weight.requires_grad
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        h = torch.relu(torch.nn.functional.linear(x, model.fc1.weight) * scale)
        assert torch.allclose(model.fc1(x), torch.nn.functional.linear(x, model.fc1.weight)
                              * scale, atol=1e-6)
        assert model(x).shape == (4, 10) and h.shape == (4, 32)
    model.train()
    model(x).sum().backward()
    assert scale.grad is None and model.fc1.weight.grad is not None
