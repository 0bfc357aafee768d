"""`tritium train --resume` with a damaged `train_state.safetensors`: every field is checked
(types, ranges, bounded JSON) before training starts, and a bad one is one clear error naming
it (never a traceback, never a run that trains "epoch -4")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors
import safetensors.torch

from tritium.cli import main

PROGRAM = """model ResumeDigits {
    layer fc1: TernaryLinear { in_features: 64, out_features: 16 }
    layer fc2: TernaryLinear { in_features: 16, out_features: 10 }
    forward(x: Tensor[batch, 64]) -> Tensor[batch, 10] {
        return fc2(relu(fc1(x)))
    }
}
"""
FAST = ["--no-progress", "--latency-runs", "1", "--no-baseline", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A program and the run directory of one finished epoch (its train_state)."""
    root = tmp_path_factory.mktemp("resume")
    program = root / "digits.tri"
    program.write_text(PROGRAM)
    assert main(["train", str(program), "--out", str(root / "run"), "--epochs", "1",
                 *FAST]) == 0
    return program, root / "run"


def _damaged(trained, tmp_path: Path, **changes: str) -> Path:
    _, run = trained
    out = tmp_path / "run"
    shutil.copytree(run, out)
    path = out / "train_state.safetensors"
    with safetensors.safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    tensors = safetensors.torch.load_file(str(path))
    meta.update(changes)
    safetensors.torch.save_file(tensors, str(path), metadata=meta)
    return out


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("changes, message", [
    ({"optim_scalars": "[1]"}, "`optim_scalars` must be an object"),
    ({"optim_scalars": '{"0": 5}'}, "`optim_scalars` entry '0' is not an object"),
    ({"optim_scalars": '{"99": {"step": 1}}'}, "`optim_scalars` entry '99'"),
    ({"optim_scalars": DEEP}, "`optim_scalars` is not valid JSON (nested"),
    ({"history": '{"a":1}'}, "`history` must be a list of one row per finished epoch (1)"),
    ({"history": "[]"}, "`history` must be a list of one row per finished epoch (1)"),
    ({"history": '[{"a": 1}]'}, "`history` row 0 is not the row of epoch 1"),
    ({"history": DEEP}, "`history` is not valid JSON (nested"),
    ({"epoch": "-5"}, "`epoch` must be a whole number from 0 to 1000000, got '-5'"),
    ({"epoch": "999999999999"}, "`epoch` must be a whole number"),
    ({"epoch": "\u0661"}, "`epoch` must be a whole number"),
    ({"best_acc": "nan"}, "`best_acc` must be a number of at most 1"),
    ({"best_acc": "5"}, "`best_acc` must be a number of at most 1"),
    ({"best_epoch": "x"}, "`best_epoch` must be a whole number from -1 to 1"),
    ({"stale": "-1"}, "`stale` must be a whole number from 0 to 1"),
    ({"param_groups": DEEP}, "`param_groups` is not valid JSON (nested"),
    ({"param_groups": "{}"}, "`param_groups` must be a list of 1 parameter group"),
    ({"param_groups": "LR:NaN"}, "`param_groups` is not valid JSON (NaN"),
    ({"param_groups": "LR:-100"}, "`param_groups` group 0: `lr`"),
    ({"param_groups": 'LR:"x"'}, "`param_groups` group 0: `lr`"),
])
def test_a_damaged_resume_state_is_one_clear_error_before_training(trained, tmp_path, capsys,
                                                                   changes, message):
    program, run = trained
    if changes.get("param_groups", "").startswith("LR:"):
        with safetensors.safe_open(str(run / "train_state.safetensors"), framework="pt") as fh:
            groups = json.loads(fh.metadata()["param_groups"])
        text = json.dumps(groups).replace(f'"lr": {json.dumps(groups[0]["lr"])}',
                                          f'"lr": {changes["param_groups"][3:]}')
        assert text != json.dumps(groups)
        changes = {"param_groups": text}
    out = _damaged(trained, tmp_path, **changes)
    code = main(["train", str(program), "--out", str(out), "--resume", "--epochs", "2", *FAST])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 1, err
    assert message in err and "damaged training state" in err, err
    assert "Traceback" not in err and "recursion" not in err.lower()
    assert "resuming after" not in captured.out + err     # refused before training starts
    assert len(json.loads((out / "metrics.json").read_text())["history"]["ternary"]) == 1


def test_an_undamaged_state_resumes(trained, tmp_path, capsys):
    program, _ = trained
    out = _damaged(trained, tmp_path)
    assert main(["train", str(program), "--out", str(out), "--resume", "--epochs", "2",
                 *FAST]) == 0
    rows = json.loads((out / "metrics.json").read_text())["history"]["ternary"]
    assert [r["epoch"] for r in rows] == [1, 2]


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.pop("lr"), "must hold the keys"),
    (lambda g: g.update(evil=[[1]]), "`evil` is not a flag or a number"),
    (lambda g: g.update(params=[0, 1, 2, 3, 99]), "`params`"),
    (lambda g: g.update(betas=[0.9]), "`betas`"),
])
def test_damaged_parameter_groups(trained, tmp_path, capsys, edit, message):
    program, run = trained
    with safetensors.safe_open(str(run / "train_state.safetensors"), framework="pt") as fh:
        groups = json.loads(fh.metadata()["param_groups"])
    edit(groups[0])
    out = _damaged(trained, tmp_path, param_groups=json.dumps(groups))
    code = main(["train", str(program), "--out", str(out), "--resume", "--epochs", "2", *FAST])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "damaged training state" in err, err


