"""The verifier: structure, SSA dominance, terminators, attributes and types of every op.

Errors name the function, the op (printed) and the offending value:

    VerifyError: in @Tiny.forward: op 'linear' (%3 = linear(%x, %2) : ...): linear in_features: 64 != 32
"""

from __future__ import annotations

import numpy as np

from .. import vocab
from .core import Block, Dense, Function, LayerDef, Module, Op
from .ops import OPS, InferError, check_attrs, infer_type
from .printer import Printer
from .types import FLOAT_DTYPES, NUMPY_DTYPES, ScalarType, TensorType, Type, types_compatible


class VerifyError(ValueError):
    pass


PACK_FORMATS = (*vocab.FORMATS, "none")
QUANTIZERS = (*vocab.QUANTIZERS, "int8", "int4")


def resolve_param(module: Module, layer: LayerDef | None, name: str) -> Type | None:
    """The declared type of parameter `name` seen from `layer`, following dotted paths through
    sub-layer instances whose kind is a layer of the module; None if there is none."""
    if layer is None:
        return None
    p = layer.param(name)
    if p is not None:
        return p.type
    head, _, rest = name.partition(".")
    sub = layer.sublayer(head)
    if rest and sub is not None and module.layer(sub.kind) is not None:
        return resolve_param(module, module.layer(sub.kind), rest)
    return None


def resolve_call(module: Module, layer: LayerDef | None, op: Op) -> tuple[LayerDef | None, Function, str]:
    """(layer of the callee, callee, parameter prefix) of a `call` op; raises VerifyError."""
    callee, inst = op.attrs.get("callee"), op.attrs.get("instance")
    if inst is not None:
        sub = layer.sublayer(inst) if layer else None
        if sub is None:
            raise VerifyError(f"no sub-layer instance '{inst}'")
        target = module.layer(sub.kind)
        if target is None:
            raise VerifyError(f"sub-layer '{inst}' is of builtin kind '{sub.kind}'; lower it to ops")
        f = target.function(callee)
        if f is None:
            raise VerifyError(f"layer '{sub.kind}' has no method '{callee}'")
        return target, f, inst + "."
    if layer is not None and layer.function(callee) is not None:
        return layer, layer.function(callee), ""  # type: ignore[return-value]
    f = module.function(callee)
    if f is None or "." in callee:
        raise VerifyError(f"no function '{callee}'")
    return None, f, ""


