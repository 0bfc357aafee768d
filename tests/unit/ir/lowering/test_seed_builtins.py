"""The seed language's builtin functions (issue 13, form 2): each checks, generates PyTorch
and lowers to IR, and the generated PyTorch function and the IR interpreter agree on values
(the random quantizers, which have no IR lowering, are checked in PyTorch: reproducible
with a seed, and with the distribution their definition gives)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tritium
from tritium.backends.pytorch.codegen import generate
from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import LoweringError, lower

FN = """
layer F(x: Tensor<float32, [4, 6]>, w: Tensor<float32, [3, 6]>) -> Tensor {
    return EXPR
}
"""


def _inputs(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 6, generator=g), torch.randn(3, 6, generator=g)]


def _build(expr: str, tmp_path):
    src = FN.replace("EXPR", expr)
    f = tmp_path / "f.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    generate(result)   # the generated source passes the validator
    model = tritium.load(f)
    model.eval()
    return result, model


def _both(expr: str, tmp_path, seed: int = 0):
    result, fn = _build(expr, tmp_path)
    xs = _inputs(seed)
    with torch.no_grad():
        ref = fn(*xs)
    lowered = lower(result, "F")
    got = interpret(lowered.module, lowered.entry, [x.numpy() for x in xs])
    got = got[0] if isinstance(got, list | tuple) else got
    return np.asarray(got), ref


DETERMINISTIC = [
    "sin(x) + cos(x) * tan(x * 0.5)",
    "floor(x * 3.0) + ceil(x * 3.0) + round(x * 3.0)",
    "log10(abs(x) + 1.0)",
    "pow(x, 2.0) + pow(2.0, x)",
    "std(x)", "std(x, dim=1)", "std(x, axis=0, keepdim=true)", "std(x, 1, unbiased=false)",
    "var(x, axis=1)",
    "dot(x[0], x[1])", "outer(x[0], w[1])",
    "split(x, 2, dim=1)[1]", "split(x, [1, 3], axis=0)[1]",
    "clip(x, -0.5, 0.5)", "clip(x, min_val=-0.5, max_val=0.25)",
    "transpose(w) * 2.0",
    "layer_norm(x, [6])", "layer_norm(x, [6], w[0], w[1])", "layer_norm(x, 6, gamma=w[0])",
    "mse_loss(x, x * 0.5)", "mse_loss(x, w[0], reduction=\"sum\")",
    "mse_loss(x, x * 0.5, reduction=\"none\")",
    "cross_entropy(x, argmax(x * -1.0, dim=1))",
    "cross_entropy(x, cast(abs(x[0:4, 0]) * 2.0, int64), reduction=\"sum\")",
    "cross_entropy(reshape(x, [2, 2, 6]), reshape(argmax(x * -1.0, dim=1), [2, 2]), "
    "reduction=\"none\")",
    "tensor([[1.0, 2.0], [3.0, 4.0]], dtype=float32) * 2.0",
    "tensor([1, 0, -1], dtype=\"trit\")",
    "ternary_tensor([[1, 0], [-1, 1]])",
    "arange(5)", "arange(1, 7, 2)", "arange(0.0, 1.0, 0.25)", "linspace(0.0, 1.0, 5)",
    "eye(3)", "eye(2, 3)", "zeros([2, 3], dtype=float64)", "ones([2], dtype=\"int32\")",
    "full([2, 2], 3.0, requires_grad=false)",
    "conv2d(reshape(x, [1, 1, 4, 6]), reshape(w, [2, 1, 3, 3]), padding=1)",
    "conv2d(reshape(x, [1, 2, 2, 6]), reshape(w[0], [1, 2, 1, 3]), stride=[1, 2])",
    "batch_norm(x, w[0, 0:6], abs(w[1]) + 0.5)",
    "batch_norm(reshape(x, [2, 3, 4]), w[0, 0:3], abs(w[1, 0:3]) + 0.5, w[2, 0:3], w[0, 3:6])",
    "batch_norm(reshape(x, [2, 3, 2, 2]), w[0, 0:3], abs(w[1, 0:3]) + 0.5, training=true)",
    "ternary_quantize(x)", "quantize_ternary(x, quantizer=\"absmean\")",
    "ternary_quantize(x, threshold=0.5)", "quantize_ternary(w, per_channel=true)",
    "threshold_quantize(x)", "threshold_quantize(x, 0.25)",
    "adaptive_threshold_quantize(x)", "adaptive_threshold_quantize(w, 0.5, per_channel=true)",
    "learned_quantize(x, 0.5)", "learned_quantize(x, abs(w[0, 0]) + 0.1, threshold=0.3)",
    "soft_quantize(x)", "soft_quantize(x, temperature=0.2)",
    "xnor_quantize(x)", "ste_quantize(x)", "clipped_ste_quantize(x, 0.3, clip=2.0)",
    "dequantize(ternary_weights(w), 0.5)", "ternary_dequantize(ternary_weights(w), abs(x[0, 0:3]))",
    "affine_dequantize(ternary_weights(w), 0.5, 1.0)",
    "ternary_weights(w, quantizer=\"absmean\")",
    "quantized_linear(x, w)", "quantized_linear(x, w, w[0, 0:3], quantizer=\"absmean\")",
    "quantized_matmul(x, transpose(w))",
    "quantized_conv2d(reshape(x, [1, 1, 4, 6]), reshape(w, [2, 1, 3, 3]), padding=[1, 1])",
    "sum(x, axis=1) + mean(x, axis=1)", "softmax(x, axis=0)",
    "cast(x * 4.0, int8)", "cast(x, float64)",
]


@pytest.mark.parametrize("expr", DETERMINISTIC)
def test_builtin_matches_interpreter(expr, tmp_path):
    got, ref = _both(expr, tmp_path)
    assert got.shape == tuple(ref.shape)
    if not ref.is_floating_point():
        np.testing.assert_array_equal(got, ref.numpy())
    else:
        np.testing.assert_allclose(got.astype(np.float64), ref.double().numpy(),
                                   rtol=1e-4, atol=1e-4)


def test_quantizer_values_follow_the_literature():
    from tritium import runtime as trt
    x = torch.tensor([-2.0, -0.6, -0.1, 0.0, 0.2, 0.8, 3.0])
    assert trt.threshold_quantize(x, 0.5).tolist() == [-1, -1, 0, 0, 0, 1, 1]
    delta = 0.7 * x.abs().mean()          # TWN: 0.7 * mean|w|
    assert torch.equal(trt.adaptive_threshold_quantize(x), torch.sign(x) * (x.abs() > delta))
    alpha = x.abs().mean()                # XNOR: sign with a mean-abs scale, sign(0) = +1
    assert torch.allclose(trt.xnor_quantize(x), alpha * torch.tensor([-1., -1, -1, 1, 1, 1, 1]))
    soft = trt.soft_quantize(x, 0.01)     # the hard staircase as T -> 0
    assert soft.round().tolist() == [-1, -1, 0, 0, 0, 1, 1]


def test_ste_gradients():
    from tritium import runtime as trt
    x = torch.tensor([-2.0, -0.3, 0.4, 0.9], requires_grad=True)
    trt.ste_quantize(x).sum().backward()
    assert x.grad.tolist() == [1, 1, 1, 1]                    # identity STE
    x.grad = None
    trt.clipped_ste_quantize(x, clip=1.0).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1]                    # hard-tanh STE
    s = torch.tensor(0.5, requires_grad=True)
    trt.learned_quantize(x, s).sum().backward()
    assert s.grad is not None                                 # the learned step gets a gradient


def test_stochastic_quantize_is_reproducible_and_unbiased():
    from tritium import runtime as trt
    x = torch.full((20000,), 0.3)
    a, b = trt.stochastic_quantize(x, seed=7), trt.stochastic_quantize(x, seed=7)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(a.mean().item() - 0.3) < 0.02                 # E[q] = clamp(x, -1, 1)
    assert not torch.equal(a, trt.stochastic_quantize(x, seed=8))


def test_gumbel_softmax_quantize():
    from tritium import runtime as trt
    x = torch.tensor([-1.0, 0.0, 1.0]).repeat(2000)
    hard = trt.gumbel_softmax_quantize(x, temperature=0.5, seed=1)
    assert set(hard.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.equal(hard, trt.gumbel_softmax_quantize(x, temperature=0.5, seed=1))
    # the nearest level is the most likely one
    for level in (-1.0, 0.0, 1.0):
        picked = hard[x == level]
        assert (picked == level).float().mean() > 0.5
    soft = trt.gumbel_softmax_quantize(x, hard=False, seed=1)
    assert soft.min() >= -1 and soft.max() <= 1


@pytest.mark.parametrize("expr", ["stochastic_quantize(x, seed=3)",
                                  "gumbel_softmax_quantize(x, temperature=0.5, seed=3)"])
def test_random_quantizers_run_in_pytorch_not_the_ir(expr, tmp_path):
    result, fn = _build(expr, tmp_path)
    xs = _inputs()
    a, b = fn(*xs), fn(*xs)
    assert torch.equal(a, b) and a.shape == xs[0].shape     # seeded: reproducible
    with pytest.raises(LoweringError, match="random"):
        lower(result, "F")


SEED = __import__("pathlib").Path(__file__).resolve().parents[4] / "examples" / "seed"


def _functions(name: str) -> dict:
    from tritium.check import check_file
    result = check_file(SEED / name)
    assert result.ok, [d.message for d in result.diagnostics]
    ns: dict = {}
    exec(compile(generate(result), name, "exec"), ns)   # noqa: S102 (validated generated code)
    return ns


def test_seed_example_functions_run_in_pytorch():
    g = torch.Generator().manual_seed(0)
    q = _functions("builtins_quantizers.tri")
    w = torch.randn(16, 8, generator=g)
    assert q["twn"](w).shape == (16, 8)
    a, b = q["compare_quantizers"](w), q["compare_quantizers"](w)
    assert torch.equal(a, b)                                  # the random ones are seeded
    assert q["trits_and_back"](w, torch.rand(16, generator=g)).shape == (16, 8)
    m = _functions("builtins_math.tri")
    x = torch.randn(6, 8, generator=g)
    pe = m["positional_encoding"](x)
    pos = torch.arange(6.0).reshape(6, 1) * torch.pow(10.0, torch.linspace(0, -2, 8)).reshape(1, 8)
    torch.testing.assert_close(pe, x + torch.sin(pos) + torch.cos(pos))
    st = m["statistics"](x)
    z = (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-5)
    torch.testing.assert_close(st, z.clamp(-3, 3).sum(1, keepdim=True))
    assert m["rounding"](torch.randn(4, generator=g)).shape == (4,)
    a4, b3 = torch.randn(4, generator=g), torch.randn(3, generator=g)
    out = m["products"](a4, b3)
    extra = torch.tensor([[1.0, 0, 0], [0, 1, 0]]) + torch.tensor([[1.0, 0, -1], [0, 1, 1]])
    torch.testing.assert_close(out, torch.outer(a4, b3) * a4.dot(a4) + extra.sum(0))
    layers = _functions("builtins_layers.tri")
    y = torch.randn(2, 16, generator=g)
    torch.testing.assert_close(layers["reconstruction_loss"](y, y * 0.5),
                               ((y - y * 0.5) ** 2).mean())


def test_requires_grad_and_training_batch_norm():
    from tritium import runtime as trt
    t = trt.with_dtype(torch.zeros(2, 3), "float32", True)
    assert t.requires_grad and t.dtype == torch.float32
    assert trt.tensor([[1, 0], [-1, 1]], dtype="trit").dtype == torch.int8
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    rm, rv = torch.zeros(3), torch.ones(3)
    y = trt.batch_norm(x, rm, rv, training=True)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    assert not torch.equal(rm, torch.zeros(3))             # running stats updated in training


SEEDED = """
layer Noise(in_features: int, out_features: int) {
    let W: TernaryTensor = random_ternary([out_features, in_features], seed=3)
    param s: Tensor[1] = randn([1], seed=5)
    fn forward(x: Tensor<float32, [?, in_features]>) -> Tensor<float32, [?, out_features]> {
        let y = ternary_matmul(x, W) * s
        return y.clip(-1.0, 1.0) + x.std(axis=1, keepdim=true)
    }
}
"""


def test_seeded_creation_and_method_calls(tmp_path):
    """`seed=` on random creation gives the same weights on every load; builtins called as
    methods (`y.clip(...)`, `x.std(axis=1)`) bind like calls."""
    f = tmp_path / "noise.tri"
    f.write_text(SEEDED)
    a = tritium.load(f, "Noise", in_features=4, out_features=3)
    b = tritium.load(f, "Noise", in_features=4, out_features=3)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    a.eval()
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    w = a.state_dict()["W"] if "W" in a.state_dict() else None
    with torch.no_grad():
        y = a(x)
    assert y.shape == (2, 3)
    if w is not None:
        s = a.state_dict()["s"]
        ref = torch.clamp(x @ w.float().T * s, -1, 1) + x.std(1, keepdim=True)
        torch.testing.assert_close(y, ref)
