"""Reading checkpoints: the file structure checked from the header, every version's metadata
parsed and validated, the stored tensors read one by one from their byte ranges (the file is
never held whole) and restored to the in-memory layout as they come. See
:mod:`tritium.runtime.checkpoint`. Also the safetensors reader of `tritium import hf`
(:class:`_Stored`) and the meta-device build of an imported model (:func:`materialize_frozen`).
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import struct
from pathlib import Path
from typing import Any

import torch

import tritium
from tritium.cachedir import UnsafeFileError, _kind, parse_json
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
from tritium.runtime.checkpoint_write import _check_text, _source_hash_of
from tritium.runtime.packing import (
    FORMAT_VERSION,
    pack_ternary,
    packed_row_bytes,
)

# --- reading ----------------------------------------------------------------------------


def _parse_structure(path: Path, data: bytes, plain: bool = False, size: int | None = None
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate the safetensors framing; return (tensor entries, ``__metadata__``). `data`
    is the file, or (with the file's `size`) at least its first 8 + header-length bytes."""
    size = len(data) if size is None else size
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
    for key, value in meta.items():
        _check_text(path, f"header metadata key {key!r}", key)
        _check_text(path, f"header metadata field {key!r}", value)
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
    for key, value in extra.items():
        _check_text(path, f"run metadata key {key!r}", key)
        _check_text(path, f"run metadata field {key!r}", value)
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


class _Stored:
    """A safetensors file opened to be read tensor by tensor: a regular file (never a FIFO or
    a device: :func:`tritium.cachedir.read_file_bounded`'s checks), its framing validated
    from the header alone, each tensor read straight into its own tensor when asked for (the
    file's bytes are never held whole, nor copied twice). Read to the size the file had when
    opened; one that shrinks meanwhile is reported truncated."""

    def __init__(self, path: Path, plain: bool = False) -> None:
        self.path = path
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFileError(path, f"is {_kind(st.st_mode)}, not a regular file")
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
                | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
            fd = os.open(path, flags)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise UnsafeFileError(path, f"is {_kind(st.st_mode)}, not a regular file")
                self.file = os.fdopen(fd, "rb", buffering=0)
            except BaseException:
                os.close(fd)
                raise
        except FileNotFoundError:
            raise CheckpointError(path, "no such file") from None
        except UnsafeFileError as e:
            raise CheckpointError(path, f"{e.reason}: a checkpoint is a .safetensors file"
                                  ) from None
        except (OSError, ValueError) as e:
            raise CheckpointError(path, f"cannot read the file: "
                                        f"{getattr(e, 'strerror', None) or e}") from None
        try:
            self.size = st.st_size
            head = self._bytes(0, min(8, self.size))
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            if len(head) == 8 and n <= _MAX_HEADER and 8 + n <= self.size:
                head = self._bytes(0, 8 + n)
            self.header, self.meta = _parse_structure(path, head, plain, size=self.size)
            self.base = 8 + n
        except BaseException:
            self.file.close()
            raise

    def _into(self, buf: memoryview, offset: int) -> None:
        try:
            self.file.seek(offset)
            done = 0
            while done < len(buf):
                got = self.file.readinto(buf[done:])
                if not got:
                    raise CheckpointError(self.path, "the file is truncated (it shrank while "
                                                     "it was read)")
                done += got
        except OSError as e:
            raise CheckpointError(self.path, f"cannot read the file: "
                                             f"{e.strerror or e}") from None

    def _bytes(self, offset: int, n: int) -> bytes:
        buf = bytearray(n)
        self._into(memoryview(buf), offset)
        return bytes(buf)

    def read(self, name: str, into: torch.Tensor | None = None) -> torch.Tensor:
        """The stored tensor `name` (read now; into `into`'s storage when it is a uint8
        buffer large enough, for data only looked at)."""
        entry = self.header[name]
        dtype, width = _DTYPES[entry["dtype"]]
        shape = entry["shape"]
        nbytes = math.prod(shape) * width
        if into is not None and into.numel() >= nbytes:
            t = into[:nbytes].view(dtype).reshape(shape)
        else:
            t = torch.empty(shape, dtype=dtype)
        if nbytes:
            raw = t.reshape(-1).view(torch.uint8).numpy()
            self._into(memoryview(raw).cast("B"), self.base + entry["data_offsets"][0])
        return t

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> _Stored:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _digest_update(h: Any, name: str, t: torch.Tensor) -> None:
    """One tensor's part of :func:`tritium.runtime.checkpoint_write._tensor_digest` (the same
    bytes in the same order: the tensors are visited by sorted name)."""
    head = f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode()
    h.update(len(head).to_bytes(8, "little"))
    h.update(head)
    raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
    h.update(len(raw).to_bytes(8, "little"))
    h.update(raw)


