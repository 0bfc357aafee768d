"""What `tritium train` prints and plots: progress lines with an ETA off a terminal,
warnings for diverged runs and augmentations that do not fit the data, the plots' axes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.driver.train import _duration, _plots, _Reporter, run_warnings


def _hist(losses: list[float], accs: list[float] | None = None) -> list[dict]:
    accs = accs or [0.5] * len(losses)
    return [{"epoch": i + 1, "train_loss": v, "train_acc": a, "val_loss": v, "val_acc": a,
             "lr": 0.01} for i, (v, a) in enumerate(zip(losses, accs))]


def test_off_a_terminal_long_epochs_print_progress_with_an_eta(capsys):
    rep = _Reporter(enabled=False, quiet=False)
    rep.interval = 0.0                 # every batch is "long enough" since the last line
    with rep:
        for epoch in range(2):
            task = rep.task(f"ternary {epoch + 1}/3", 4)
            for _ in range(4):
                rep.advance(task, "loss 1.0000 acc 0.5000")
            rep.epoch_done("ternary", _hist([1.0])[0] | {"epoch": epoch + 1}, False)
    out = capsys.readouterr().out
    progress = [ln for ln in out.splitlines() if "batch " in ln]
    # batches 1..3 of each epoch (the last batch is the epoch line's)
    assert len(progress) == 6, out
    assert all(re.search(r"epoch ETA \d+s", ln) for ln in progress)
    assert all("ternary ETA" in ln for ln in progress)
    epochs = [ln for ln in out.splitlines() if re.match(r"ternary epoch \d", ln)]
    assert len(epochs) == 2 and all("| ETA" in ln for ln in epochs), epochs   # 2, 1 left
    task = rep.task("ternary 3/3", 1)
    rep.advance(task, "loss 1 acc 1")
    rep.epoch_done("ternary", _hist([1.0])[0] | {"epoch": 3}, False)
    assert "ETA" not in capsys.readouterr().out                              # the last one


def test_short_epochs_print_only_epoch_lines(capsys):
    rep = _Reporter(enabled=False, quiet=False)
    rep.interval = 3600.0
    task = rep.task("fp32 1/1", 50)
    for _ in range(50):
        rep.advance(task, "loss 1.0 acc 0.5")
    rep.epoch_done("fp32", _hist([1.0])[0], True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fp32 epoch 1:")


@given(st.floats(0, 10 ** 6))
def test_durations_read_as_time(seconds: float):
    text = _duration(seconds)
    m = re.fullmatch(r"(?:(\d+)h(\d\d)m|(\d+)m(\d\d)s|(\d+)s)", text)
    assert m, text
    if m.group(5) is not None:
        assert int(m.group(5)) == max(0, round(seconds))


def test_a_diverged_run_is_warned_about():
    m = {"num_classes": 10, "dataset": "digits", "settings": {"augmentation": []},
         "history": {"ternary": _hist([2.3, 1.0, 0.6, 492602.0, 3e5])},
         "ternary": {"test_accuracy": 0.1}}
    w = run_warnings(m, [1, 8, 8])
    assert any("exploded to 4.926e+05" in x for x in w), w
    assert any("at chance" in x for x in w), w


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.01, 3.0), min_size=2, max_size=30),
       st.floats(0.3, 1.0))
def test_a_healthy_run_is_not_warned_about(losses: list[float], acc: float):
    m = {"num_classes": 10, "dataset": "digits", "settings": {"augmentation": ["noise"]},
         "history": {"ternary": _hist(losses)}, "ternary": {"test_accuracy": acc}}
    assert run_warnings(m, [1, 8, 8]) == []


def test_augmentations_that_do_not_fit_the_data_are_warned_about():
    base = {"num_classes": 10, "history": {}, "ternary": {"test_accuracy": 0.9}}
    w = run_warnings({**base, "dataset": "digits",
                      "settings": {"augmentation": ["horizontal_flip"]}}, [1, 8, 8])
    assert len(w) == 1 and "mirrored digit" in w[0]
    assert run_warnings({**base, "dataset": "cifar10",
                         "settings": {"augmentation": ["horizontal_flip"]}}, [3, 32, 32]) == []
    w = run_warnings({**base, "dataset": "my.npz",
                      "settings": {"augmentation": ["random_crop"]}}, [64])
    assert len(w) == 1 and "does nothing" in w[0]


def test_plots_use_whole_epochs_a_log_loss_axis_and_readable_layer_names(tmp_path: Path,
                                                                          monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    axes_seen: list = []
    real_close = plt.close

    def keep(fig=None):
        if fig is not None and hasattr(fig, "axes"):
            axes_seen.append(fig)
        return real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    names = [f"layer{i}.block.conv{j}" for i in range(1, 5) for j in range(1, 6)]
    m = {"history": {"ternary": _hist([2.3, 0.5, 0.05, 0.01, 0.009, 0.008, 0.007])},
         "weight_distribution": {n: {"-1": 0.3, "0": 0.4, "+1": 0.3} for n in names}}
    _plots(tmp_path, m)
    assert (tmp_path / "curves.png").stat().st_size and (tmp_path / "weights.png").stat().st_size
    curves, weights = axes_seen
    loss_ax, acc_ax = curves.axes
    assert loss_ax.get_yscale() == "log"
    for ax in (loss_ax, acc_ax):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    ax = weights.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == names                      # one horizontal bar per layer, all named
    # the figure grows with the layers: at least ~0.25 inch a label
    assert weights.get_size_inches()[1] >= 0.25 * len(names)
    assert not math.isnan(loss_ax.get_ylim()[0])
