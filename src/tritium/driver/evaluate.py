"""`tritium eval`, `tritium predict` and `tritium export` on checkpoints written by `train`.

    model, info = load_for_eval("runs/mlp/model.safetensors")   # frozen, native kernels
    report = evaluate_checkpoint("runs/mlp/model.safetensors")  # test accuracy, as `train`
    probs = predict(model, info, samples)                       # [N, classes] probabilities
    export_checkpoint(ckpt, "onnx-packed", "mlp.onnx")           # 2-bit weights, raw inputs

Export: the frozen model's packed weights run through Tritium's custom kernels, which ONNX
and TorchScript do not know. `onnx-packed` keeps the weights ternary in standard ops: 2-bit
codes in uint8 initializers, unpacked in the graph (driver/export.py). The other formats
hold the equivalent *unpacked* model: each ternary weight becomes the float constant
`trits * scale` in a standard `Linear`/`Conv` node (as large as an fp32 model). Both ONNX
formats take raw samples (normalization and resize in the graph) and carry labels,
normalization, input shape and Tritium version in `metadata_props`. `--format
safetensors` writes the unpacked state dict with plain float tensors, for tools that do
not read Tritium's packed format.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import tritium

from ..cachedir import atomic_write_bytes
from ..data import DatasetError, Normalization, adapt_inputs, dataset_digest, load_dataset
from .models import RunInfo, model_from_checkpoint, unpacked_twin

__all__ = ["EXPORT_FORMATS", "EvalReport", "ExportError", "evaluate_checkpoint",
           "export_checkpoint", "load_for_eval", "load_samples", "predict"]

EXPORT_FORMATS = ("onnx", "onnx-packed", "torchscript", "safetensors")

EVAL_BATCH = 512   # samples per forward when evaluating


def model_inputs(x: np.ndarray | torch.Tensor, norm: Normalization,
                 input_shape: list[int] | None) -> torch.Tensor:
    """Raw samples → normalized, adapted to the model's declared input shape."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    t = (t - norm.mean) / norm.std
    return adapt_inputs(t, tuple(input_shape) if input_shape else None)


@torch.no_grad()
def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                   batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """`(accuracy, mean loss)` of `model` in eval mode over prepared inputs `x`."""
    was = model.training
    model.eval()
    correct, total_loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        correct += int((logits.argmax(-1) == yb).sum())
        if loss is not None:
            total_loss += float(loss(logits, yb)) * len(yb)
    model.train(was)
    n = max(1, len(x))
    return correct / n, total_loss / n



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
    _not_source_text(Path(path))
    return model_from_checkpoint(path)


def _not_source_text(path: Path) -> None:
    """ArgError (exit 2) for a `.tri` program or other text given where a checkpoint goes:
    a safetensors file starts with its 8-byte header length, which as text is absurd."""
    import re

    from ..argcheck import ArgError, open_input, show_path
    with open_input(path, "checkpoint") as fh:
        head = fh.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:     # (a multi-byte character cut at byte 512)
        text = head[:exc.start].decode("utf-8") if exc.start > len(head) - 4 else ""
    if not text or len(head) < 8 or int.from_bytes(head[:8], "little") <= 100 * 1024 * 1024 \
            or not all(c.isprintable() or c in "\t\r\n" for c in text):
        return
    where = show_path(path)
    if path.suffix.lower() == ".tri" or re.search(r"\b(model|block|layer)\s+\w+", text):
        out = f"runs/{path.stem}"
        raise ArgError(f"checkpoint {where} is a .tri source, not a checkpoint: train it "
                       f"first (`tritium train {path} --out {out}`) and pass "
                       f"{out}/model.safetensors")
    raise ArgError(f"checkpoint {where} is a text file, not a safetensors checkpoint: pass "
                   "a model.safetensors written by `tritium train`")


def _prepare(x: np.ndarray | torch.Tensor, info: RunInfo) -> torch.Tensor:
    mean, std = info.normalization
    return model_inputs(x, Normalization(mean, std), info.input_shape)


def evaluate_checkpoint(path: str | Path, data: str | None = None,
                        data_dir: str | None = None) -> EvalReport:
    """Accuracy and cross-entropy of a checkpoint on the test split of its dataset (or
    `data`), with the inputs prepared exactly as `tritium train` prepared them."""
    import torch.nn.functional as F

    from ..argcheck import show_path

    model, info = load_for_eval(path)
    ds = load_dataset(data or info.dataset, data_dir)
    if data is None and info.dataset_digest is not None \
            and dataset_digest(ds) != info.dataset_digest:
        raise DatasetError(f"{show_path(info.dataset)} is not the data {show_path(path)} was "
                           "trained on (it changed since): its test split is not the one "
                           "held out in training",
                           help=f"--data {show_path(info.dataset)} evaluates it on the data "
                                "as it is now", code=1)
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


