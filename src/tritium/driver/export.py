"""Export graphs that take raw inputs and keep the ternary weights ternary.

`export_graph(model, info, raw_shape, packed=...)` is the `nn.Module` `tritium export`
hands to the ONNX exporter:

* :class:`Preprocess` -- what `tritium predict` does to a raw sample before the model sees
  it (``model_inputs`` in driver/train.py): ``(x - mean) / std`` with the training split's
  scalars, then the reshape / bilinear resize / channel mapping to the model's declared
  input shape (``adapt_inputs`` in tritium.data), with a dynamic batch dimension;
* the model as plain torch layers (``unpacked_twin``): each ternary weight the float
  constant ``trits * scale``; or, ``packed=True``, each ternary weight as a
  :class:`PackedTernaryWeight`: 2-bit codes (``trit + 1``, four a byte, the first in the
  low bits) in a ``uint8`` initializer, unpacked in the graph by ``BitShift`` and
  ``BitwiseAnd`` to codes, codes to trits (``Cast``, ``Sub``) and trits times the float
  scale per output channel (``Mul``), so the file holds 2 bits a weight.

`onnx_metadata(info, raw_shape, ...)` is what the ONNX file's ``metadata_props`` carry.
"""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from torch import nn

import tritium

from .models import RunInfo, unpacked_twin

__all__ = ["CLASS_LABELS", "PackedTernaryWeight", "Preprocess", "export_graph",
           "onnx_metadata", "pack_codes", "unpack_codes"]

CLASS_LABELS: dict[str, list[str]] = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"],
}
"""Class names of the built-in datasets (others: the class indices as strings)."""


class ExportShapeError(ValueError):
    """Raw samples of this shape cannot be adapted to the model's input in a graph."""


class Preprocess(nn.Module):
    """Raw samples ``[batch, *raw_shape]`` -> the model's inputs ``[batch, *model_shape]``,
    exactly as ``model_inputs`` prepares them, in traceable ops."""

    def __init__(self, mean: float, std: float, raw_shape: list[int],
                 model_shape: list[int]) -> None:
        super().__init__()
        self.mean, self.std = float(mean), float(std)
        self.raw_shape, self.model_shape = list(raw_shape), list(model_shape)
        size = math.prod(raw_shape)
        if raw_shape == model_shape:
            return
        if len(model_shape) == 1:
            if size != model_shape[0]:
                raise ExportShapeError(f"raw samples {raw_shape} ({size} values) cannot "
                                       f"feed a model taking {model_shape[0]} features")
            return
        if len(model_shape) != 3:
            raise ExportShapeError(f"cannot adapt raw samples {raw_shape} to {model_shape}")
        c = model_shape[0]
        if len(raw_shape) == 1:
            side = int(round(size ** 0.5))
            if side * side != size:
                raise ExportShapeError(f"cannot view {size}-feature samples as an image")
            image = [1, side, side]
        elif len(raw_shape) == 2:
            image = [1, *raw_shape]
        elif len(raw_shape) == 3:
            image = list(raw_shape)
        else:
            raise ExportShapeError(f"cannot adapt raw samples {raw_shape} to {model_shape}")
        if image[0] != c and not (image[0] == 1 or (c == 1 and image[0] == 3)):
            raise ExportShapeError(f"the model takes {c}-channel images, the raw samples "
                                   f"have {image[0]} channels")
        self.image = image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.raw_shape == self.model_shape:
            return x
        if len(self.model_shape) == 1:
            return torch.flatten(x, 1)
        c, h, w = self.model_shape
        x = x.reshape(-1, *self.image)
        if self.image[0] != c:
            x = x.expand(-1, c, -1, -1) if self.image[0] == 1 else x.mean(dim=1, keepdim=True)
        if self.image[1:] != [h, w]:
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return x


def pack_codes(trits: torch.Tensor) -> torch.Tensor:
    """Trits in {-1, 0, 1} (any shape) as 2-bit codes ``trit + 1``, four a byte, element
    ``4j + i`` in bits ``2i, 2i+1`` of byte ``j``; the last byte padded with zero trits."""
    codes = (trits.reshape(-1).to(torch.int16) + 1).to(torch.uint8)
    pad = (-codes.numel()) % 4
    if pad:
        codes = torch.cat([codes, torch.ones(pad, dtype=torch.uint8)])
    c = codes.view(-1, 4)
    return c[:, 0] | (c[:, 1] << 2) | (c[:, 2] << 4) | (c[:, 3] << 6)


