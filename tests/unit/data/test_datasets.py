"""Datasets: the embedded digits, IDX and CIFAR-10 binary readers, .npz, input adaptation."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tritium.data import DatasetError, adapt_inputs, load_dataset, split_holdout


def test_digits_is_embedded_split_and_stratified():
    ds = load_dataset("digits")
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert abs(len(ds.y_test) - 0.2 * 1797) < 10
    assert set(np.unique(ds.y_test)) == set(range(10))
    again = load_dataset("digits")
    assert np.array_equal(ds.y_test, again.y_test)       # the split never moves


def _idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(struct.pack(">I", d)
                                                              for d in arr.shape)
    raw = head + arr.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_are_read(tmp_path: Path, gz: bool):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    _idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)), gz)
    _idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, 12), gz)
    _idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28)), gz)
    _idx(folder / "t10k-labels-idx1-ubyte", np.array([1, 2, 3, 4]), gz)
    ds = load_dataset("fashion-mnist", tmp_path)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (4, 1, 28, 28)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.y_test.tolist() == [1, 2, 3, 4]
    (folder / ("t10k-labels-idx1-ubyte" + (".gz" if gz else ""))).write_bytes(b"\0\0\x08\x01")
    with pytest.raises(DatasetError):
        load_dataset("fashion-mnist", tmp_path)


def test_cifar10_binary_batches(tmp_path: Path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = np.concatenate([rng.integers(0, 10, (3, 1)), rng.integers(0, 256, (3, 3072))], 1)
        rec.astype(np.uint8).tofile(folder / name)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    (folder / "test_batch.bin").write_bytes(b"\0" * 100)
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("cifar10", tmp_path)


def test_missing_files_name_the_files_and_the_place(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TRITIUM_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist")
    assert err.value.code == 2
    assert str(tmp_path / "mnist") in str(err.value)
    assert "t10k-labels-idx1-ubyte" in str(err.value)


def test_debians_dataset_package_is_read_when_no_directory_is_named(tmp_path: Path,
                                                                     monkeypatch):
    """`apt-get install dataset-fashion-mnist` puts the IDX files in
    /usr/share/datasets/fashion-mnist: read there when neither --data-dir nor
    $TRITIUM_DATA_DIR names a directory and the cache holds no copy; a named directory, or
    the cache's own copy, wins."""
    import tritium.data as data_mod

    rng = np.random.default_rng(3)
    system = tmp_path / "system"
    folder = system / "fashion-mnist"
    folder.mkdir(parents=True)
    _idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (6, 28, 28)), True)
    _idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, 6), True)
    _idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (2, 28, 28)), True)
    _idx(folder / "t10k-labels-idx1-ubyte", np.array([7, 8]), True)
    monkeypatch.setattr(data_mod, "SYSTEM_DATA", system)
    monkeypatch.delenv("TRITIUM_DATA_DIR", raising=False)
    assert load_dataset("fashion-mnist").y_test.tolist() == [7, 8]
    with pytest.raises(DatasetError) as err:          # mnist: not in the system's either,
        load_dataset("mnist")                         # and Debian has no package for it
    assert "apt-get" not in str(err.value)
    named = tmp_path / "named"
    named.mkdir()
    with pytest.raises(DatasetError, match="missing") as err:   # a named directory is read
        load_dataset("fashion-mnist", named)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    monkeypatch.setenv("TRITIUM_DATA_DIR", str(named))
    with pytest.raises(DatasetError, match="missing"):
        load_dataset("fashion-mnist")


def test_npz_with_and_without_test_arrays(tmp_path: Path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "a.npz", x=rng.random((50, 6)), y=rng.integers(0, 3, 50))
    ds = load_dataset(str(tmp_path / "a.npz"))
    assert ds.num_classes == 3 and len(ds.y_train) + len(ds.y_test) == 50
    np.savez(tmp_path / "b.npz", x=rng.random((10, 5, 5)), y=np.arange(10) % 2,
             x_test=rng.random((4, 5, 5)), y_test=np.array([0, 1, 0, 1]))
    ds = load_dataset(str(tmp_path / "b.npz"))
    assert ds.x_train.shape == (10, 1, 5, 5) and len(ds.y_test) == 4
    np.savez(tmp_path / "c.npz", x=rng.random((10, 5)), y=rng.random(10))
    with pytest.raises(DatasetError, match="integer labels"):
        load_dataset(str(tmp_path / "c.npz"))
    with pytest.raises(DatasetError) as err:
        load_dataset("imagenet")
    assert err.value.code == 2


def test_split_holdout_is_stratified_and_disjoint():
    y = np.repeat(np.arange(4), 25)
    x = np.arange(100)[:, None]
    xa, ya, xb, yb = split_holdout(x, y, 0.2, seed=0)
    assert len(yb) == 20 and all((yb == c).sum() == 5 for c in range(4))
    assert not set(xa[:, 0]) & set(xb[:, 0])


def test_adapt_inputs():
    x = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 1, 8, 8)
    assert adapt_inputs(x, (64,)).shape == (2, 64)
    assert torch.equal(adapt_inputs(x, (64,))[1], x[1].flatten())
    assert adapt_inputs(x, (1, 32, 32)).shape == (2, 1, 32, 32)
    assert adapt_inputs(x, (3, 8, 8)).shape == (2, 3, 8, 8)
    assert adapt_inputs(x.reshape(2, 64), (1, 16, 16)).shape == (2, 1, 16, 16)
    assert adapt_inputs(x, None) is x
    with pytest.raises(DatasetError, match="64 values"):
        adapt_inputs(x, (100,))
    with pytest.raises(DatasetError, match="channels"):
        adapt_inputs(torch.zeros(1, 2, 4, 4), (3, 4, 4))
