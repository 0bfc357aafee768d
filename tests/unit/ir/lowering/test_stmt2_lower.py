"""Lowering the forms given to `stmt2` (issue 13) to IR: integer division stored into an
int, the (values, scale) pair of `xnor_quantize`, `if` over a tensor condition (a select),
`with_gradient_from` (its forward value), and a layer constructed in a function body (no IR
form: a clear LoweringError)."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import LoweringError, lower
from tritium.ir.printer import print_module


def lowered(src: str):
    r = check_source(src)
    assert r.ok, [d.message for d in r.errors]
    return lower(r)


def run(src: str, x: np.ndarray):
    low = lowered(src)
    out = interpret(low.module, low.entry, [x], params={})
    return np.asarray(out[0] if isinstance(out, list | tuple) else out)


def test_int_division_sizes_a_shape() -> None:
    src = ("model M {\n"
           "    dim: 12\n"
           "    heads: 4\n"
           "    head_dim: int = dim / heads\n"
           "    forward(x: Tensor[2, 12]) -> Tensor {\n"
           "        return reshape(x, [2, heads, head_dim])\n"
           "    }\n"
           "}\n")
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    assert run(src, x).shape == (2, 4, 3)


def test_tensor_if_is_a_select_and_trits_are_int8() -> None:
    src = ("model M {\n"
           "    forward(x: Tensor[2, 3]) -> Tensor {\n"
           "        let q = if abs(x) < 0.5 { trit(0) } else if x > 0 { trit(1) } else { trit(-1) }\n"
           "        return q * 1.0 + (if x > 0 { x } else { 0.0 })\n"
           "    }\n"
           "}\n")
    text = print_module(lowered(src).module)
    assert "select" in text and "i8" in text
    x = np.array([[-1.0, -0.2, 0.3], [0.6, 2.0, -0.7]], dtype=np.float32)
    q = np.where(np.abs(x) < 0.5, 0, np.where(x > 0, 1, -1))
    np.testing.assert_allclose(run(src, x), q + np.where(x > 0, x, 0.0))


def test_xnor_pair_and_with_gradient_from_forward_values() -> None:
    src = ("model M {\n"
           "    forward(x: Tensor[2, 3]) -> Tensor {\n"
           "        let (s, scale) = xnor_quantize(x)\n"
           "        return (s with_gradient_from x) * scale\n"
           "    }\n"
           "}\n")
    x = np.array([[-1.0, -0.2, 0.0], [0.6, 2.0, -0.7]], dtype=np.float32)
    want = np.where(x >= 0, 1.0, -1.0) * np.abs(x).mean()
    np.testing.assert_allclose(run(src, x), want, rtol=1e-6)


def test_a_layer_constructed_in_a_forward_has_no_ir_form() -> None:
    src = ("layer Fixed(w: TernaryTensor<trit, [3, 3]>, x: Tensor<float32, [?, 3]>) "
           "-> Tensor<float32, [?, 3]> {\n    return x @ w\n}\n"
           "model M {\n"
           "    forward(x: Tensor[2, 3]) -> Tensor {\n"
           "        let m = Fixed()\n"
           "        return m(x)\n"
           "    }\n"
           "}\n")
    with pytest.raises(LoweringError, match="constructs a layer"):
        lower(check_source(src), "M")
