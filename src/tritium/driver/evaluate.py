"""`tritium eval`, `tritium predict` and `tritium export` on checkpoints written by `train`.

    model, info = load_for_eval("runs/mlp/model.safetensors")   # frozen, native kernels
    report = evaluate_checkpoint("runs/mlp/model.safetensors")  # test accuracy, as `train`
    probs = predict(model, info, samples)                       # [N, classes] probabilities
    export_checkpoint(ckpt, "onnx", "mlp.onnx")

Export: the frozen model's packed weights run through Tritium's custom kernels, which ONNX
and TorchScript do not know. Exports therefore hold the equivalent *unpacked* ternary model:
each ternary weight becomes the float constant `trits * scale` in a standard
`Linear`/`Conv` node (same function, standard ops, no custom ops; the file is as large as an
fp32 model's). `--format safetensors` writes that unpacked state dict with plain float
tensors, for tools that do not read Tritium's packed format.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..cachedir import atomic_write_bytes
from ..data import DatasetError, Normalization, load_dataset
from .models import RunInfo, model_from_checkpoint, unpacked_twin

__all__ = ["EXPORT_FORMATS", "EvalReport", "ExportError", "evaluate_checkpoint",
           "export_checkpoint", "load_for_eval", "load_samples", "predict"]

EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")


class ExportError(Exception):
    def __init__(self, message: str, help: str | None = None) -> None:  # noqa: A002
        self.message = message
        self.help = help
        super().__init__(message)


@dataclass
class EvalReport:
    checkpoint: str
    model: str
    variant: str
    dataset: str
    samples: int
    accuracy: float
    loss: float


def load_for_eval(path: str | Path) -> tuple[nn.Module, RunInfo]:
    """The checkpoint's model in eval mode (ternary layers frozen and packed). The path must
    name a readable regular file (ArgError otherwise: never a FIFO or a device)."""
    from ..argcheck import check_input_file
    check_input_file(path, "checkpoint")
    return model_from_checkpoint(path)


def _prepare(x: np.ndarray | torch.Tensor, info: RunInfo) -> torch.Tensor:
    from .train import model_inputs
    mean, std = info.normalization
    return model_inputs(x, Normalization(mean, std), info.input_shape)


def evaluate_checkpoint(path: str | Path, data: str | None = None,
                        data_dir: str | None = None) -> EvalReport:
    """Accuracy and cross-entropy of a checkpoint on the test split of its dataset (or
    `data`), with the inputs prepared exactly as `tritium train` prepared them."""
    import torch.nn.functional as F

    from .train import evaluate_model
    model, info = load_for_eval(path)
    ds = load_dataset(data or info.dataset, data_dir)
    x = _prepare(ds.x_test, info)
    y = torch.as_tensor(ds.y_test)
    try:
        acc, loss = evaluate_model(model, x, y, lambda lg, yb: F.cross_entropy(lg, yb))
    except (RuntimeError, IndexError) as exc:
        raise DatasetError(f"the model cannot take the {ds.name} test samples: {exc}") from None
    return EvalReport(str(path), info.entry, info.variant, ds.name, len(y), acc, loss)


def load_samples(path: str | Path) -> np.ndarray:
    """Samples from `.npy` (an array), `.npz` (array `x`, or its only array) or `.csv`
    (one sample per row, numbers only; a header row is skipped)."""
    from ..argcheck import ArgError, open_input, show_path
    from ..data import read_arrays

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise DatasetError(f"unsupported input file type `{suffix or p.name}`",
                           help="use .npy, .npz or .csv", code=2)
    if suffix in (".npy", ".npz"):
        arrays = read_arrays(p, "INPUT")
        if "x" in arrays:
            arr = arrays["x"]
        elif len(arrays) == 1:
            arr = next(iter(arrays.values()))
        else:
            raise DatasetError(f"{show_path(p)} holds arrays {sorted(arrays)}; name the "
                               "samples `x`")
    else:
        try:
            fh = open_input(p, "INPUT")
        except ArgError as exc:
            raise DatasetError(exc.message, code=2) from None
        rows: list[list[float]] = []
        try:
            with io.TextIOWrapper(fh, encoding="utf-8", newline="") as text:
                for i, row in enumerate(csv.reader(text)):
                    cells = [c.strip() for c in row if c.strip()]
                    if not cells:
                        continue
                    try:
                        rows.append([float(c) for c in cells])
                    except ValueError:
                        if i == 0 and not rows:
                            continue      # a header
                        raise DatasetError(f"{show_path(p)}:{i + 1}: not a number in "
                                           f"{row!r}") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"cannot read {show_path(p)}: {exc}") from None
        if not rows or len({len(r) for r in rows}) != 1:
            raise DatasetError(f"{show_path(p)}: rows must all hold the same number of values")
        arr = np.asarray(rows, dtype=np.float32)
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{show_path(p)}: samples must be numbers, got dtype {arr.dtype}")
    out = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DatasetError(f"{show_path(p)}: samples must be finite numbers (no inf or nan)")
    return out


def predict(model: nn.Module, info: RunInfo, samples: np.ndarray) -> torch.Tensor:
    """Class probabilities `[N, classes]` for raw samples (one sample or a batch)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1 or (info.input_shape is not None and list(x.shape) == info.input_shape):
        x = x[None]          # one sample, not a batch
    try:
        inputs = _prepare(x, info)
        with torch.no_grad():
            logits = model(inputs)
    except DatasetError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise DatasetError(f"the model cannot take samples shaped {list(x.shape[1:])}: {exc}",
                           help=f"the model was trained on {info.dataset} with inputs "
                                f"{info.input_shape}") from None
    return torch.softmax(logits.float(), dim=-1)


def export_checkpoint(path: str | Path, fmt: str, output: str | Path) -> dict[str, Any]:
    """Write the unpacked equivalent of the checkpoint's model as ONNX, TorchScript or plain
    safetensors; returns a description (max output difference vs the frozen model)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format `{fmt}`", help=", ".join(EXPORT_FORMATS))
    from ..argcheck import ArgError, check_output_file
    try:
        out = check_output_file(output, "-o")
    except ArgError as exc:
        raise ExportError(exc.message) from None
    model, info = load_for_eval(path)
    plain = unpacked_twin(model) if info.variant == "ternary" else model
    if info.input_shape is None:
        raise ExportError("the model does not declare a static input shape",
                          help="declare it in the forward, e.g. forward(x: Tensor[batch, 64])")
    sample = torch.randn(2, *info.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(sample)
        got = plain(sample)
    diff = float((ref - got).abs().max())
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        import safetensors.torch
        state = {k: v.detach().contiguous().clone() for k, v in plain.state_dict().items()}
        meta = {k: v for k, v in info.to_extra().items()}
        meta["tritium.export"] = "unpacked ternary weights (trits * scale) as float32"
        atomic_write_bytes(out, safetensors.torch.save(state, metadata=meta))
    elif fmt == "torchscript":
        import io
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(plain, sample)
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
        atomic_write_bytes(out, buf.getvalue())
    else:
        import io
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(plain, (sample,), buf, dynamo=False, input_names=["x"],
                                  output_names=["logits"], opset_version=17,
                                  dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as exc:  # noqa: BLE001 - the exporter's failures are many types
            raise ExportError(f"ONNX export failed: {exc}",
                              help="try --format torchscript or safetensors") from None
        atomic_write_bytes(out, buf.getvalue())
    return {"format": fmt, "output": str(out), "bytes": out.stat().st_size,
            "max_abs_diff": diff, "input_shape": info.input_shape, "model": info.entry}


def describe(report: EvalReport) -> str:
    return json.dumps(report.__dict__)
