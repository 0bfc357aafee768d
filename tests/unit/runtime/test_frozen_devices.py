"""Frozen layers given tensors that are not on the CPU: the native kernels read data pointers,
so only CPU tensors may reach them. A meta tensor (shape-only runs: torch's meta device,
models built under an empty-weights context) has a data pointer of 0; the frozen fast path
checked `not x.is_cuda` and the kernels read address 0 (a segmentation fault)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from tritium.runtime.layers.freeze import freeze_model
from tritium.runtime.layers.ternary import TernaryConv2d, TernaryLinear


def _models(act_quant: str) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    lin = TernaryLinear(64, 32, act_quant=act_quant).eval()
    chain = nn.Sequential(TernaryLinear(64, 32, act_quant=act_quant), nn.ReLU(),
                          TernaryLinear(32, 8, act_quant=act_quant)).eval()
    conv = nn.Sequential(TernaryConv2d(3, 8, 3, act_quant=act_quant), nn.ReLU()).eval()
    out = {"linear": (lin, (2, 64)), "chain": (chain, (1, 64)), "chain batch": (chain, (5, 64)),
           "conv": (conv, (1, 3, 8, 8))}
    for mod, _ in out.values():
        freeze_model(mod)
    return out


@pytest.mark.parametrize("act_quant", ["int8", "none"])
def test_a_meta_input_to_a_frozen_cpu_model_is_torchs_device_error(act_quant):
    for mod, shape in _models(act_quant).values():
        with torch.no_grad():
            mod(torch.randn(*shape))   # the plans are built and cached
            for _ in range(2):
                with pytest.raises(RuntimeError, match="device"):
                    mod(torch.randn(*shape, device="meta"))


def test_a_meta_residual_is_torchs_device_error():
    lin, _ = _models("int8")["linear"]
    with torch.no_grad(), pytest.raises(RuntimeError, match="device"):
        lin(torch.randn(2, 64), residual=torch.randn(2, 32, device="meta"))


@pytest.mark.parametrize("act_quant", ["int8", "none"])
def test_a_frozen_model_moved_to_meta_runs_shapes_only(act_quant):
    for name, (mod, shape) in _models(act_quant).items():
        mod = copy.deepcopy(mod)   # (the chain serves two entries)
        with torch.no_grad():
            want = mod(torch.randn(*shape)).shape
            mod.to("meta")
            y = mod(torch.randn(*shape, device="meta"))
        assert y.device.type == "meta" and y.shape == want, name
