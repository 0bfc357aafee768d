"""Generated code for layers and models as values (check.checker.layer_values): the forms
the checker recorded in `CheckResult.call_forms`, written as calls of
`tritium.runtime.layer_values` (through `trt`)."""

from __future__ import annotations

from ...check.checker.layer_values import (
    LAYER_TRAINING,
    LAYER_VALUE_TYPES,
    LAYER_WEIGHTS,
    MODEL_LAYERS,
    MODULE_CALL,
    SEQUENTIAL,
    SET_WEIGHTS,
)
from ...frontend import ast as A

__all__ = ["LAYER_ATTR_FORMS", "MODULE_CALL", "SEQUENTIAL", "SET_WEIGHTS", "holds_layers",
           "layer_attr_source", "module_call_source", "set_weights_source"]

LAYER_ATTR_FORMS = (LAYER_WEIGHTS, MODEL_LAYERS, LAYER_TRAINING)


def holds_layers(te: A.TypeExpr | None) -> bool:
    """A type that is a list of layer values (`[Layer]`, `list[TernaryLayer]`)."""
    return te is not None and te.name == "list" and bool(te.args) \
        and te.args[0].name in LAYER_VALUE_TYPES and te.args[0].args is None


def layer_attr_source(gen, e: A.Attr, ctx) -> str:
    base = gen.expr(e.value, ctx)
    form = gen.result.call_forms[e.span]
    if form == LAYER_TRAINING:
        return f"{gen.sub(e.value, ctx, 20)}.training"
    if form == LAYER_WEIGHTS:
        return f"trt.layer_weights({base})"
    return f"trt.model_layers({base})"


def set_weights_source(gen, s: A.Assign, ctx) -> str:
    """`layer.weights = t`: the layer's weight parameter updated in place, without gradient
    (`layer.weights += d` adds to the current weights)."""
    base = gen.expr(s.target.value, ctx)
    value = gen.expr(s.value, ctx)
    if s.op != "=":
        value = f"trt.layer_weights({base}) {s.op[:-1]} ({value})"
    return f"trt.set_layer_weights({base}, {value})"


def module_call_source(gen, e: A.Call, args: list[str], ctx) -> str:
    if gen.result.call_forms[e.span] == SEQUENTIAL:
        return f"trt.sequential_model({', '.join(args)})"
    return f"{gen.sub(e.func, ctx, 20)}({', '.join(args)})"
