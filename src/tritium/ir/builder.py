"""Building IR from Python: an insertion point plus one method per op.

    f, b = new_function("main", [("x", parse_type("tensor<[batch, 64], f32>"))], [])
    w = b.param("w", TensorType((10, 64), "f32"))
    y = b.linear(f.args[0], w)                 # result type inferred by infer_type
    t, s = b.quantize_ternary(w, quantizer="twn")  # several results → tuple
    b.ret(y); f.result_types = [y.type]

Any op of the table is available as `b.<opname>(*operands, **attrs)`. Ops that carry their
result types are built with `constant`, `param`, `call` and `if_`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .core import Attr, Block, Dense, Function, Op, Value
from .ops import OPS, infer_type
from .types import TensorType, Type


class Builder:
    def __init__(self, block: Block, before: Op | None = None) -> None:
        self.block = block
        self.before = before

    @classmethod
    def before_op(cls, op: Op) -> Builder:
        assert op.parent is not None, "op is not in a block"
        return cls(op.parent, op)

    def insert(self, op: Op) -> Op:
        if self.before is None:
            return self.block.append(op)
        return self.block.insert_before(self.before, op)

    def create(self, name: str, operands: Sequence[Value], attrs: dict[str, Attr] | None = None,
               result_types: Sequence[Type] | None = None, regions: list[Block] | None = None) -> Op:
        """Insert op `name`; its result types are inferred unless given."""
        attrs = dict(attrs or {})
        if result_types is None:
            result_types = infer_type(name, [v.type for v in operands], attrs)
        return self.insert(Op(name, list(operands), attrs, list(result_types), regions))

    def op(self, name: str, *operands: Value, **attrs: Attr) -> Any:
        """Insert op `name`; returns its one result or a tuple of its results."""
        op = self.create(name, operands, attrs)
        return op.results[0] if len(op.results) == 1 else tuple(op.results)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name in OPS and OPS[name].infer is not None:
            return lambda *operands, **attrs: self.op(name, *operands, **attrs)
        raise AttributeError(name)

    def constant(self, value: Any, type: Type) -> Value:
        """A constant of `type`: a Python scalar (splat for a tensor type) or array-like data."""
        if isinstance(value, np.ndarray | list | tuple):
            data = np.asarray(value).reshape(-1).tolist()
            value = Dense(tuple(data))
        elif isinstance(value, np.generic):
            value = value.item()
        return self.create("constant", [], {"value": value}, [type]).result

    def param(self, name: str, type: Type) -> Value:
        return self.create("param", [], {"name": name}, [type]).result

    def call(self, callee: str, args: Sequence[Value], result_types: Sequence[Type],
             instance: str | None = None) -> list[Value]:
        attrs: dict[str, Attr] = {"callee": callee}
        if instance is not None:
            attrs["instance"] = instance
        return self.create("call", args, attrs, result_types).results

    def if_(self, cond: Value, result_types: Sequence[Type]) -> tuple[Op, Builder, Builder]:
        """An `if` op and builders for its then/else regions (end each with `yield_`)."""
        then, other = Block(), Block()
        op = self.create("if", [cond], {}, result_types, [then, other])
        return op, Builder(then), Builder(other)

    def yield_(self, *values: Value) -> Op:
        return self.create("yield", values, {}, [])

    def ret(self, *values: Value) -> Op:
        return self.create("return", values, {}, [])


def new_function(name: str, args: Sequence[tuple[str, Type]],
                 result_types: Sequence[Type] = ()) -> tuple[Function, Builder]:
    """A function with named arguments and an empty body, and a builder at its end."""
    body = Block([t for _, t in args], [n for n, _ in args])
    f = Function(name, body, list(result_types))
    return f, Builder(body)


def tensor(shape: Sequence[int | str | None], dtype: str = "f32") -> TensorType:
    return TensorType(tuple(shape), dtype)
