"""Checkpoints: safetensors files with Tritium metadata. Never pickle.

A checkpoint is a model's ``state_dict`` (frozen layers: packed ternary/int8/int4 data,
scales, bias; unfrozen layers: float tensors) in the safetensors format, with the Tritium
metadata in the header's ``__metadata__`` (string to string). Version 4 (written now) keeps
every field in a key of its own, as plain text or compact JSON, so that any safetensors
tool shows it:

* ``tritium.checkpoint_version`` -- :data:`CHECKPOINT_VERSION`;
* ``tritium.version``, ``tritium.packing_version`` -- the writer and its trit packing;
* ``tritium.layers`` -- ``{module: {"kind": class name, "quantizer": name}}`` for every
  module owning a tensor;
* ``tritium.packed`` -- ``{tensor: {"format": "t2", "shape": [logical shape]}}``;
* ``tritium.float16`` -- the tensors stored as float16; ``tritium.folds`` -- the batch
  norms folded into frozen layers;
* ``tritium.digest`` -- sha256 (128 bits) over every stored tensor's name, dtype, shape
  and bytes; ``tritium.source_hash`` -- only when it is not the hash of
  ``tritium.source``;
* the caller's ``extra`` strings, each under its own key (``tritium.source``,
  ``tritium.normalization``...).

What is stored (see docs/formats.md): ternary weights densely, 5 trits a byte
(:func:`encode_dense`); a frozen ternary layer's ``weight_scale`` and ``bias`` as float16
when every value is a normal float16 number (relative rounding error at most 2**-11), else
as float32; everything else as the model holds it. Reading restores the in-memory layout
(kernel packing, float32 scales). Versions 1 (kernel layout, plain metadata keys) and 2
(dense trits, one zlib JSON per metadata key) and 3 (the version 4 fields in one
deflate+base85 key) are still read.

:func:`load_checkpoint` validates the file structure itself before handing it to
safetensors, and turns every problem into a :class:`CheckpointError` that names the file
and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

import tritium
from tritium.argcheck import entry_point_problem
from tritium.cachedir import UnsafeFileError, atomic_write_bytes, parse_json, read_file_bounded
from tritium.runtime.layers import (
    TernaryLayer,
    TritiumLayer,
    folded_norm_replacement,
    tritium_layers,
)
from tritium.runtime.packing import (
    FORMAT_VERSION,
    PackedTernary,
    pack_ternary,
    packed_row_bytes,
    unpack_ternary,
)

__all__ = [
    "CHECKPOINT_VERSION",
    "PACKING_FORMATS",
    "CheckpointError",
    "TensorInfo",
    "CheckpointMetadata",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "read_state_dict",
    "entry_point_problem",
]

CHECKPOINT_VERSION = 4
"""Version of the checkpoint layout (metadata keys and their meaning). Version 4 keeps
every Tritium metadata field in its own ``__metadata__`` key as a plain string (JSON where
structured), readable by any safetensors tool; version 3 (the same fields in one
deflate+base85 key), version 2 (dense trits, one zlib JSON per metadata key, see
:func:`encode_dense`) and version 1 (kernel layout) files are still read."""

_READABLE_VERSIONS = (1, 2, 3, 4)
_DENSE = {"t2", "t1.6"}


_Z = "zlib:"
_MAX_JSON = 64 * 1024 * 1024
# Tritium's metadata nests at most 4 levels ({"t": {name: [format, [shape]]}}); the safetensors
# header 3 ({name: {"shape": [...]}}). Deeper JSON is not a checkpoint (and would be a
# RecursionError for the parser).
_MAX_META_DEPTH = 8
_MAX_HEADER_DEPTH = 3
_MAX_RANK = 32
_HEX32 = re.compile(r"[0-9a-f]{32}")


def _pack_json(obj: Any) -> str:
    """JSON for a header field, zlib-compressed and base64-encoded (`zlib:` prefix): the
    per-tensor metadata and the program source would otherwise dominate small checkpoints."""
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return _Z + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def _unpack_json(text: str) -> Any:
    """Read a header field written by :func:`_pack_json` (or plain JSON, as in version 1).
    Raises ValueError for anything malformed."""
    if text.startswith(_Z):
        try:
            d = zlib.decompressobj()
            raw = d.decompress(base64.b64decode(text[len(_Z):], validate=True), _MAX_JSON)
            if d.unconsumed_tail:
                raise ValueError("compressed metadata is too large")
        except (zlib.error, binascii.Error) as e:
            raise ValueError(f"compressed metadata is damaged: {e}") from None
        return parse_json(raw, max_depth=_MAX_META_DEPTH)
    return parse_json(text, max_depth=_MAX_META_DEPTH)


# The preset dictionary of version 3's metadata deflate stream: the words Tritium metadata
# and .tri sources are made of, so a small checkpoint's metadata costs a fraction of what a
# dictionary-less stream does. Part of the format: version 3 files decode only with exactly
# these bytes (a different dictionary needs a new checkpoint version).
_V3_ZDICT = (
    b'{"d":"","f16":[],"fold":{},"h":"","k":{},"p":1,"q":{},"t":{},"v":"","x":{}}'
    b'"BatchNorm1d","BatchNorm2d","LayerNorm","Linear","Conv2d","FloatLinear","FloatConv2d",'
    b'"Int8Linear","Int4Linear","BitLinear","TernaryConv2d","TernaryLinear","Embedding",'
    b'"absmean","stochastic","threshold","int8-absmax","int4-absmax","twn",'
    b'"t1.6","t2","int8","int4",".running_mean",".running_var",".num_batches_tracked",'
    b'".weight_packed",".weight_scale",".weight_int8",".weight",".bias",'
    b'"tritium.dataset":"digits","tritium.entry":"","tritium.epoch":"","tritium.file":"'
    b'examples/","tritium.format":"t2","tritium.hyperparameters":"{}","tritium.input_shape'
    b'":"[","tritium.normalization":"[","tritium.num_classes":"10","tritium.val_accuracy":'
    b'"0.9","tritium.variant":"ternary","fp32","tritium.source":"'
    b"// \n# \nimport \nfn \nblock \nparams { \nmodel \n    layer \n"
    b"    training {\n        optimizer: \\\"adam\\\"\n        learning_rate: 0.0"
    b"\n        epochs: \n        batch_size: 64\n        loss: \\\"cross_entropy\\\"\n    }"
    b"\n    performance { min_accuracy: 0.9, max_size_kb: , max_latency_ms: }\n}\n"
    b": MaxPool2d { kernel_size: 2 }\n    layer : AdaptiveAvgPool2d { output_size: 1 }"
    b"\n    layer : Dropout { p: 0. }\n    layer : Conv2d { in_channels: , out_channels: "
    b", kernel_size: 3, stride: 2, padding: 1, groups: , bias: false }"
    b"\n    layer : Linear { in_features: , out_features: , quantizer: \\\"absmean\\\""
    b", per_channel: true }\n    layer : BatchNorm2d { num_features: }\n"
    b"    layer : TernaryConv2d { in_channels: , out_channels: , kernel_size: 3, padding: 1"
    b" }\n    layer : BatchNorm1d { num_features: }\n    layer : TernaryLinear "
    b"{ in_features: , out_features: , quantizer: \\\"twn\\\" }\n\n"
    b"    forward(x: Tensor[batch, ]) -> Tensor[batch, 10] {\n        x = flatten(x, "
    b"start_dim: 1)\n        out = relu(bn1(conv1(x)))\n        x = relu(\n        "
    b"return (x)\n    }\n"
)


def _pack_v3(obj: Any) -> str:
    """The version 3 ``tritium`` header value: base85 of raw deflate (preset dictionary)
    of compact JSON."""
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _V3_ZDICT)
    return base64.b85encode(c.compress(raw) + c.flush()).decode("ascii")


def _unpack_v3(text: str) -> Any:
    """Read a value written by :func:`_pack_v3`; raises ValueError for anything malformed."""
    try:
        packed = base64.b85decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise ValueError(f"compressed metadata is damaged: {e}") from None
    d = zlib.decompressobj(-15, _V3_ZDICT)
    try:
        raw = d.decompress(packed, _MAX_JSON)
    except zlib.error as e:
        raise ValueError(f"compressed metadata is damaged: {e}") from None
    if d.unconsumed_tail:
        raise ValueError("compressed metadata is too large")
    if not d.eof:
        raise ValueError("compressed metadata is damaged: the stream is incomplete")
    try:
        return parse_json(raw, max_depth=_MAX_META_DEPTH)
    except ValueError as e:
        raise ValueError(f"compressed metadata is damaged: {e}") from None


# Version 4: one plain ``__metadata__`` key per field. The caller's ``extra`` strings are
# keys of their own beside these (so a safetensors tool shows ``tritium.source`` as text);
# they may not use these names.
_V4_KEYS = {
    "tritium.version": "v",          # Tritium version that wrote the file
    "tritium.packing_version": "p",  # decimal int
    "tritium.layers": "L",           # JSON {module: {"kind": ..., "quantizer": ...}}
    "tritium.packed": "t",           # JSON {tensor: {"format": ..., "shape": [...]}}
    "tritium.float16": "f16",        # JSON [tensor, ...] stored as float16
    "tritium.folds": "fold",         # JSON {layer: batch-norm attribute}
    "tritium.digest": "d",           # 32 hex digits over the stored tensors
    "tritium.source_hash": "h",      # optional; absent: sha256 of tritium.source
}
_KEY_VERSION = "tritium.checkpoint_version"
_V4_RESERVED = frozenset(_V4_KEYS) | {_KEY_VERSION, "tritium"}


def _compact(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _v4_header(blob: dict[str, Any]) -> dict[str, str]:
    """The version 4 ``__metadata__`` of the fields :func:`save_checkpoint` gathered in
    ``blob`` (the version 3 field names)."""
    layers = {name: {"kind": kind} for name, kind in blob["k"].items()}
    for name, quant in blob["q"].items():
        layers.setdefault(name, {"kind": "unknown"})["quantizer"] = quant
    header = {
        _KEY_VERSION: "4",
        "tritium.version": blob["v"],
        "tritium.packing_version": str(blob["p"]),
        "tritium.layers": _compact(layers),
        "tritium.packed": _compact({n: {"format": f, "shape": s}
                                    for n, (f, s) in blob["t"].items()}),
        "tritium.float16": _compact(blob["f16"]),
        "tritium.folds": _compact(blob["fold"]),
        "tritium.digest": blob["d"],
    }
    if "h" in blob:
        header["tritium.source_hash"] = blob["h"]
    header.update(blob["x"])
    return header


def _v4_blob(meta: dict[str, str]) -> dict[str, Any]:
    """A version 4 header as the version 3 field dict (checked by :func:`_check_blob`);
    raises ValueError for a field that is not the JSON it must be."""
    blob: dict[str, Any] = {"x": {k: v for k, v in meta.items() if k not in _V4_RESERVED}}
    for key, short in _V4_KEYS.items():
        if key not in meta:
            if key == "tritium.source_hash":
                continue
            raise ValueError(f"the key {key!r} is missing")
        text = meta[key]
        if short in ("v", "d", "h"):
            blob[short] = text
        elif short == "p":
            if not re.fullmatch(r"[0-9]{1,10}", text):
                raise ValueError(f"{key!r} is {_short(text)}, not a decimal integer")
            blob[short] = int(text)
        else:
            try:
                blob[short] = parse_json(text, max_depth=_MAX_META_DEPTH)
            except ValueError as e:
                raise ValueError(f"{key!r} is not valid JSON ({e})") from None
    layers, packed = blob.pop("L"), blob["t"]
    if not isinstance(layers, dict) or not isinstance(packed, dict):
        raise ValueError("'tritium.layers' and 'tritium.packed' must be JSON objects")
    blob["k"], blob["q"] = {}, {}
    for name, entry in layers.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str) or \
                not isinstance(entry.get("quantizer", ""), str) or \
                set(entry) - {"kind", "quantizer"}:
            raise ValueError(f"'tritium.layers' entry {name!r} is not "
                             '{"kind": str[, "quantizer": str]}')
        blob["k"][name] = entry["kind"]
        if "quantizer" in entry:
            blob["q"][name] = entry["quantizer"]
    for name, entry in packed.items():
        if not isinstance(entry, dict) or set(entry) != {"format", "shape"}:
            raise ValueError(f"'tritium.packed' entry {name!r} is not "
                             '{"format": str, "shape": [int, ...]}')
        packed[name] = [entry["format"], entry["shape"]]
    return blob


# float16 holds a value to 2**-11 relative error when it is a normal float16 number
_F16_MIN, _F16_MAX = 2.0 ** -14, 65504.0


def _fits_float16(t: torch.Tensor) -> bool:
    """True when every element is zero or a finite value of magnitude in float16's normal
    range, so that storing it as float16 changes it by at most 2**-11 relatively."""
    if t.dtype != torch.float32:
        return False
    a = t.detach().abs()
    nz = a[a != 0]
    return bool(torch.isfinite(a).all()) and (
        nz.numel() == 0 or (float(nz.min()) >= _F16_MIN and float(nz.max()) <= _F16_MAX))


def encode_dense(trits: torch.Tensor) -> torch.Tensor:
    """Trits in {-1, 0, 1} as a dense base-3 byte stream: 5 trits per byte, byte =
    sum_i (t[5j+i] + 1) * 3**i, over the flattened tensor, the last byte padded with zero
    trits. 1.6 bits per trit in the file, whatever the kernel layout pads in memory."""
    t = trits.reshape(-1).to(torch.int16) + 1
    pad = (-t.numel()) % 5
    if pad:
        t = torch.cat([t, torch.ones(pad, dtype=torch.int16)])
    t = t.view(-1, 5)
    out = t[:, 0] + 3 * t[:, 1] + 9 * t[:, 2] + 27 * t[:, 3] + 81 * t[:, 4]
    return out.to(torch.uint8)


def decode_dense(data: torch.Tensor, count: int) -> torch.Tensor:
    """The inverse of :func:`encode_dense`: `count` trits as int8. Raises ValueError for a
    byte above 242 or a non-zero padding trit."""
    b = data.reshape(-1).to(torch.int16)
    if b.numel() != -(-count // 5):
        raise ValueError(f"{b.numel()} bytes cannot hold {count} trits")
    if b.numel() and int(b.max()) > 242:
        raise ValueError(f"byte {int(b.argmax())} is {int(b.max())}, not five base-3 digits")
    digits = torch.empty((b.numel(), 5), dtype=torch.int16)
    for i in range(5):
        digits[:, i] = b % 3
        b = b // 3
    flat = digits.reshape(-1)
    if flat.numel() > count and bool((flat[count:] != 1).any()):
        raise ValueError("the padding after the last trit is not zero")
    return (flat[:count] - 1).to(torch.int8)

PACKING_FORMATS: tuple[str, ...] = ("none", "t2", "t1.6", "int8", "int4")
"""Packing formats a checkpoint tensor may declare (``"none"``: stored as is)."""

_DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "BOOL": (torch.bool, 1),
    "U8": (torch.uint8, 1),
    "I8": (torch.int8, 1),
    "I16": (torch.int16, 2),
    "U16": (torch.uint16, 2),
    "I32": (torch.int32, 4),
    "U32": (torch.uint32, 4),
    "I64": (torch.int64, 8),
    "U64": (torch.uint64, 8),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F32": (torch.float32, 4),
    "F64": (torch.float64, 8),
}
_MAX_HEADER = 100 * 1024 * 1024


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value from a file, cut to ``limit`` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read: the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"checkpoint {self.path}: {problem}")


@dataclass(frozen=True)
class TensorInfo:
    """What the metadata says about one stored tensor."""

    layer_kind: str
    """Class name of the module owning the tensor (``"TernaryLinear"``, ``"BatchNorm1d"``...)."""
    logical_shape: tuple[int, ...]
    """Unpacked shape: the weight's shape for packed data, the tensor's own shape otherwise."""
    packing_format: str
    """One of :data:`PACKING_FORMATS`."""
    quantizer: str
    """The owning layer's weight quantizer, or ``"none"``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "layer_kind": self.layer_kind,
            "logical_shape": list(self.logical_shape),
            "packing_format": self.packing_format,
            "quantizer": self.quantizer,
        }

    @classmethod
    def from_json(cls, obj: Any) -> TensorInfo:
        """Parse one entry; raises ``ValueError`` describing a malformed one."""
        if not isinstance(obj, dict):
            raise ValueError("entry is not a JSON object")
        try:
            shape = obj["logical_shape"]
            kind, fmt, quant = obj["layer_kind"], obj["packing_format"], obj["quantizer"]
        except KeyError as e:
            raise ValueError(f"entry lacks the key {e.args[0]!r}") from None
        if not isinstance(shape, list) or len(shape) > _MAX_RANK or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ValueError(f"logical_shape {_short(shape)} is not a list of at most "
                             f"{_MAX_RANK} non-negative ints")
        if not all(isinstance(v, str) for v in (kind, fmt, quant)):
            raise ValueError("layer_kind, packing_format and quantizer must be strings")
        return cls(kind, tuple(shape), fmt, quant)


