"""A number given where a builtin takes a tensor: elementwise functions take it as a 0-d
tensor (the checker records the argument; the generated code wraps it in
`torch.as_tensor`), functions that work over a tensor's dims refuse it (E0404); and the
`rope` builtin's own checks."""

from __future__ import annotations

import pytest
import torch

import tritium
from tritium.backends.pytorch.codegen import generate
from tritium.check import check_source

FN = """
layer F(x: Tensor<float32, [2, 4]>) -> Tensor<float32, [2, 4]> {
    let s = 2.0
    let r = EXPR
    return x + r
}
"""


def _codes(expr: str) -> list[str]:
    return [d.code for d in check_source(FN.replace("EXPR", expr), "t.tri").errors]


@pytest.mark.parametrize("expr,value", [
    ("sin(2.0)", 0.9092974), ("abs(-3)", 3.0), ("exp(s)", 7.389056), ("relu(-s)", 0.0),
    ("maximum(x, 0) * 0.0 + sqrt(4)", 2.0), ("where(x > 100.0, x, 0.5)", 0.5),
    ("sum(s)", 2.0), ("sigmoid(0)", 0.5),
])
def test_numbers_run_as_0d_tensors(expr, value, tmp_path):
    src = FN.replace("EXPR", expr)
    f = tmp_path / "n.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    assert "torch.as_tensor" in generate(result)
    fn = tritium.load(f, "F")
    x = torch.zeros(2, 4)
    torch.testing.assert_close(fn(x), torch.full((2, 4), value), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("expr", ["layer_norm(0)", "rms_norm(1.0)", "softmax(s)",
                                  "log_softmax(3, dim=0)", "rope(1.0)", "layer_norm(s, 1)"])
def test_functions_over_dims_refuse_a_number(expr):
    assert _codes(expr) == ["E0404"]


def test_a_tensor_argument_is_not_wrapped():
    src = FN.replace("EXPR", "sin(x) + exp(x)")
    assert "as_tensor" not in generate(check_source(src, "t.tri"))


@pytest.mark.parametrize("shape,codes", [
    ("[1, 2, 5, 8]", []), ("[5, 8]", []), ("[b, h, s, d]", []),
    ("[1, 2, 5, 7]", ["E0508"]), ("[8]", ["E0507"]),
])
def test_rope_wants_an_even_head_dim_and_a_sequence(shape, codes):
    src = f"fn g(x: Tensor<float32, {shape}>) -> Tensor {{\n    return rope(x, base: 500.0)\n}}\n"
    assert [d.code for d in check_source(src, "t.tri").errors] == codes
