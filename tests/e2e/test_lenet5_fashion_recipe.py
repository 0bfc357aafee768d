"""examples/lenet5_fashion.tri: the Fashion-MNIST recipe of docs/training.md ("A recipe:
LeNet-5 on Fashion-MNIST"). The full recipe trains for minutes; here the program is checked,
built and run, its training block is the documented recipe, and the documented commands
(the recipe with its fp32 twin, then the warm-start variant: QAT from that twin's weights
with `--init`) run one tiny epoch on a subset of the real data when Debian's
`dataset-fashion-mnist` is installed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tritium.cli import main
from tritium.data import load_dataset
from tritium.driver.models import build_model
from tritium.driver.train import TrainOptions, resolve_settings
from tritium.runtime import read_checkpoint_metadata

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "lenet5_fashion.tri"
FAST = ["--no-progress", "--latency-runs", "2", "-q"]


def _fashion_dir() -> Path | None:
    """Where the four IDX files are: $TRITIUM_DATA_DIR/fashion-mnist or Debian's package."""
    for base in (os.environ.get("TRITIUM_DATA_DIR"), "/usr/share/datasets"):
        if base and (Path(base) / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(base)
    return None


def test_the_example_checks_builds_and_holds_the_recipe():
    assert main(["check", "-q", str(EXAMPLE)]) == 0
    built = build_model(EXAMPLE)
    model = built.model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # first and last layers in full precision, the three in between ternary per channel
    kinds = {name: type(m).__name__ for name, m in model.named_children()}
    assert "Ternary" not in kinds["conv1"] and "Ternary" not in kinds["fc3"]
    for name in ("conv2", "fc1", "fc2"):
        layer = getattr(model, name)
        assert kinds[name].startswith("Ternary") and layer.per_channel, name
    s = resolve_settings(getattr(model, "tritium_training", {}), TrainOptions(file=str(EXAMPLE)))
    assert s.dataset == "fashion-mnist" and s.schedule["type"] == "cosine"
    assert (s.optimizer, s.epochs) == ("adam", 30)


@pytest.mark.skipif(_fashion_dir() is None, reason="Fashion-MNIST is not installed "
                    "(apt-get install dataset-fashion-mnist, or the IDX files in "
                    "$TRITIUM_DATA_DIR/fashion-mnist)")
def test_both_stages_of_the_recipe_run_on_a_subset_of_the_real_data(tmp_path, capsys):
    data_dir = _fashion_dir()
    ds = load_dataset("fashion-mnist", data_dir)
    assert ds.x_train.shape[1:] == (1, 28, 28) and len(ds.x_test) == 10000
    subset = tmp_path / "subset.npz"
    np.savez(subset, x=ds.x_train[:384], y=ds.y_train[:384], x_test=ds.x_test[:128],
             y_test=ds.y_test[:128])
    fp32_run, qat_run = tmp_path / "fp32", tmp_path / "qat"
    # the program's recipe (its fp32 twin gives the weights the warm start starts from)
    assert main(["train", str(EXAMPLE), "--data", str(subset), "--epochs", "1",
                 "--out", str(fp32_run), *FAST]) == 0, capsys.readouterr().err
    assert (fp32_run / "fp32.safetensors").is_file()
    # the warm-start variant docs/training.md measured: QAT from those weights
    assert main(["train", str(EXAMPLE), "--data", str(subset), "--epochs", "1",
                 "--lr", "0.0005", "--init", str(fp32_run / "fp32.safetensors"),
                 "--no-baseline", "--out", str(qat_run), *FAST]) == 0, \
        capsys.readouterr().err
    metrics = json.loads((qat_run / "metrics.json").read_text())
    assert metrics["init"] == str(fp32_run / "fp32.safetensors")
    assert metrics["settings"]["schedule"]["type"] == "cosine"
    meta = read_checkpoint_metadata(qat_run / "model.safetensors")
    assert meta.tensors["fc1.weight_packed"].packing_format == "t2"
    assert meta.tensors["conv1.weight"].layer_kind != "TernaryConv2d"
