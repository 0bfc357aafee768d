"""The lowered IR of each builtin layer computes what the runtime layer computes in eval mode
(the semantics the PyTorch backend relies on): same parameter names, same outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from lowering_helpers import lower_text  # noqa: E402

from tritium import runtime as trt  # noqa: E402
from tritium.ir import interpret  # noqa: E402

LINEAR_CASES = [
    ('TernaryLinear { in_features: 16, out_features: 6 }',
     lambda: trt.TernaryLinear(16, 6)),
    ('TernaryLinear { in_features: 16, out_features: 6, per_channel: true, bias: false }',
     lambda: trt.TernaryLinear(16, 6, bias=False, per_channel=True)),
    ('TernaryLinear { in_features: 16, out_features: 6, quantizer: "bitnet" }',
     lambda: trt.TernaryLinear(16, 6, quantizer="absmean")),
    ('TernaryLinear { in_features: 16, out_features: 6, quantization: "fixed", threshold: 0.3 }',
     lambda: trt.TernaryLinear(16, 6, quantizer="threshold", threshold=0.3)),
    ('TernaryLinear { in_features: 16, out_features: 6, quantizer: "stochastic", per_channel: true }',
     lambda: trt.TernaryLinear(16, 6, quantizer="stochastic", per_channel=True)),
    ('TernaryLinear { in_features: 16, out_features: 6, act_quant: "int8" }',
     lambda: trt.TernaryLinear(16, 6, act_quant="int8")),
    ('BitLinear { in_features: 16, out_features: 6, eps: 1e-6, bias: true }',
     lambda: trt.BitLinear(16, 6, bias=True, eps=1e-6)),
    ('Int8Linear { in_features: 16, out_features: 6 }', lambda: trt.Int8Linear(16, 6)),
    ('Int4Linear { in_features: 16, out_features: 6, bias: false }',
     lambda: trt.Int4Linear(16, 6, bias=False)),
]


def _compare(decl: str, make, in_shape: str, x: np.ndarray, rtol: float = 1e-5) -> None:
    low = lower_text(f"""
model M {{
    layer l: {decl}
    forward(x: Tensor[{in_shape}]) -> Tensor {{ return l(x) }}
}}""")
    torch.manual_seed(0)
    layer = make().eval()
    with torch.no_grad():
        for t in layer.parameters():
            t.copy_(torch.randn(t.shape) * 0.3)
    state = {f"l.{k}": v.detach().numpy() for k, v in layer.state_dict().items()}
    assert set(low.params) <= set(state), sorted(set(low.params) - set(state))
    with torch.no_grad():
        want = layer(torch.from_numpy(x)).numpy()
    got = interpret(low.module, low.entry, [x], {k: state[k] for k in low.params})[0]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("decl,make", LINEAR_CASES, ids=[c[0].split(" {")[0] + str(i)
                                                         for i, c in enumerate(LINEAR_CASES)])
def test_linear_layers_match_runtime(decl: str, make) -> None:
    x = np.random.default_rng(1).standard_normal((3, 5, 16)).astype(np.float32)
    _compare(decl, make, "b, s, 16", x)


def test_ternary_conv_matches_runtime() -> None:
    x = np.random.default_rng(2).standard_normal((2, 4, 7, 7)).astype(np.float32)
    _compare("TernaryConv2d { in_channels: 4, out_channels: 8, kernel_size: 3, stride: 2, "
             "padding: 1, groups: 2, per_channel: true }",
             lambda: trt.TernaryConv2d(4, 8, 3, stride=2, padding=1, groups=2, per_channel=True),
             "n, 4, 7, 7", x)


def test_ternary_activation_matches_runtime() -> None:
    x = np.random.default_rng(3).standard_normal((4, 9)).astype(np.float32)
    _compare("TernaryActivation { threshold: 0.4 }", lambda: trt.TernaryActivation(0.4),
             "n, 9", x)


@pytest.mark.parametrize("kind,ternary", [("MultiheadAttention", False), ("TernaryAttention", True)])
def test_attention_matches_runtime(kind: str, ternary: bool) -> None:
    x = np.random.default_rng(4).standard_normal((2, 5, 8)).astype(np.float32)
    _compare(f"{kind} {{ embed_dim: 8, num_heads: 2, causal: true, bias: true }}",
             lambda: trt.SelfAttention(8, 2, bias=True, causal=True, ternary=ternary),
             "b, s, 8", x, rtol=1e-4)
