"""Whole-model operations: the Tritium layers of a model, batch-norm folding and
:func:`freeze_model`; see :mod:`tritium.runtime.layers`."""

from __future__ import annotations

import torch
from torch import nn

from tritium.runtime.graph import install_forwards
from tritium.runtime.layers.groups import SharedInputGroup
from tritium.runtime.layers.head import HEADS, quantize_head
from tritium.runtime.layers.ternary import (
    TERNARY_FORMATS,
    BitLinear,
    TernaryLayer,
    TritiumLayer,
    _check_choice,
)


def tritium_layers(model: nn.Module) -> list[tuple[str, TritiumLayer]]:
    """Every :class:`TritiumLayer` in ``model`` (including ``model`` itself), with its name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, TritiumLayer)]


def _bn_fold_problem(layer: nn.Module, bn: nn.Module) -> str | None:
    """Why ``bn`` cannot be folded into ``layer`` (None when it can)."""
    want = layer.folds_batchnorm if isinstance(layer, TernaryLayer) else None
    if want is None:
        return f"{type(layer).__name__} is not a ternary linear or convolution layer"
    if not isinstance(bn, want):
        return f"a {type(layer).__name__} folds a {want.__name__}, not a {type(bn).__name__}"
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
    if bn.running_mean is None or bn.running_var is None:
        return "the batch norm keeps no running statistics (track_running_stats=False)"
    if bn.num_features != layer.out_dim:
        return (f"the batch norm has {bn.num_features} features but the layer has "
                f"{layer.out_dim} output channels")
    if layer.folded:
        return "the layer already has a batch norm folded into it"
    return None


def fold_batchnorm(layer: TernaryLayer, bn: nn.Module) -> TernaryLayer:
    """Fold the inference form of ``bn`` (running statistics) into the frozen ``layer``
    whose output it normalizes, in place: with ``k = gamma / sqrt(running_var + eps)``
    the layer's scale becomes ``scale * k`` and its bias ``bias * k + beta - mean * k``.
    The caller removes ``bn`` (:func:`fold_batchnorms` does). For a
    :class:`TernaryLinear` the result is exact for 2-D inputs only (the layer then refuses
    others). Raises ``ValueError`` naming what prevents the fold."""
    problem = _bn_fold_problem(layer, bn)
    if problem is not None:
        raise ValueError(f"cannot fold the batch norm: {problem}")
    if not layer.frozen:
        raise RuntimeError(f"{type(layer).__name__} must be frozen before folding into it")
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        k = 1.0 / torch.sqrt(bn.running_var.to(torch.float64) + bn.eps)
        if bn.weight is not None:
            k = k * bn.weight.to(torch.float64)
        shift = -bn.running_mean.to(torch.float64) * k
        if bn.bias is not None:
            shift = shift + bn.bias.to(torch.float64)
    return layer.fold_affine(k, shift)


def _fold_pairs_of(mod: nn.Module) -> list[tuple[str, str, bool]]:
    """The sibling (layer, batch norm) attribute pairs of ``mod`` whose dataflow is known to
    be ``bn(layer(x))`` and nothing else, with whether a folded batch norm becomes ``None``
    (a generated module's ``tritium_folds``: its code calls them through
    :func:`tritium.runtime.norm`) or ``nn.Identity`` (consecutive children of a plain
    ``nn.Sequential``, and a module's ``tritium_identity_folds``, which
    :func:`tritium.runtime.ternarize` declares)."""
    pairs = [(str(a), str(b), True) for a, b in getattr(mod, "tritium_folds", None) or ()]
    # pairs :func:`tritium.runtime.ternarize` proved in plain PyTorch modules, whose code
    # calls the batch norm itself: a folded one becomes ``nn.Identity``
    pairs += [(str(a), str(b), False)
              for a, b in getattr(mod, "tritium_identity_folds", None) or ()]
    if type(mod) is nn.Sequential:
        names = list(mod._modules)
        pairs += [(a, b, False) for a, b in zip(names, names[1:])]
    return pairs


def folded_norm_replacement(mod: nn.Module, bname: str) -> nn.Module | None:
    """What the batch norm ``bname`` of ``mod`` becomes once folded: ``None`` when ``mod``
    lists it in ``tritium_folds`` (no call at all), else ``nn.Identity()``."""
    listed = any(str(b) == bname for _, b in getattr(mod, "tritium_folds", None) or ())
    return None if listed else nn.Identity()


def fold_batchnorms(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every batch norm that only ever normalizes a frozen ternary layer's output into
    that layer (:func:`fold_batchnorm`) and remove it, in place: ``None`` in a generated
    module (its code skips it), ``nn.Identity`` in an ``nn.Sequential``. The pairs come from each module's ``tritium_folds`` (the generated code lists a pair when
    every use of both is the one expression ``bn(layer(x))``) and from consecutive children
    of ``nn.Sequential`` containers; pairs whose modules do not qualify at run time (an
    absent conditional layer, no running statistics, an unfrozen layer...) are left alone.
    Returns the dotted names of the ``(layer, batch norm)`` pairs folded."""
    done: list[tuple[str, str]] = []
    for prefix, mod in list(model.named_modules()):
        for lname, bname, to_none in _fold_pairs_of(mod):
            layer, bn = mod._modules.get(lname), mod._modules.get(bname)
            if not isinstance(layer, TernaryLayer) or not layer.frozen or bn is None \
                    or _bn_fold_problem(layer, bn) is not None:
                continue
            fold_batchnorm(layer, bn)
            layer.folded_bn = bname
            setattr(mod, bname, None if to_none else nn.Identity())
            dot = f"{prefix}." if prefix else ""
            done.append((dot + lname, dot + bname))
    return done