def _raw_shape(info: RunInfo) -> tuple[list[int], str | None]:
    """The shape of one raw sample of the checkpoint's dataset (what `predict` takes), and
    why it is the model's input shape instead when the dataset cannot be read here."""
    assert info.input_shape is not None
    try:
        ds = load_dataset(info.dataset)
    except DatasetError as exc:
        return list(info.input_shape), f"dataset {info.dataset} not readable ({exc.message})"
    return [int(d) for d in ds.x_test.shape[1:]], None


def _onnx_bytes(graph: nn.Module, sample: torch.Tensor, fold: bool,
                meta: dict[str, str], custom_opsets: dict[str, int] | None = None) -> bytes:
    import io

    import onnx
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (sample,), buf, dynamo=False, input_names=["x"],
                              output_names=["logits"], opset_version=18,
                              do_constant_folding=fold, custom_opsets=custom_opsets,
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as exc:  # noqa: BLE001 - the exporter's failures are many types
        raise ExportError(f"ONNX export failed: {exc}",
                          help="try --format torchscript or safetensors") from None
    proto = onnx.load_from_string(buf.getvalue())
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "tritium", tritium.__version__
    return proto.SerializeToString()


def export_checkpoint(path: str | Path, fmt: str, output: str | Path, *,
                      matmul_nbits: bool = False) -> dict[str, Any]:
    """Export the checkpoint's model as ONNX (`onnx`: float weights `trits * scale`;
    `onnx-packed`: 2-bit ternary codes unpacked in the graph), TorchScript or plain
    safetensors; returns a description (max output difference vs the frozen model).

    Both ONNX variants take *raw* samples, shaped as the dataset's (digits: `[batch, 1, 8,
    8]`): the graph normalizes and resizes them as `tritium predict` does, and its
    `metadata_props` hold the labels, the normalization, the input shape and the Tritium
    version. TorchScript and safetensors hold the model alone (normalized inputs of the
    model's declared shape). `matmul_nbits` (onnx-packed only): linear layers as
    onnxruntime's `com.microsoft.MatMulNBits` with 2-bit codes (driver/export.py)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format `{fmt}`", help=", ".join(EXPORT_FORMATS))
    if matmul_nbits and fmt != "onnx-packed":
        raise ExportError(f"--matmul-nbits applies to --format onnx-packed, not {fmt}")
    from ..argcheck import ArgError, check_output_file
    try:
        out = check_output_file(output, "-o")
    except ArgError as exc:
        raise ExportError(exc.message) from None
    model, info = load_for_eval(path)
    if info.input_shape is None:
        raise ExportError("the model does not declare a static input shape",
                          help="declare it in the forward, e.g. forward(x: Tensor[batch, 64])")
    if fmt == "onnx-packed" and info.variant != "ternary":
        raise ExportError(f"--format onnx-packed needs a ternary checkpoint; {path} is the "
                          f"{info.variant} model", help="export it with --format onnx")
    gen = torch.Generator().manual_seed(0)
    note = None
    if fmt.startswith("onnx"):
        from .export import ExportShapeError, export_graph, onnx_metadata, uses_matmul_nbits
        raw, note = _raw_shape(info)
        try:
            graph = export_graph(model, info, raw, packed=fmt == "onnx-packed",
                                 matmul_nbits=matmul_nbits)
        except ExportShapeError as exc:
            raise ExportError(f"cannot put the input preprocessing in the graph: {exc}") from None
        sample = torch.rand(2, *raw, generator=gen) * 4
        with torch.no_grad():
            ref = model(_prepare(sample.numpy(), info))
            got = graph(sample)
        shape = raw
    else:
        plain = unpacked_twin(model) if info.variant == "ternary" else model
        sample = torch.randn(2, *info.input_shape, generator=gen)
        with torch.no_grad():
            ref = model(sample)
            got = plain(sample)
        shape = info.input_shape
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
        packed = fmt == "onnx-packed"
        meta = onnx_metadata(info, shape, packed=packed, matmul_nbits=matmul_nbits)
        if note:
            meta["tritium.preprocessing"] = f"normalization only: {note}"
        # packed: no constant folding, or the exporter would fold the unpacking back into
        # float weights
        atomic_write_bytes(out, _onnx_bytes(graph, sample, not packed, meta,
                                            {"com.microsoft": 1} if matmul_nbits else None))
    return {"format": fmt, "output": str(out), "bytes": out.stat().st_size,
            "max_abs_diff": diff, "input_shape": shape, "model": info.entry,
            "raw_inputs": fmt.startswith("onnx") and note is None,
            "matmul_nbits_layers": uses_matmul_nbits(graph) if matmul_nbits else 0}


def describe(report: EvalReport) -> str:
    return json.dumps(report.__dict__)
