"""Layers and models as values (the seed's `fn train_epoch(model: Model, …)`,
`layers: [TernaryLayer]`, `fn sequential(layers: [Layer]) -> fn(Tensor) -> Tensor`).

A value declared `Layer`, `TernaryLayer`, `Module` or `Model` (types.ModuleT) is an
nn.Module whose definition is not known where it is used: calling it takes one tensor, by
position, and gives a tensor whose shape is unknown. Where the actual layer is known (a
function called with a model's layer), the layer itself is checked instead (types.LayerT).
On both:

* `m.layers`: the model's layers in order (a list of layer values; its direct sub-layers);
* `m.weights`: the layer's weight tensor (its `weight` parameter, as every builtin kind has,
  else the first parameter it declares); `m.weights = t` updates that parameter in place,
  without gradient (runtime.layer_values.set_layer_weights), so an optimizer holding it keeps
  training the new values;
* `Model(layers)` / `Sequential(layers)`: a model running a list of layers in order.

A layer value also fits a function type of one parameter (`fn(Tensor) -> Tensor`). The
forms the code generator needs are recorded in `CheckResult.call_forms` (by span):
`module_call` (a call through an expression such as `layers[0](x)`), `layer_weights`,
`layer_training`, `set_weights`, `model_layers` and `sequential`.
"""

from __future__ import annotations

from ...frontend import ast as A
from ..types import (
    ANY,
    BOOL,
    AnyT,
    FnSigT,
    LayerT,
    ListT,
    ModuleT,
    TensorT,
    TupleT,
    Value,
)

LAYER_VALUE_TYPES = frozenset({"Layer", "TernaryLayer", "Module", "Model"})
MODEL_CONSTRUCTORS = frozenset({"Model", "Sequential"})
LAYER_ATTRS = ("weights", "layers", "training")

MODULE_CALL = "module_call"
LAYER_WEIGHTS = "layer_weights"
LAYER_TRAINING = "layer_training"
SET_WEIGHTS = "set_weights"
MODEL_LAYERS = "model_layers"
SEQUENTIAL = "sequential"


def is_layer_value(t, attr: str | None = None) -> bool:
    """A layer value; with `attr`, also a value of unknown type read as one (`.weights`,
    `.layers` of an item of an untyped list: the generated code asks the runtime, which
    says clearly when it is not a layer)."""
    return isinstance(t, ModuleT | LayerT) or (
        attr in ("weights", "layers") and isinstance(t, AnyT))


def call_module_value(ck, ty: ModuleT, args: list[Value], e: A.Call, what: str) -> Value:
    """`m(x)` where `m` is a layer value: one tensor, by position; the result is a tensor."""
    named = [a for a in e.args if a.name is not None]
    if named:
        ck.report("E1011", f"{what} takes its input by position, not by name", named[0].span,
                  label="named argument", help=f"write `{_callee(e)}(x)`")
        return Value(ANY)
    if len(args) != 1:
        ck.report("E1011", f"{what} is called on one tensor, got {len(args)} argument(s)",
                  e.span, label=f"{len(args)} argument(s)",
                  help=f"a `{ty.kind}` value maps a tensor to a tensor: `{_callee(e)}(x)`")
        return Value(ANY)
    a = args[0]
    if not isinstance(a.ty, TensorT | AnyT):
        ck.report("E1012", f"{what} is called on a tensor, got {a.ty}", e.args[0].span,
                  label=f"this is {a.ty}")
        return Value(ANY)
    return Value(TensorT("float32", None))


def _callee(e: A.Call) -> str:
    f = e.func
    return f.id if isinstance(f, A.Name) else "layer"


