"""The run metadata of checkpoints saved from Python (entry point, its kwargs, the ternarize
record, fp32 layers) is untrusted: every malformed value is a CheckpointError naming the
field, and nothing is imported while reading it."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.driver.models import ModelBuildError, RunInfo, model_from_checkpoint
from tritium.runtime import CheckpointError, save_checkpoint

GOOD_RECORD = [{"version": 1, "include": None, "exclude": ["glob:layer1.*"],
                "options": {"quantizer": "twn", "act_quant": "none", "per_channel": False,
                            "threshold": None, "ste": "identity"},
                "keep_first_last": True, "fold_bn": True}]
BASE = {"tritium.python_entry": "pkg.models:build", "tritium.python_kwargs": "{}",
        "tritium.ternarize": json.dumps(GOOD_RECORD)}

BAD = {
    "tritium.python_entry": ["", "pkg", "pkg:", ":f", "a b:c", "pkg:f()", "os.system:x\n",
                             "x" * 300 + ":f", "pkg/models:build", "1pkg:f"],
    "tritium.python_kwargs": ["[]", "1", "{\"a b\": 1}", "{", "{\"x\": " + "[" * 10 + "]" * 10
                              + "}", "NaN"],
    "tritium.ternarize": ["{}", "[]", "[1]", json.dumps([{**GOOD_RECORD[0], "version": 2}]),
                          json.dumps([{**GOOD_RECORD[0], "options": {"quantizer": "rm -rf"}}]),
                          json.dumps([{**GOOD_RECORD[0], "include": ["class:a b"]}]),
                          json.dumps([{**GOOD_RECORD[0], "keep_first_last": "middle"}]),
                          json.dumps([{**GOOD_RECORD[0], "extra": 1}]),
                          json.dumps(GOOD_RECORD * 101)],
}


def test_a_well_formed_record_reads_back():
    info = RunInfo.from_extra(BASE, "ckpt")
    assert info.python_entry == "pkg.models:build" and info.ternarize == GOOD_RECORD
    assert RunInfo.from_extra(info.to_extra(), "ckpt") == info


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in BAD.items() for v in vs])
def test_malformed_fields_name_the_field(field, value):
    with pytest.raises(CheckpointError, match=field.replace(".", r"\.")):
        RunInfo.from_extra({**BASE, field: value}, "ckpt")


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["tritium.python_entry", "tritium.python_kwargs",
                              "tritium.ternarize", "tritium.fp32_layers"]),
       value=st.text(max_size=80))
def test_any_text_is_either_accepted_or_a_checkpoint_error(field, value):
    extra = {**BASE, field: value}
    if field == "tritium.fp32_layers":
        extra = {"tritium.source": "model M {}", "tritium.entry": "M", field: value}
    try:
        RunInfo.from_extra(extra, "ckpt")
    except CheckpointError as exc:
        assert field in str(exc)


def test_nothing_is_imported_without_trust(tmp_path, monkeypatch):
    from torch import nn
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tritium_unit_marker_mod.py").write_text(
        "from pathlib import Path\nPath('RAN').write_text('x')\n"
        "from torch import nn\ndef build():\n    return nn.Linear(2, 2)\n")
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(nn.Linear(2, 2), ckpt, entry_point="tritium_unit_marker_mod:build")
    with pytest.raises(ModelBuildError, match="saved from Python") as exc:
        model_from_checkpoint(ckpt)
    assert "--trust-entry-point" in exc.value.help and "trust_entry_point=True" in exc.value.help
    assert not (tmp_path / "RAN").exists() and "tritium_unit_marker_mod" not in sys.modules
    try:
        model, info = model_from_checkpoint(ckpt, trust_entry_point=True)
        assert (tmp_path / "RAN").exists() and isinstance(model, nn.Linear)
        assert info.variant == "fp32"
    finally:
        sys.modules.pop("tritium_unit_marker_mod", None)


def test_a_file_name_with_undecodable_bytes_is_recorded_as_text():
    # `tritium train` on m<0xff>.tri: the name holds a lone surrogate, which a checkpoint may
    # not store (save_checkpoint refuses it): the byte is recorded escaped
    info = RunInfo(source="model M {}", file="runs/m\udcff.tri", entry="M", dataset="digits",
                   input_shape=[64], num_classes=10)
    extra = info.to_extra()
    assert extra["tritium.file"] == "runs/m\\xff.tri"
    for v in extra.values():
        v.encode("utf-8")
