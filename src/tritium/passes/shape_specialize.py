"""`shape-specialize{batch=1,...}`: replace symbolic dims by the given sizes everywhere
(function arguments and results, op results, layer parameters), re-infer result types to
make dims that were unknown (`?`) static where possible (function results included, from
the returned values), and fold `dim` ops of static dims into constants. Bindings apply to the symbol of that name in every function.

`bindings_for(function, shapes)` computes the bindings from concrete input shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ir.core import Block, Function, Module
from ..ir.ops import OPS, InferError, infer_type
from ..ir.types import Dim, TensorType, Type, join_dim
from .base import Pass, apply_patterns, register
from .canonicalize import static_dim


def bindings_for(f: Function, shapes: Sequence[Sequence[int]]) -> dict[str, int]:
    """Symbol → size, from the concrete shapes of `f`'s arguments; ValueError on a clash."""
    if len(shapes) != len(f.args):
        raise ValueError(f"@{f.name} has {len(f.args)} arguments, got {len(shapes)} shapes")
    out: dict[str, int] = {}
    for a, shape in zip(f.args, shapes):
        t = a.type
        if not isinstance(t, TensorType) or t.rank != len(shape):
            raise ValueError(f"shape {list(shape)} does not fit argument %{a.name}: {t}")
        for d, n in zip(t.shape, shape):
            if (isinstance(d, int) and d != n) or (isinstance(d, str) and out.setdefault(d, n) != n):
                raise ValueError(f"shape {list(shape)} does not fit argument %{a.name}: {t}")
    return out


def substitute(t: Type, env: dict[str, int]) -> Type:
    if not isinstance(t, TensorType):
        return t
    return t.with_shape(tuple(env.get(d, d) if isinstance(d, str) else d for d in t.shape))


def refine(old: Type, new: Type) -> Type:
    if not (isinstance(old, TensorType) and isinstance(new, TensorType)) or old.rank != new.rank:
        return old
    dims: list[Dim] = [join_dim(a, b) for a, b in zip(old.shape, new.shape)]
    return old.with_shape(tuple(dims))


@register
class ShapeSpecialize(Pass):
    name = "shape-specialize"
    free_options = True

    def run(self, module: Module) -> bool:
        env = {k: int(v) for k, v in self.opts.items()}
        before = [str(v.type) for _, f in module.all_functions() for v in self._values(f)]
        for layer in module.layers:
            for p in layer.params:
                p.type = substitute(p.type, env)
        changed = False
        for _, f in module.all_functions():
            f.result_types = [substitute(t, env) for t in f.result_types]
            for a in f.args:
                a.type = substitute(a.type, env)
            self._block(f.body, env)
            ret = f.body.terminator
            if ret is not None and len(ret.operands) == len(f.result_types):
                f.result_types = [refine(t, v.type) for t, v in zip(f.result_types, ret.operands)]
            changed |= apply_patterns(f, [static_dim])
        after = [str(v.type) for _, f in module.all_functions() for v in self._values(f)]
        return changed or before != after

    @staticmethod
    def _values(f: Function) -> list:
        return list(f.args) + [r for op in f.walk() for r in op.results]

    def _block(self, block: Block, env: dict[str, int]) -> None:
        for op in block.ops:
            for r in op.regions:
                self._block(r, env)
            for r in op.results:
                r.type = substitute(r.type, env)
            if OPS[op.name].infer is None:
                continue
            try:
                inferred = infer_type(op.name, [v.type for v in op.operands], op.attrs)
            except InferError:
                continue  # the verifier reports it
            for r, t in zip(op.results, inferred):
                r.type = refine(r.type, t)