def layer_attr(ck, base: Value, e: A.Attr) -> Value:
    """`m.weights`, `m.layers`, `m.training` on a layer value."""
    if e.attr == "weights":
        ck.call_forms[e.span] = LAYER_WEIGHTS
        return Value(TensorT("float32", None))
    if e.attr == "layers":
        ck.call_forms[e.span] = MODEL_LAYERS
        return Value(ListT(ModuleT("Layer")))
    if e.attr == "training" and not isinstance(base.ty, AnyT):
        ck.call_forms[e.span] = LAYER_TRAINING
        return Value(BOOL)
    ck.report("E1013", f"a layer value has no attribute `{e.attr}`", e.span,
              label="no such attribute",
              help="a layer value has `.weights` (its weight tensor), `.layers` (its "
                   "sub-layers in order) and `.training`")
    return Value(ANY)


def assign_layer_attr(ck, s: A.Assign, v: Value, scope) -> bool:
    """`m.weights = t` (and `+=` …), `v` the value of `t`: checked here; True when `s` is
    such an assignment."""
    t = s.target
    if not isinstance(t, A.Attr) or isinstance(t.value, A.Name) and t.value.id == "self":
        return False
    base = ck.eval_expr(t.value, scope)
    if not is_layer_value(base.ty, t.attr):
        return False
    if t.attr != "weights":
        ck.report("E1013", f"cannot assign `.{t.attr}` of a layer value", t.span,
                  label="not assignable",
                  help="only `.weights` of a layer can be assigned (updated in place)")
        return True
    if not isinstance(v.ty, TensorT | AnyT):
        ck.report("E1014", f"the weights of a layer are a tensor, not {v.ty}", s.value.span,
                  label=f"this is {v.ty}")
        return True
    ck.call_forms[t.span] = SET_WEIGHTS
    return True


def check_assignable_layer(ck, ty, v: Value, span, what: str) -> bool:
    """Assignability to a layer type, and of a layer value to a function type; True when
    it handled the check."""
    got = v.ty
    if isinstance(ty, ModuleT):
        if not isinstance(got, ModuleT | LayerT | AnyT):
            ck.report("E1010", f"`{what}` is declared {ty} but the value is {got}", span,
                      label=f"this is {got}, not a layer",
                      help="pass a layer (one declared with `layer name: Kind {…}`, a "
                           "constructed layer, or an item of `model.layers`)")
        return True
    if isinstance(ty, FnSigT) and isinstance(got, ModuleT | LayerT):
        if len(ty.params) != 1:
            ck.report("E1010", f"`{what}` is declared {ty} (taking {len(ty.params)} "
                               f"argument(s)) but a layer takes one tensor", span)
        return True
    return False


def construct_model(ck, e: A.Call, args: list[Value]) -> Value:
    """`Model(layers)`: a model that runs the layers of a list in order."""
    name = e.func.id
    if len(args) != 1 or e.args[0].name is not None:
        ck.report("E1015", f"`{name}(…)` takes one list of layers, by position", e.span,
                  help=f"write `{name}([l1, l2])` or `{name}(layers)`")
        return Value(ModuleT("Model"))
    a = args[0]
    if not isinstance(a.ty, ListT | TupleT | AnyT):
        ck.report("E1015", f"`{name}(…)` takes a list of layers, got {a.ty}", e.args[0].span,
                  label=f"this is {a.ty}")
        return Value(ModuleT("Model"))
    items = ck.elements(a) or ([Value(a.ty.elem)] if isinstance(a.ty, ListT) and a.ty.elem
                               else [])
    for i, item in enumerate(items):
        if not isinstance(item.ty, ModuleT | LayerT | AnyT):
            ck.report("E1015", f"item {i} of the list given to `{name}(…)` is {item.ty}, not "
                               f"a layer", e.args[0].span)
            break
    ck.call_forms[e.span] = SEQUENTIAL
    return Value(ModuleT("Model"))


def loop_item(it: Value) -> Value | None:
    """The loop variable of `for v in xs` over a list of unknown length: one item of the
    element type (a layer value for `model.layers`), or unknown."""
    if isinstance(it.ty, ListT):
        return Value(it.ty.elem) if it.ty.elem is not None else Value(ANY)
    return None
