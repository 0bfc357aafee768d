"""IR data structures: Module → layers and functions → blocks → SSA ops.

    Module      items: LayerDef (layer/model/block definitions) and module-level Functions
    LayerDef    kind, name, hyperparameters, parameters (ParamDef), sub-layer instances
                (SubLayer) and methods (Function, usually `forward`)
    Function    name, a body Block whose arguments are the function arguments, result types
    Block       arguments and a list of Ops; the last op is a terminator (return / yield)
    Op          name, operands (Values), attributes, results (Values), regions (Blocks)
    Value       an SSA value: defined once, by an op result or a block argument

Values compare by identity. `structurally_equal` compares two modules up to value identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .types import Type

# An attribute is an int, float, bool, str, None, a list of attributes, a dict of attributes,
# or a Dense (the elements of a constant tensor).
Attr = Any


@dataclass(frozen=True, slots=True)
class Dense:
    """Flat row-major elements of a constant tensor; the shape comes from the result type."""

    data: tuple[int | float | bool, ...]


class Value:
    """An SSA value. `owner` is the defining Op (then `index` is the result number) or the
    Block whose argument it is. `name` is a hint for printing (function arguments only)."""

    __slots__ = ("type", "owner", "index", "name")

    def __init__(self, type: Type, owner: Op | Block | None = None, index: int = 0,
                 name: str | None = None) -> None:
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name

    @property
    def op(self) -> Op | None:
        """The defining op, or None for a block argument."""
        return self.owner if isinstance(self.owner, Op) else None

    def __repr__(self) -> str:
        where = self.owner.name if isinstance(self.owner, Op) else "arg"
        return f"<Value {self.name or ''}#{self.index} of {where}: {self.type}>"


class Op:
    __slots__ = ("name", "operands", "attrs", "results", "regions", "parent")

    def __init__(self, name: str, operands: list[Value] | None = None,
                 attrs: dict[str, Attr] | None = None, result_types: list[Type] | None = None,
                 regions: list[Block] | None = None) -> None:
        self.name = name
        self.operands: list[Value] = list(operands or [])
        self.attrs: dict[str, Attr] = dict(attrs or {})
        self.results: list[Value] = [Value(t, self, i) for i, t in enumerate(result_types or [])]
        self.regions: list[Block] = list(regions or [])
        self.parent: Block | None = None
        for r in self.regions:
            r.parent_op = self

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"op {self.name} has {len(self.results)} results, not one")
        return self.results[0]

    @property
    def result_types(self) -> list[Type]:
        return [r.type for r in self.results]

    def walk(self) -> Iterator[Op]:
        """This op, then every op nested in its regions (pre-order)."""
        yield self
        for r in self.regions:
            yield from r.walk()

    def __repr__(self) -> str:
        return f"<Op {self.name} ({len(self.operands)} operands, {len(self.results)} results)>"


class Block:
    __slots__ = ("args", "ops", "parent_op")

    def __init__(self, arg_types: list[Type] | None = None,
                 arg_names: list[str | None] | None = None) -> None:
        names = arg_names or [None] * len(arg_types or [])
        self.args: list[Value] = [
            Value(t, self, i, n) for i, (t, n) in enumerate(zip(arg_types or [], names))
        ]
        self.ops: list[Op] = []
        self.parent_op: Op | None = None

    def append(self, op: Op) -> Op:
        op.parent = self
        self.ops.append(op)
        return op

    def insert_before(self, anchor: Op, op: Op) -> Op:
        op.parent = self
        self.ops.insert(self.ops.index(anchor), op)
        return op

    def remove(self, op: Op) -> None:
        self.ops.remove(op)
        op.parent = None

    def walk(self) -> Iterator[Op]:
        for op in list(self.ops):
            yield from op.walk()

    @property
    def terminator(self) -> Op | None:
        return self.ops[-1] if self.ops else None


@dataclass(eq=False)
class Function:
    name: str
    body: Block
    result_types: list[Type]

    @property
    def args(self) -> list[Value]:
        return self.body.args

    @property
    def arg_types(self) -> list[Type]:
        return [a.type for a in self.body.args]

    def walk(self) -> Iterator[Op]:
        return self.body.walk()


@dataclass(frozen=True)
class QuantSpec:
    """How a parameter is quantized for inference: quantizer name (twn, absmean, threshold,
    stochastic, int8, int4), per output channel or per tensor, and the packing format (t2,
    t1.6 or none)."""

    quantizer: str
    per_channel: bool = False
    format: str = "none"


@dataclass
class ParamDef:
    """A learned parameter of a layer: `param @fc1.weight : tensor<[10, 64], f32> {...}`.
    Names may be dotted: the parameters of a builtin sub-layer are declared by its parent."""

    name: str
    type: Type
    init: str | None = None
    quant: QuantSpec | None = None


@dataclass
class SubLayer:
    """A sub-layer instance `sublayer @fc1 : @TernaryLinear {in_features = 64, ...}`. The kind
    names a LayerDef of the module or a builtin layer of the runtime."""

    name: str
    kind: str
    config: dict[str, Attr] = field(default_factory=dict)


@dataclass(eq=False)
class LayerDef:
    """A `layer`, `model` or `block` definition."""

    kind: str
    name: str
    hparams: dict[str, Attr] = field(default_factory=dict)
    params: list[ParamDef] = field(default_factory=list)
    sublayers: list[SubLayer] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)

    def param(self, name: str) -> ParamDef | None:
        return next((p for p in self.params if p.name == name), None)

    def sublayer(self, name: str) -> SubLayer | None:
        return next((s for s in self.sublayers if s.name == name), None)

    def function(self, name: str) -> Function | None:
        return next((f for f in self.functions if f.name == name), None)


LAYER_KINDS = ("layer", "model", "block")


@dataclass(eq=False)
class Module:
    items: list[LayerDef | Function] = field(default_factory=list)

    @property
    def layers(self) -> list[LayerDef]:
        return [i for i in self.items if isinstance(i, LayerDef)]

    @property
    def functions(self) -> list[Function]:
        return [i for i in self.items if isinstance(i, Function)]

    def layer(self, name: str) -> LayerDef | None:
        return next((i for i in self.layers if i.name == name), None)

    def function(self, name: str) -> Function | None:
        """A module-level function `name` or a layer method `Layer.method`."""
        if "." in name:
            lname, fname = name.split(".", 1)
            layer = self.layer(lname)
            return layer.function(fname) if layer else None
        return next((f for f in self.functions if f.name == name), None)

    def all_functions(self) -> Iterator[tuple[LayerDef | None, Function]]:
        """Every function with its enclosing layer (None for module-level functions)."""
        for item in self.items:
            if isinstance(item, LayerDef):
                for f in item.functions:
                    yield item, f
            else:
                yield None, item

    def walk(self) -> Iterator[Op]:
        for _, f in self.all_functions():
            yield from f.walk()


def count_ops(module: Module) -> int:
    return sum(1 for _ in module.walk())


def uses(root: Block, value: Value) -> list[Op]:
    """The ops under `root` that use `value` as an operand."""
    return [op for op in root.walk() if any(o is value for o in op.operands)]


def use_counts(root: Block) -> dict[int, int]:
    """id(value) → number of operand slots under `root` that read it."""
    counts: dict[int, int] = {}
    for op in root.walk():
        for o in op.operands:
            counts[id(o)] = counts.get(id(o), 0) + 1
    return counts


def replace_all_uses(root: Block, old: Value, new: Value) -> None:
    for op in root.walk():
        op.operands = [new if o is old else o for o in op.operands]


def erase_op(op: Op) -> None:
    if op.parent is not None:
        op.parent.remove(op)


def load_time_ops(f: Function) -> list[Op]:
    """The top-level ops of `f` whose results depend only on parameters and constants (e.g.
    weight quantization, folded batch-norm scales): a backend computes them once when the
    parameters are loaded, not on every call. In program order."""
    known: set[int] = set()
    out: list[Op] = []
    for op in f.body.ops:
        if op.regions or op.name in ("call", "return", "yield"):
            continue
        if op.name in ("param", "constant") or (op.operands and all(id(v) in known for v in op.operands)):
            out.append(op)
            known.update(id(r) for r in op.results)
    return out


# ----------------------------------------------------------------------------------------- copying


def clone_module(m: Module) -> Module:
    """A deep copy of `m` (new ops and values, same structure); attributes are shared
    (they are immutable by convention)."""
    items: list[LayerDef | Function] = []
    for item in m.items:
        if isinstance(item, Function):
            items.append(clone_function(item))
        else:
            items.append(LayerDef(item.kind, item.name, dict(item.hparams),
                                  [ParamDef(p.name, p.type, p.init, p.quant) for p in item.params],
                                  [SubLayer(s.name, s.kind, dict(s.config)) for s in item.sublayers],
                                  [clone_function(f) for f in item.functions]))
    return Module(items)


def clone_function(f: Function) -> Function:
    return Function(f.name, _clone_block(f.body, {}), list(f.result_types))


def _clone_block(block: Block, vmap: dict[int, Value]) -> Block:
    new = Block([a.type for a in block.args], [a.name for a in block.args])
    for old, a in zip(block.args, new.args):
        vmap[id(old)] = a
    for op in block.ops:
        regions = [_clone_block(r, vmap) for r in op.regions]
        operands = [vmap.get(id(o), o) for o in op.operands]
        c = Op(op.name, operands, dict(op.attrs), op.result_types, regions)
        for old, r in zip(op.results, c.results):
            vmap[id(old)] = r
        new.append(c)
    return new


# ----------------------------------------------------------------------------- structural equality


def structurally_equal(a: Module, b: Module) -> bool:
    """Same items, definitions, op names, attributes, types and use-def graph."""
    if len(a.items) != len(b.items):
        return False
    for x, y in zip(a.items, b.items):
        if type(x) is not type(y):
            return False
        if isinstance(x, Function):
            if not _functions_equal(x, y):
                return False
            continue
        if (x.kind, x.name, x.hparams, x.params, x.sublayers) != (
            y.kind, y.name, y.hparams, y.params, y.sublayers
        ) or len(x.functions) != len(y.functions):
            return False
        if not all(_functions_equal(f, g) for f, g in zip(x.functions, y.functions)):
            return False
    return True


def _functions_equal(f: Function, g: Function) -> bool:
    if f.name != g.name or f.result_types != g.result_types:
        return False
    if [a.name for a in f.args] != [a.name for a in g.args]:
        return False
    return _blocks_equal(f.body, g.body, {})


def _blocks_equal(x: Block, y: Block, vmap: dict[int, Value]) -> bool:
    if len(x.args) != len(y.args) or len(x.ops) != len(y.ops):
        return False
    for u, v in zip(x.args, y.args):
        if u.type != v.type:
            return False
        vmap[id(u)] = v
    for p, q in zip(x.ops, y.ops):
        if (p.name, p.attrs, p.result_types) != (q.name, q.attrs, q.result_types):
            return False
        if len(p.operands) != len(q.operands) or len(p.regions) != len(q.regions):
            return False
        if any(vmap.get(id(o)) is not w for o, w in zip(p.operands, q.operands)):
            return False
        if not all(_blocks_equal(r, s, vmap) for r, s in zip(p.regions, q.regions)):
            return False
        for u, v in zip(p.results, q.results):
            vmap[id(u)] = v
    return True
