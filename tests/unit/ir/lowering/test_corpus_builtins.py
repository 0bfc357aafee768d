"""The builtin forms the seed language's documented programs use that were missing
(stop_gradient, linear/ternary_linear, depthwise_conv2d, log2, all/any, max/min of numbers,
the keyword arguments of the quantization primitives): each checks, generates PyTorch that
the validator accepts and, where the IR can express it, lowers to IR that agrees with the
generated PyTorch; the rest are compared with a PyTorch reference written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import LoweringError, lower

FN = """
layer G(a: Tensor<float32, [3, 5]>, k: Tensor<float32, [5, 2]>) -> Tensor {
    return EXPR
}
"""


def _inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randn(3, 5, generator=g), torch.randn(5, 2, generator=g)]


def _load(expr: str, tmp_path):
    src = FN.replace("EXPR", expr)
    f = tmp_path / "g.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f)
    model.eval()
    return result, model


def _torch(expr: str, tmp_path) -> torch.Tensor:
    _result, model = _load(expr, tmp_path)
    with torch.no_grad():
        return model(*_inputs())


AGREE = [
    "stop_gradient(a) * 2.0",
    "detach(a) + a",
    "log2(abs(a) + 1.0)",
    "linear(a, transpose(k))",
    "linear(a, transpose(k), k[0])",
    "ternary_linear(a, k)",                 # the seed's [in, out] weight
    "ternary_linear(a, transpose(k))",      # [out, in]
    "max(a, 0.25)", "min(0.5, a)", "max(a, k[0:3, 0:1])",
    "max(a, 1)",                            # a reduction over dim 1, not a pair
    "threshold_quantize(a, 0.25, scale=2.0)",
    "threshold_quantize(a, mean(abs(a)))",  # a threshold known at run time
    "stochastic_quantize(a, temperature=2.0, training=false)",
    "soft_quantize(a, temperature=0.5, hard=true)",
    "learned_quantize(a, 0.3, -0.6)",
    "learned_quantize(a, 0.3, -0.6, 2.0, 0.5)",
    "learned_quantize(a, pos_threshold=0.1, neg_threshold=-0.1)",
    "dequantize(ternary_quantize(a))", "dequantize(sign(a), dtype=float64)",
    "affine_dequantize(sign(a), 2.0)",
    "quantized_linear(a, k)",               # [in, out]: only that layout fits a
    "quantized_linear(a, k, quantize_weights=false)",
    "quantized_linear(a, k, quantize_activations=true)",
    "quantized_matmul(a, k, quantize_a=true, quantize_b=false)",
    "depthwise_conv2d(reshape(a, [1, 3, 1, 5]), reshape(k[0:3, 0:1], [3, 1, 1, 1]))",
    "transpose(reshape(a, [3, 5, 1]))",     # no dims: the last two
    "eye(3, dtype=float64)",
    "dropout(a, p=0.5, training=false)",
    "max_abs(a) + max_abs(a, dim=1)",
    "diagonal(a)", "diagonal(transpose(a))", "quantize(a)",
]


@pytest.mark.parametrize("expr", AGREE)
def test_generated_pytorch_and_ir_agree(expr, tmp_path) -> None:
    result, model = _load(expr, tmp_path)
    xs = _inputs()
    with torch.no_grad():
        ref = model(*xs)
    lowered = lower(result, "G")
    got = interpret(lowered.module, lowered.entry, [x.numpy() for x in xs])
    got = got[0] if isinstance(got, list | tuple) else got
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64),
                               ref.to(torch.float64).numpy(), rtol=1e-5, atol=1e-5)


def test_values_against_a_reference(tmp_path) -> None:
    a, k = _inputs()
    assert torch.allclose(_torch("threshold_quantize(a, 0.25, scale=2.0)", tmp_path),
                          torch.sign(a) * (a.abs() > 0.5))
    out = _torch("learned_quantize(a, 0.3, -0.6, 2.0, 0.5)", tmp_path)
    assert torch.allclose(out, 2.0 * (a > 0.3) - 0.5 * (a < -0.6))
    assert torch.allclose(_torch("ternary_linear(a, k)", tmp_path), a @ k)
    assert torch.allclose(_torch("max(a, 0.25)", tmp_path), torch.clamp(a, min=0.25))
    q = _torch("adaptive_threshold_quantize(a, percentile=0.6)", tmp_path)
    assert int((q == 0).sum()) == 9           # 60% of the 15 values are zeros
    assert set(q.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_the_gradients_the_seed_describes(tmp_path) -> None:
    _result, model = _load("stop_gradient(sign(a)) + (a - stop_gradient(a))", tmp_path)
    a, k = _inputs()
    a.requires_grad_(True)
    model(a, k).sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a))    # forward sign(a), backward identity
    _result, model = _load("learned_quantize(a, 0.0, 0.0)", tmp_path)
    a2 = a.detach().clone().requires_grad_(True)
    model(a2, k).sum().backward()
    assert torch.equal(a2.grad, torch.ones_like(a2))


def test_random_forms_run_in_pytorch_only(tmp_path) -> None:
    for expr in ("stochastic_quantize(a, temperature=0.5, seed=3)",
                 "adaptive_threshold_quantize(a, target_sparsity=0.2)",
                 "dropout(a, training=true)"):
        result, model = _load(expr, tmp_path)
        with torch.no_grad():
            out = model(*_inputs())
        assert out.shape == (3, 5)
        with pytest.raises(LoweringError):
            lower(result, "G")
    # a low temperature makes the stochastic rounding the sign of every nonzero value
    out = _torch("stochastic_quantize(a, temperature=0.0001, seed=1)", tmp_path)
    assert torch.equal(out, torch.sign(_inputs()[0]))


def test_sparse_random_trits(tmp_path) -> None:
    src = "let w = ternary_weights([400, 50], sparsity=0.3)\nprint(w)\n"
    f = tmp_path / "w.tri"
    f.write_text(src)
    assert check_source(src, str(f), f).ok
    from tritium.runtime import sparse_random_ternary
    torch.manual_seed(0)
    t = sparse_random_ternary([400, 50], 0.3)
    assert t.dtype == torch.int8 and set(t.unique().tolist()) <= {-1, 0, 1}
    assert abs(float((t == 0).float().mean()) - 0.3) < 0.02
