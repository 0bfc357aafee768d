"""Datasets for `tritium train`: the embedded digits, and local MNIST, Fashion-MNIST, CIFAR-10.

    ds = load_dataset("digits")                  # scikit-learn's 8x8 digits, no download
    ds = load_dataset("mnist", data_dir="~/data")  # IDX files under ~/data/mnist/
    ds = load_dataset("my_samples.npz")          # arrays x and y (optionally x_test, y_test)
    x = adapt_inputs(ds.x_train, (1, 32, 32))    # to a model's declared per-sample shape

Nothing is downloaded: MNIST-style datasets are read from their standard IDX files
(optionally gzipped) and CIFAR-10 from its *binary* distribution (`cifar-10-batches-bin`,
not the pickled python one: Tritium never unpickles). When files are missing, the error says
which files to put where. Images come out as float32 `[N, C, H, W]` in the dataset's raw
scale; :class:`Normalization` (mean/std measured on the training split) is applied by the
trainer and stored in checkpoints so that `tritium predict` sees the same inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "Normalization",
    "adapt_inputs",
    "data_root",
    "dataset_digest",
    "load_dataset",
    "recorded_spec",
    "read_arrays",
    "sniff_numpy",
    "split_holdout",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)


class DatasetError(Exception):
    """A dataset cannot be read or adapted; `help` says what to do about it. `code` is the
    exit code the CLI uses: 2 when files are missing (usage), 1 when data is wrong."""

    def __init__(self, message: str, help: str | None = None, code: int = 1) -> None:  # noqa: A002
        self.message = message
        self.help = help
        self.code = code
        super().__init__(message if help is None else f"{message}\n  help: {help}")


@dataclass
class Dataset:
    """Train and test splits as float32 `[N, C, H, W]` (or `[N, F]`) arrays and int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def dataset_digest(ds: Dataset) -> str:
    """A digest of a dataset's splits (the first 16 hex digits of the SHA-256 of their dtypes,
    shapes and values): the data a model was trained on is the same data when this is
    (checkpoints and training states record it)."""
    h = hashlib.sha256()
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{list(a.shape)};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def recorded_spec(spec: str) -> str:
    """`--data` as a checkpoint records it: a dataset name as it is, a path (an .npz, a
    directory, `text:PATH`) made absolute, so that `tritium eval` finds the same data from
    any working directory."""
    if spec.strip().lower().replace("_", "-") in (*DATASETS, "sklearn-digits", "fashionmnist",
                                                  "cifar-10", "text"):
        return spec
    if spec.startswith("text:"):
        return "text:" + os.path.abspath(os.path.expanduser(spec[5:]))
    return os.path.abspath(os.path.expanduser(spec))


@dataclass(frozen=True)
class Normalization:
    """`(x - mean) / std` with scalars measured on the training split."""

    mean: float
    std: float

    @classmethod
    def fit(cls, x: np.ndarray) -> Normalization:
        std = float(x.std())
        return cls(float(x.mean()), std if std > 0 else 1.0)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)


# where Debian's dataset packages put their files, and the datasets Debian packages
SYSTEM_DATA = Path("/usr/share/datasets")
DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}


def _idx_root(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """The directory holding `name/`: the data root (see :func:`data_root`), or, when no
    directory was named (no `data_dir`, no `$TRITIUM_DATA_DIR`) and the cache has no `name/`,
    the system's (Debian's packages) when it has one."""
    root = data_root(data_dir)
    if data_dir is None and not os.environ.get("TRITIUM_DATA_DIR") \
            and not (root / name).is_dir() and (SYSTEM_DATA / name).is_dir():
        return SYSTEM_DATA
    return root


def _package_hint(name: str) -> str:
    package = DEBIAN_PACKAGES.get(name)
    return "" if package is None else (f", or `apt-get install {package}` (read from "
                                       f"{SYSTEM_DATA}/{name})")


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """`data_dir`, else `$TRITIUM_DATA_DIR`, else `~/.cache/tritium/data`."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("TRITIUM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from ..cachedir import cache_root
    return cache_root() / "data"


# ----------------------------------------------------------------------------- loaders

def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (1797 8x8 images, values 0..16), read straight from the CSV it
    ships (importing sklearn takes seconds); `load_digits` is the fallback."""
    import importlib.util
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the digits dataset needs scikit-learn",
                           help="pip install 'tritium[data]'")
    csv = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    try:
        data = np.loadtxt(gzip.open(csv, "rt"), delimiter=",", dtype=np.float32)
        return data[:, :-1], data[:, -1].astype(np.int64)
    except (OSError, ValueError):
        from sklearn.datasets import load_digits
        bunch = load_digits()
        return (np.asarray(bunch.data, dtype=np.float32),
                np.asarray(bunch.target, dtype=np.int64))


