"""The checker on the builtin forms of the seed language's documented programs: the
keyword arguments of its quantization primitives, the seed's form of learned_quantize,
max/min of numbers, the [in, out] weight of quantized_linear / ternary_linear, and the
diagnostics for their misuse."""

from __future__ import annotations

import pytest

from tritium.check import check_source


def _check(src: str):
    return check_source(src, "t.tri")


def _errors(src: str) -> list[str]:
    return [d.code for d in _check(src).diagnostics if d.severity.name == "ERROR"]


OK = [
    "let w = randn([8, 4])\nlet q = threshold_quantize(w, threshold=0.3, scale=2.0)",
    "let w = randn([8, 4])\nlet q = threshold_quantize(w, mean(abs(w)))",
    "let w = randn([8, 4])\nlet q = adaptive_threshold_quantize(w, percentile=0.7)",
    "let w = randn([8, 4])\nlet q = adaptive_threshold_quantize(w, target_sparsity=0.25)",
    "let w = randn([8, 4])\nlet q = stochastic_quantize(w, temperature=0.5, training=true)",
    "let w = randn([8, 4])\nlet q = soft_quantize(w, temperature=0.2, hard=true)",
    "let w = randn([8, 4])\nlet t = tensor([0.4])\nlet q = learned_quantize(w, t, -t, t, t)",
    "let q = dequantize(ternary_quantize(randn([3, 3])))",
    "let q = dequantize(ternary_quantize(randn([3, 3])), dtype=float16)",
    "let q = affine_dequantize(ternary_quantize(randn([3, 3])), tensor([2.0]))",
    "let w = ternary_weights([4, 4], sparsity=0.5, distribution=\"balanced\")",
    "let y = quantized_linear(randn([2, 6]), randn([6, 3]), quantize_activations=true)",
    "let y = quantized_matmul(randn([2, 6]), randn([6, 3]), quantize_a=true, use_ste=false)",
    "let e = eye(4, dtype=int32)",
    "let d = dropout(randn([2, 2]), p=0.1, training=false)",
    "let m = max(0.5, 1.0 - 3 * 0.1)",
    "fn f(w: Tensor<float32, [?, ?]>) -> Tensor<float32, [?, ?]> {\n"
    "    return stop_gradient(sign(w)) + (w - stop_gradient(w))\n}",
    "fn g(x: Tensor<float32, [?, ?]>) {\n    assert all(x >= -1) && any(x != 0), \"range\"\n}",
    "let n = length([1, 2, 3])",
]


@pytest.mark.parametrize("src", OK)
def test_documented_forms_check(src) -> None:
    assert _errors(src) == [], [(d.code, d.message) for d in _check(src).diagnostics]


def test_result_types() -> None:
    res = _check("let m = max(2, 7)\nlet f = min(0.5, 3)\nlet a = all(randn([2]) > 0)\n"
                 "let y = quantized_linear(randn([2, 6]), randn([6, 3]))\n"
                 "let z = ternary_linear(randn([2, 6]), randn([3, 6]))\n")
    assert res.ok
    spans = res.call_forms
    assert sorted(spans.values()) == ["scalar", "scalar", "w_in_out"]


BAD = [
    ("let q = ternary_weights(randn([2, 2]), sparsity=0.2)", "E0823"),
    ("let q = ternary_weights([2, 2], distribution=\"normal\")", "E0309"),
    ("let q = ternary_weights([2, 2], sparsity=-0.5)", "E0820"),
    ("let q = dequantize(ternary_quantize(randn([2])), dtype=\"float33\")", "E0309"),
    ("let q = learned_quantize(randn([2]), tensor([[0.1, 0.2]]), 0.0)", "E0823"),
    ("let q = all(\"yes\")", "E0404"),
    ("let e = eye(2, dtype=\"quad\")", "E0309"),
]


@pytest.mark.parametrize("src,code", BAD)
def test_misuse_is_a_diagnostic(src, code) -> None:
    assert code in _errors(src), [(d.code, d.message) for d in _check(src).diagnostics]


def test_max_of_a_tensor_and_an_int_stays_a_reduction() -> None:
    res = _check("let x = randn([3, 4])\nlet r = max(x, 1)\nprint(r)\n")
    assert res.ok and not res.call_forms
