"""The textual form of the IR. `print_module(parse_module(s)) == s` for every printed `s`.

    func @main(%x: tensor<[batch, 64], f32>) -> (tensor<[batch, 10], f32>) {
      %0 = param() {name = "w"} : () -> tensor<[10, 64], f32>
      %1 = linear(%x, %0) : (tensor<[batch, 64], f32>, tensor<[10, 64], f32>) -> tensor<[batch, 10], f32>
      return(%1) : (tensor<[batch, 10], f32>) -> ()
    }

Op results are numbered %0, %1, ... in order of definition within a function (regions
included); block arguments keep their names.
"""

from __future__ import annotations

import json
import math

from .core import Attr, Block, Dense, Function, LayerDef, Module, Op, ParamDef, SubLayer, Value
from .types import Type

INDENT = "  "


def format_float(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(float(v))


def format_attr(v: Attr) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if isinstance(v, dict):
        return format_attr_dict(v)
    if isinstance(v, Dense):
        return "dense<[" + ", ".join(format_attr(x) for x in v.data) + "]>"
    raise TypeError(f"cannot print attribute {v!r} of type {type(v).__name__}")


def format_attr_dict(attrs: dict[str, Attr]) -> str:
    return "{" + ", ".join(f"{k} = {format_attr(v)}" for k, v in attrs.items()) + "}"


def format_types(types: list[Type]) -> str:
    return "(" + ", ".join(str(t) for t in types) + ")"


class Printer:
    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.next_id = 0
        self.lines: list[str] = []

    def name(self, v: Value) -> str:
        n = self.names.get(id(v))
        if n is None:
            return "%<undefined>"
        return n

    def define(self, v: Value) -> str:
        n = f"%{self.next_id}"
        self.next_id += 1
        self.names[id(v)] = n
        return n

    def op_line(self, op: Op, define: bool = True) -> str:
        """The op's text; `define=False` reuses names already assigned to its results."""
        ops = ", ".join(self.name(o) for o in op.operands)
        res = ", ".join(self.define(r) if define else self.name(r) for r in op.results)
        head = f"{res} = " if op.results else ""
        attrs = f" {format_attr_dict(op.attrs)}" if op.attrs else ""
        rt = op.result_types
        out = str(rt[0]) if len(rt) == 1 else format_types(rt)
        sig = f"{format_types([o.type for o in op.operands])} -> {out}"
        return f"{head}{op.name}({ops}){attrs} : {sig}"

    def block(self, block: Block, depth: int) -> None:
        pad = INDENT * depth
        for op in block.ops:
            line = pad + self.op_line(op)
            if not op.regions:
                self.lines.append(line)
                continue
            self.lines.append(line + " {")
            for i, region in enumerate(op.regions):
                self.block(region, depth + 1)
                self.lines.append(pad + ("} {" if i + 1 < len(op.regions) else "}"))

    def function(self, f: Function, depth: int) -> None:
        self.names, self.next_id = {}, 0
        args = []
        for i, a in enumerate(f.args):
            taken = set(self.names.values())
            n = f"%{a.name}" if a.name else f"%arg{i}"
            k = 0
            while n in taken:
                n, k = f"%arg{i}_{k}", k + 1
            self.names[id(a)] = n
            args.append(f"{n}: {a.type}")
        pad = INDENT * depth
        self.lines.append(f"{pad}func @{f.name}({', '.join(args)}) -> {format_types(f.result_types)} {{")
        self.block(f.body, depth + 1)
        self.lines.append(pad + "}")

    def param(self, p: ParamDef) -> str:
        attrs: dict[str, Attr] = {}
        if p.init is not None:
            attrs["init"] = p.init
        if p.quant is not None:
            attrs["quantizer"] = p.quant.quantizer
            attrs["per_channel"] = p.quant.per_channel
            attrs["format"] = p.quant.format
        tail = f" {format_attr_dict(attrs)}" if attrs else ""
        return f"param @{p.name} : {p.type}{tail}"

    def sublayer(self, s: SubLayer) -> str:
        tail = f" {format_attr_dict(s.config)}" if s.config else ""
        return f"sublayer @{s.name} : @{s.kind}{tail}"

    def layer(self, layer: LayerDef) -> None:
        self.lines.append(f"{layer.kind} @{layer.name} {format_attr_dict(layer.hparams)} {{")
        self.lines.extend(INDENT + self.param(p) for p in layer.params)
        self.lines.extend(INDENT + self.sublayer(s) for s in layer.sublayers)
        for f in layer.functions:
            self.function(f, 1)
        self.lines.append("}")

    def module(self, m: Module) -> str:
        for i, item in enumerate(m.items):
            if i:
                self.lines.append("")
            if isinstance(item, LayerDef):
                self.layer(item)
            else:
                self.function(item, 0)
        return "\n".join(self.lines) + "\n" if self.lines else ""


def print_module(m: Module) -> str:
    return Printer().module(m)


def print_function(f: Function) -> str:
    p = Printer()
    p.function(f, 0)
    return "\n".join(p.lines) + "\n"


def print_op(op: Op) -> str:
    """One op on one line, out of context: operands are named by position (%v0, %v1...)."""
    p = Printer()
    for i, o in enumerate(op.operands):
        p.names.setdefault(id(o), f"%{o.name}" if o.name else f"%v{i}")
    return p.op_line(op)