def group_shared_inputs(model: nn.Module) -> int:
    """Give the frozen :class:`BitLinear` children of each module that could share one input
    (the same input width, norm eps and packed format, no folded batch norm, two or more) a
    :class:`~tritium.runtime.layers.groups.SharedInputGroup`: the ones the model then calls on
    one tensor (q/k/v, gate/up) run in one native call. Returns how many groups were made."""
    count = 0
    for mod in model.modules():
        by_key: dict[tuple, list[BitLinear]] = {}
        for child in mod.children():
            if type(child) is BitLinear and child.frozen and not child.folded \
                    and child.act_quant == "int8":
                by_key.setdefault((child.in_features, child.eps, child.format), []).append(child)
        for members in by_key.values():
            if len(members) > 1:
                group = SharedInputGroup(members)
                for member in members:
                    member._group = group
                count += 1
    return count


def freeze_model(model: nn.Module, format: str | None = None, *,
                 fold_bn: bool = True, head: str = "fp32") -> nn.Module:
    """Freeze every Tritium layer in ``model`` in place and return ``model``.

    Ternary layers are packed with ``format`` (``"t2"`` or ``"t1.6"``); with ``None`` each
    layer uses its ``preferred_format`` (set from a .tri ``format:`` key), else ``"t2"``.
    int8/int4 layers use their own formats. With ``fold_bn`` (default) every batch norm that
    only normalizes a ternary layer's output (see :func:`fold_batchnorms`) is folded into it
    and removed: the frozen model is for inference, with the batch norms' running
    statistics. A generated module whose ``forward`` its compiler wrote as one chain of
    steps, or as dataflow ops (a residual block), then runs it as one plan, its residual adds
    fused into the convs (:func:`tritium.runtime.graph.install_forwards`).

    ``head="int8"`` also replaces a language model's full-precision output head (every
    ``nn.Linear`` named ``lm_head``) by an int8 one (:class:`~tritium.runtime.layers.head.
    Int8Head`: int8 weights per row, int8 activations per token, as llama.cpp quantizes its
    output tensor). It changes the logits by the int8 rounding error, so it is opt-in here;
    ``"fp32"`` (default) keeps the head as trained.

    Sibling ``BitLinear`` layers the model calls on one tensor (q/k/v, gate/up) then run in
    one native call at batch 1 (:func:`group_shared_inputs`; the same outputs).
    """
    if format is not None:
        _check_choice("packing format", format, TERNARY_FORMATS)
    _check_choice("head", head, HEADS)
    for _, layer in tritium_layers(model):
        if isinstance(layer, TernaryLayer):
            layer.freeze(format)
        else:
            layer.freeze()
    if fold_bn:
        fold_batchnorms(model)
    quantize_head(model, head)
    group_shared_inputs(model)
    install_forwards(model)
    return model

