"""Version 1 checkpoints store the kernels' packing itself: its bytes are validated at load
as version 2's dense trits are (a t2 code 3 loaded, and the first forward raised
PackedDataError), each problem named accurately (a padding trit is not "code 3")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tritium.runtime.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from tritium.runtime.checkpoint_write import _tensor_digest
from tritium.runtime.layers import TernaryLinear, freeze_model


def _model(fmt: str = "t2") -> nn.Module:
    torch.manual_seed(0)
    return freeze_model(nn.Sequential(TernaryLinear(64, 8)), fmt)   # 64 of 128: padded rows


def _write_v1(tmp_path: Path, fmt: str, edit=None) -> Path:
    m = _model(fmt)
    v4 = tmp_path / "v4.safetensors"
    save_checkpoint(v4, m)
    infos = read_checkpoint_metadata(v4).tensors
    state = {k: v.clone().contiguous() for k, v in m.state_dict().items()}
    if edit is not None:
        edit(state["0.weight_packed"])
    tensors = {k: {"layer_kind": i.layer_kind, "logical_shape": list(i.logical_shape),
                   "packing_format": i.packing_format, "quantizer": i.quantizer}
               for k, i in infos.items()}
    path = tmp_path / "v1.safetensors"
    save_file(state, str(path), metadata={
        "tritium.checkpoint_version": "1", "tritium.packing_version": "1",
        "tritium.tensors": json.dumps(tensors), "tritium.extra": "{}",
        "tritium.digest": _tensor_digest(state, 32), "tritium.version": "0.1.0"})
    return path


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_a_valid_version_1_checkpoint_loads(tmp_path: Path, fmt: str) -> None:
    path = _write_v1(tmp_path, fmt)
    fresh = _model(fmt)
    load_checkpoint(path, fresh)
    assert torch.equal(fresh(torch.ones(2, 64)), _model(fmt)(torch.ones(2, 64)))


def _set(value: int, byte: int = 0):
    def edit(w: torch.Tensor) -> None:
        w[0, byte] = value
    return edit


@pytest.mark.parametrize("fmt,edit,says", [
    ("t2", _set(0xFF), "code 3"),
    # byte 0 holds columns 0, 32, 64, 96: 64 and 96 are padding; code 0 there is trit -1
    ("t2", _set(0x05), "non-zero trit past the row's 64 columns"),
    ("t1.6", _set(250), "above 242"),
])
def test_bad_version_1_trits_are_refused_at_load(tmp_path: Path, fmt, edit, says) -> None:
    path = _write_v1(tmp_path, fmt, edit)
    for read in (lambda: load_checkpoint(path, _model(fmt)),
                 lambda: read_checkpoint_metadata(path)):
        with pytest.raises(CheckpointError) as err:
            read()
        msg = str(err.value)
        assert str(path) in msg and "'0.weight_packed'" in msg and says in msg, msg
        if "padding" in says or "past" in says:
            assert "code 3" not in msg