@dataclass(frozen=True)
class CheckpointMetadata:
    """The Tritium header of a checkpoint."""

    checkpoint_version: int
    tritium_version: str
    packing_version: int
    source_hash: str | None
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    folds: dict[str, str] = field(default_factory=dict)
    """Frozen layers with a batch norm folded into them: layer name -> the name of the
    sibling attribute that held the batch norm (``""`` when none was recorded)."""
    float16: frozenset[str] = frozenset()
    """Tensors stored as float16 in the file (read back as float32)."""

    @property
    def frozen(self) -> bool:
        """True if any tensor is stored packed."""
        return any(t.packing_format != "none" for t in self.tensors.values())

    @property
    def packing_formats(self) -> set[str]:
        return {t.packing_format for t in self.tensors.values()} - {"none"}


# --- writing ----------------------------------------------------------------------------


def _tensor_digest(tensors: dict[str, torch.Tensor], size: int = 32) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        head = f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode()
        h.update(len(head).to_bytes(8, "little"))
        h.update(head)
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()[: 2 * size]


def _describe(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, TensorInfo]:
    modules = dict(model.named_modules())
    infos: dict[str, TensorInfo] = {}
    for key, tensor in state.items():
        prefix, _, leaf = key.rpartition(".")
        owner = modules.get(prefix)
        kind = type(owner).__name__ if owner is not None else "unknown"
        shape = tuple(tensor.shape)
        fmt, quant = "none", "none"
        if isinstance(owner, TritiumLayer):
            quant = owner.quantizer_name
            packed_leaf = "weight_int8" if owner.packing_format == "int8" else "weight_packed"
            if owner.frozen and leaf == packed_leaf:
                fmt = owner.packing_format or "none"
                shape = tuple(owner.weight_shape)
        infos[key] = TensorInfo(kind, shape, fmt, quant)
    return infos


