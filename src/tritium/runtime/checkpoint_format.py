"""Checkpoint formats: the metadata encodings of every version (1-4), dense trits, the
file's metadata records (:class:`TensorInfo`, :class:`CheckpointMetadata`) and
:class:`CheckpointError`. See :mod:`tritium.runtime.checkpoint`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tritium.cachedir import parse_json

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


def _own_keys(names: Any, prefix: str) -> list[str]:
    """The names of tensors directly owned by the module at ``prefix``."""
    dot = f"{prefix}." if prefix else ""
    return [n for n in names if n.startswith(dot) and "." not in n[len(dot) :]]
