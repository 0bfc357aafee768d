"""Writing checkpoints: what is stored (dense trits, float16 scales where exact), the
metadata and the digest. See :mod:`tritium.runtime.checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

import tritium
from tritium.argcheck import entry_point_problem
from tritium.cachedir import atomic_write_bytes
from tritium.runtime.checkpoint_format import (
    _DENSE,
    _V4_RESERVED,
    CHECKPOINT_VERSION,
    CheckpointError,
    CheckpointMetadata,
    TensorInfo,
    _fits_float16,
    _own_keys,
    _v4_header,
    encode_dense,
)
from tritium.runtime.layers import (
    TernaryLayer,
    TritiumLayer,
    tritium_layers,
)
from tritium.runtime.packing import (
    FORMAT_VERSION,
    PackedTernary,
    unpack_ternary,
)

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
    return None if src is None else hashlib.sha256(src.encode("utf-8", "surrogatepass")
                                                   ).hexdigest()


def _check_text(path: Path, what: str, text: object) -> None:
    """Metadata strings are Unicode text: JSON's `\\ud800` escape makes a lone surrogate,
    which no encoder takes (hashing the stored source raised UnicodeEncodeError)."""
    if not isinstance(text, str):
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise CheckpointError(path, f"{what} is not valid Unicode text: a lone surrogate "
                                    f"U+{ord(text[e.start]):04X} at character {e.start}"
                              ) from None


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
    for key, value in extra.items():    # what could not be read back is not written
        _check_text(path, f"extra metadata key {key!r}", key)
        _check_text(path, f"extra metadata field {key!r}", value)
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


