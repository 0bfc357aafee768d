"""The reference interpreter agrees with torch on every layer op (torch is the standard)."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.ir import Module, interpret, new_function, tensor

torch = pytest.importorskip("torch")
F = torch.nn.functional
rng = np.random.default_rng(0)


def run1(name: str, arrays: list[np.ndarray], dtypes: list[str] | None = None, **attrs) -> np.ndarray:
    """Build a one-op function over `arrays` and interpret it."""
    dtypes = dtypes or ["f32"] * len(arrays)
    f, b = new_function("f", [(f"a{i}", tensor(a.shape, d)) for i, (a, d) in enumerate(zip(arrays, dtypes))])
    out = b.op(name, *f.args, **attrs)
    out = out if not isinstance(out, tuple) else out[0]
    b.ret(out)
    f.result_types = [out.type]
    return interpret(Module([f]), "f", arrays)[0]


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def close(a: np.ndarray, b: torch.Tensor, tol: float = 1e-5) -> None:
    np.testing.assert_allclose(a, b.detach().numpy(), rtol=tol, atol=tol)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (2, 1, 1, 2), (1, 1, 1, 4), (3, 0, 1, 1),
])
def test_conv2d(stride: int, padding: int, dilation: int, groups: int) -> None:
    x, w, bias = rand(2, 4, 9, 7), rand(8, 4 // groups, 3, 3), rand(8)
    got = run1("conv2d", [x, w, bias], stride=[stride, stride], padding=[padding, padding],
               dilation=[dilation, dilation], groups=groups)
    close(got, F.conv2d(t(x), t(w), t(bias), stride, padding, dilation, groups), 1e-4)


def test_linear_matmul() -> None:
    x, w, b = rand(3, 5, 6), rand(4, 6), rand(4)
    close(run1("linear", [x, w, b]), F.linear(t(x), t(w), t(b)))
    a, c = rand(2, 3, 4), rand(4, 5)
    close(run1("matmul", [a, c]), t(a) @ t(c))
    v = rand(4)
    close(run1("matmul", [v, c]), t(v) @ t(c))
    close(run1("matmul", [a, v]), t(a) @ t(v))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate: str) -> None:
    x = rand(64) * 4
    close(run1("gelu", [x], approximate=approximate), F.gelu(t(x), approximate=approximate))


@pytest.mark.parametrize("name", ["relu", "relu6", "silu", "sigmoid", "tanh", "exp", "abs", "neg", "sign"])
def test_unary(name: str) -> None:
    x = rand(5, 7) * 5
    ref = {"relu": F.relu, "relu6": F.relu6, "silu": F.silu, "sigmoid": torch.sigmoid,
           "tanh": torch.tanh, "exp": torch.exp, "abs": torch.abs, "neg": torch.neg, "sign": torch.sign}[name]
    close(run1(name, [x]), ref(t(x)), 1e-5 if name != "exp" else 1e-4)


def test_softmax_and_log_softmax() -> None:
    x = rand(3, 4, 5) * 10
    close(run1("softmax", [x], dim=1), F.softmax(t(x), dim=1))
    close(run1("log_softmax", [x], dim=-1), F.log_softmax(t(x), dim=-1))


@pytest.mark.parametrize("shape,dim", [((3, 0), 1), ((3, 0), -1), ((0, 4), 1), ((2, 0, 3), 2)])
def test_softmax_of_an_empty_tensor_is_empty(shape: tuple[int, ...], dim: int) -> None:
    """A softmax over a tensor with a dim of size 0 (`softmax(x[:, 4:], dim=1)` of x [3, 4])
    is an empty tensor, as in torch (the interpreter raised 'zero-size array to reduction
    operation maximum')."""
    x = np.zeros(shape, np.float32)
    close(run1("softmax", [x], dim=dim), F.softmax(t(x), dim=dim))
    close(run1("log_softmax", [x], dim=dim), F.log_softmax(t(x), dim=dim))


def test_batch_norm() -> None:
    x, m, v, g, b = rand(2, 3, 4, 4), rand(3), np.abs(rand(3)) + 0.1, rand(3), rand(3)
    got = run1("batch_norm", [x, m, v, g, b], eps=1e-3)
    close(got, F.batch_norm(t(x), t(m), t(v), t(g), t(b), training=False, eps=1e-3))


def test_layer_and_rms_norm() -> None:
    x, w, b = rand(2, 3, 8), rand(3, 8), rand(3, 8)
    close(run1("layer_norm", [x, w, b], normalized_ndim=2), F.layer_norm(t(x), (3, 8), t(w), t(b)))
    close(run1("rms_norm", [x, w[0]], eps=1e-6), F.rms_norm(t(x), (8,), t(w[0]), eps=1e-6))


@pytest.mark.parametrize("k,s,p,ceil", [(2, None, 0, False), (3, 2, 1, False), (3, 1, 1, False),
                                        (2, None, 0, True), (3, 2, 1, True), (3, 3, 1, True), (2, 3, 0, True)])
def test_pools(k: int, s: int | None, p: int, ceil: bool) -> None:
    x = rand(2, 3, 7, 9)
    stride = None if s is None else [s]
    close(run1("max_pool2d", [x], kernel_size=[k], stride=stride, padding=[p, p], ceil_mode=ceil),
          F.max_pool2d(t(x), k, s, p, ceil_mode=ceil))
    close(run1("avg_pool2d", [x], kernel_size=[k, k], stride=stride, padding=[p], ceil_mode=ceil),
          F.avg_pool2d(t(x), k, s, p, ceil_mode=ceil))
    close(run1("max_pool2d", [x], kernel_size=[k], stride=stride, padding=[p], dilation=[2, 1], ceil_mode=ceil),
          F.max_pool2d(t(x), k, s, p, dilation=(2, 1), ceil_mode=ceil))


@pytest.mark.parametrize("out", [(1, 1), (3, 2), (7, 9), (4, 5)])
def test_adaptive_avg_pool(out: tuple[int, int]) -> None:
    x = rand(2, 3, 7, 9)
    close(run1("adaptive_avg_pool2d", [x], output_size=list(out)), F.adaptive_avg_pool2d(t(x), out))


@pytest.mark.parametrize("causal", [False, True])
def test_attention(causal: bool) -> None:
    q, k, v = rand(2, 3, 5, 4), rand(2, 3, 5, 4), rand(2, 3, 5, 6)
    got = run1("scaled_dot_product_attention", [q, k, v], causal=causal)
    close(got, F.scaled_dot_product_attention(t(q), t(k), t(v), is_causal=causal))
    bmask = rng.random((5, 5)) > 0.3
    np.fill_diagonal(bmask, True)
    fmask = rand(3, 1, 5)
    for mask, dt in ((bmask, "bool"), (fmask, "f32")):
        got = run1("scaled_dot_product_attention", [q, k, v, mask], ["f32", "f32", "f32", dt], scale=0.3)
        tm = torch.from_numpy(mask) if dt == "bool" else t(mask)
        close(got, F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=tm, scale=0.3))
    e, h = 8, 2
    mha = torch.nn.MultiheadAttention(e, h, batch_first=True)
    x = rand(2, 5, e)
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1) if causal else None
    ref, _ = mha(t(x), t(x), t(x), attn_mask=mask, need_weights=False)
    params = [mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias]
    got = run1("multi_head_attention", [x] + [p.detach().numpy() for p in params], num_heads=h, causal=causal)
    close(got, ref)