def _digits() -> Dataset:
    flat, y = _digits_arrays()
    x = flat.reshape(-1, 1, 8, 8)
    # a fixed stratified split (the same in every run, whatever the training seed)
    x_tr, y_tr, x_te, y_te = split_holdout(x, y, 0.2, seed=0)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, 10)


def _open_maybe_gz(folder: Path, stem: str) -> bytes | None:
    for name in (stem, stem + ".gz"):
        p = folder / name
        if p.is_file():
            try:
                raw = p.read_bytes()
                return gzip.decompress(raw) if name.endswith(".gz") else raw
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise DatasetError(f"cannot read {p}: {exc}",
                                   help="the file is damaged; copy it again") from None
    return None


def _parse_idx(data: bytes, what: str, ndim: int) -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != ndim:
        raise DatasetError(f"{what} is not an IDX file of unsigned bytes with {ndim} dims",
                           help="use the original MNIST-format files (magic 0x0000080{ndim})")
    head = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != head + int(np.prod(dims)):
        raise DatasetError(f"{what}: the header says {dims} but the file holds "
                           f"{len(data) - head} bytes of data (truncated?)")
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(dims)


def _idx_dataset(name: str, root: Path) -> Dataset:
    folder = root / name
    raws = {stem: _open_maybe_gz(folder, stem) for stem in _IDX_FILES}
    missing = [s for s, v in raws.items() if v is None]
    if missing:
        raise DatasetError(
            f"{name}: missing {', '.join(missing)} in {folder}",
            help=f"put the four IDX files ({', '.join(_IDX_FILES)}, each optionally .gz) in "
                 f"{folder}/ -- or pass --data-dir DIR / set TRITIUM_DATA_DIR to a directory "
                 f"holding `{name}/`{_package_hint(name)}; Tritium never downloads data",
            code=2)
    arrays = {s: _parse_idx(raws[s], str(folder / s), 3 if "images" in s else 1)  # type: ignore[arg-type]
              for s in _IDX_FILES}
    x_tr = arrays[_IDX_FILES[0]].astype(np.float32)[:, None] / 255.0
    y_tr = arrays[_IDX_FILES[1]].astype(np.int64)
    x_te = arrays[_IDX_FILES[2]].astype(np.float32)[:, None] / 255.0
    y_te = arrays[_IDX_FILES[3]].astype(np.int64)
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise DatasetError(f"{name}: image and label files hold different numbers of samples")
    return Dataset(name, x_tr, y_tr, x_te, y_te, 10)


def _cifar10(root: Path) -> Dataset:
    folder = root / "cifar10" / "cifar-10-batches-bin"
    missing = [f for f in _CIFAR_FILES if not (folder / f).is_file()]
    if missing:
        raise DatasetError(
            f"cifar10: missing {', '.join(missing)} in {folder}",
            help=f"extract the CIFAR-10 *binary* version (cifar-10-binary.tar.gz) so that "
                 f"{folder}/ holds {', '.join(_CIFAR_FILES)} -- or pass --data-dir DIR / set "
                 f"TRITIUM_DATA_DIR; the pickled python version is not read", code=2)
    rec = 1 + 3 * 32 * 32

    def read(fname: str) -> tuple[np.ndarray, np.ndarray]:
        raw = np.fromfile(folder / fname, dtype=np.uint8)
        if raw.size % rec:
            raise DatasetError(f"{folder / fname}: {raw.size} bytes is not a whole number of "
                               f"{rec}-byte records (truncated?)")
        raw = raw.reshape(-1, rec)
        return raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, \
            raw[:, 0].astype(np.int64)

    parts = [read(f) for f in _CIFAR_FILES[:-1]]
    x_te, y_te = read(_CIFAR_FILES[-1])
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    if y_tr.max(initial=0) > 9 or y_te.max(initial=0) > 9:
        raise DatasetError(f"{folder}: labels above 9: not the CIFAR-10 binary files")
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, 10)