def _folds(model: nn.Module) -> dict[str, str]:
    return {name: layer.folded_bn for name, layer in tritium_layers(model)
            if isinstance(layer, TernaryLayer) and layer.folded}


def _source_hash_of(extra: dict[str, str]) -> str | None:
    src = extra.get("tritium.source")
    return None if src is None else hashlib.sha256(src.encode()).hexdigest()


def _module_and_path(a: Any, b: Any, what: str) -> tuple[nn.Module, Path]:
    """``(model, path)`` from the two leading arguments in either order: Tritium's
    ``(path, model)`` or ``torch.save``'s ``(obj, path)``."""
    def is_path(v: Any) -> bool:
        return isinstance(v, str | bytes) or hasattr(v, "__fspath__")

    if isinstance(b, nn.Module) and is_path(a):
        return b, Path(os.fsdecode(a))
    if isinstance(a, nn.Module) and is_path(b):
        return a, Path(os.fsdecode(b))
    hint = ("; a state_dict is not enough: pass the nn.Module itself (its layers give the "
            "packing metadata)" if isinstance(a, dict) or isinstance(b, dict) else "")
    raise TypeError(f"{what} takes an nn.Module and a file path, in either order "
                    f"({what}(model, path) as torch.save, or {what}(path, model)); got "
                    f"{type(a).__name__} and {type(b).__name__}{hint}")