def test_embedding_and_shapes() -> None:
    idx, w = np.array([[0, 2], [1, 1]]), rand(3, 4)
    close(run1("embedding", [idx, w], ["i64", "f32"]), F.embedding(torch.from_numpy(idx), t(w)))
    x = rand(2, 3, 4)
    close(run1("flatten", [x], start_dim=1), torch.flatten(t(x), 1))
    close(run1("permute", [x], dims=[2, 0, 1]), t(x).permute(2, 0, 1))
    close(run1("slice", [x], dim=2, start=1, end=None, step=2), t(x)[:, :, 1::2])
    close(run1("index", [x], dim=1, index=-1), t(x)[:, -1])
    close(run1("concat", [x, x], dim=1), torch.cat([t(x), t(x)], 1))
    close(run1("stack", [x, x], dim=3), torch.stack([t(x), t(x)], 3))
    close(run1("mean", [x], dims=[0, 2], keepdim=True), t(x).mean((0, 2), keepdim=True))
    close(run1("max", [x], dims=[1]), t(x).amax(1))
    close(run1("clamp", [x], min=-0.5, max=None), t(x).clamp(min=-0.5))
    close(run1("clamp", [x], min=-0.5, max=0.25), t(x).clamp(-0.5, 0.25))
    close(run1("reshape", [x], shape=[0, 0, 2, -1]), t(x).reshape(2, 3, 2, 2))
    close(run1("squeeze", [x[:, :1]]), t(x[:, :1]).squeeze())
    two = np.full((4,), 2, np.float32)
    close(run1("floordiv", [x * 5, two]), torch.floor_divide(t(x * 5), t(two)))


