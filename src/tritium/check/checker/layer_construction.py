"""Constructing a layer by calling its type (the seed's `let model = MyLayer()` then
`model(x)`): a call of a layer definition that passes none of its inputs is an instance. The
arguments given bind the layer's configuration: its hyperparameters (scalar arguments and
the symbolic dims of its weights) and, in a layer written as a function, its weights (a
weight given fixes the dims of its shape, and the instance starts from that tensor); the
weights not given are initialized as in a `layer x: Kind { … }` declaration, which the
instance is. Its hyperparameters may be in its signature (`layer Head(n: int)`) or in a `params { }`
section (`params { n: int }`), as in a declaration. A layer written as a function is
constructed with named arguments only (or none): a call with positional ones, or one that passes an input, is the direct call
`FC(w1, x)` (a pure function) as before; a layer with a `forward` method also takes its
configuration by position, in declaration order. A weight
whose shape the call leaves unknown, or a missing hyperparameter, is reported with the
layer's config rules (E0302) or E0994.

The binding (`construction`) is a pure function of the definition and the call's argument
names, shared by the checker and the code generator; the checker records the call's form
`construct` in `CheckResult.call_forms`."""

from __future__ import annotations

from dataclasses import dataclass

from ...frontend import ast as A
from ..types import ANY, AnyT, LayerT, TensorT, Value
from .model import form_b_inputs, is_function_layer, signature_weights

CONSTRUCT = "construct"


@dataclass(slots=True)
class Construction:
    """How a call binds a layer definition's parameters: the call's argument index of each
    hyperparameter and of each weight given, and the dims a given weight fixes (the
    hyperparameter's name -> (weight, axis))."""
    hyper: dict[str, int]
    weights: dict[str, int]
    dims: dict[str, tuple[str, int]]


def construction(node, names: list[str | None]) -> Construction | None:
    """The binding of a call with the argument names `names` (None: positional) to the
    layer definition `node`, when the call constructs an instance; None otherwise (not a
    layer, an input is passed, or an argument fits no parameter: the direct call's rules
    report it)."""
    if not isinstance(node, A.LayerDef):
        return None
    # the hyperparameters in the signature, then those of a `params { }` section
    params = list(node.params or []) + [p for item in node.body
                                        if isinstance(item, A.ParamsSection) for p in item.params]
    inputs = {p.name for p in form_b_inputs(params)} if is_function_layer(node) else set()
    weights = {p.name for p in signature_weights(node)}
    config = [p for p in params if p.name not in inputs]
    bound: dict[str, int] = {}
    positional = [i for i, n in enumerate(names) if n is None]
    if len(positional) > len(config) or (inputs and positional):
        return None   # by position, a layer written as a function is called directly
    for p, i in zip(config, positional):
        bound[p.name] = i
    # the symbolic dims of the weights are hyperparameters too, given by name
    dim_names = {d.value for p in params if p.name in weights for d in p.type.shape or []
                 if isinstance(d.value, str)}
    for i, n in enumerate(names):
        if n is None:
            continue
        if n in inputs or n in bound or n not in {p.name for p in config} | dim_names:
            return None
        bound[n] = i
    dims: dict[str, tuple[str, int]] = {}
    for p in params:
        if p.name in weights and p.name in bound:
            for axis, d in enumerate(p.type.shape or []):
                if isinstance(d.value, str) and d.value not in bound and d.value not in dims:
                    dims[d.value] = (p.name, axis)
    return Construction({k: i for k, i in bound.items() if k not in weights},
                        {k: i for k, i in bound.items() if k in weights}, dims)


def construct_layer(ck, d, args: list[Value], call: A.Call, scope) -> Value | None:
    """The instance a call of the layer definition `d` makes, or None when the call is not a
    construction. Checked as the declaration `layer <call>: Kind { config }` would be."""
    node = d.node
    c = construction(node, [a.name for a in call.args])
    if c is None or d.kind != "layer":
        return None
    params = {p.name: p for p in node.params or []}
    config: list[A.ConfigEntry] = []
    for name, i in c.hyper.items():
        config.append(A.ConfigEntry(name, call.args[i].value, call.args[i].span))
    for name, i in c.weights.items():
        p, got = params[name], args[i]
        if isinstance(got.ty, AnyT):
            return Value(ANY)   # already reported (an undefined name): no cascade
        declared = ck.type_from_expr(p.type, scope) if p.type is not None else None
        if not isinstance(got.ty, TensorT):
            ck.report("E0994", f"the weight `{name}` of `{d.name}` must be a tensor, got "
                               f"{got.ty}", call.args[i].span)
            return Value(ANY)
        if isinstance(declared, TensorT) and declared.shape is not None \
                and got.ty.shape is not None and (
                    len(declared.shape) != len(got.ty.shape) or any(
                        isinstance(a, int) and isinstance(b, int) and a != b
                        for a, b in zip(declared.shape, got.ty.shape))):
            ck.report("E0994", f"the weight `{name}` of `{d.name}` is declared {declared} but "
                               f"the value has shape {list(got.ty.shape)}",
                      call.args[i].span)
    for dim, (w, axis) in c.dims.items():
        shape = args[c.weights[w]].ty.shape
        size = shape[axis] if shape is not None and axis < len(shape) else None
        if not isinstance(size, int):
            ck.report("E0994", f"constructing `{d.name}` needs the dim `{dim}`, which the "
                               f"shape of the weight `{w}` given here does not fix",
                      call.args[c.weights[w]].span,
                      help=f"pass `{dim}` too: `{d.name}({w}: …, {dim}: …)`")
            continue
        config.append(A.ConfigEntry(dim, A.Num(size, False, call.span), call.span))
    ck.call_forms[call.span] = CONSTRUCT
    decl = A.LayerDecl(f"{d.name}()", [A.LayerKind(d.name, config, None, None, call.span)],
                       None, call.span)
    inst = ck.layer_instance(decl, scope)
    inputs = [p.name for p in form_b_inputs(node.params)] if is_function_layer(node) else [
        p.name for p in ck.forward_of(node).params]
    ck.__dict__.setdefault("constructed_inputs", {})[id(inst)] = inputs
    return Value(LayerT(inst, False))


def instance_inputs(ck, inst, call: A.Call, args: list[Value]) -> list[Value] | None:
    """The inputs of a call of a constructed instance (`model(x)`, `layer(input: x)`) in the
    order its forward takes them, named ones placed by name; None (after E0307) when a name
    is not one of its inputs or the instance was not constructed by a call."""
    inputs = ck.__dict__.get("constructed_inputs", {}).get(id(inst))
    if inputs is None:
        return None
    if all(a.name is None for a in call.args):
        return args
    out: dict[int, Value] = {}
    k = 0
    for a, v in zip(call.args, args):
        if a.name is None:
            out[k] = v
            k += 1
        elif a.name in inputs and inputs.index(a.name) not in out:
            out[inputs.index(a.name)] = v
        else:
            ck.report("E0307", f"`{a.name}` is not an input of `{inst.name}`", a.span,
                      help=f"its inputs: {', '.join(inputs) or 'none'}")
            return None
    if sorted(out) != list(range(len(out))):
        missing = [inputs[i] for i in range(len(out)) if i not in out]
        ck.report("E0307", f"`{inst.name}` is missing its input(s) {', '.join(missing)}",
                  call.span)
        return None
    return [out[i] for i in range(len(out))]
