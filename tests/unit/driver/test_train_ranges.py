"""The one table of ranges (`tritium.argcheck.RANGES`) guards every numeric `training { }`
key and every override, and a run whose loss turns NaN/inf stops, keeping its checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.argcheck import RANGES, Range
from tritium.driver.train import _BLOCK_NUMBERS, TrainError, TrainOptions, resolve_settings
from tritium.driver.train import loop as train_mod  # the loop calls _loss

ROOT = Path(__file__).resolve().parents[3]
BLOCK_KEYS = (*_BLOCK_NUMBERS, "grad_clip", "early_stopping")


def _outside(rng: Range):
    """Values a key must refuse: just outside either end, far outside, non-finite, and
    the wrong kind (a float for an int key, a string, a bool)."""
    lo = rng.lo - 1 if rng.kind is int else rng.lo - abs(rng.lo) * 0.5 - 1e-3
    hi = rng.hi + 1 if rng.kind is int else rng.hi * 1.5 + 1e-3
    out = st.sampled_from([lo, hi, math.inf, -math.inf, math.nan, float("1e309"), 2**64,
                           -(2**64), "1", True, None, [1]])
    if rng.lo_open:
        out = out | st.just(rng.kind(rng.lo))
    if rng.hi_open:
        out = out | st.just(rng.kind(rng.hi))
    if rng.kind is int:
        out = out | st.floats(rng.lo + 0.1, rng.hi - 0.1).filter(lambda v: not v.is_integer())
        out = out | st.integers(max_value=int(rng.lo) - 1) | st.integers(min_value=int(rng.hi) + 1)
    else:
        out = out | st.floats(max_value=rng.lo, exclude_max=not rng.lo_open, allow_nan=False) \
            | st.floats(min_value=rng.hi, exclude_min=not rng.hi_open, allow_nan=False)
    return out


def _inside(rng: Range):
    if rng.kind is int:
        return st.integers(int(rng.lo) + rng.lo_open, int(rng.hi) - rng.hi_open)
    return st.floats(rng.lo, rng.hi, exclude_min=rng.lo_open, exclude_max=rng.hi_open)


@pytest.mark.parametrize("key", BLOCK_KEYS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_training_block_keys_outside_their_range_are_diagnostics(key, data):
    rng = RANGES[key]
    # (early_stopping: true/false means patience 5 / off)
    bad = data.draw(_outside(rng).filter(lambda v: key != "early_stopping"
                                         or not isinstance(v, bool)))
    with pytest.raises(TrainError) as err:
        resolve_settings({key: bad}, TrainOptions("x.tri"))
    assert err.value.code == 1 and f"`{key}`" in err.value.message
    assert rng.describe() in err.value.message
    good = data.draw(_inside(rng))
    s = resolve_settings({key: good}, TrainOptions("x.tri"))
    if key != "grad_clip":
        assert getattr(s, key) == good


@pytest.mark.parametrize("name", ["learning_rate", "epochs", "batch_size", "weight_decay",
                                  "momentum", "seed", "validation_split"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_api_overrides_use_the_same_ranges_as_the_flags(name, data):
    bad = data.draw(_outside(RANGES[name]).filter(lambda v: v is not None))
    with pytest.raises(TrainError) as err:
        resolve_settings({}, TrainOptions("x.tri", **{name: bad}))
    assert err.value.code == 2


@pytest.mark.parametrize("schedule", [
    {"type": "step", "step_size": 0}, {"type": "step", "step_size": 2.5},
    {"type": "step", "step_size": 3, "gamma": math.inf}, {"type": "cosine", "eta_min": -1},
    {"type": "multistep", "milestones": [1, 10**9]}, {"type": "multistep", "gamma": 0}])
def test_schedule_numbers_are_checked(schedule):
    with pytest.raises(TrainError):
        resolve_settings({"lr_schedule": schedule}, TrainOptions("x.tri"))


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """The loss turns NaN in the third epoch: exit 1 with a clear message; the checkpoint
    and training state of epoch 2 stay as they were written."""
    from tritium.cli import main
    from tritium.runtime import read_checkpoint_metadata

    real = train_mod._loss
    calls = {"n": 0}
    steps_per_epoch = 23     # digits: 1293 training samples, batch 64 -> 21 + 2 eval calls

    def loss(s, logits, y):
        calls["n"] += 1
        out = real(s, logits, y)
        return out * math.nan if calls["n"] > 2 * steps_per_epoch + 5 else out

    monkeypatch.setattr(train_mod, "_loss", loss)
    out = tmp_path / "run"
    code = main(["train", str(ROOT / "examples" / "mlp.tri"), "--out", str(out), "--epochs", "5",
                 "--no-baseline", "--no-progress", "--latency-runs", "1", "-q"])
    assert code == 1
    meta = read_checkpoint_metadata(out / "model.safetensors")
    assert int(meta.extra["tritium.epoch"]) in (1, 2)
    assert not (out / "metrics.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # the saved state resumes: epoch 2 finished
    import safetensors
    with safetensors.safe_open(str(out / "train_state.safetensors"), framework="pt") as fh:
        assert fh.metadata()["epoch"] == "2"


def test_the_divergence_message(capsys, tmp_path, monkeypatch):
    from tritium.cli import main

    monkeypatch.setattr(train_mod, "_loss", lambda s, lg, y: (lg.sum() * math.inf))
    code = main(["train", str(ROOT / "examples" / "mlp.tri"), "--out", str(tmp_path / "r"),
                 "--epochs", "2", "--no-baseline", "--no-progress", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "training diverged" in err and "epoch 1, step 1" in err
    assert "no checkpoint was written" in err


def test_divergence_never_calls_an_earlier_runs_checkpoint_its_own(capsys, tmp_path,
                                                                   monkeypatch):
    """A new run into the directory of an earlier one diverged in its first epoch: the
    message said `the last good checkpoint is kept: .../model.safetensors (epoch -1)`, the
    earlier run's file (of another program, perhaps)."""
    from tritium.cli import main

    out = tmp_path / "r"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"an earlier run's checkpoint")
    monkeypatch.setattr(train_mod, "_loss", lambda s, lg, y: (lg.sum() * math.inf))
    code = main(["train", str(ROOT / "examples" / "mlp.tri"), "--out", str(out),
                 "--epochs", "2", "--no-baseline", "--no-progress", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "is kept" not in err and "epoch -1" not in err
    assert "no checkpoint was written" in err and "is an earlier run's" in err


@pytest.mark.parametrize("key", BLOCK_KEYS)
def test_check_reports_the_same_ranges_as_train(key):
    """`tritium check` flags a training key out of range (E0309), from the same table, so
    a program that checks clean never fails `train` on a training number."""
    from tritium.check import check_source

    rng = RANGES[key]
    template = (Path(ROOT / "examples" / "mlp.tri").read_text()
                .replace("training {", "training { KEY: VALUE,"))
    for bad in ("1e309", str(int(rng.hi) + 1 if rng.kind is int else rng.hi * 2 + 1), "-1"):
        if rng.contains(float(bad)):
            continue
        result = check_source(template.replace("KEY", key).replace("VALUE", bad), "t.tri")
        codes = [d.code for d in result.diagnostics if d.is_error]
        assert "E0309" in codes, (key, bad, [d.message for d in result.diagnostics])
    good = str(int(rng.hi)) if rng.kind is int else repr(rng.hi if not rng.hi_open else rng.lo)
    result = check_source(template.replace("KEY", key).replace("VALUE", good), "t.tri")
    assert not [d for d in result.diagnostics if d.is_error], (key, good)


def test_an_empty_validation_split_is_an_error_not_a_silent_epoch_1(tmp_path, capsys):
    """One training sample a class (a few-shot .npz with its own test split): nothing could
    be held out, the run reported `val loss 0.0000 acc 0.0000` and kept epoch 1's model
    whatever the later epochs learned. --val-split 0 chooses on the test split instead."""
    import numpy as np

    from tritium.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "few.npz"
    np.savez(data, x=rng.random((10, 64)), y=np.arange(10), x_test=rng.random((5, 64)),
             y_test=np.arange(5))
    argv = ["train", str(ROOT / "examples" / "mlp.tri"), "--data", str(data), "--epochs", "1",
            "--no-baseline", "--no-progress", "--latency-runs", "1", "-q"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "no validation split can be held out" in err and "--val-split 0" in err
    assert not (tmp_path / "a" / "model.safetensors").exists()
    assert main([*argv, "--out", str(tmp_path / "b"), "--val-split", "0"]) == 0


def test_an_unknown_hyperparameter_is_named_with_the_ones_there_are(tmp_path, capsys):
    """`--set hidden=64` on a model without that hyperparameter said `__init__() got an
    unexpected keyword argument` with the help `pass its hyperparameters with --set`, which is
    what the user had done."""
    from tritium.cli import main

    program = tmp_path / "p.tri"
    program.write_text("model P {\n    params { width: int = 8 }\n"
                       "    layer fc: TernaryLinear { in_features: 64, out_features: width }\n"
                       "    forward(x: Tensor[batch, 64]) -> Tensor[batch, width] {\n"
                       "        return fc(x)\n    }\n}\n")
    for model, sets, said in ((program, "widht=4", "did you mean `width`? its hyperparameters: "
                                                   "width"),
                              (ROOT / "examples" / "mlp.tri", "hidden=4", "takes none")):
        assert main(["train", str(model), "--set", sets, "--out", str(tmp_path / "r"),
                     "--epochs", "1", "-q"]) != 0
        err = capsys.readouterr().err
        assert f"has no hyperparameter `{sets.split('=')[0]}`" in err and said in err
        assert "unexpected keyword" not in err and "Traceback" not in err
