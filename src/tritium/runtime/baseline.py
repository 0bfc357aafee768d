"""The fp32 model a fair comparison runs against: batch norms folded, as any fp32 deployment
does (``torch.nn.utils.fusion``), so a ternary model's speed is never measured against a
twin that still pays for a separate normalization pass.

:func:`fold_fp32_batchnorms` folds every batch norm whose only input is a float ``Linear`` or
``Conv1d``/``Conv2d`` into that layer's weight and bias (a ``BatchNorm1d`` after a
``Linear`` or ``Conv1d``, a ``BatchNorm2d`` after a ``Conv2d``), using the same pairs as the ternary freeze
(:func:`tritium.runtime.layers.fold_batchnorms`: a generated module's ``tritium_folds``, and
consecutive children of an ``nn.Sequential``), and removes it the same way (``None`` in a
generated module, ``nn.Identity`` in a ``Sequential``). The model must be in eval mode: the
folded layer computes what the layer followed by the batch norm computed with its running
statistics.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

from tritium.runtime.layers import _fold_pairs_of, folded_norm_replacement

__all__ = ["fold_fp32_batchnorms"]


def _foldable(layer: nn.Module | None, bn: nn.Module | None) -> bool:
    if not isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d) or bn.training:
        return False
    if bn.running_mean is None or bn.running_var is None:
        return False
    if isinstance(layer, nn.Conv2d):
        return type(bn) is nn.BatchNorm2d and layer.out_channels == bn.num_features
    if isinstance(layer, nn.Conv1d):
        return type(bn) is nn.BatchNorm1d and layer.out_channels == bn.num_features
    if isinstance(layer, nn.Linear):
        return type(bn) is nn.BatchNorm1d and layer.out_features == bn.num_features
    return False


def fold_fp32_batchnorms(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every batch norm that only normalizes a float ``Linear``/``Conv1d``/``Conv2d`` output into
    it, in place (eval mode only). Returns the dotted ``(layer, batch norm)`` names folded."""
    if model.training:
        raise ValueError("fold_fp32_batchnorms needs a model in eval mode (model.eval())")
    done: list[tuple[str, str]] = []
    for prefix, mod in list(model.named_modules()):
        for lname, bname, _ in _fold_pairs_of(mod):
            layer, bn = mod._modules.get(lname), mod._modules.get(bname)
            if not _foldable(layer, bn):
                continue
            assert layer is not None and isinstance(bn, nn.modules.batchnorm._BatchNorm)
            with torch.no_grad():
                if isinstance(layer, nn.Conv1d | nn.Conv2d):
                    w, b = fuse_conv_bn_weights(layer.weight, layer.bias, bn.running_mean,
                                                bn.running_var, bn.eps, bn.weight, bn.bias)
                else:
                    w, b = fuse_linear_bn_weights(layer.weight, layer.bias, bn.running_mean,
                                                  bn.running_var, bn.eps, bn.weight, bn.bias)
                layer.weight = w
                layer.bias = b
            setattr(mod, bname, folded_norm_replacement(mod, bname))
            dot = f"{prefix}." if prefix else ""
            done.append((dot + lname, dot + bname))
    return done
