"""A checkpoint's float values are untrusted too: a layer's scale or bias that is NaN or
infinite is a CheckpointError naming the tensor at load (it made every output NaN: eval
printed accuracy 0.10, loss nan). A negative scale is legitimate: a batch norm with a
negative weight folds into its layer as one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tritium.runtime.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from tritium.runtime.layers import TernaryLinear, freeze_model


def _model() -> nn.Module:
    torch.manual_seed(0)
    return freeze_model(nn.Sequential(TernaryLinear(16, 8), TernaryLinear(8, 4)))


@pytest.mark.parametrize("name,value", [
    ("0.weight_scale", math.nan), ("0.weight_scale", math.inf),
    ("1.weight_scale", -math.inf),
    ("0.bias", math.nan), ("1.bias", -math.inf),
])
@pytest.mark.parametrize("float16", [True, False])
def test_bad_scales_and_biases_are_refused_at_load(tmp_path: Path, name: str, value: float,
                                                   float16: bool) -> None:
    m = _model()
    with torch.no_grad():
        m.state_dict()[name].reshape(-1)[0] = value
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, m, float16_scales=float16)
    for read in (lambda: load_checkpoint(path, _model()),
                 lambda: read_checkpoint_metadata(path)):
        with pytest.raises(CheckpointError) as err:
            read()
        msg = str(err.value)
        assert str(path) in msg and repr(name) in msg


@pytest.mark.parametrize("value", [0.0, 1e-6, 3e4, -0.5])
def test_finite_scales_load(tmp_path: Path, value: float) -> None:
    m = _model()
    with torch.no_grad():
        m[0].weight_scale.fill_(value)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, m)
    fresh = _model()
    load_checkpoint(path, fresh)
    assert float(fresh[0].weight_scale[0]) == pytest.approx(value, rel=1e-3)