def _check_constant(op: Op) -> None:
    t, v = op.results[0].type, op.attrs["value"]
    if isinstance(t, TensorType) and not t.is_static:
        raise InferError(f"a tensor constant needs a static type, got {t}")
    if isinstance(v, Dense):
        if not isinstance(t, TensorType):
            raise InferError("a dense constant needs a tensor type")
        if len(v.data) != t.numel():
            raise InferError(f"dense constant has {len(v.data)} elements, type {t} needs {t.numel()}")
        vals = v.data
    else:
        vals = (v,)
    if t.dtype == "str" or isinstance(v, str):
        raise InferError("str constants are not supported")
    if any(not isinstance(x, bool | int | float) for x in vals):
        bad = next(x for x in vals if not isinstance(x, bool | int | float))
        raise InferError(f"a constant's elements must be numbers, got {str(bad)[:40]!r}")
    if t.dtype == "trit" and any(x not in (-1, 0, 1) or isinstance(x, float) for x in vals):
        raise InferError("trit constants must be -1, 0 or 1")
    if t.dtype not in FLOAT_DTYPES and any(isinstance(x, float) for x in vals):
        raise InferError(f"float value in a constant of type {t}")
    if t.dtype == "bool" and any(not isinstance(x, bool) for x in vals):
        raise InferError(f"non-bool value in a constant of type {t}")
    if t.dtype in ("i8", "u8", "i16", "i32", "i64"):
        info = np.iinfo(NUMPY_DTYPES[t.dtype])
        if any(not info.min <= x <= info.max for x in vals):
            raise InferError(f"value out of range for {t.dtype}")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` (node → successors) as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        if state.get(node) == 1:
            return path[path.index(node):] + [node]
        if state.get(node) == 2:
            return None
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, path + [node])
            if found:
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return None


class Verifier:
    def __init__(self, module: Module) -> None:
        self.module = module
        self.layer: LayerDef | None = None
        self.func: Function | None = None
        self.calls: dict[str, set[str]] = {}  # "Layer.f" / "f" → callees, for the cycle check

    def fail(self, op: Op | None, msg: str) -> VerifyError:
        where = self.func.name if self.func else "?"
        if self.layer is not None:
            where = f"{self.layer.name}.{where}"
        if op is None:
            return VerifyError(f"in @{where}: {msg}")
        printer = Printer()
        if self.func is not None:
            printer.function(self.func, 0)  # names values as the printed function does
        return VerifyError(f"in @{where}: op '{op.name}' ({printer.op_line(op, define=False)}): {msg}")

    def run(self) -> None:
        names = [i.name for i in self.module.items]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise VerifyError(f"duplicate module item names: {', '.join(sorted(dup))}")
        for item in self.module.items:
            if isinstance(item, LayerDef):
                self.verify_layer(item)
            else:
                self.layer = None
                self.verify_function(item)
        self.check_recursion()

    def check_recursion(self) -> None:
        cycle = find_cycle(self.calls)
        if cycle:
            raise VerifyError(f"recursive calls are not allowed: {' -> '.join(cycle)}")
        nested = {la.name: {s.kind for s in la.sublayers if self.module.layer(s.kind)} for la in self.module.layers}
        cycle = find_cycle(nested)
        if cycle:
            raise VerifyError(f"layers instantiate themselves: {' -> '.join(cycle)}")

    def verify_layer(self, layer: LayerDef) -> None:
        self.layer, self.func = layer, None
        if layer.kind not in ("layer", "model", "block"):
            raise VerifyError(f"@{layer.name}: unknown layer kind '{layer.kind}'")
        names = [p.name for p in layer.params] + [s.name for s in layer.sublayers] + [
            f.name for f in layer.functions]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise VerifyError(f"@{layer.name}: duplicate member names: {', '.join(sorted(dup))}")
        for p in layer.params:
            q = p.quant
            if q is not None and (q.format not in PACK_FORMATS or not isinstance(q.per_channel, bool)
                                  or q.quantizer not in QUANTIZERS):
                raise VerifyError(f"@{layer.name}: parameter '{p.name}' has an invalid quantization spec {q}")
        for f in layer.functions:
            self.verify_function(f)

    def verify_function(self, f: Function) -> None:
        self.func = f
        term = f.body.terminator
        if term is None or term.name != "return":
            raise self.fail(term, "function body must end with 'return'")
        self.verify_block(f.body, set(), top=True)
        got = [v.type for v in term.operands]
        if len(got) != len(f.result_types) or not all(
            types_compatible(a, b) for a, b in zip(got, f.result_types)
        ):
            raise self.fail(term, f"returns ({', '.join(map(str, got))}) but the function declares "
                                  f"({', '.join(map(str, f.result_types))})")

    def verify_block(self, block: Block, scope: set[int], top: bool) -> None:
        scope = set(scope)
        for a in block.args:
            scope.add(id(a))
        for i, op in enumerate(block.ops):
            if op.parent is not block:
                raise self.fail(op, "op's parent link does not point to its block")
            last = i == len(block.ops) - 1
            d = OPS.get(op.name)
            if d is None:
                raise self.fail(op, f"unknown op '{op.name}'")
            if d.terminator and not last:
                raise self.fail(op, "terminator in the middle of a block")
            if d.terminator and (op.name == "return") != top:
                raise self.fail(op, f"'{op.name}' is not allowed here")
            for k, v in enumerate(op.operands):
                if id(v) not in scope:
                    raise self.fail(op, f"operand #{k} ({v!r}) is not defined before its use "
                                        "(or is defined in a region that does not enclose the use)")
            if len(op.regions) != d.regions:
                raise self.fail(op, f"expects {d.regions} regions, has {len(op.regions)}")
            for r in op.regions:
                if r.parent_op is not op:
                    raise self.fail(op, "region's parent link does not point to its op")
                self.verify_block(r, scope, top=False)
            try:
                self.verify_op(op)
            except InferError as e:
                raise self.fail(op, str(e)) from None
            for r in op.results:
                if r.owner is not op:
                    raise self.fail(op, "result's owner link does not point to its op")
                scope.add(id(r))
        if not top and (not block.ops or block.ops[-1].name != "yield"):
            raise self.fail(block.parent_op, "region must end with 'yield'")

    def verify_op(self, op: Op) -> None:
        d = OPS[op.name]
        types = [v.type for v in op.operands]
        lo, hi = d.operands
        if len(types) < lo or (hi is not None and len(types) > hi):
            raise InferError(f"takes {lo}..{hi if hi is not None else ''} operands, has {len(types)}")
        check_attrs(op.name, op.attrs)
        got = op.result_types
        if d.infer is not None:
            want = infer_type(op.name, types, op.attrs)
            if len(got) != len(want) or not all(types_compatible(a, b) for a, b in zip(got, want)):
                raise InferError(f"result types ({', '.join(map(str, got))}) do not match the "
                                 f"inferred ({', '.join(map(str, want))})")
            return
        if d.terminator:
            if got:
                raise InferError("a terminator has no results")
            return
        if op.name == "constant":
            if len(got) != 1:
                raise InferError("constant has one result")
            _check_constant(op)
        elif op.name == "param":
            if len(got) != 1:
                raise InferError("param has one result")
            t = resolve_param(self.module, self.layer, op.attrs["name"])
            if t is None:
                raise InferError(f"no parameter '{op.attrs['name']}' in "
                                 f"{'layer ' + self.layer.name if self.layer else 'a module-level function'}")
            if t != got[0]:
                raise InferError(f"parameter '{op.attrs['name']}' has type {t}, the op says {got[0]}")
        elif op.name == "call":
            try:
                target, f, _ = resolve_call(self.module, self.layer, op)
            except VerifyError as e:
                raise InferError(str(e)) from None
            caller = f"{self.layer.name}.{self.func.name}" if self.layer else self.func.name  # type: ignore[union-attr]
            self.calls.setdefault(caller, set()).add(f"{target.name}.{f.name}" if target else f.name)
            if len(types) != len(f.arg_types) or not all(
                types_compatible(a, b) for a, b in zip(types, f.arg_types)
            ):
                raise InferError(f"arguments ({', '.join(map(str, types))}) do not match callee "
                                 f"'{f.name}' ({', '.join(map(str, f.arg_types))})")
            if len(got) != len(f.result_types) or not all(
                types_compatible(a, b) for a, b in zip(got, f.result_types)
            ):
                raise InferError(f"results do not match callee '{f.name}' results")
        elif op.name == "if":
            c = types[0]
            if c != ScalarType("bool") and c != TensorType((), "bool"):
                raise InferError(f"condition must be a bool scalar, got {c}")
            for r in op.regions:
                ys = [v.type for v in r.ops[-1].operands]
                if len(ys) != len(got) or not all(types_compatible(a, b) for a, b in zip(ys, got)):
                    raise InferError(f"region yields ({', '.join(map(str, ys))}) but the op "
                                     f"results are ({', '.join(map(str, got))})")


def verify(module: Module) -> None:
    """Raise VerifyError on the first problem found in `module`."""
    Verifier(module).run()
