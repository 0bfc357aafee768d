"""Checkpoint metadata strings must be Unicode text: a lone surrogate (JSON's `\\ud800`
escape) in `tritium.source`, `tritium.file` or any other field or key is a CheckpointError
naming the field (hashing the stored source raised UnicodeEncodeError)."""

from __future__ import annotations

import json
import struct
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

EXTRA = {"tritium.source": "model M {}\n", "tritium.file": "m.tri", "tritium.dataset": "digits"}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return freeze_model(nn.Sequential(TernaryLinear(16, 8)))


def _edit_metadata(path: Path, key: str, value: str | None, new_key: str | None = None
                   ) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header["__metadata__"]
    if new_key is not None:
        meta[new_key] = meta.pop(key)
    else:
        meta[key] = value
    blob = json.dumps(header, separators=(",", ":")).encode()   # ensure_ascii: \ud800 escapes
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])


@pytest.mark.parametrize("key,value", [
    ("tritium.source", "model M {}\n// \ud800\n"),
    ("tritium.file", "a\ud800b.tri"),
    ("tritium.dataset", "digits\udcff"),
])
def test_a_lone_surrogate_in_a_field_is_a_clear_error(tmp_path: Path, key: str, value: str
                                                      ) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, _model(), extra=EXTRA)
    _edit_metadata(path, key, value)
    for read in (lambda: read_checkpoint_metadata(path), lambda: load_checkpoint(path)):
        with pytest.raises(CheckpointError) as err:
            read()
        msg = str(err.value)
        assert str(path) in msg and repr(key) in msg and "not valid Unicode text" in msg


def test_a_lone_surrogate_in_a_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, _model(), extra=EXTRA)
    _edit_metadata(path, "tritium.file", None, new_key="tritium.x\ud800")
    with pytest.raises(CheckpointError, match="not valid Unicode text"):
        read_checkpoint_metadata(path)


def test_what_could_not_be_read_back_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"'tritium\.source'.*not valid Unicode"):
        save_checkpoint(tmp_path / "m.safetensors", _model(),
                        extra={**EXTRA, "tritium.source": "model M {}\ud800"})
    assert not (tmp_path / "m.safetensors").exists()
