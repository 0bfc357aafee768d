"""Rebuilding trained models from checkpoints: a version 2 `tritium train` checkpoint (written
before batch-norm folding) still loads, evaluates and exports, and is folded on loading."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tritium.driver.evaluate import evaluate_checkpoint, export_checkpoint
from tritium.driver.models import build_model, model_from_checkpoint
from tritium.driver.train import evaluate_model
from tritium.runtime import load_checkpoint, read_checkpoint_metadata, save_checkpoint

V2 = Path(__file__).parent / "data" / "mlp_v2.safetensors"   # DigitsMLP, checkpoint version 2
V2_SOURCE = Path(__file__).parent / "data" / "mlp_v2.tri"   # the program that wrote it


def _unfolded() -> nn.Module:
    model = build_model(V2_SOURCE).model
    load_checkpoint(V2, model)
    return model.eval()


def test_version_2_train_checkpoint_is_folded_on_loading() -> None:
    meta = read_checkpoint_metadata(V2)
    assert meta.checkpoint_version == 2 and not meta.folds
    assert "bn1.running_var" in meta.tensors
    model, info = model_from_checkpoint(V2)
    assert info.entry == "DigitsMLP" and info.variant == "ternary"
    assert model.fc1.folded and type(model.bn1) is nn.Identity and not model.fc2.folded
    plain = _unfolded()
    assert isinstance(plain.bn1, nn.BatchNorm1d)
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-5)


def test_version_2_accuracy_is_unchanged_by_the_fold(tmp_path: Path) -> None:
    import torch.nn.functional as F

    from tritium.data import load_dataset
    from tritium.driver.evaluate import _prepare

    meta = read_checkpoint_metadata(V2)
    _, info = model_from_checkpoint(V2)
    ds = load_dataset(info.dataset)
    x, y = _prepare(ds.x_test, info), torch.as_tensor(ds.y_test)
    acc, loss = evaluate_model(_unfolded(), x, y, lambda lg, yb: F.cross_entropy(lg, yb))
    folded = evaluate_checkpoint(V2)
    assert folded.accuracy == acc
    assert abs(folded.loss - loss) < 1e-5
    # written again as version 3: folded, float16 scales, same accuracy, a smaller file
    model, _ = model_from_checkpoint(V2)
    out = tmp_path / "v3.safetensors"
    save_checkpoint(out, model, source_hash=meta.source_hash, extra=meta.extra)
    again = read_checkpoint_metadata(out)
    assert again.checkpoint_version == 4 and again.folds == {"fc1": "bn1"}
    assert again.source_hash == meta.source_hash
    assert evaluate_checkpoint(out).accuracy == acc
    # the tensors are what shrank; version 4 spends some of it on plain-text metadata
    assert _tensor_bytes(out) < _tensor_bytes(V2) * 0.6
    assert out.stat().st_size < V2.stat().st_size
    # and the folded model still exports to plain layers
    report = export_checkpoint(out, "torchscript", tmp_path / "m.pt")
    assert report["max_abs_diff"] < 1e-4


def _tensor_bytes(path: Path) -> int:
    """The size of a safetensors file's data section (its tensors, without the header)."""
    raw = path.read_bytes()
    return len(raw) - 8 - int.from_bytes(raw[:8], "little")
