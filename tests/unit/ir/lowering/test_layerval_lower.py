"""Lowering the layer-value forms (issue 13, helper seedc): a layer passed to a function
where the actual layer is known, a layer's methods (inlined where called; `self.training`
false), and the forms with no IR (`.weights`, `Model(…)`), which raise LoweringError."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import LoweringError, lower


def lowered(src: str):
    r = check_source(src)
    assert r.ok, [(d.code, d.message) for d in r.errors]
    return lower(r)


def run(src: str, x: np.ndarray):
    low = lowered(src)
    out = interpret(low.module, low.entry, [x], params={})
    return np.asarray(out[0] if isinstance(out, list | tuple) else out)


def test_a_function_given_a_layer_value_lowers_with_that_layer():
    src = """
model M {
    layer act: ReLU {}
    forward(x: Tensor[2, 3]) -> Tensor {
        return twice(act, x) + each([act, act], x)
    }
}
fn twice(l: Layer, x: Tensor) -> Tensor {
    return l(l(x)) * 2.0
}
fn each(ls: [Layer], x: Tensor) -> Tensor {
    let y = x
    for l in ls { y = l(y) - 1.0 }
    return y
}
"""
    x = np.array([[-1.0, 0.5, 2.0], [3.0, -2.0, 0.0]], np.float32)
    r = np.maximum(x, 0)
    expect = r * 2.0 + (np.maximum(np.maximum(x, 0) - 1.0, 0) - 1.0)
    np.testing.assert_allclose(run(src, x), expect, rtol=1e-6)


@pytest.mark.parametrize("body", ["return x @ fc.weights",
                                  "return apply_all(fc, x)"])
def test_forms_without_an_ir_form_raise_lowering_errors(body):
    src = f"""
model M {{
    layer fc: Linear {{ in_features: 2, out_features: 2 }}
    forward(x: Tensor[2, 2]) -> Tensor {{
        {body}
    }}
}}
fn apply_all(l: Layer, x: Tensor) -> Tensor {{
    return Model([l, l])(x)
}}
"""
    with pytest.raises(LoweringError):
        lowered(src)
