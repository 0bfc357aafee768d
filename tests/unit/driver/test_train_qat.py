"""`tritium train` with a QAT schedule: the settings (the block's keys, `--qat-schedule`,
scaling to `--epochs`), a short run on the embedded digits whose report names the
schedule and whose frozen model is ternary, and resuming mid-schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tritium.cli import main
from tritium.driver.evaluate import load_for_eval
from tritium.driver.train import TrainError, TrainOptions, resolve_settings
from tritium.runtime import TernaryLayer, tritium_layers
from tritium.runtime.packing import unpack_ternary

SEED = {"warmup_epochs": 10, "gradual_quantization": True, "quantization_epochs": [10, 30, 50]}


def opts(**kw) -> TrainOptions:
    return TrainOptions("x.tri", **kw)


def test_the_block_schedule_and_its_spellings():
    s = resolve_settings({"epochs": 100, "quantization_schedule": SEED}, opts())
    assert (s.qat.warmup_epochs, s.qat.stages, s.qat.gradual) == (10, (10, 30, 50), True)
    assert s.qat_source == "program" and s.qat_written_for is None
    s = resolve_settings({"epochs": 20, "qat_schedule": "progressive"}, opts())
    assert (s.qat.name, s.qat.stages) == ("progressive", (2, 6, 10))
    assert not resolve_settings({}, opts()).qat.active
    assert resolve_settings({}, opts()).qat_source == "default"


def test_the_first_of_two_schedules_is_used():
    s = resolve_settings({"epochs": 20, "qat_schedule": "delayed",
                          "quantization_schedule": "progressive"}, opts())
    assert s.qat.name == "delayed"


def test_the_option_overrides_the_block():
    s = resolve_settings({"epochs": 20, "quantization_schedule": SEED},
                         opts(qat_schedule="none"))
    assert not s.qat.active and s.qat_source == "option"
    s = resolve_settings({"epochs": 20}, opts(qat_schedule="gradual"))
    assert s.qat.name == "gradual" and s.qat.active


def test_a_shorter_run_scales_the_schedule():
    s = resolve_settings({"epochs": 100, "quantization_schedule": SEED}, opts(epochs=10))
    assert (s.qat.warmup_epochs, s.qat.stages, s.qat_written_for) == (1, (1, 3, 5), 100)
    assert s.qat.strength(9) == 1.0


@pytest.mark.parametrize("block,o,match,code", [
    ({"epochs": 10, "qat_schedule": {"warmup_epochs": -1}}, {}, "whole number", 1),
    ({"epochs": 10, "qat_schedule": {"quantization_epochs": [2, 10]}}, {},
     r"`qat_schedule.quantization_epochs\[1\]`", 1),
    ({"qat_schedule": {"quantization_epochs": [20]}}, {}, "`epochs: 10`", 1),
    ({"quantization_schedule": "sometimes"}, {}, "unknown QAT schedule", 1),
    ({}, {"qat_schedule": "sometimes"}, "--qat-schedule", 2),
])
def test_bad_schedules_are_train_errors(block, o, match, code):
    with pytest.raises(TrainError, match=match) as exc:
        resolve_settings(block, opts(**o))
    assert exc.value.code == code


PROGRAM = """model QatDigits {
    layer fc1: TernaryLinear { in_features: 64, out_features: 16 }
    layer fc2: TernaryLinear { in_features: 16, out_features: 10 }
    forward(x: Tensor[batch, 64]) -> Tensor[batch, 10] {
        return fc2(relu(fc1(x)))
    }
    training {
        epochs: 3
        learning_rate: 0.01
        quantization_schedule: {
            warmup_epochs: 1            // train without quantization
            gradual_quantization: true  // gradually increase quantization
            quantization_epochs: [1, 2] // stages of quantization
        }
    }
}
"""
FAST = ["--no-progress", "--latency-runs", "3", "--no-baseline"]


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qat") / "qat_digits.tri"
    path.write_text(PROGRAM)
    return path


def _history(out: Path) -> list[dict]:
    rows = json.loads((out / "metrics.json").read_text())["history"]["ternary"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_training_runs_the_schedule_names_it_and_freezes_ternary(program: Path, tmp_path: Path,
                                                                  capsys):
    out = tmp_path / "run"
    assert main(["train", str(program), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "QAT schedule (from the training block): custom: float (quantizers off) for " \
           "epoch 1" in " ".join(printed.split())
    m = json.loads((out / "metrics.json").read_text())
    q = m["qat_schedule"]
    assert (q["name"], q["source"], q["warmup_epochs"], q["quantization_epochs"]) == \
        ("custom", "program", 1, [1, 2])
    assert q["strength"] == [0.0, 0.5, 1.0]
    assert [r["qat_strength"] for r in m["history"]["ternary"]] == [0.0, 0.5, 1.0]
    assert m["settings"]["qat"]["stages"] == [1, 2]
    frozen, _ = load_for_eval(out / "model.safetensors")
    layers = [m for _, m in tritium_layers(frozen)]
    assert len(layers) == 2 and all(isinstance(m, TernaryLayer) and m.frozen for m in layers)
    for layer in layers:
        trits = unpack_ternary(layer.packed_weight())
        assert set(trits.unique().tolist()) <= {-1, 0, 1}
    assert m["ternary"]["test_accuracy"] > 0.3


def test_resume_mid_schedule_continues_at_the_right_stage(program: Path, tmp_path: Path,
                                                          monkeypatch, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", str(program), "--out", str(whole), *FAST]) == 0
    # the same run, interrupted (Ctrl-C) during its second epoch, then resumed
    from tritium.driver.train import loop
    real = loop._train_epoch
    seen: list[tuple[int, float]] = []

    def interrupted(run, wrapped, s, sp, epoch, dist_, rep):
        from tritium.runtime.quant import current_strength
        seen.append((epoch, current_strength()))
        if epoch == 1 and len(seen) == 2:
            raise KeyboardInterrupt
        return real(run, wrapped, s, sp, epoch, dist_, rep)

    monkeypatch.setattr(loop, "_train_epoch", interrupted)
    assert main(["train", str(program), "--out", str(cut), *FAST]) == 130
    import safetensors
    with safetensors.safe_open(str(cut / "train_state.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["epoch"] == "1" and json.loads(meta["history"])[0]["qat_strength"] == 0.0
    assert main(["train", str(program), "--out", str(cut), "--resume", *FAST]) == 0
    # the resumed run started at epoch 2 with that epoch's strength, not the warm-up's
    assert seen == [(0, 0.0), (1, 0.5), (1, 0.5), (2, 1.0)]
    assert _history(cut) == _history(whole)
    import safetensors.torch
    sw = safetensors.torch.load_file(str(whole / "train_state.safetensors"))
    sc = safetensors.torch.load_file(str(cut / "train_state.safetensors"))
    for k in sw:
        assert torch.equal(sw[k], sc[k]), k
    capsys.readouterr()
    # resuming with another schedule is refused: it would not continue the same stages
    assert main(["train", str(program), "--out", str(cut), "--resume", "--qat-schedule",
                 "none", *FAST]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "another QAT schedule" in err and "float (quantizers off)" in err


def test_a_name_is_resolved_for_the_run_not_stretched():
    s = resolve_settings({"epochs": 100, "qat_schedule": "progressive"}, opts(epochs=20))
    assert (s.qat.stages, s.qat_written_for) == ((2, 6, 10), None)
