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

:func:`load_checkpoint` validates the file structure itself and reads each tensor from its
byte range (``checkpoint_read``: never the whole file at once), and turns every problem into
a :class:`CheckpointError` that names the file and what is wrong.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from tritium.argcheck import entry_point_problem
from tritium.runtime.checkpoint_read import _read
from tritium.runtime.checkpoint_write import _module_and_path
from tritium.runtime.graph import install_forwards
from tritium.runtime.layers import (
    TernaryLayer,
    TritiumLayer,
    folded_norm_replacement,
    tritium_layers,
)
from tritium.runtime.layers.half import keep_half

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

# the parts, by job: formats and metadata, writing, reading (this module: loading)
from tritium.runtime.checkpoint_format import (  # noqa: E402, F401 - after __all__, by job
    CHECKPOINT_VERSION,
    PACKING_FORMATS,
    CheckpointError,
    CheckpointMetadata,
    TensorInfo,
    _own_keys,
    decode_dense,
    encode_dense,
)
from tritium.runtime.checkpoint_read import (  # noqa: E402, F401
    read_checkpoint_metadata,
    read_state_dict,
)
from tritium.runtime.checkpoint_write import (  # noqa: E402, F401
    save_checkpoint,
    stored_tensor_bytes,
)

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
    keep_half(model, state)     # 16-bit embeddings and heads stay 16-bit (layers.half)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(path, f"cannot load into the model: {e}") from None
    install_forwards(model)   # a generated forward that is a chain or dataflow runs as a plan
    return state, metadata
