"""The forms of helper seede (issue 13) end to end: programs check, compile to PyTorch, run,
compute what a hand-written reference computes, and models agree with the IR interpreter:
generic functions and layers, masked_fill, Python's sum of a list, unbind, dict items, a
layer name reassigned in forward, state buffers declared with a spec."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import agree_with_ir, run_main  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


GENERICS = """
fn process<T: Numeric>(x: T, y: T) -> T {
    return x + y
}
fn mm<M, K, N>(a: Tensor<float32, [M, K]>, b: Tensor<float32, [K, N]>)
    -> Tensor<float32, [M, N]> {
    return a @ b
}
fn first<T>(xs: List<T>) -> T {
    return xs[0]
}
layer GenericLinear<T>(
    weights: Tensor<T, [in_features, out_features]>,
    input: Tensor<T, [batch, in_features]>
) -> Tensor<T, [batch, out_features]> {
    return input @ weights
}
let a = process(1, 2)
let b = process(1.5, 2.5)
let c = mm(ones([2, 3]), ones([3, 2]))
let d = GenericLinear(ones([3, 2]) * 0.5, ones([4, 3]))
print(a, b, sum(c), sum(d), first([7, 8]))
"""


def test_generics_run(tmp_path):
    out, _ = run_main(tmp_path, GENERICS)
    assert out.split() == ["3", "4.0", "tensor(12.)", "tensor(12.)", "7"]


FORMS = """
let scores = tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
let pad = tensor([false, true, false])
let masked = scores.masked_fill(pad, 0.0)
let parts = [scores, masked, ones([3])]
let total = sum(parts)
let rows = unbind(scores, dim: 0)
let stats = {"n": 0}
let i = 0
for r in rows {
    i += 1
    stats["n"] += 1
    stats[f"row{i}"] = sum(r)
}
print(sum(masked), sum(total), total[1, 1], stats["n"], stats["row2"])
"""


def test_masked_fill_sum_unbind_and_dicts_run(tmp_path):
    out, _ = run_main(tmp_path, FORMS)
    assert out.split() == ["tensor(14.)", "tensor(41.)", "tensor(6.)", "2", "tensor(15.)"]


MODEL = """
block Norm {
    params { c: int }
    state mu: Tensor { shape: [c], init: "zeros", requires_grad: false }
    state var: Tensor { shape: [c], init: "constant", value: 4.0 }
    forward(x: Tensor[b, c]) -> Tensor[b, c] {
        return (x - mu) / sqrt(var)
    }
}
model Seede {
    layer qkv: Linear { in_features: 4, out_features: 12 }
    layer norm: Norm { c: 4 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {
        let cfg = {"scale": 2.0}
        cfg["shift"] = 0.5
        qkv = qkv(x)
        qkv = reshape(qkv, [-1, 3, 4])
        q, k, v = unbind(qkv, dim: 1)
        let att = masked_fill(q * k, q > 0.0, 0.0)
        return norm(sum([att, v, x]) * cfg["scale"] + cfg["shift"])
    }
}
"""


def test_a_model_with_the_forms_agrees_with_the_ir(tmp_path):
    ref, got, model, x = agree_with_ir(tmp_path, MODEL, (5, 4))
    assert np.allclose(ref, got, atol=1e-5)
    assert dict(model.norm.named_buffers())["var"].tolist() == [4.0] * 4
    with torch.no_grad():
        y = model.qkv(x).reshape(-1, 3, 4)
        q, k, v = y.unbind(1)
        att = (q * k).masked_fill(q > 0, 0.0)
        want = ((att + v + x) * 2.0 + 0.5) / 2.0
    assert np.allclose(ref, want.numpy(), atol=1e-5)


SUBLAYERS = """
block Q {
    params { n: int }
    layer fc: Linear { in_features: n, out_features: n }
    forward(x: Tensor) -> Tensor {
        return fc(x)
    }
    method density(scale: float = 1.0) -> float {
        return 0.5 * scale
    }
}
model M {
    layer one: Q { n: 4 }
    layer stage: Sequential {
        Q { n: 4 }
        ReLU {}
    }
    layer rep: Q[3] { n: 4 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {
        return rep(stage(one(x)))
    }
    method report() -> dict {
        return {"a": one.density(), "b": stage[0].density(2.0), "c": rep[-1].density(scale: 3.0)}
    }
}
"""


def test_a_sub_layers_method_runs(tmp_path):
    import tritium

    f = tmp_path / "m.tri"
    f.write_text(SUBLAYERS)
    model = tritium.load(f)
    assert model.report() == {"a": 0.5, "b": 1.0, "c": 1.5}
    assert model(torch.ones(2, 4)).shape == (2, 4)