def _run_extra(path: Path, model: nn.Module, entry_point: str | None,
               entry_kwargs: dict[str, Any] | None, dataset: str | None,
               input_shape: Any, normalization: Any, num_classes: int | None
               ) -> dict[str, str]:
    """The ``extra`` strings that let ``tritium eval/predict/export`` rebuild a model from
    Python code and prepare its inputs (validated again when read)."""
    out: dict[str, str] = {}
    if entry_point is not None:
        problem = entry_point_problem(entry_point)
        if problem is not None:
            raise CheckpointError(path, f"entry_point: {problem}")
        out["tritium.python_entry"] = entry_point
        try:
            out["tritium.python_kwargs"] = json.dumps(dict(entry_kwargs or {}), sort_keys=True,
                                                      allow_nan=False)
        except (TypeError, ValueError) as e:
            raise CheckpointError(path, f"entry_kwargs must be JSON values: {e}") from None
        if not all(isinstance(k, str) and k.isidentifier() for k in (entry_kwargs or {})):
            raise CheckpointError(path, "entry_kwargs keys must be parameter names")
        out["tritium.variant"] = "ternary" if tritium_layers(model) else "fp32"
    elif entry_kwargs:
        raise CheckpointError(path, "entry_kwargs without an entry_point")
    if dataset is not None:
        out["tritium.dataset"] = str(dataset)
    if input_shape is not None:
        out["tritium.input_shape"] = json.dumps([int(d) for d in input_shape])
    if normalization is not None:
        mean, std = normalization
        out["tritium.normalization"] = json.dumps([float(mean), float(std)])
    if num_classes is not None:
        out["tritium.num_classes"] = str(int(num_classes))
    record = getattr(model, "tritium_ternarize", None)
    if isinstance(record, list) and record:
        out["tritium.ternarize"] = json.dumps(record, sort_keys=True)
    return out


def _stored_state(model: nn.Module, float16_scales: bool = True
                  ) -> tuple[dict[str, torch.Tensor], dict[str, TensorInfo], set[str]]:
    """The tensors a checkpoint of ``model`` stores (dense trits, float16 scales and biases
    where they fit), their metadata, and the names stored as float16."""
    state = {
        k: v.detach().to("cpu").contiguous().clone()
        for k, v in model.state_dict().items()
        if isinstance(v, torch.Tensor)
    }
    infos = _describe(model, state)
    for name, info in infos.items():
        if info.packing_format in _DENSE:
            n, k = info.logical_shape[0], math.prod(info.logical_shape[1:])
            trits = unpack_ternary(PackedTernary(info.packing_format, state[name], (n, k)))
            state[name] = encode_dense(trits)
    half: set[str] = set()
    if float16_scales:
        for prefix, layer in tritium_layers(model):
            if not (isinstance(layer, TernaryLayer) and layer.frozen):
                continue
            for name in _own_keys(state, prefix):
                if name.rpartition(".")[2] in ("weight_scale", "bias") \
                        and _fits_float16(state[name]):
                    state[name] = state[name].to(torch.float16)
                    half.add(name)
    return state, infos, half


def stored_tensor_bytes(model: nn.Module, float16_scales: bool = True) -> dict[str, int]:
    """The bytes each tensor of ``model`` takes in a checkpoint :func:`save_checkpoint`
    writes (the file less its header is their sum)."""
    state, _, _ = _stored_state(model, float16_scales)
    return {k: v.numel() * v.element_size() for k, v in state.items()}


