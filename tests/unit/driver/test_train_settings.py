"""The training recipe: the program's training block, command-line overrides, schedules,
the fp32 and unpacked twins, and the declared input shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tritium
from tritium import runtime as trt
from tritium.driver.models import declared_input_shape, float_twin, unpacked_twin
from tritium.driver.train import TrainError, TrainOptions, lr_at, resolve_settings

ROOT = Path(__file__).resolve().parents[3]


def opts(**kw) -> TrainOptions:
    return TrainOptions("x.tri", **kw)


def test_block_then_overrides():
    block = {"optimizer": "SGD", "lr": 0.1, "epochs": 7, "batch_size": 32, "momentum": 0.8,
             "weight_decay": 5e-4, "augmentation": ["random_crop"],
             "lr_schedule": {"type": "multistep", "milestones": [2, 4]}}
    s = resolve_settings(block, opts())
    assert (s.optimizer, s.learning_rate, s.epochs, s.batch_size) == ("sgd", 0.1, 7, 32)
    assert s.momentum == 0.8 and s.augmentation == ["random_crop"]
    s = resolve_settings(block, opts(epochs=2, learning_rate=0.5, augmentation=["none"],
                                     optimizer="adamw", data="mnist"))
    assert (s.epochs, s.learning_rate, s.optimizer, s.dataset) == (2, 0.5, "adamw", "mnist")
    assert s.augmentation == []


@pytest.mark.parametrize("block,match,code", [
    ({"optimizer": "lbfgs"}, "unknown optimizer", 2),
    ({"loss": "hinge"}, "unknown loss", 2),
    ({"epochs": 2.5}, "integer", 1),
    ({"learning_rate": "fast"}, "number", 1),
    ({"augmentation": ["mixup"]}, "unknown augmentation", 2),
    ({"lr_schedule": {"type": "warmup"}}, "lr_schedule", 2),
    ({"lr_schedule": {"type": "multistep", "milestones": [0]}}, "milestones", 2),
])
def test_bad_recipes_are_clear_errors(block, match, code):
    with pytest.raises(TrainError, match=match) as err:
        resolve_settings(block, opts())
    assert err.value.code == code


def test_schedules():
    s = resolve_settings({"lr": 1.0, "epochs": 10,
                          "lr_schedule": {"type": "multistep", "milestones": [3, 6]}}, opts())
    assert [lr_at(s, e) for e in (0, 2, 3, 5, 6, 9)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    s = resolve_settings({"lr": 1.0, "epochs": 10, "lr_schedule": {"type": "cosine"}}, opts())
    assert lr_at(s, 0) == pytest.approx(1.0) and lr_at(s, 5) == pytest.approx(0.5)
    assert lr_at(s, 9) < 0.05
    s = resolve_settings({"lr": 1.0, "warmup_epochs": 3}, opts())
    assert [lr_at(s, e) for e in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_declared_input_shapes():
    assert declared_input_shape(str(ROOT / "examples/mlp.tri"), "DigitsMLP") == [64]
    assert declared_input_shape(str(ROOT / "examples/lenet5.tri"), "LeNet5") == [1, 32, 32]
    src = ("model M {\n    n: 12\n    layer fc: TernaryLinear { in_features: n, out_features: 2 }\n"
           "    forward(x: Tensor[b, n]) -> Tensor[b, 2] { return fc(x) }\n}\n")
    assert declared_input_shape(src, "M", file="m.tri") == [12]
    src2 = src.replace("Tensor[b, n]", "Tensor")
    assert declared_input_shape(src2, "M", file="m.tri") is None


def test_float_twin_same_init_and_unpacked_twin_same_function():
    torch.manual_seed(0)
    model = tritium.load(ROOT / "examples/lenet5.tri").eval()
    twin, replaced = float_twin(model)
    assert replaced == 5
    assert not trt.tritium_layers(twin)
    assert torch.equal(twin.conv1.weight, model.conv1.weight)
    frozen = trt.freeze_model(model)
    plain = unpacked_twin(frozen)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), frozen(x), atol=1e-4, rtol=1e-4)


def test_augmentations_keep_shapes_and_follow_the_generator():
    from tritium.driver.train import _augment

    x = torch.rand(6, 1, 8, 8)
    names = ["random_crop", "horizontal_flip", "noise"]
    a = _augment(x, names, torch.Generator().manual_seed(1))
    b = _augment(x, names, torch.Generator().manual_seed(1))
    c = _augment(x, names, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    flat = torch.rand(4, 64)
    assert torch.equal(_augment(flat, ["random_crop", "hflip"], torch.Generator()), flat)
    assert _augment(x, [], torch.Generator()) is x


def test_help_lists_the_commands_with_examples(capsys):
    from tritium.cli import main

    for cmd in ("train", "eval", "predict", "export"):
        assert main([cmd, "--help"]) == 0      # main returns the code, no SystemExit
        assert f"tritium {cmd} " in capsys.readouterr().out


def test_ctrl_c_during_an_epoch_write_is_held_until_the_write_ends():
    import os
    import signal

    from tritium.driver.train import _interrupts_deferred

    finished = []
    with pytest.raises(KeyboardInterrupt):
        with _interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("write completed")
    assert finished == ["write completed"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with _interrupts_deferred():
        finished.append("no interrupt, no exception")
    assert len(finished) == 2
