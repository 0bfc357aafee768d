"""The model/block dialect forms of issue 13 (examples/seed/model2_*.tri) end to end: each
checks, compiles, loads, runs in PyTorch and agrees with the IR interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_source
from tritium.ir.lowering import lower

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import agree_with_ir  # noqa: E402

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def _agree(src: str, path: Path, shape: tuple[int, ...], interp: bool = True) -> torch.nn.Module:
    if not interp:    # PyTorch only: the IR cannot express the program
        path.write_text(src, encoding="utf-8")
        model = tritium.load(path).eval()
        with torch.no_grad():
            assert torch.isfinite(model(torch.randn(*shape))).all()
        return model
    ref, got, model, _ = agree_with_ir(path.parent, src, shape, randomize=0.5, name=path.name)
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64),
                               rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(ref).max())))
    return model


def test_table_rows_build_the_stages(tmp_path):
    src = (SEED / "model2_table.tri").read_text(encoding="utf-8")
    model = _agree(src, tmp_path / "m.tri", (2, 1, 8, 8))
    blocks = [m for m in model.blocks.modules() if type(m).__name__ == "InvertedResidual"]
    # rows [1, 8, 1, 1], [4, 12, 2, 2], [4, 16, 2, 1]: 1 + 2 + 2 instances, chained widths
    assert len(blocks) == 5
    assert [b.project_conv.out_channels for b in blocks] == [8, 12, 12, 16, 16]
    assert [b.depthwise_conv.in_channels for b in blocks] == [8, 32, 48, 48, 64]
    assert [b.depthwise_conv.stride[0] for b in blocks] == [1, 2, 1, 1, 1]
    assert blocks[0].expand_conv is None and blocks[1].expand_conv is not None


def test_adaptive_ternary_is_twn_per_channel_and_shares_the_block_tensor(tmp_path):
    src = (SEED / "model2_adaptive.tri").read_text(encoding="utf-8")
    # a tensor passed as a block parameter is PyTorch-only (the IR passes constants)
    model = _agree(src, tmp_path / "m.tri", (5, 64), interp=False)
    assert model.fc1.per_channel and model.fc1.quantizer == "twn"
    # the block's `threshold` is the very tensor its layer uses: one parameter, shared
    assert model.gate.proj.threshold is model.gate.threshold
    names = [n for n, _ in model.named_parameters()]
    assert "gate.threshold" in names and "gate.proj.threshold" not in names
    # the PyTorch reference: TWN per output channel, threshold 0.7 * mean |w| of each row
    w = model.fc1.weight.detach()
    delta = 0.7 * w.abs().mean(dim=1, keepdim=True)
    keep = (w.abs() > delta).float()
    alpha = (w.abs() * keep).sum(dim=1, keepdim=True) / keep.sum(dim=1, keepdim=True).clamp(min=1)
    ref = torch.sign(w) * keep * alpha
    x = torch.randn(3, 64)
    with torch.no_grad():
        got = model.fc1(x)
    torch.testing.assert_close(got, x @ ref.T + (model.fc1.bias if model.fc1.bias is not None
                                                 else 0), rtol=1e-4, atol=1e-4)


def test_adaptive_ternary_agrees_with_the_interpreter(tmp_path):
    src = """
model M {
    quantization { method: "adaptive_ternary" }
    layer fc: TernaryLinear { in_features: 8, out_features: 6 }
    layer out: TernaryLinear { in_features: 6, out_features: 3, quantizer: "adaptive" }
    forward(x: Tensor<float32, [?, 8]>) -> Tensor<float32, [?, 3]> { return out(relu(fc(x))) }
}
"""
    model = _agree(src, tmp_path / "m.tri", (4, 8))
    assert model.fc.per_channel and model.out.per_channel


BUILTINS = """
model B {
    param logits: Tensor[6, 3] { init: "normal" }
    forward(x: Tensor<float32, [?, 3]>) -> Tensor<float32, [?, 3]> {
        idx = argmax(logits, dim: 1)
        lo = argmin(x, axis: 1)
        probs = one_hot(idx, 3)
        z = zeros_like(x) + ones_like(x) * 2.0 + full_like(x, 0.5)
        y = concatenate([x, z], dim: 0)
        r = repeat(x, 2)
        s = repeat(probs, [1, 2])
        return y[0:2] + r[1:3] * sum(s, dim: 1, keepdim: true)[0:2] + sum(one_hot(lo, 4)) + argmax(x)
    }
}
"""


def test_model2_builtins_agree_with_torch_and_the_interpreter(tmp_path):
    model = _agree(BUILTINS, tmp_path / "b.tri", (4, 3))
    x = torch.randn(4, 3)
    lg = model.logits.detach()
    probs = torch.nn.functional.one_hot(lg.argmax(1), 3).float()
    assert torch.equal(probs.sum(1), torch.ones(6))
    want = torch.cat([x, torch.full_like(x, 2.5)])[0:2] + torch.cat([x, x])[1:3] * \
        probs.repeat(1, 2).sum(1)[0:2, None] + 4.0 + x.argmax()
    with torch.no_grad():
        torch.testing.assert_close(model(x), want)


def test_gumbel_softmax_samples_and_is_pytorch_only(tmp_path):
    src = """