def save_checkpoint(
    path: str | Path | nn.Module,
    model: nn.Module | str | Path,
    *,
    source_hash: str | None = None,
    extra: dict[str, str] | None = None,
    float16_scales: bool = True,
    entry_point: str | None = None,
    entry_kwargs: dict[str, Any] | None = None,
    dataset: str | None = None,
    input_shape: Any = None,
    normalization: tuple[float, float] | None = None,
    num_classes: int | None = None,
) -> CheckpointMetadata:
    """Write ``model.state_dict()`` and the Tritium metadata to ``path`` atomically.

    The two arguments go in either order: ``save_checkpoint(path, model)`` or, as
    ``torch.save(obj, path)``, ``save_checkpoint(model, path)``.

    Returns the metadata written. ``extra`` values must be strings. With
    ``float16_scales`` (default) a frozen ternary layer's ``weight_scale`` and ``bias`` are
    stored as float16 when every value is a normal float16 number (relative error at most
    2**-11; they are read back as float32); otherwise, and for every other tensor, the
    model's dtype is kept.

    A model not built from a ``.tri`` program is rebuilt by ``tritium eval/predict/export``
    from ``entry_point``, ``"package.module:callable"`` (called with ``entry_kwargs``, JSON
    values, it returns the model; the CLI runs it only with ``--trust-entry-point``), then
    ternarized again as the model's :func:`~tritium.runtime.ternarize` record says (stored
    automatically). ``dataset``, ``input_shape`` (per sample), ``normalization``
    (``(mean, std)`` of the raw inputs) and ``num_classes`` say how its inputs are prepared.
    """
    model, path = _module_and_path(path, model, "save_checkpoint")
    run = _run_extra(path, model, entry_point, entry_kwargs, dataset, input_shape,
                     normalization, num_classes)
    if extra and (clash := sorted(set(run) & set(extra))):
        raise CheckpointError(path, f"extra repeats what the keyword arguments record: {clash}")
    extra = {**run, **dict(extra or {})}
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise CheckpointError(path, f"extra metadata must map str to str; bad keys: {bad}")
    state, infos, half = _stored_state(model, float16_scales)
    folds = _folds(model)
    meta = CheckpointMetadata(
        checkpoint_version=CHECKPOINT_VERSION,
        tritium_version=tritium.__version__,
        packing_version=FORMAT_VERSION,
        source_hash=source_hash,
        tensors=infos,
        extra=extra,
        folds=folds,
        float16=frozenset(half),
    )
    kinds: dict[str, str] = {}
    quants: dict[str, str] = {}
    for name, info in infos.items():
        prefix = name.rpartition(".")[0]
        kinds[prefix] = info.layer_kind
        if info.quantizer != "none":
            quants[prefix] = info.quantizer
    blob: dict[str, Any] = {
        "v": meta.tritium_version,
        "p": FORMAT_VERSION,
        "k": kinds,
        "q": quants,
        "t": {k: [v.packing_format, list(v.logical_shape)] for k, v in infos.items()
              if v.packing_format != "none"},
        "f16": sorted(half),
        "fold": folds,
        "x": extra,
        "d": _tensor_digest(state, 16),
    }
    # the source hash is left out when the embedded source gives it back
    if source_hash is not None and source_hash != _source_hash_of(extra):
        blob["h"] = source_hash
    elif source_hash is None and "tritium.source" in extra:
        blob["h"] = ""
    clash = sorted(set(extra) & _V4_RESERVED)
    if clash:
        raise CheckpointError(path, f"extra metadata keys {clash} are reserved for the "
                                    "checkpoint format")
    header = _v4_header(blob)
    try:
        data = safetensors.torch.save(state, metadata=header)
    except Exception as e:  # safetensors reports unsupported dtypes etc. in its own types
        raise CheckpointError(path, f"cannot serialize the state_dict: {e}") from e
    atomic_write_bytes(path, data)
    return meta


# --- reading ----------------------------------------------------------------------------