def _as_images(x: np.ndarray) -> np.ndarray:
    """[N] + sample dims → float32 [N, C, H, W] for 2-D/3-D samples, [N, F] otherwise."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:                       # [N, H, W]
        return x[:, None]
    return x


_NUMPY_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")


def _looks_numpy(head: bytes) -> bool:
    return head.startswith(_NUMPY_MAGIC)


def sniff_numpy(path: str | os.PathLike[str], what: str = "data") -> None:
    """DatasetError (exit 2) unless `path` is a regular file that starts like an .npz (a zip)
    or an .npy: a cheap check of the first bytes, before any other work."""
    from ..argcheck import ArgError, open_input, show_path
    try:
        with open_input(path, what) as fh:
            head = fh.read(6)
    except ArgError as exc:
        raise DatasetError(exc.message, code=2) from None
    except OSError as exc:
        raise DatasetError(f"cannot read {show_path(path)}: {exc.strerror or exc}",
                           code=2) from None
    if not _looks_numpy(head):
        raise DatasetError(f"{what} {show_path(path)} is not a NumPy .npz or .npy file (its "
                           "first bytes are neither a zip nor an .npy header)",
                           help="an .npz with arrays `x` and `y`", code=2)


def read_arrays(path: str | os.PathLike[str], what: str = "data") -> dict[str, np.ndarray]:
    """The arrays of an `.npz` (or the one array of an `.npy`, as `x`), read from a regular
    file opened without blocking (never a FIFO or a device), without unpickling; any damage
    (not a zip, truncated, object arrays) is a DatasetError naming the file."""
    import zipfile

    from ..argcheck import ArgError, open_input, show_path
    try:
        fh = open_input(path, what)
    except ArgError as exc:
        raise DatasetError(exc.message, code=2) from None
    try:
        with fh:
            magic = fh.read(6)
            fh.seek(0)
            if not _looks_numpy(magic):
                raise DatasetError(f"cannot read {show_path(path)}: not a NumPy .npz or .npy "
                                   "file (its first bytes are neither a zip nor an .npy "
                                   "header)", help="an .npz with arrays `x` and `y`", code=2)
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"x": loaded}
            with loaded as z:
                return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile,
            zipfile.LargeZipFile, NotImplementedError, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, zipfile.BadZipFile | EOFError):
            reason = f"not a valid NumPy file ({reason})"
        raise DatasetError(f"cannot read {show_path(path)}: {reason}",
                           help="an .npz with numeric arrays (no objects)",
                           code=2 if isinstance(exc, zipfile.BadZipFile | EOFError) else 1
                           ) from None


def _npz(path: Path) -> Dataset:
    arrays = read_arrays(path, "--data")
    if "x" not in arrays or "y" not in arrays:
        raise DatasetError(f"{path} has arrays {sorted(arrays)}, needs `x` and `y`",
                           help="optionally also `x_test` and `y_test`; otherwise 20% of "
                                "`x` is held out")
    for k in ("x", "x_test"):
        a = arrays.get(k)
        if a is not None and (a.dtype.kind not in "biuf" or a.ndim < 2):
            raise DatasetError(f"{path}: `{k}` must be a numeric array of samples, one per "
                               f"row (got {a.dtype} {list(a.shape)})")
        if a is not None and a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DatasetError(f"{path}: `{k}` holds inf or nan values")
    x, y = _as_images(arrays["x"]), arrays["y"]
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(x) or len(x) < 2:
        raise DatasetError(f"{path}: `y` must be a 1-D array of integer labels, one per row "
                           f"of `x` (x: {arrays['x'].shape}, y: {y.shape} {y.dtype})")
    y = _class_indices(y, "y", path)
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, missing = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DatasetError(f"{path} has `{have}` but no `{missing}`",
                           help="give both `x_test` and `y_test`, or neither (then 20% of "
                                "`x` is held out)")
    if "x_test" in arrays:
        x_te, y_te = _as_images(arrays["x_test"]), arrays["y_test"]
        # the test labels are checked as `y` is: a float label is never truncated to a class
        if not np.issubdtype(y_te.dtype, np.integer) or y_te.ndim != 1 \
                or len(y_te) != len(x_te):
            raise DatasetError(f"{path}: `y_test` must be a 1-D array of integer labels, one "
                               f"per row of `x_test` (x_test: {arrays['x_test'].shape}, "
                               f"y_test: {y_te.shape} {y_te.dtype})")
        if x_te.shape[1:] != x.shape[1:]:
            raise DatasetError(f"{path}: `x_test` samples have shape {list(x_te.shape[1:])}, "
                               f"`x` samples {list(x.shape[1:])}")
        if len(x_te) == 0:
            raise DatasetError(f"{path}: `x_test` and `y_test` are empty: the test split needs "
                               "at least one sample",
                               help="give test samples, or leave `x_test` and `y_test` out "
                                    "(then 20% of `x` is held out)")
        x_tr, y_tr, y_te = x, y, _class_indices(y_te, "y_test", path)
    else:
        x_tr, y_tr, x_te, y_te = split_holdout(x, y, 0.2, seed=0)
        if len(x_te) == 0:
            raise DatasetError(f"{path}: its {len(x)} samples are too few to hold out a test "
                               "split (every class has a single sample)",
                               help="give two or more samples of a class, or `x_test` and "
                                    "`y_test`")
    classes = int(max(y_tr.max(), y_te.max())) + 1
    return Dataset(path.stem, x_tr, y_tr, x_te, y_te, classes)


def _class_indices(y: np.ndarray, name: str, path: Path) -> np.ndarray:
    """Integer labels as int64 class indices; DatasetError names a label that is not one
    (read in the array's own dtype: a uint64 label is never wrapped to a negative one)."""
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise DatasetError(f"{path}: labels must be non-negative class indices (`{name}` "
                           f"holds {lo})")
    if hi > np.iinfo(np.int64).max:
        raise DatasetError(f"{path}: `{name}` holds the label {hi}, too large for a class "
                           "index")
    return y.astype(np.int64)


def load_dataset(spec: str, data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """`digits`, `mnist`, `fashion-mnist`, `cifar10`, or a path to an `.npz` (or a directory
    holding `mnist/`, `fashion-mnist/` or `cifar10/`, which is then the only dataset there).
    Any failure to read is a DatasetError naming the file (never an OSError)."""
    try:
        return _load_dataset(spec, data_dir)
    except OSError as exc:   # a name too long, a permission, a damaged disk ...
        from ..argcheck import show_path
        where = show_path(exc.filename) if exc.filename else "the data"
        raise DatasetError(f"cannot read {where}: {exc.strerror or exc}", code=2) from None


def _load_dataset(spec: str, data_dir: str | os.PathLike[str] | None) -> Dataset:
    name = spec.strip().lower().replace("_", "-")
    if name in ("digits", "sklearn-digits"):
        return _digits()
    if name in ("mnist", "fashion-mnist", "fashionmnist"):
        name = "fashion-mnist" if name.startswith("fashion") else "mnist"
        return _idx_dataset(name, _idx_root(name, data_dir))
    if name in ("cifar10", "cifar-10"):
        return _cifar10(data_root(data_dir))
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".npz":
        return _npz(path)
    if os.path.isdir(path):
        found = [d for d in ("mnist", "fashion-mnist", "cifar10") if (path / d).is_dir()]
        if len(found) == 1:
            return _load_dataset(found[0], path)
        raise DatasetError(f"{path} is a directory holding "
                           f"{'several datasets' if found else 'no known dataset'}",
                           help="name the dataset and give the directory: "
                                "--data mnist --data-dir DIR", code=2)
    raise DatasetError(f"unknown dataset `{spec}`",
                       help=f"one of {', '.join(DATASETS)}, or a path to an .npz file", code=2)


# ----------------------------------------------------------------------------- splits, shapes

def split_holdout(x: np.ndarray, y: np.ndarray, fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A stratified split: `(x_keep, y_keep, x_held, y_held)` with `fraction` of each class
    held out (at least one sample of a class with two or more)."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        held.append(idx[:n])
    h = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(y)), h)
    return x[keep], y[keep], x[h], y[h]


def adapt_inputs(x, target: tuple[int, ...] | None):
    """Reshape or resize a batch (numpy array or torch tensor `[N, *sample]`) to a model's
    declared per-sample shape: `[F]` flattens (F must equal the sample's size), `[C, H, W]`
    resizes images bilinearly (and maps 1↔3 channels). `None` keeps the batch as it is."""
    if target is None:
        return x
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(x, dtype=torch.float32)
    sample = tuple(t.shape[1:])
    if sample == tuple(target):
        return t
    size = int(np.prod(sample)) if sample else 1
    if len(target) == 1:
        if size == target[0]:
            return t.reshape(len(t), -1)
        raise DatasetError(
            f"the model takes {target[0]} features per sample, the data has samples of shape "
            f"{list(sample)} ({size} values)",
            help="use a model whose input matches the data, or data whose samples have "
                 f"{target[0]} values")
    if len(target) == 3:
        c, h, w = target
        if len(sample) == 1:
            side = int(round(size ** 0.5))
            if side * side != size:
                raise DatasetError(f"cannot view {size}-feature samples as an image for the "
                                   f"model's input [{c}, {h}, {w}]")
            t = t.reshape(len(t), 1, side, side)
        elif len(sample) == 2:
            t = t.reshape(len(t), 1, *sample)
        elif len(sample) != 3:
            raise DatasetError(f"cannot adapt samples of shape {list(sample)} to [{c}, {h}, {w}]")
        if t.shape[1] != c:
            if t.shape[1] == 1:
                t = t.expand(-1, c, -1, -1)
            elif c == 1 and t.shape[1] == 3:
                t = t.mean(dim=1, keepdim=True)
            else:
                raise DatasetError(f"the model takes {c}-channel images, the data has "
                                   f"{t.shape[1]} channels")
        if tuple(t.shape[2:]) != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        return t.contiguous()
    raise DatasetError(f"cannot adapt samples of shape {list(sample)} to the model's input "
                       f"{list(target)}", help="declare the input as [batch, F] or "
                                               "[batch, C, H, W]")