def test_ternarize_matches_runtime() -> None:
    from tritium.runtime.quant import ternarize_activations

    x = rand(4, 9)
    close(run1("ternarize", [x], threshold=0.4), ternarize_activations(t(x), 0.4))


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("k", [1, 127, 160, 333])
def test_pack_matches_runtime_format(fmt: str, k: int) -> None:
    """The IR's pack/unpack produce the runtime's packed bytes exactly (format version 1)."""
    from tritium.ir.interpreter import pack, unpack
    from tritium.runtime.packing import pack_ternary

    trits = rng.integers(-1, 2, (5, k)).astype(np.int8)
    ref = pack_ternary(torch.from_numpy(trits), fmt).data.numpy()
    np.testing.assert_array_equal(pack(trits, fmt), ref)
    np.testing.assert_array_equal(unpack(ref, fmt, [5, k]), trits)


@pytest.mark.parametrize("quantizer", ["twn", "absmean"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_ternary_quantizers_match_runtime(quantizer: str, per_channel: bool) -> None:
    from tritium.ir.interpreter import quantize_ternary
    from tritium.runtime.quant import get_quantizer

    w = rand(6, 10)
    ref = get_quantizer(quantizer)(torch.from_numpy(w), per_channel=per_channel)
    t, s = quantize_ternary(w, quantizer, per_channel)
    np.testing.assert_array_equal(t, ref.trits.numpy())
    np.testing.assert_allclose(s.reshape(-1), ref.scale.numpy(), rtol=1e-6)


@pytest.mark.parametrize("act_quant", ["none", "int8"])
@pytest.mark.parametrize("activation", ["none", "relu", "gelu", "silu"])
def test_fused_linear_matches_runtime_kernel(act_quant: str, activation: str) -> None:
    from tritium.ir.interpreter import pack
    from tritium.runtime.kernels import ternary_linear
    from tritium.runtime.packing import pack_ternary

    n, k = 6, 200
    x, trits = rand(3, k), rng.integers(-1, 2, (n, k)).astype(np.int8)
    scale, bias, res = np.abs(rand(n)) + 0.1, rand(n), rand(3, n)
    got = run1("fused_linear", [x, pack(trits, "t2"), scale, bias, res], ["f32", "u8", "f32", "f32", "f32"],
               format="t2", in_features=k, activation=activation, act_quant=act_quant,
               has_scale=True, has_bias=True, has_residual=True)
    ref = ternary_linear(t(x), pack_ternary(torch.from_numpy(trits), "t2"), t(scale), t(bias),
                         None if activation == "none" else activation, act_quant, t(res))
    close(got, ref, 1e-4)