def _value_problem(path: Path, name: str, t: torch.Tensor) -> CheckpointError | None:
    """A layer's scale (`*.weight_scale`) and bias must be finite: otherwise every output is
    NaN, a silently wrong model. A scale may be negative: a batch norm with a negative weight
    folds into its layer as a negative per-channel scale."""
    leaf = name.rpartition(".")[2]
    if leaf not in ("weight_scale", "bias") or not t.is_floating_point() or not t.numel():
        return None
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        v = float(t.reshape(-1)[bad.reshape(-1)][0])
        return CheckpointError(path, f"tensor {name!r} holds {v!r} (a {leaf.replace('_', ' ')} "
                                     "must be finite)")
    return None


def _packed_problem(path: Path, name: str, info: TensorInfo, t: torch.Tensor
                    ) -> CheckpointError | None:
    """A version 1 packed tensor (the kernels' layout) whose bytes no trit row produces: a
    t2 code 3, a t1.6 byte above 242, or a non-zero trit in a row's padding."""
    from .packing import PackedDataError, PackedTernary
    fmt = info.packing_format
    n, k = info.logical_shape[0], math.prod(info.logical_shape[1:])
    try:
        PackedTernary(fmt, t, (n, k)).validate()
    except PackedDataError as e:
        v = e.value
        if fmt == "t2" and v & (v >> 1) & 0x55:
            what = "holds the t2 code 3, which is no trit (codes 0, 1, 2 are -1, 0, +1)"
        elif fmt == "t1.6" and v > 242:
            what = "is above 242 (not five base-3 digits)"
        else:
            what = f"holds a non-zero trit past the row's {k} columns (padding must be 0)"
        return CheckpointError(path, f"tensor {name!r}: {fmt} byte 0x{v:02x} at (row {e.row}, "
                                     f"byte {e.byte}) {what}")
    except ValueError as e:
        return CheckpointError(path, f"tensor {name!r}: {e}")
    return None