model G {
    param logits: Tensor[5, 4] { init: "normal" }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> {
        soft = gumbel_softmax(logits, temperature: 0.5)
        hard = gumbel_softmax(logits, tau: 0.5, hard: true)
        return x * sum(soft + hard, dim: 0)
    }
}
"""
    path = tmp_path / "g.tri"
    path.write_text(src, encoding="utf-8")
    model = tritium.load(path)
    torch.manual_seed(0)
    y = model(torch.ones(2, 4))
    # each row of soft sums to 1 and each row of hard is one-hot: 5 + 5 over the 4 columns
    assert torch.allclose(y.sum(1), torch.full((2,), 10.0))
    y.sum().backward()
    assert model.logits.grad is not None
    from tritium.ir.lowering.values import LoweringError
    with pytest.raises(LoweringError, match="gumbel_softmax draws random noise"):
        lower(check_source(src))


def test_mixed_precision_quantizer_example(tmp_path):
    src = (SEED / "model2_quantizers.tri").read_text(encoding="utf-8")
    # the IR lowers inference (`self.training` false): the arg-max branch, no random op
    model = _agree(src, tmp_path / "q.tri", (3, 64))
    fc1 = model.fc1
    # eval: the arg-max precision of each row; row 0 picks full precision, row 1 ternary
    with torch.no_grad():
        fc1.precision_logits.zero_()
        fc1.precision_logits[:, 2] = 1.0
        fc1.precision_logits[1] = torch.tensor([1.0, 0.0, 0.0])
    x = torch.randn(2, 64)
    with torch.no_grad():
        y = fc1(x)
    w = fc1.weight.detach()
    delta = 0.7 * w.abs().mean()
    keep = (w.abs() > delta).float()
    tw = torch.sign(w) * keep * (w.abs() * keep).sum() / keep.sum()
    torch.testing.assert_close(y[:, 0], x @ w[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y[:, 1], x @ tw[1], rtol=1e-4, atol=1e-4)
    # training: a Gumbel sample; the logits get a gradient through the soft sample
    model.train()
    model(torch.randn(4, 64)).sum().backward()
    assert fc1.precision_logits.grad is not None and fc1.weight.grad is not None


def test_conditional_param_shapes_build_and_run(tmp_path):
    src = (SEED / "model2_params.tri").read_text(encoding="utf-8")
    _agree(src, tmp_path / "p.tri", (3, 64))
    model = tritium.load(tmp_path / "p.tri").eval()   # fresh: its initial values
    assert tuple(model.q1.step_size.shape) == (32,) and tuple(model.q2.step_size.shape) == (1,)
    assert torch.allclose(model.q1.step_size, torch.full((32,), 0.1))
    # LSQ forward: values on the grid of step |s| + 1e-4, clamped to ±7 steps (4 bits)
    x = torch.linspace(-2, 2, 32).repeat(2, 1)
    with torch.no_grad():
        y = model.q1(x)
    s = 0.1 + 0.0001
    torch.testing.assert_close(y, torch.clamp(torch.round(x / s), -7, 7) * s)


def test_floor_division_in_a_shape_list_builds_a_grouped_kernel(tmp_path):
    src = (SEED / "model2_grouped.tri").read_text(encoding="utf-8")
    model = _agree(src, tmp_path / "gr.tri", (2, 1, 8, 8))
    g = model.grouped
    assert tuple(g.weight.shape) == (8, 2, 3, 3)    # in_channels // groups = 8 // 4
    x = torch.randn(2, 8, 8, 8)
    w = g.weight.detach()
    delta = 0.7 * w.abs().mean()
    keep = (w.abs() > delta).float()
    tw = torch.sign(w) * keep * (w.abs() * keep).sum() / keep.sum()
    with torch.no_grad():
        torch.testing.assert_close(g(x), torch.nn.functional.conv2d(x, tw, None, 1, 1, 1, 4),
                                   rtol=1e-4, atol=1e-4)


def test_a_kind_from_a_sibling_file_compiles_and_runs(tmp_path):
    for name in ("model2_sibling_model.tri", "model2_sibling_layers.tri"):
        (tmp_path / name).write_text((SEED / name).read_text(encoding="utf-8"))
    src = (tmp_path / "model2_sibling_model.tri").read_text(encoding="utf-8")
    model = _agree(src, tmp_path / "model2_sibling_model.tri", (3, 64))
    assert type(model.fc1).__name__ == "GatedTernaryLinear"
    r = check_source(src, str(tmp_path / "model2_sibling_model.tri"),
                     tmp_path / "model2_sibling_model.tri")
    assert [d.code for d in r.diagnostics] == ["W1000"]
