"""`tritium train --resume DIR --epochs N` with a QAT schedule: a run resumed with another
length continues the schedule of its checkpoint (held in the training state, validated on
load), so its first epochs match the uninterrupted run's; another schedule is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritium.cli import main

from .test_train_qat import FAST, PROGRAM


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qatr") / "qat_digits.tri"
    path.write_text(PROGRAM)
    return path


def _rows(out: Path) -> list[dict]:
    rows = json.loads((out / "metrics.json").read_text())["history"]["ternary"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _interrupt_at(monkeypatch, stop: int) -> list[tuple[int, float]]:
    from tritium.driver.train import loop
    real = loop._train_epoch
    seen: list[tuple[int, float]] = []

    def interrupted(run, wrapped, s, sp, epoch, dist_, rep):
        from tritium.runtime.quant import current_strength
        seen.append((epoch, current_strength()))
        if epoch == stop and sum(1 for e, _ in seen if e == stop) == 1:
            raise KeyboardInterrupt
        return real(run, wrapped, s, sp, epoch, dist_, rep)

    monkeypatch.setattr(loop, "_train_epoch", interrupted)
    return seen


def test_resume_with_more_epochs_continues_the_checkpoint_schedule(program, tmp_path,
                                                                   monkeypatch, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    # the block's schedule (written for 3 epochs) scaled to 4: float, 0.5, then 1
    assert main(["train", str(program), "--out", str(whole), "--epochs", "4", *FAST]) == 0
    want = _rows(whole)
    assert [r["qat_strength"] for r in want] == [0.0, 0.5, 1.0, 1.0]
    seen = _interrupt_at(monkeypatch, 2)
    assert main(["train", str(program), "--out", str(cut), "--epochs", "4", *FAST]) == 130
    # resumed for 6 epochs: scaled afresh the schedule would be float for 2 epochs; the run
    # continues the one it was following instead (it was refused before)
    assert main(["train", str(program), "--out", str(cut), "--resume", "--epochs", "6",
                 *FAST]) == 0
    got = _rows(cut)
    assert len(got) == 6 and got[:4] == want
    assert [r["qat_strength"] for r in got] == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert [s for _, s in seen] == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    m = json.loads((cut / "metrics.json").read_text())
    assert m["qat_schedule"]["strength"] == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    import safetensors
    with safetensors.safe_open(str(cut / "train_state.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["qat_schedule"])["quantization_epochs"] == [1, 2]
    capsys.readouterr()
    # a schedule written otherwise is still refused
    assert main(["train", str(program), "--out", str(cut), "--resume", "--epochs", "8",
                 "--qat-schedule", "gradual", *FAST]) == 1
    assert "another QAT schedule" in " ".join(capsys.readouterr().err.split())


def test_a_damaged_schedule_in_the_state_is_refused(program, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, 1)
    assert main(["train", str(program), "--out", str(out), "--epochs", "4", *FAST]) == 130
    import safetensors
    import safetensors.torch
    state = out / "train_state.safetensors"
    with safetensors.safe_open(str(state), framework="pt") as fh:
        meta = dict(fh.metadata())
    tensors = safetensors.torch.load_file(str(state))
    for bad in ('{"name": "x", "warmup_epochs": 3, "quantization_epochs": [2, 1], '
                '"gradual": false}', '{"name": 1}', "[1, 2]", "not json"):
        safetensors.torch.save_file(tensors, str(state), metadata={**meta, "qat_schedule": bad})
        capsys.readouterr()
        assert main(["train", str(program), "--out", str(out), "--resume", "--epochs", "6",
                     *FAST]) == 1, bad
        err = " ".join(capsys.readouterr().err.split())
        assert "cannot resume" in err and "Traceback" not in err, err
