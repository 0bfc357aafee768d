"""Programs in the seed's forms end to end: shape variables, generic aliases, trait bounds,
a reduction returned as a number, the quantization primitives with their keyword arguments
and a layer function whose TernaryTensor argument with a `?` dim is an input: each checks,
compiles, runs in PyTorch, and a layer agrees with the IR interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import tritium
from tritium.check import check_source
from tritium.driver import compile_program

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import ir_output  # noqa: E402

PROGRAM = """\
type Grid<E> = Tensor<E, [?, ?]>

fn keep<R: Shape>(v: Tensor<float32, R>) -> Tensor<float32, R> {
    return v * 2.0
}

fn peak<V: Quantizable>(m: Tensor<V, [?, ?]>) -> float32 {
    return max(abs(m))
}

fn biggest<V: Comparable>(a: V, b: V) -> V {
    return if a > b { a } else { b }
}

fn shrink(m: Grid<float32>, rate: float32) -> Grid<float32> {
    let t = max(0.05, rate * 0.5)
    return threshold_quantize(m, t, scale=2.0)
}

let m = tensor([[0.05, -0.4], [0.9, -0.15]])
print(keep(m).sum())
print(peak(m))
print(biggest(4, 11))
print(sum(abs(shrink(m, 0.2))))
print(sum(learned_quantize(m, 0.1, -0.1, 3.0, 1.0)))
"""


def test_statement_program_runs(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "p.tri"
    f.write_text(PROGRAM)
    result = compile_program(str(f))
    result.module.main()
    out = capsys.readouterr().out.split("\n")
    assert out[0].startswith("tensor(0.8")         # 2 * (0.05 - 0.4 + 0.9 - 0.15)
    assert out[1].startswith("tensor(0.9")
    assert out[2] == "11"
    assert out[3] == "tensor(2.)"     # threshold 0.1 * 2: only -0.4 and 0.9 are kept
    assert out[4] == "tensor(1.)"     # [[0, -1], [3, -1]]: the seed's learned thresholds


LAYER = """\
layer Gate(w: TernaryTensor<trit, [4, 3]>, x: TernaryTensor<trit, [?, 4]>)
    -> Tensor<float32, [?, 3]> {
    let h = x @ w
    return relu(h)
}
"""


def test_ternary_input_of_a_layer_function(tmp_path) -> None:
    f = tmp_path / "gate.tri"
    f.write_text(LAYER)
    result = check_source(LAYER, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f)
    model.eval()
    assert [n for n, _ in model.named_parameters()] == ["w"]   # x is an input
    x = torch.tensor([[1.0, 0.0, -1.0, 1.0], [0.0, 1.0, 1.0, -1.0]])
    with torch.no_grad():
        ref = model(x)
    got = ir_output(result, model, [x], "Gate")
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-5)
    assert ref.shape == (2, 3)



MODEL = '''\
layer Clip {
    params { limit: float = 1.0, n: int = 3 }
    param bias: Tensor { shape: [n], init: "constant", value: 0.25, requires_grad: false }
    forward(x: Tensor) -> Tensor {
        """Clip, shift, then round to a grid."""
        return snap(self.bound(x) + bias)
    }
    function bound(x: Tensor) -> Tensor {
        return clamp(x, -limit, limit)
    }
    function snap(x: Tensor) -> Tensor {
        return round(x * 4.0) / 4.0
    }
}
model M {
    layer c: Clip { limit: 0.5 }
    forward(x: TernaryTensor[b, 3]) -> Tensor[b, 3] {
        return c(x)
    }
}
'''


def test_model_with_helpers_and_frozen_parameters(tmp_path) -> None:
    f = tmp_path / "m.tri"
    f.write_text(MODEL)
    result = check_source(MODEL, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f)
    assert not model.c.bias.requires_grad
    x = torch.tensor([[1.0, -1.0, 0.0]])
    with torch.no_grad():
        out = model(x)
    ref = torch.round((torch.clamp(x, -0.5, 0.5) + 0.25) * 4.0) / 4.0
    assert torch.equal(out, ref)
    got = ir_output(result, model, [x], "M")
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-6)
