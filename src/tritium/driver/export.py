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

With ``matmul_nbits=True`` (``--format onnx-packed --matmul-nbits``) each frozen
``TernaryLinear`` (fp32 activations, or per-token int8 ones: their fake quantization in float
ops before the node) becomes one onnxruntime contrib node,
``com.microsoft.MatMulNBits`` with ``bits=2`` (:class:`NBitsTernaryLinear`): the codes
``trit + 2`` (the operator's default 2-bit zero point), four a byte along K, low bits first,
in blocks of ``block_size`` (a power of two from 16 to 256, the range onnxruntime's CPU
kernel takes for 2 bits; chosen per layer for the fewest bytes), and one float scale per
block, the layer's scale repeated. onnxruntime then multiplies without materializing a
float weight. Convolutions keep the ``BitShift`` unpacking. Other ONNX runtimes may not know
the operator.

`onnx_metadata(info, raw_shape, ...)` is what the ONNX file's ``metadata_props`` carry.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import tritium

from .models import FloatLinear, RunInfo, _epilogue, token_fake_quant_int8, unpacked_twin

__all__ = ["CLASS_LABELS", "NBITS_BLOCK_SIZES", "NBitsTernaryLinear", "PackedTernaryWeight",
           "Preprocess", "export_graph", "nbits_blob", "onnx_metadata", "pack_codes",
           "unpack_codes", "uses_matmul_nbits"]

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


NBITS_BLOCK_SIZES = (16, 32, 64, 128, 256)
"""Block sizes onnxruntime's CPU ``MatMulNBits`` kernel accepts with ``bits=2``."""


def nbits_block_size(n: int, k: int) -> int:
    """The block size of :data:`NBITS_BLOCK_SIZES` that stores an ``n x k`` ternary weight in
    the fewest bytes (2-bit codes padded to whole blocks plus a float32 scale a block)."""
    def size(bs: int) -> int:
        blocks = -(-k // bs)
        return n * blocks * (bs // 4 + 4)
    return min(NBITS_BLOCK_SIZES, key=lambda bs: (size(bs), bs))


def nbits_blob(trits: torch.Tensor, block_size: int) -> torch.Tensor:
    """``[n, k]`` trits as ``MatMulNBits``'s ``B`` input with ``bits=2``: ``uint8 [n,
    ceil(k / block_size), block_size / 4]``, codes ``trit + 2`` (the default zero point 2
    makes ``code - 2`` the trit), element ``4j + i`` of a block in bits ``2i, 2i+1`` of its
    byte ``j``; K is padded with zero trits to whole blocks."""
    n, k = trits.shape
    blocks = -(-k // block_size)
    codes = torch.full((n, blocks * block_size), 2, dtype=torch.uint8)
    codes[:, :k] = (trits.to(torch.int16) + 2).to(torch.uint8)
    c = codes.view(n, blocks, block_size // 4, 4)
    return c[..., 0] | (c[..., 1] << 2) | (c[..., 2] << 4) | (c[..., 3] << 6)


class _MatMulNBits(torch.autograd.Function):
    """``x @ dequant(blob)^T``: in eager mode from the trits it was built from, in the ONNX
    graph one ``com.microsoft.MatMulNBits`` node."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, blob: torch.Tensor, scales: torch.Tensor,
                weight: torch.Tensor, k: int, n: int, block_size: int) -> torch.Tensor:
        return F.linear(x, weight)

    @staticmethod
    def symbolic(g, x, blob, scales, weight, k: int, n: int, block_size: int):  # type: ignore[no-untyped-def]
        out = g.op("com.microsoft::MatMulNBits", x, blob, scales, K_i=k, N_i=n, bits_i=2,
                   block_size_i=block_size)
        sizes = x.type().varyingSizes()      # the exporter's shape inference: [..., n]
        if sizes:
            out.setType(x.type().with_sizes([*sizes[:-1], n]))
        return out


class NBitsTernaryLinear(nn.Module):
    """A frozen ternary linear layer as ``MatMulNBits(x, codes, scales) + bias`` followed by
    the fused activation/residual: the ONNX graph stores 2 bits a weight and onnxruntime
    computes with them directly."""

    def __init__(self, trits: torch.Tensor, scale: torch.Tensor,
                 bias: torch.Tensor | None, act_int8: bool = False) -> None:
        super().__init__()
        n, k = (int(d) for d in trits.shape)
        self.n, self.k = n, k
        self.act_int8 = act_int8   # per-token int8 activations, as float ops before the node
        self.block_size = nbits_block_size(n, k)
        blocks = -(-k // self.block_size)
        s = scale.detach().float().reshape(-1)
        s = s.expand(n) if s.numel() == 1 else s
        self.register_buffer("packed", nbits_blob(trits, self.block_size))
        self.register_buffer("scales", s[:, None].expand(n, blocks).contiguous())
        # what the eager forward multiplies with (not a graph input: the symbolic drops it)
        self._weight = (trits.float() * s[:, None]).contiguous()
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(),
                                                          requires_grad=False)

    def forward(self, x: torch.Tensor, activation: str | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.act_int8:
            x = token_fake_quant_int8(x)
        y = _MatMulNBits.apply(x, self.packed, self.scales, self._weight, self.k, self.n,
                               self.block_size)
        if self.bias is not None:
            y = y + self.bias
        return _epilogue(y, activation, residual)


def _nbits_candidate(layer: nn.Module, plain: nn.Module) -> bool:
    """A frozen ternary linear layer whose float twin is ``x W^T + b`` (no BitLinear RMSNorm),
    with fp32 or per-token int8 activations: ``MatMulNBits``, after the activations' fake
    quantization in float ops for the second."""
    from ..runtime import TernaryLinear
    return (isinstance(layer, TernaryLinear)
            and getattr(layer, "act_quant", "none") in ("none", "int8")
            and isinstance(plain, FloatLinear) and plain.rms_eps is None
            and plain.act_int8 == (layer.act_quant == "int8"))


def _ternary_layers(model: nn.Module) -> dict[str, nn.Module]:
    from ..runtime import TernaryConv2d, TernaryLinear
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (TernaryLinear, TernaryConv2d)) and m.frozen}


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def export_graph(model: nn.Module, info: RunInfo, raw_shape: list[int], *,
                 packed: bool = False, matmul_nbits: bool = False) -> nn.Module:
    """``Preprocess`` then the model as exportable torch layers (see the module doc);
    ``matmul_nbits`` (with ``packed``) puts plain ternary linear layers in
    ``com.microsoft.MatMulNBits`` nodes."""
    assert info.input_shape is not None
    if matmul_nbits and not packed:
        raise ValueError("matmul_nbits needs packed=True")
    pre = Preprocess(*info.normalization, raw_shape, info.input_shape)
    plain = unpacked_twin(model) if info.variant == "ternary" else model
    if packed:
        for name, layer in _ternary_layers(model).items():
            q = layer.ternary_weight()
            twin = plain.get_submodule(name)
            if matmul_nbits and _nbits_candidate(layer, twin):
                _set(plain, name, NBitsTernaryLinear(q.trits.reshape(layer.out_dim, -1),
                                                     q.scale, twin.bias, twin.act_int8))
                continue
            weight = PackedTernaryWeight(q.trits, q.scale)
            _set(plain, name, _PackedLinear(twin, weight))
    return nn.Sequential(pre, plain).eval()


def uses_matmul_nbits(graph: nn.Module) -> int:
    """How many ``MatMulNBits`` layers ``export_graph`` put in ``graph``."""
    return sum(isinstance(m, NBitsTernaryLinear) for m in graph.modules())


def onnx_metadata(info: RunInfo, raw_shape: list[int], *, packed: bool,
                  matmul_nbits: bool = False) -> dict[str, str]:
    """The ``metadata_props`` of an exported ONNX file: what a consumer needs to feed it
    and read its answer, and what wrote it."""
    labels = CLASS_LABELS.get(info.dataset)
    if labels is None or len(labels) != info.num_classes:
        labels = [str(i) for i in range(info.num_classes)]
    out = {
        "tritium.version": tritium.__version__,
        "tritium.model": info.entry,
        # the data's name, not the path it had on the machine that trained it
        "tritium.dataset": Path(info.dataset).stem if info.dataset.endswith(".npz")
        else info.dataset,
        "tritium.labels": json.dumps(labels),
        "tritium.normalization": json.dumps({"mean": info.normalization[0],
                                             "std": info.normalization[1],
                                             "applied_in_graph": True}),
        "tritium.input_shape": json.dumps(["batch", *raw_shape]),
        "tritium.model_input_shape": json.dumps(["batch", *(info.input_shape or [])]),
        "tritium.variant": info.variant,
        "tritium.weights": ("ternary, 2-bit codes (trit + 1, four a uint8, low bits first) "
                            "unpacked in the graph, times a float scale per output channel"
                            if packed else "float32 (ternary weights as trits * scale)"
                            if info.variant == "ternary" else "float32 (the fp32 model)"),
    }
    if matmul_nbits:
        out["tritium.weights"] = ("ternary: linear layers as com.microsoft.MatMulNBits "
                                  "(bits=2, codes trit + 2, default zero point 2, one float "
                                  "scale a block), convolutions as " + out["tritium.weights"])
    if info.variant == "ternary":
        out["tritium.format"] = info.format
    return out

