"""Frontend of the layer-value forms (issue 13, helper seedc): the types `Layer`,
`TernaryLayer`, `Model`, `[Layer]`, `fn(Layer) -> Layer`, nested functions and layer
methods parse and format back."""

from __future__ import annotations

import pytest

from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse

FORMS = [
    "fn f(model: Model, layers: [TernaryLayer], m: Module) -> Layer {\n"
    "    return layers[0]\n}\n",
    "fn f(g: fn(Layer) -> Layer, x: Tensor) -> fn(Tensor) -> Tensor {\n    return g\n}\n",
    "fn f(model: Model, epoch: int32) {\n    for layer in model.layers {\n"
    "        layer.weights = ste_quantize(layer.weights)\n    }\n}\n",
    "let x = 10\n\nfn outer() {\n    let y = 20\n\n    fn inner() {\n"
    "        return x + y\n    }\n\n    return inner()\n}\n",
    "layer L {\n    forward(x: Tensor) -> Tensor {\n        return self.q(x)\n    }\n\n"
    "    function q(b: Tensor) -> Tensor {\n        if self.training {\n"
    "            return b\n        }\n        return b * 2.0\n    }\n}\n",
]


@pytest.mark.parametrize("src", FORMS)
def test_forms_parse_and_format_back(src):
    prog, diags, _ = parse(src)
    assert not [d for d in diags if d.is_error]
    out = format_source(src)
    assert parse(out)[0] == prog


def test_layer_types_parse_to_named_types():
    prog, _, _ = parse("fn f(a: [TernaryLayer], g: fn(Layer) -> Layer) -> Model { return g }")
    fn = prog.items[0]
    assert fn.params[0].type.name == "list" and fn.params[0].type.args[0].name == "TernaryLayer"
    assert fn.params[1].type.name == "fn" and fn.params[1].type.ret.name == "Layer"
    assert fn.ret.name == "Model"