def _read(path: Path, keep: bool = True) -> tuple[dict[str, torch.Tensor], CheckpointMetadata]:
    """The restored state and the metadata of a checkpoint, every tensor checked against its
    metadata and the digest. The tensors are read one at a time in digest order, each
    converted to the in-memory layout as soon as it is read (dense trits to the kernels'
    packing, float16 scales to float32), so the peak is the state plus one layer's trits.
    `keep=False` only validates (the state returned is empty; the data goes through one
    reused buffer)."""
    with _Stored(path) as f:
        header = f.header
        metadata, digest = _parse_metadata(path, f.meta, header)
        for name, entry in header.items():
            info = metadata.tensors[name]
            try:
                want = _expected_stored_shape(info, metadata.checkpoint_version)
            except ValueError as e:
                raise CheckpointError(path, f"tensor {name!r}: {e}") from None
            if tuple(entry["shape"]) != want:
                raise CheckpointError(
                    path,
                    f"tensor {name!r} has shape {tuple(entry['shape'])} but its metadata "
                    f"(logical shape {info.logical_shape}, format {info.packing_format}) "
                    f"implies {want}",
                )
            dtype = _STORED_DTYPE.get(info.packing_format)
            stored = _DTYPES[entry["dtype"]][0]
            if dtype is not None and stored != dtype:
                raise CheckpointError(
                    path, f"tensor {name!r} is {stored}, but {info.packing_format} data is "
                          f"{dtype}"
                )
        size = 16 if metadata.checkpoint_version >= 3 else 32
        h = hashlib.sha256()
        state: dict[str, torch.Tensor] = {}
        problem: CheckpointError | None = None   # reported after the digest is checked
        dense = metadata.checkpoint_version >= 2
        scratch = None
        if not keep:
            largest = max((e["data_offsets"][1] - e["data_offsets"][0]
                           for e in header.values()), default=0)
            scratch = torch.empty(largest, dtype=torch.uint8)
        for name in sorted(header):
            t = f.read(name, scratch)
            _digest_update(h, name, t)
            if problem is None:
                problem = _value_problem(path, name, t)
            if problem is None and not dense and \
                    metadata.tensors[name].packing_format in _DENSE:
                # version 1 stores the kernels' packing itself: its bytes are checked here,
                # as version 2's dense trits are decoded (else the first forward raised)
                problem = _packed_problem(path, name, metadata.tensors[name], t)
            if not keep or problem is not None:
                continue
            info = metadata.tensors[name]
            if name in metadata.float16:
                t = t.to(torch.float32)
            elif dense and info.packing_format in _DENSE:
                n, k = info.logical_shape[0], math.prod(info.logical_shape[1:])
                try:
                    trits = decode_dense(t, n * k).reshape(n, k)
                except ValueError as e:
                    problem = CheckpointError(path, f"tensor {name!r}: {e}")
                    continue
                t = pack_ternary(trits, info.packing_format).data
                del trits
            state[name] = t
    if digest is None or h.hexdigest()[: 2 * size] != digest:
        raise CheckpointError(
            path, "tensor data does not match the stored digest: the file is corrupted"
        )
    if problem is not None:
        raise problem
    return state, metadata


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor],
                                               CheckpointMetadata | None]:
    """The tensors of a safetensors file, Tritium's or any other (``safetensors.torch.
    save_file(model.state_dict(), path)``), with the Tritium metadata when it has some
    (then fully validated, as :func:`load_checkpoint` does). Never unpickles; every problem
    is a :class:`CheckpointError`."""
    path = Path(os.fsdecode(path))
    with _Stored(path, plain=True) as f:
        if _KEY_VERSION not in f.meta:
            return {name: f.read(name) for name in f.header}, None
    return _read(path)


def materialize_frozen(model: torch.nn.Module, metadata: CheckpointMetadata
                       ) -> torch.nn.Module:
    """`model`, built on the meta device (nothing allocated), made real to load the
    checkpoint `metadata` describes: each ternary layer the checkpoint stores packed becomes a
    frozen skeleton of that format (its float weight is never filled in: a frozen model's
    loading never holds the float32 latent weights), every other tensor uninitialized CPU
    memory that loading then fills. Only for models whose every tensor the checkpoint holds
    (no non-persistent buffers): the programs `tritium import hf` writes."""
    from tritium.runtime.layers import TernaryLayer, tritium_layers
    for prefix, layer in tritium_layers(model):
        own = _own_keys(metadata.tensors, prefix)
        fmts = {metadata.tensors[n].packing_format for n in own} - {"none"}
        if (isinstance(layer, TernaryLayer) and not layer.frozen and len(fmts) == 1
                and prefix not in metadata.folds):
            layer.to_empty(device="cpu").freeze_skeleton(fmts.pop())
    return model.to_empty(device="cpu")


def read_checkpoint_metadata(path: str | Path) -> CheckpointMetadata:
    """Validate a checkpoint and return its metadata (raises :class:`CheckpointError`)."""
    return _read(Path(path), keep=False)[1]


