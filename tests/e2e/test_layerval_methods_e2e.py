"""Methods of a layer body end to end (issue 13, helper seedc):
programs check, compile to PyTorch, run, and compute what a hand-written PyTorch reference
computes; models agree with the IR interpreter where the IR expresses them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tritium.driver import compile_program

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import agree_with_ir  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- methods

METHODS = """
layer Quant {
    params {
        bits: int = 4
    }
    param scale: Tensor[1] = ones([1])
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {
        return quantize_block(x, bits) + self.shift(x)
    }
    function quantize_block(block: Tensor, bits: int) -> Tensor {
        let max_val = 2 ** (bits - 1) - 1
        let s = max(abs(block)) / max_val
        let q = clamp(round(block / s), -max_val, max_val) * s
        if self.training {
            return q * 0.0
        }
        return q
    }
    method shift(x: Tensor) -> Tensor {
        return x * scale + offset(x)
    }
    fn offset(x: Tensor) -> Tensor {
        return x * 0.5
    }
}
"""


def _quant_ref(x: torch.Tensor, bits: int, scale: torch.Tensor, training: bool):
    max_val = 2 ** (bits - 1) - 1
    s = x.abs().max() / max_val
    q = torch.clamp(torch.round(x / s), -max_val, max_val) * s
    if training:
        q = q * 0.0
    return q + x * scale + x * 0.5


def test_layer_methods_agree_with_torch_and_the_ir(tmp_path):
    ref, got, model, x = agree_with_ir(tmp_path, METHODS, (3, 4))
    np.testing.assert_allclose(ref, _quant_ref(x, 4, model.scale.detach(), False).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    model.train()
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), _quant_ref(
            x, 4, model.scale.detach(), True).numpy(), rtol=1e-5, atol=1e-6)
    f = tmp_path / "m.tri"
    python = compile_program(str(f)).python
    assert "def quantize_block(self" in python and "self.quantize_block(" in python