def _parse_structure(path: Path, data: bytes, plain: bool = False
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate the safetensors framing; return (tensor entries, ``__metadata__``)."""
    size = len(data)
    if size < 8:
        raise CheckpointError(
            path, f"file is {size} bytes, too short to hold a safetensors header (truncated?)"
        )
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER:
        raise CheckpointError(
            path,
            f"header length prefix says {n} bytes, more than any real header: "
            "not a safetensors file, or corrupted",
        )
    if 8 + n > size:
        raise CheckpointError(
            path,
            f"header length prefix says {n} bytes but only {size - 8} follow: "
            "the file is truncated or not a safetensors file",
        )
    try:
        header = parse_json(data[8 : 8 + n], max_depth=_MAX_HEADER_DEPTH)
    except ValueError as e:
        raise CheckpointError(path, f"header is not valid JSON ({e}): corrupted file") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "header is not a JSON object: corrupted file")
    meta = header.pop("__metadata__", None)
    if plain and meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise CheckpointError(
            path, "header has no string-to-string __metadata__: not a Tritium checkpoint"
        )
    data_len = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise CheckpointError(path, f"tensor {name!r}: header entry is not an object")
        dtype, shape, offs = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise CheckpointError(path, f"tensor {name!r}: unknown dtype {_short(dtype)}")
        if not isinstance(shape, list) or len(shape) > _MAX_RANK or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise CheckpointError(path, f"tensor {name!r}: malformed shape {_short(shape)}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            or not 0 <= offs[0] <= offs[1]
        ):
            raise CheckpointError(path, f"tensor {name!r}: malformed data_offsets {_short(offs)}")
        need = math.prod(shape) * _DTYPES[dtype][1]
        if offs[1] - offs[0] != need:
            raise CheckpointError(
                path,
                f"tensor {name!r}: shape {shape} of {dtype} needs {need} bytes but its data "
                f"range holds {offs[1] - offs[0]} (header edited or corrupted)",
            )
        if offs[1] > data_len:
            raise CheckpointError(
                path,
                f"tensor {name!r}: data ends at byte {offs[1]} of the data section, which has "
                f"only {data_len} bytes: the file is truncated",
            )
        spans.append((offs[0], offs[1], name))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        if start != pos:
            raise CheckpointError(
                path, f"tensor {name!r}: data range starts at {start}, expected {pos} "
                "(overlapping or gapped data: header edited or corrupted)"
            )
        pos = end
    if pos != data_len:
        raise CheckpointError(
            path,
            f"the data section has {data_len} bytes but the tensors cover {pos} "
            "(trailing bytes: corrupted file)",
        )
    return header, meta


def _v3_blob(path: Path, meta: dict[str, str], version: int) -> dict[str, Any]:
    """The decoded, type-checked Tritium fields of a version 3 or 4 header (in the version
    3 field names)."""
    if version >= 4:
        try:
            blob = _v4_blob(meta)
        except ValueError as e:
            raise CheckpointError(path, f"Tritium metadata is not readable: {e}") from None
    else:
        if "tritium" not in meta:
            raise CheckpointError(path, "version 3 header has no 'tritium' metadata key")
        try:
            blob = _unpack_v3(meta["tritium"])
        except ValueError as e:
            raise CheckpointError(path, f"Tritium metadata is not readable ({e})") from None
    if not isinstance(blob, dict):
        raise CheckpointError(path, "Tritium metadata is not a JSON object")
    want = {"v": str, "p": int, "k": dict, "q": dict, "t": dict, "f16": list, "fold": dict,
            "x": dict, "d": str}
    for key, typ in want.items():
        if not isinstance(blob.get(key), typ) or isinstance(blob.get(key), bool):
            raise CheckpointError(path, f"Tritium metadata field {key!r} is missing or "
                                        f"not a {typ.__name__}")
    if "h" in blob and not isinstance(blob["h"], str):
        raise CheckpointError(path, "Tritium metadata field 'h' is not a string")
    if not 0 <= blob["p"] < 1 << 31:
        raise CheckpointError(path, f"Tritium metadata field 'p' (packing version) "
                                    f"{_short(blob['p'])} is out of range")
    if not _HEX32.fullmatch(blob["d"]):
        raise CheckpointError(path, f"Tritium metadata field 'd' (tensor digest) "
                                    f"{_short(blob['d'])} is not 32 hex digits")
    if len(blob.get("h", "")) > 256:
        raise CheckpointError(path, f"Tritium metadata field 'h' (source hash) "
                                    f"{_short(blob['h'])} is too long")
    if len(blob["v"]) > 64:
        raise CheckpointError(path, f"Tritium metadata field 'v' (Tritium version) "
                                    f"{_short(blob['v'])} is too long")
    for key in ("k", "q", "fold", "x"):
        if not all(isinstance(v, str) for v in blob[key].values()):
            raise CheckpointError(path, f"Tritium metadata field {key!r} maps to non-strings")
    if not all(isinstance(v, str) for v in blob["f16"]):
        raise CheckpointError(path, "Tritium metadata field 'f16' is not a list of names")
    return blob


def _v3_tensors(path: Path, blob: dict[str, Any], header: dict[str, Any]
                ) -> dict[str, TensorInfo]:
    """Per-tensor metadata of a version 3 file, rebuilt from the compact fields and the
    stored shapes."""
    for key in ("t", "f16"):
        unknown = sorted(set(blob[key]) - set(header))
        if unknown:
            raise CheckpointError(path, f"Tritium metadata names tensors that are not stored: "
                                        f"{unknown}")
    for name in blob["f16"]:
        if header[name]["dtype"] != "F16":
            raise CheckpointError(path, f"tensor {name!r} is listed as float16 but stored as "
                                        f"{header[name]['dtype']}")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        prefix = name.rpartition(".")[0]
        kind = blob["k"].get(prefix, "unknown")
        quant = blob["q"].get(prefix, "none")
        if name not in blob["t"]:
            tensors[name] = TensorInfo(kind, tuple(entry["shape"]), "none", quant)
            continue
        packed = blob["t"][name]
        try:
            if not isinstance(packed, list) or len(packed) != 2:
                raise ValueError("entry is not a [format, shape] pair")
            info = TensorInfo.from_json({"layer_kind": kind, "logical_shape": packed[1],
                                         "packing_format": packed[0], "quantizer": quant})
        except ValueError as e:
            raise CheckpointError(path, f"metadata of tensor {name!r}: {e}") from None
        tensors[name] = info
    for layer, bn in blob["fold"].items():
        stored = {tensors[n].packing_format for n in _own_keys(tensors, layer)}
        if not stored & _DENSE or (bn and "." in bn):
            raise CheckpointError(path, f"folded batch norm {bn!r} of layer {layer!r}: the "
                                        "layer is not a stored ternary layer")
    return tensors


def _parse_metadata(path: Path, meta: dict[str, str], header: dict[str, Any]
                    ) -> tuple[CheckpointMetadata, str | None]:
    """The metadata and the stored digest of a checkpoint."""
    names = set(header)
    if _KEY_VERSION not in meta:
        raise CheckpointError(
            path, f"no {_KEY_VERSION!r} in the header metadata: not a Tritium checkpoint"
        )
    try:
        version = int(meta[_KEY_VERSION])
    except ValueError:
        raise CheckpointError(
            path, f"checkpoint version {meta[_KEY_VERSION]!r} is not an integer"
        ) from None
    if version not in _READABLE_VERSIONS:
        raise CheckpointError(
            path,
            f"checkpoint format version {version} is not supported "
            f"(this Tritium {tritium.__version__} reads versions "
            f"{', '.join(map(str, _READABLE_VERSIONS))})",
        )
    if version >= 3:
        blob = _v3_blob(path, meta, version)
        packing_version = blob["p"]
        extra = blob["x"]
        tensors = _v3_tensors(path, blob, header)
        source_hash = (blob["h"] or None) if "h" in blob else _source_hash_of(extra)
        digest: str | None = blob["d"]
        folds, half = dict(blob["fold"]), frozenset(blob["f16"])
        tritium_version = blob["v"]
    else:
        try:
            packing_version = int(meta.get("tritium.packing_version", ""))
        except ValueError:
            raise CheckpointError(path, "missing or malformed 'tritium.packing_version'") from None
        try:
            raw_tensors = _unpack_json(meta.get("tritium.tensors", ""))
            extra = _unpack_json(meta.get("tritium.extra", "{}"))
        except ValueError as e:
            raise CheckpointError(path, f"tensor metadata is not valid JSON ({e})") from None
        if not isinstance(raw_tensors, dict):
            raise CheckpointError(path, "'tritium.tensors' is not a JSON object")
        if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
            raise CheckpointError(path, "'tritium.extra' is not a JSON object of strings")
        tensors = {}
        for name, obj in raw_tensors.items():
            try:
                tensors[name] = TensorInfo.from_json(obj)
            except ValueError as e:
                raise CheckpointError(path, f"metadata of tensor {name!r}: {e}") from None
        source_hash = meta.get("tritium.source_hash") or None
        digest = meta.get("tritium.digest")
        folds, half = {}, frozenset()
        tritium_version = meta.get("tritium.version", "")
    for name, info in tensors.items():
        if info.packing_format not in PACKING_FORMATS:
            raise CheckpointError(
                path,
                f"tensor {name!r} uses unknown packing format {info.packing_format!r} "
                f"(known: {', '.join(PACKING_FORMATS)})",
            )
    if info_gap := names.symmetric_difference(tensors):
        raise CheckpointError(
            path, f"tensor metadata does not match the stored tensors: {sorted(info_gap)}"
        )
    packed = {t.packing_format for t in tensors.values()} & {"t2", "t1.6"}
    if packed and packing_version != FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"ternary packing version {packing_version} is not supported "
            f"(this Tritium reads version {FORMAT_VERSION})",
        )
    return CheckpointMetadata(
        checkpoint_version=version,
        tritium_version=tritium_version,
        packing_version=packing_version,
        source_hash=source_hash,
        tensors=tensors,
        extra=dict(extra),
        folds=folds,
        float16=half,
    ), digest


def _expected_stored_shape(info: TensorInfo, version: int = CHECKPOINT_VERSION
                           ) -> tuple[int, ...]:
    """The stored shape the metadata implies for a tensor."""
    fmt = info.packing_format
    if fmt == "none" or fmt == "int8":
        return info.logical_shape
    if len(info.logical_shape) < 2:
        raise ValueError(f"packed weight with logical shape {info.logical_shape}")
    n, k = info.logical_shape[0], math.prod(info.logical_shape[1:])
    if fmt == "int4":
        return (n, -(-k // 2))
    if version >= 2:
        return (-(-(n * k) // 5),)
    return (n, packed_row_bytes(k, fmt))


_STORED_DTYPE = {"t2": torch.uint8, "t1.6": torch.uint8, "int4": torch.uint8, "int8": torch.int8}


def _read(path: Path) -> tuple[dict[str, torch.Tensor], CheckpointMetadata]:
    try:
        # a regular file, read to the size it has when opened: a FIFO or /dev/zero is an
        # error, never a hang or an exhausted memory
        data = read_file_bounded(path, None, follow_symlinks=True)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except UnsafeFileError as e:
        raise CheckpointError(path, f"{e.reason}: a checkpoint is a .safetensors file") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(path, f"cannot read the file: "
                                    f"{getattr(e, 'strerror', None) or e}") from None
    header, meta = _parse_structure(path, data)
    metadata, digest = _parse_metadata(path, meta, header)
    try:
        state = safetensors.torch.load(data)
    except Exception as e:  # any failure of the decoder is a corrupted file to the user
        raise CheckpointError(path, f"safetensors cannot decode the file: {e}") from None
    for name, tensor in state.items():
        info = metadata.tensors[name]
        try:
            want = _expected_stored_shape(info, metadata.checkpoint_version)
        except ValueError as e:
            raise CheckpointError(path, f"tensor {name!r}: {e}") from None
        if tuple(tensor.shape) != want:
            raise CheckpointError(
                path,
                f"tensor {name!r} has shape {tuple(tensor.shape)} but its metadata "
                f"(logical shape {info.logical_shape}, format {info.packing_format}) implies {want}",
            )
        dtype = _STORED_DTYPE.get(info.packing_format)
        if dtype is not None and tensor.dtype != dtype:
            raise CheckpointError(
                path, f"tensor {name!r} is {tensor.dtype}, but {info.packing_format} data is {dtype}"
            )
    size = 16 if metadata.checkpoint_version >= 3 else 32
    if digest is None or _tensor_digest(state, size) != digest:
        raise CheckpointError(
            path, "tensor data does not match the stored digest: the file is corrupted"
        )
    for name in metadata.float16:
        state[name] = state[name].to(torch.float32)
    if metadata.checkpoint_version >= 2:
        for name, info in metadata.tensors.items():
            if info.packing_format not in _DENSE:
                continue
            n, k = info.logical_shape[0], math.prod(info.logical_shape[1:])
            try:
                trits = decode_dense(state[name], n * k).reshape(n, k)
            except ValueError as e:
                raise CheckpointError(path, f"tensor {name!r}: {e}") from None
            state[name] = pack_ternary(trits, info.packing_format).data
    return state, metadata


def _read_bytes(path: Path) -> bytes:
    try:
        return read_file_bounded(path, None, follow_symlinks=True)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except UnsafeFileError as e:
        raise CheckpointError(path, f"{e.reason}: a checkpoint is a .safetensors file") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(path, f"cannot read the file: "
                                    f"{getattr(e, 'strerror', None) or e}") from None


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor],
                                               CheckpointMetadata | None]:
    """The tensors of a safetensors file, Tritium's or any other (``safetensors.torch.
    save_file(model.state_dict(), path)``), with the Tritium metadata when it has some
    (then fully validated, as :func:`load_checkpoint` does). Never unpickles; every problem
    is a :class:`CheckpointError`."""
    path = Path(os.fsdecode(path))
    data = _read_bytes(path)
    header, meta = _parse_structure(path, data, plain=True)
    if _KEY_VERSION in meta:
        state, metadata = _read(path)
        return state, metadata
    try:
        state = safetensors.torch.load(data)
    except Exception as e:  # any failure of the decoder is a corrupted file to the user
        raise CheckpointError(path, f"safetensors cannot decode the file: {e}") from None
    return state, None


def read_checkpoint_metadata(path: str | Path) -> CheckpointMetadata:
    """Validate a checkpoint and return its metadata (raises :class:`CheckpointError`)."""
    return _read(Path(path))[1]


def _own_keys(names: Any, prefix: str) -> list[str]:
    """The names of tensors directly owned by the module at ``prefix``."""
    dot = f"{prefix}." if prefix else ""
    return [n for n in names if n.startswith(dot) and "." not in n[len(dot) :]]


_Plan = list[tuple[str, TritiumLayer, str | None, bool]]


def _freeze_plan(path: Path, model: nn.Module, metadata: CheckpointMetadata) -> _Plan:
    """The layers that must become frozen skeletons (with their formats; ``None``: already
    frozen) and/or folded skeletons to take the checkpoint; raises for layers frozen
    differently from what the checkpoint stores."""
    plan: _Plan = []
    layers = dict(tritium_layers(model))
    for name in metadata.folds:
        if not isinstance(layers.get(name), TernaryLayer):
            raise CheckpointError(path, f"the checkpoint folds a batch norm into {name!r}, "
                                        "which is not a ternary layer of the model")
    for prefix, layer in layers.items():
        own = _own_keys(metadata.tensors, prefix)
        stored = {metadata.tensors[n].packing_format for n in own} - {"none"}
        where = prefix or "<root>"
        if not stored:
            if layer.frozen and any(n.rsplit(".", 1)[-1] == "weight" for n in own):
                raise CheckpointError(
                    path,
                    f"layer {where!r} is frozen but the checkpoint holds its float weight; "
                    "load into an unfrozen model",
                )
            continue
        if len(stored) > 1:
            raise CheckpointError(path, f"layer {where!r} has tensors in several packings: {sorted(stored)}")
        (fmt,) = stored
        fold = prefix in metadata.folds
        if not layer.frozen:
            plan.append((prefix, layer, fmt if isinstance(layer, TernaryLayer) else None, fold))
            continue
        if layer.packing_format != fmt:
            raise CheckpointError(
                path,
                f"layer {where!r} is frozen as {layer.packing_format!r} but the checkpoint "
                f"stores it as {fmt!r}",
            )
        folded = isinstance(layer, TernaryLayer) and layer.folded
        if folded and not fold:
            raise CheckpointError(path, f"layer {where!r} has a batch norm folded into it but "
                                        "the checkpoint stores it without one; load into an "
                                        "unfrozen model")
        if fold and not folded:
            plan.append((prefix, layer, None, True))
    return plan


def _folded_norms(path: Path, model: nn.Module, metadata: CheckpointMetadata
                  ) -> list[tuple[nn.Module, str, str]]:
    """``(parent, attribute, dotted name)`` of the batch norms the checkpoint folded that
    the model still holds (they become ``nn.Identity``)."""
    modules = dict(model.named_modules())
    out: list[tuple[nn.Module, str, str]] = []
    for layer, bn in metadata.folds.items():
        if not bn:
            continue
        parent_name = layer.rpartition(".")[0]
        parent = modules.get(parent_name)
        dotted = f"{parent_name}.{bn}" if parent_name else bn
        child = None if parent is None else parent._modules.get(bn)
        if parent is not None and bn in parent._modules and (
                child is None or isinstance(child, nn.Identity)):
            continue   # already removed
        if not isinstance(child, nn.modules.batchnorm._BatchNorm):
            raise CheckpointError(
                path, f"the checkpoint folded the batch norm {dotted!r} into {layer!r}, but "
                      f"the model holds {type(child).__name__ if child is not None else 'nothing'}"
                      " there")
        out.append((parent, bn, dotted))
    return out


def _expected_tensors(
    model: nn.Module, plan: _Plan, norms: list[tuple[nn.Module, str, str]]
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Shapes and dtypes of ``model.state_dict()`` once ``plan`` is applied and the folded
    batch norms are gone (model untouched)."""
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    for _, _, dotted in norms:
        for name in _own_keys(list(expected), dotted):
            del expected[name]
    for prefix, layer, fmt, fold in plan:
        for name in _own_keys(list(expected), prefix):
            del expected[name]
        probe = copy.deepcopy(layer)
        if not probe.frozen:
            probe.freeze_skeleton(fmt)
        if fold:
            assert isinstance(probe, TernaryLayer)
            probe.fold_skeleton()
        dot = f"{prefix}." if prefix else ""
        for k, v in probe.state_dict().items():
            expected[dot + k] = (tuple(v.shape), v.dtype)
    return expected


