"""`--data f.npz` test splits: `y_test` is validated as `y` is (float labels were truncated to
classes, string labels accepted), and a tiny or empty test split is a clear error (it was
`ValueError: zero-size array to reduction operation minimum`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritium.cli import main
from tritium.data import DatasetError, load_dataset

ROOT = Path(__file__).resolve().parents[3]
RNG = np.random.default_rng(0)
X = RNG.random((40, 64)).astype(np.float32)
Y = np.arange(40) % 4


@pytest.mark.parametrize("arrays, message", [
    ({"x_test": X[:10], "y_test": np.arange(10) % 4 + 0.9}, "`y_test` must be a 1-D array of "
                                                            "integer labels"),
    ({"x_test": X[:10], "y_test": np.array([str(i % 4) for i in range(10)])},
     "`y_test` must be a 1-D array of integer labels"),
    ({"x_test": X[:10], "y_test": np.ones(10, bool)}, "`y_test` must be a 1-D array"),
    ({"x_test": X[:10], "y_test": np.zeros((10, 1), np.int64)}, "`y_test` must be a 1-D"),
    ({"x_test": X[:10], "y_test": np.zeros(9, np.int64)}, "one per row of `x_test`"),
    ({"x_test": X[:0], "y_test": np.zeros(0, np.int64)}, "`x_test` and `y_test` are empty"),
    ({"x_test": X[:10]}, "has `x_test` but no `y_test`"),
    ({"y_test": np.zeros(10, np.int64)}, "has `y_test` but no `x_test`"),
    ({"x_test": X[:10, :32], "y_test": np.zeros(10, np.int64)}, "`x_test` samples have shape"),
])
def test_a_bad_test_split_is_one_clear_error(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, x=X, y=Y, **arrays)
    with pytest.raises(DatasetError) as err:
        load_dataset(str(path))
    assert message in str(err.value)


def test_too_few_samples_to_hold_out_a_test_split(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, x=np.zeros((4, 64), np.float32), y=np.array([0, 1, 2, 3]))
    with pytest.raises(DatasetError, match="too few to hold out a test split"):
        load_dataset(str(path))


def test_the_cli_reports_it_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "tiny.npz"
    np.savez(path, x=np.zeros((4, 64), np.float32), y=np.array([0, 1, 2, 3]))
    code = main(["train", str(ROOT / "examples" / "mlp.tri"), "--data", str(path), "--epochs",
                 "1", "--out", str(tmp_path / "r"), "--no-baseline", "--no-progress", "-q"])
    err = capsys.readouterr().err
    assert code != 0 and "too few to hold out a test split" in err and "Traceback" not in err


def test_integer_test_labels_of_any_width_still_load(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, x=X, y=Y.astype(np.uint8), x_test=X[:8], y_test=(np.arange(8) % 4)
             .astype(np.int16))
    ds = load_dataset(str(path))
    assert ds.y_test.dtype == np.int64 and list(ds.y_test) == [0, 1, 2, 3, 0, 1, 2, 3]
    assert ds.num_classes == 4


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((5, 64), np.float32), "y": np.array([0, 1, 50, -1, 3])}, "`y` holds -1"),
    ({"x": X, "y": Y, "x_test": X[:4], "y_test": np.array([0, -2, 1, 1])}, "`y_test` holds -2"),
])
def test_a_negative_label_is_named_before_any_split(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match="non-negative class indices") as err:
        load_dataset(str(path))
    assert message in str(err.value)


BIG = np.iinfo(np.uint64).max


@pytest.mark.parametrize("arrays, message", [
    ({"x": X, "y": np.where(Y == 3, BIG, Y).astype(np.uint64)},
     f"`y` holds the label {BIG}, too large"),
    ({"x": X, "y": Y, "x_test": X[:4], "y_test": np.array([0, BIG, 1, 1], np.uint64)},
     f"`y_test` holds the label {BIG}, too large"),
    ({"x": X.reshape(40, 8, 8), "y": Y > 1}, "(x: (40, 8, 8), y: (40,) bool)"),
])
def test_labels_are_named_as_the_file_holds_them(tmp_path, arrays, message):
    """A uint64 label of 2**64-1 was reported as `y holds -1` (wrapped by the cast), and the
    shape of `x` in a message as the reshaped image array's ((40, 1, 8, 8))."""
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError) as err:
        load_dataset(str(path))
    assert message in str(err.value)
