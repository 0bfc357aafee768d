"""The generated source of a layer constructed by calling its type (`let m = MyLayer()`,
`Affine(w: w0, b: b0)`; check.checker.layer_construction): the layer's class called with
its hyperparameters by name; when weights are given, `trt.construct_layer` builds it,
taking the dims those weights fix from their shapes and starting from their values."""

from __future__ import annotations

from ...check.checker.layer_construction import construction
from ...frontend import ast as A
from ...frontend.names import py_attr, py_local
from .text import CodegenError


def construct_source(gen, d, e: A.Call, ctx) -> str:
    c = construction(d.node, [a.name for a in e.args])
    if c is None:   # the checker recorded this call as a construction
        raise CodegenError(f"`{d.name}(…)` is not a construction")
    cls = gen.class_names[d.name]
    hyper = ", ".join(f"{py_local(k)}={gen.expr(e.args[i].value, ctx)}"
                      for k, i in c.hyper.items())
    if not c.weights:
        return f"{cls}({hyper})"
    given = ", ".join(f"{py_local(k)!r}: {gen.expr(e.args[i].value, ctx)}"
                      for k, i in c.hyper.items())
    dims = ", ".join(f"{py_local(k)!r}: ({py_attr(w)!r}, {axis})"
                     for k, (w, axis) in c.dims.items())
    weights = ", ".join(f"{py_attr(k)}={gen.expr(e.args[i].value, ctx)}"
                        for k, i in c.weights.items())
    return f"trt.construct_layer({cls}, {{{given}}}, {{{dims}}}, {weights})"
