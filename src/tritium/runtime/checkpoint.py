"""Checkpoints: safetensors files with Tritium metadata. Never pickle.

A checkpoint is a model's ``state_dict`` (frozen layers: packed uint8/int8 data, float32
scales, bias; unfrozen layers: float tensors) in the safetensors format. Its header's
``__metadata__`` (string to string) carries:

* ``tritium.checkpoint_version`` -- :data:`CHECKPOINT_VERSION`;
* ``tritium.version`` -- the Tritium version that wrote it;
* ``tritium.packing_version`` -- :data:`tritium.runtime.packing.FORMAT_VERSION`;
* ``tritium.source_hash`` -- the hash of the ``.tri`` source (empty if unknown);
* ``tritium.tensors`` -- JSON: per tensor, the layer kind, the logical shape, the packing
  format (``"none"``, ``"t2"``, ``"t1.6"``, ``"int8"``, ``"int4"``) and the quantizer;
* ``tritium.extra`` -- JSON object of caller-supplied strings;
* ``tritium.digest`` -- sha256 over every tensor's name, dtype, shape and bytes, so that a
  corrupted data section is detected.

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
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

import tritium
from tritium.cachedir import atomic_write_bytes
from tritium.runtime.layers import TernaryLayer, TritiumLayer, tritium_layers
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
]

CHECKPOINT_VERSION = 2
"""Version of the checkpoint layout (metadata keys and their meaning). Version 2 stores
ternary weights densely (see :func:`encode_dense`); version 1 files (stored in the kernel
layout) are still read."""

_READABLE_VERSIONS = (1, 2)
_DENSE = {"t2", "t1.6"}


_Z = "zlib:"
_MAX_JSON = 64 * 1024 * 1024


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
        text = raw.decode("utf-8", errors="strict")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(str(e)) from None


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
_KEY_VERSION = "tritium.checkpoint_version"


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
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ValueError(f"logical_shape {shape!r} is not a list of non-negative ints")
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

    @property
    def frozen(self) -> bool:
        """True if any tensor is stored packed."""
        return any(t.packing_format != "none" for t in self.tensors.values())

    @property
    def packing_formats(self) -> set[str]:
        return {t.packing_format for t in self.tensors.values()} - {"none"}


# --- writing ----------------------------------------------------------------------------


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        head = f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode()
        h.update(len(head).to_bytes(8, "little"))
        h.update(head)
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


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


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    source_hash: str | None = None,
    extra: dict[str, str] | None = None,
) -> CheckpointMetadata:
    """Write ``model.state_dict()`` and the Tritium metadata to ``path`` atomically.

    Returns the metadata written. ``extra`` values must be strings.
    """
    path = Path(path)
    extra = dict(extra or {})
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise CheckpointError(path, f"extra metadata must map str to str; bad keys: {bad}")
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
    meta = CheckpointMetadata(
        checkpoint_version=CHECKPOINT_VERSION,
        tritium_version=tritium.__version__,
        packing_version=FORMAT_VERSION,
        source_hash=source_hash,
        tensors=infos,
        extra=extra,
    )
    header = {
        "format": "pt",
        _KEY_VERSION: str(CHECKPOINT_VERSION),
        "tritium.version": meta.tritium_version,
        "tritium.packing_version": str(FORMAT_VERSION),
        "tritium.source_hash": source_hash or "",
        "tritium.tensors": _pack_json({k: v.to_json() for k, v in infos.items()}),
        "tritium.extra": _pack_json(extra),
        "tritium.digest": _tensor_digest(state),
    }
    try:
        blob = safetensors.torch.save(state, metadata=header)
    except Exception as e:  # safetensors reports unsupported dtypes etc. in its own types
        raise CheckpointError(path, f"cannot serialize the state_dict: {e}") from e
    atomic_write_bytes(path, blob)
    return meta


# --- reading ----------------------------------------------------------------------------


def _parse_structure(path: Path, data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
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
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"header is not valid JSON ({e}): corrupted file") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "header is not a JSON object: corrupted file")
    meta = header.pop("__metadata__", None)
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
        if dtype not in _DTYPES:
            raise CheckpointError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise CheckpointError(path, f"tensor {name!r}: malformed shape {shape!r}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            or not 0 <= offs[0] <= offs[1]
        ):
            raise CheckpointError(path, f"tensor {name!r}: malformed data_offsets {offs!r}")
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


def _parse_metadata(path: Path, meta: dict[str, str], names: set[str]) -> CheckpointMetadata:
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
    tensors: dict[str, TensorInfo] = {}
    for name, obj in raw_tensors.items():
        try:
            info = TensorInfo.from_json(obj)
        except ValueError as e:
            raise CheckpointError(path, f"metadata of tensor {name!r}: {e}") from None
        if info.packing_format not in PACKING_FORMATS:
            raise CheckpointError(
                path,
                f"tensor {name!r} uses unknown packing format {info.packing_format!r} "
                f"(known: {', '.join(PACKING_FORMATS)})",
            )
        tensors[name] = info
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
        tritium_version=meta.get("tritium.version", ""),
        packing_version=packing_version,
        source_hash=meta.get("tritium.source_hash") or None,
        tensors=tensors,
        extra=dict(extra),
    )


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
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file: {e.strerror or e}") from None
    header, meta = _parse_structure(path, data)
    metadata = _parse_metadata(path, meta, set(header))
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
    digest = meta.get("tritium.digest")
    if digest is None or _tensor_digest(state) != digest:
        raise CheckpointError(
            path, "tensor data does not match the stored digest: the file is corrupted"
        )
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


def read_checkpoint_metadata(path: str | Path) -> CheckpointMetadata:
    """Validate a checkpoint and return its metadata (raises :class:`CheckpointError`)."""
    return _read(Path(path))[1]


def _own_keys(names: Any, prefix: str) -> list[str]:
    """The names of tensors directly owned by the module at ``prefix``."""
    dot = f"{prefix}." if prefix else ""
    return [n for n in names if n.startswith(dot) and "." not in n[len(dot) :]]


def _freeze_plan(
    path: Path, model: nn.Module, metadata: CheckpointMetadata
) -> list[tuple[str, TritiumLayer, str | None]]:
    """The unfrozen layers that must become frozen skeletons (and their formats) to take the
    checkpoint; raises for layers frozen differently from what the checkpoint stores."""
    plan: list[tuple[str, TritiumLayer, str | None]] = []
    for prefix, layer in tritium_layers(model):
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
        if not layer.frozen:
            plan.append((prefix, layer, fmt if isinstance(layer, TernaryLayer) else None))
        elif layer.packing_format != fmt:
            raise CheckpointError(
                path,
                f"layer {where!r} is frozen as {layer.packing_format!r} but the checkpoint "
                f"stores it as {fmt!r}",
            )
    return plan


def _expected_tensors(
    model: nn.Module, plan: list[tuple[str, TritiumLayer, str | None]]
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Shapes and dtypes of ``model.state_dict()`` once ``plan`` is applied (model untouched)."""
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    for prefix, layer, fmt in plan:
        for name in _own_keys(list(expected), prefix):
            del expected[name]
        probe = copy.deepcopy(layer).freeze_skeleton(fmt)
        dot = f"{prefix}." if prefix else ""
        for k, v in probe.state_dict().items():
            expected[dot + k] = (tuple(v.shape), v.dtype)
    return expected


def load_checkpoint(
    path: str | Path,
    model: nn.Module | None = None,
    *,
    strict: bool = True,
) -> tuple[dict[str, torch.Tensor], CheckpointMetadata]:
    """Read and validate a checkpoint; optionally load it into ``model``.

    Returns ``(state_dict, metadata)``. With a ``model``: unfrozen Tritium layers whose
    tensors are stored packed are to become frozen skeletons of the stored format; every
    stored tensor's shape is checked against what the model expects (always), missing and
    unexpected keys are errors when ``strict``; only when all checks pass are the layers
    frozen and the tensors loaded, so a rejected checkpoint leaves the model untouched.
    Any problem raises :class:`CheckpointError` (a ``ValueError``).
    """
    path = Path(path)
    state, metadata = _read(path)
    if model is None:
        return state, metadata
    plan = _freeze_plan(path, model, metadata)
    expected = _expected_tensors(model, plan)
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
    for _, layer, fmt in plan:
        layer.freeze_skeleton(fmt)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(path, f"cannot load into the model: {e}") from None
    return state, metadata
