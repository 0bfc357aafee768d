"""Layers and models as values in generated code (the `.tri` forms `model.layers`,
`layer.weights`, `layer.weights = t`, `Model(layers)`: docs/language.md, "Layers as
values")."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["layer_weights", "model_layers", "sequential_model", "set_layer_weights"]


def _module(m, what: str) -> nn.Module:
    if not isinstance(m, nn.Module):
        raise TypeError(f"`{what}` needs a layer, got {type(m).__name__}")
    return m


def _weight(layer) -> torch.Tensor:
    """The layer's weight tensor: its `weight` parameter (every builtin layer kind has one)
    or `weights`, else the first parameter it declares itself."""
    layer = _module(layer, ".weights")
    for name in ("weight", "weights"):
        w = getattr(layer, name, None)
        if isinstance(w, torch.Tensor):
            return w
    for _, p in layer.named_parameters(recurse=False):
        return p
    raise AttributeError(f"layer {type(layer).__name__} has no weights (it declares no "
                         f"parameter of its own)")


def layer_weights(layer) -> torch.Tensor:
    """`layer.weights`: the weight parameter itself (gradients flow to it)."""
    return _weight(layer)


def set_layer_weights(layer, value) -> None:
    """`layer.weights = value`: the weight parameter updated in place, without gradient, so
    it stays the same parameter (an optimizer holding it trains the new values)."""
    w = _weight(layer)
    value = torch.as_tensor(value)
    if tuple(value.shape) != tuple(w.shape):
        raise ValueError(f"cannot set the weights of {type(layer).__name__} "
                         f"{list(w.shape)} to a tensor of shape {list(value.shape)}")
    with torch.no_grad():
        w.copy_(value.to(dtype=w.dtype, device=w.device))


def model_layers(model) -> list[nn.Module]:
    """`model.layers`: the model's layers in order (its direct sub-layers, in the order they
    are declared)."""
    model = _module(model, ".layers")
    if isinstance(model, nn.Sequential | nn.ModuleList):
        return list(model)
    return list(model.children())


def sequential_model(layers) -> nn.Sequential:
    """`Model(layers)`: a model that runs the layers in order."""
    layers = list(layers)
    for i, m in enumerate(layers):
        if not isinstance(m, nn.Module):
            raise TypeError(f"item {i} given to Model(…) is {type(m).__name__}, not a layer")
    return nn.Sequential(*layers)