_SHIFTS = (0, 2, 4, 6)


def unpack_codes(packed: torch.Tensor, shifts: torch.Tensor, count: int) -> torch.Tensor:
    """The inverse of :func:`pack_codes` as float trits (``count`` of them), in the ops the
    ONNX graph holds (``BitShift``, ``BitwiseAnd``, ``Cast``, ``Sub``)."""
    codes = torch.bitwise_and(packed.unsqueeze(-1) >> shifts, 3).reshape(-1)
    if codes.shape[0] != count:      # (a static decision: the padding of the last byte)
        codes = codes[:count]
    return codes.to(torch.float32) - 1.0


class PackedTernaryWeight(nn.Module):
    """A ternary weight held as 2-bit codes and a float scale per output channel; calling
    it gives the float weight ``trits * scale``, computed in the graph."""

    def __init__(self, trits: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.shape = tuple(trits.shape)
        self.register_buffer("packed", pack_codes(trits))
        self.register_buffer("shifts", torch.tensor(_SHIFTS, dtype=torch.uint8))
        n = self.shape[0]
        s = scale.detach().float().reshape(-1)
        if s.numel() == 1:
            s = s.expand(n)
        self.register_buffer("scale", s.reshape(n, *([1] * (len(self.shape) - 1))).clone())

    def forward(self) -> torch.Tensor:
        trits = unpack_codes(self.packed, self.shifts, math.prod(self.shape))
        return trits.reshape(self.shape) * self.scale


class _PackedLinear(nn.Module):
    def __init__(self, plain: nn.Linear, weight: PackedTernaryWeight) -> None:
        super().__init__()
        self.weight_packed = weight
        self.plain = plain
        del self.plain._parameters["weight"]
        self.plain.weight = None  # type: ignore[assignment]

    def forward(self, x: torch.Tensor, activation: str | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        self.plain.weight = self.weight_packed()  # type: ignore[assignment]
        try:
            return self.plain(x, activation=activation, residual=residual)
        finally:
            self.plain.weight = None  # type: ignore[assignment]


def _ternary_layers(model: nn.Module) -> dict[str, nn.Module]:
    from ..runtime import TernaryConv2d, TernaryLinear
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (TernaryLinear, TernaryConv2d)) and m.frozen}


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def export_graph(model: nn.Module, info: RunInfo, raw_shape: list[int], *,
                 packed: bool = False) -> nn.Module:
    """``Preprocess`` then the model as exportable torch layers (see the module doc)."""
    assert info.input_shape is not None
    pre = Preprocess(*info.normalization, raw_shape, info.input_shape)
    plain = unpacked_twin(model) if info.variant == "ternary" else model
    if packed:
        for name, layer in _ternary_layers(model).items():
            q = layer.ternary_weight()
            weight = PackedTernaryWeight(q.trits, q.scale)
            _set(plain, name, _PackedLinear(plain.get_submodule(name), weight))
    return nn.Sequential(pre, plain).eval()


def onnx_metadata(info: RunInfo, raw_shape: list[int], *, packed: bool) -> dict[str, str]:
    """The ``metadata_props`` of an exported ONNX file: what a consumer needs to feed it
    and read its answer, and what wrote it."""
    labels = CLASS_LABELS.get(info.dataset)
    if labels is None or len(labels) != info.num_classes:
        labels = [str(i) for i in range(info.num_classes)]
    out = {
        "tritium.version": tritium.__version__,
        "tritium.model": info.entry,
        "tritium.dataset": info.dataset,
        "tritium.labels": json.dumps(labels),
        "tritium.normalization": json.dumps({"mean": info.normalization[0],
                                             "std": info.normalization[1],
                                             "applied_in_graph": True}),
        "tritium.input_shape": json.dumps(["batch", *raw_shape]),
        "tritium.model_input_shape": json.dumps(["batch", *(info.input_shape or [])]),
        "tritium.variant": info.variant,
        "tritium.weights": ("ternary, 2-bit codes (trit + 1, four a uint8, low bits first) "
                            "unpacked in the graph, times a float scale per output channel"
                            if packed else "float32 (ternary weights as trits * scale)"),
    }
    if info.variant == "ternary":
        out["tritium.format"] = info.format
    return out

