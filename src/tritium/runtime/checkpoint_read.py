"""Reading checkpoints: the file structure checked before safetensors sees it, every
version's metadata parsed and validated, the stored tensors restored to the in-memory
layout. See :mod:`tritium.runtime.checkpoint`.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

import tritium
from tritium.cachedir import UnsafeFileError, parse_json, read_file_bounded
from tritium.runtime.checkpoint_format import (
    _DENSE,
    _DTYPES,
    _HEX32,
    _KEY_VERSION,
    _MAX_HEADER,
    _MAX_HEADER_DEPTH,
    _MAX_RANK,
    _READABLE_VERSIONS,
    CHECKPOINT_VERSION,
    PACKING_FORMATS,
    CheckpointError,
    CheckpointMetadata,
    TensorInfo,
    _own_keys,
    _short,
    _unpack_json,
    _unpack_v3,
    _v4_blob,
    decode_dense,
)
from tritium.runtime.checkpoint_write import _source_hash_of, _tensor_digest
from tritium.runtime.packing import (
    FORMAT_VERSION,
    pack_ternary,
    packed_row_bytes,
)

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


