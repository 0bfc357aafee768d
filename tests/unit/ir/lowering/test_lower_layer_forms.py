"""Lowering the layer forms of the earlier Triton DSL (issue 13) to IR."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lowering_helpers import lower_text, run  # noqa: E402

from tritium.ir import print_module  # noqa: E402

SEED = Path(__file__).resolve().parents[4] / "examples" / "seed"


def test_layer_function_lets_lower_in_order_as_forward_locals():
    low = lower_text("""
layer L(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
    x = relu(x)
    let y = x @ w
    return y * 3.0
}""", "L")
    text = print_module(low.module)
    assert list(low.params) == ["w"]
    assert text.index("relu(") < text.index("matmul(")
    outs, (x,), _ = run(low, {})
    out = outs[0] if isinstance(outs, list | tuple) else outs
    assert np.asarray(out).shape == (x.shape[0], 2)


def test_a_layer_function_called_by_name_lowers_to_a_call():
    low = lower_text("""
layer FC(w: TernaryTensor<trit, [n_in, n_out]>, x: Tensor<float32, [?, n_in]>) -> Tensor<float32, [?, n_out]> {
    return relu(x @ w)
}
layer Net {
    param w1: TernaryTensor[4, 3]
    fn forward(x: Tensor[N, 4]) -> Tensor[N, 3] { return FC(w1, x) }
}""", "Net")
    text = print_module(low.module)
    assert "func @FC(" in text and 'callee = "FC"' in text
    assert list(low.params) == ["w1"]


def test_benchmark_form_weights_lower_to_parameters():
    low = lower_text("""
layer TinyNet(weights: TernaryTensor[10, 5]) {
    forward(x: TernaryTensor[5]) -> TernaryTensor[10] {
        return weights @ x
    }
}""", "TinyNet")
    assert low.params["weights"][0] == (10, 5) and low.params["weights"][3] is not None
    text = print_module(low.module)
    assert "quantize_ternary" in text and "func @forward(%x: tensor<[5], f32>)" in text


def test_weights_bound_in_a_function_lower_to_the_full_call():
    # `let proj = Proj(w, b)` then `proj(x)`: a closure of `bound1__Proj(x, w, b)`
    low = lower_text((SEED / "probe_bound_in_function.tri").read_text(encoding="utf-8"), "M")
    text = print_module(low.module)
    assert "func @bound1__Proj(" in text and 'callee = "Proj"' in text
    outs, (x,), _ = run(low, {"b": 2})
    out = np.asarray(outs[0] if isinstance(outs, list | tuple) else outs)
    w = np.array([[1, 0, -1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    np.testing.assert_allclose(out, (x @ w + 1) + (2 * x @ w + 1), rtol=1e-5, atol=1e-5)