def test_a_flag_another_torch_version_does_not_write_is_not_damage(trained, tmp_path):
    program, run = trained
    with safetensors.safe_open(str(run / "train_state.safetensors"), framework="pt") as fh:
        groups = json.loads(fh.metadata()["param_groups"])
    flags = [k for k, v in groups[0].items() if isinstance(v, bool) or v is None]
    assert flags
    for k in flags[:1]:
        del groups[0][k]
    groups[0]["a_future_flag"] = False
    out = _damaged(trained, tmp_path, param_groups=json.dumps(groups))
    assert main(["train", str(program), "--out", str(out), "--resume", "--epochs", "2",
                 *FAST]) == 0


@pytest.mark.parametrize("prefix", ["model.", "optim."])
def test_a_nan_weight_or_optimizer_tensor_is_damage_not_divergence(trained, tmp_path, capsys,
                                                                   prefix):
    import torch

    program, _ = trained
    out = _damaged(trained, tmp_path)
    path = out / "train_state.safetensors"
    with safetensors.safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    tensors = safetensors.torch.load_file(str(path))
    name = next(k for k, v in tensors.items() if k.startswith(prefix) and v.dim() >= 1
                and v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    safetensors.torch.save_file(tensors, str(path), metadata=meta)
    code = main(["train", str(program), "--out", str(out), "--resume", "--epochs", "2", *FAST])
    err = capsys.readouterr().err
    assert code == 1 and f"tensor `{name}` holds NaN or infinity" in err, err
    assert "diverged" not in err


def _random_npz(path: Path, seed: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.random((200, 64)), y=rng.integers(0, 10, 200))
    return path


def test_resuming_on_other_data_is_refused(trained, tmp_path, capsys):
    """A run of digits resumed with `--data other.npz` (or, forgetting `--data`, a run of an
    .npz resumed on digits) trained on, chose its best epoch on and reported other data."""
    program, run = trained
    out = tmp_path / "run"
    shutil.copytree(run, out)
    data = _random_npz(tmp_path / "other.npz", 0)
    code = main(["train", str(program), "--out", str(out), "--resume", "--epochs", "2",
                 "--data", str(data), *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "was trained on other data ('digits')" in err and "Traceback" not in err
    assert json.loads((out / "metrics.json").read_text())["dataset"] == "digits"


def test_eval_finds_the_data_from_anywhere_and_refuses_it_changed(tmp_path, monkeypatch,
                                                                   capsys):
    """The checkpoint records an .npz by its absolute path (`eval` run from another directory
    said `--data `d.npz` does not exist`) and the digest of its data: regenerated since, its
    held-out test split is other samples (some trained on), so `eval` refuses it unless
    `--data` asks for that data."""
    program = tmp_path / "digits.tri"
    program.write_text(PROGRAM)
    monkeypatch.chdir(tmp_path)
    _random_npz(tmp_path / "d.npz", 0)
    assert main(["train", str(program), "--data", "d.npz", "--out", "run", "--epochs", "1",
                 *FAST]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    ckpt = str(tmp_path / "run" / "model.safetensors")
    assert main(["eval", ckpt]) == 0
    assert "on d test split, 41 samples" in capsys.readouterr().out
    _random_npz(tmp_path / "d.npz", 1)
    assert main(["eval", ckpt]) == 1
    err = capsys.readouterr().err
    assert "is not the data" in err and "changed since" in err
    assert main(["eval", ckpt, "--data", str(tmp_path / "d.npz")]) == 0


def test_resuming_into_another_directory_keeps_the_best_epoch(trained, tmp_path, capsys):
    """`--resume OLD --out NEW`: the first resumed epoch was written as NEW's
    model.safetensors however bad (there was none yet), beside a report of the resumed best
    epoch. Now the best checkpoint comes along; without one, the next epoch is the best."""
    from tritium.runtime import read_checkpoint_metadata

    program, run = trained
    argv = ["train", str(program), "--resume", str(run), "--epochs", "2", "--lr", "10",
            *FAST]
    assert main([*argv, "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "model.safetensors").read_bytes() == \
        (run / "model.safetensors").read_bytes()             # epoch 2 (lr 10) was worse
    metrics = json.loads((tmp_path / "new" / "metrics.json").read_text())
    assert metrics["ternary"]["best_epoch"] == 1
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(run / "train_state.safetensors", lone / "state.safetensors")
    capsys.readouterr()
    loud = [a for a in argv[4:] if a != "-q"]
    assert main([*argv[:3], str(lone / "state.safetensors"), *loud, "--out", str(lone)]) == 0
    said = capsys.readouterr()
    assert "does not hold the resumed run's best epoch (1)" in said.out + said.err
    meta = read_checkpoint_metadata(lone / "model.safetensors").extra
    assert meta["tritium.epoch"] == "2"
    assert json.loads((lone / "metrics.json").read_text())["ternary"]["best_epoch"] == 2


def test_eval_on_data_with_more_classes_names_the_label(trained, tmp_path, capsys):
    """`eval --data` with labels past the model's outputs said `the model cannot take the
    ... test samples: Target 14 is out of bounds.`"""
    import numpy as np

    _, run = trained
    rng = np.random.default_rng(0)
    data = tmp_path / "wide.npz"
    np.savez(data, x=rng.random((40, 64)), y=np.arange(40) % 15)
    assert main(["eval", str(run / "model.safetensors"), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert "the wide test split has the label 14, but `ResumeDigits` outputs 10 classes" in err
    assert "out of bounds" not in err