def load_checkpoint(
    path: str | Path | nn.Module,
    model: nn.Module | str | Path | None = None,
    *,
    strict: bool = True,
) -> tuple[dict[str, torch.Tensor], CheckpointMetadata]:
    """Read and validate a checkpoint; optionally load it into ``model``.

    Returns ``(state_dict, metadata)``. With a ``model``: unfrozen Tritium layers whose
    tensors are stored packed are to become frozen skeletons of the stored format, layers
    the checkpoint stores with a batch norm folded into them become folded skeletons and
    that batch norm (named in the metadata) is removed as :func:`~tritium.runtime.
    fold_batchnorms` removes it; every
    stored tensor's shape is checked against what the model expects (always), missing and
    unexpected keys are errors when ``strict``; only when all checks pass are the layers
    frozen and the tensors loaded, so a rejected checkpoint leaves the model untouched.
    Any problem raises :class:`CheckpointError` (a ``ValueError``). The path and the model
    go in either order.
    """
    if model is None:
        if isinstance(path, nn.Module):
            raise TypeError("load_checkpoint takes a file path (and optionally the model to "
                            "load into, in either order); got only an nn.Module")
        path = Path(os.fsdecode(path))
    else:
        model, path = _module_and_path(path, model, "load_checkpoint")
    state, metadata = _read(path)
    if model is None:
        return state, metadata
    plan = _freeze_plan(path, model, metadata)
    norms = _folded_norms(path, model, metadata)
    expected = _expected_tensors(model, plan, norms)
    mismatches: list[str] = []
    for name in sorted(state):
        tensor = state[name]
        if name not in expected:
            continue
        shape, dtype = expected[name]
        if shape != tuple(tensor.shape):
            mismatches.append(
                f"tensor {name!r} has shape {tuple(tensor.shape)} but the model expects {shape}"
            )
        elif dtype in (torch.uint8, torch.int8) and dtype != tensor.dtype:
            mismatches.append(f"tensor {name!r} is {tensor.dtype} but the model expects {dtype}")
    if mismatches:
        raise CheckpointError(path, "; ".join(mismatches))
    if strict:
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing from the checkpoint: {', '.join(missing)}")
            if unexpected:
                parts.append(f"not in the model: {', '.join(unexpected)}")
            raise CheckpointError(path, "; ".join(parts))
    for prefix, layer, fmt, fold in plan:
        if not layer.frozen:
            layer.freeze_skeleton(fmt)
        if fold:
            assert isinstance(layer, TernaryLayer)
            layer.fold_skeleton()
            layer.folded_bn = metadata.folds[prefix]
    for parent, attr, _ in norms:
        setattr(parent, attr, folded_norm_replacement(parent, attr))
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(path, f"cannot load into the model: {e}") from None
    return state, metadata
