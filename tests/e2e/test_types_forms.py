"""Issue 13 forms 4, 5, 6, 7, 9 end to end: the program checks, compiles, loads in PyTorch
and agrees with the IR interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import agree_with_ir  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def run_both(tmp_path, src: str, *shape: int, entry: str | None = None):
    ref, got, _, _ = agree_with_ir(tmp_path, src, shape, entry=entry, name="prog.tri")
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64),
                               rtol=1e-4, atol=1e-4)
    return torch.from_numpy(ref)


def test_split_signature_program_runs(tmp_path):
    src = ("fn act(x: Tensor<float32, [?, ?]>)\n-> Tensor<float32, [?, ?]> {\n"
           "    return relu(x)\n}\n\n"
           "layer Proj(w: TernaryTensor<trit, [4, 3]>, x: Tensor<float32, [?, 4]>)\n"
           "    -> Tensor<float32, [?, 3]>\n{\n    return act(x @ w)\n}\n")
    out = run_both(tmp_path, src, 2, 4)
    assert tuple(out.shape) == (2, 3) and bool((out >= 0).all())


def test_composite_types_program_runs(tmp_path):
    src = ("fn inc(x: int) -> int {\n    return x + 1\n}\n"
           "fn apply(f: fn(int) -> int, x: int) -> int {\n    return f(x)\n}\n"
           "fn scale_all(x: Tensor, sizes: list[int], k: [int, int], s: float?) -> Tensor {\n"
           "    let total: int = sizes[0] + k[1] + apply(inc, 1)\n"
           "    if s is None {\n        return x * total\n    }\n    return x * s\n}\n"
           "fn both(x: Tensor<float32, [?, 2]>) -> Tensor<float32, [?, 2]> | None {\n"
           "    let y: Tensor<float32, [?, 2]> | None = x\n"
           "    return scale_all(y, [1, 2], [3, 4], None) - scale_all(y, [0], [0, 0], 2.0)\n"
           "}\n"
           "layer Net(w: TernaryTensor<trit, [4, 2]>, x: tensor<float32, [?, 4]>)\n"
           "    -> Tensor<float32, [?, 2]> {\n"
           "    return both(x @ w)\n"
           "}\n")
    out = run_both(tmp_path, src, 3, 4)
    assert tuple(out.shape) == (3, 2)


def test_let_without_value_program_runs(tmp_path):
    src = ("fn pick(x: Tensor, big: bool) -> Tensor {\n    let y: Tensor\n"
           "    if big {\n        y = x * 2.0\n    } else {\n        y = relu(x)\n    }\n"
           "    return y\n}\n"
           "fn gate(x: Tensor<float32, [?, 2]>) -> Tensor<float32, [?, 2]> {\n"
           "    return pick(x, false)\n}\n"
           "layer Net(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>)\n"
           "    -> Tensor<float32, [?, 2]> {\n"
           "    return pick(x @ w, true) + gate(x @ w)\n}\n")
    out = run_both(tmp_path, src, 3, 4)
    assert tuple(out.shape) == (3, 2)


def test_generic_program_runs(tmp_path):
    src = ("fn identity<T>(x: T) -> T {\n    return x\n}\n"
           "fn scale<T: Numeric>(x: T, s: float) -> T {\n    return x * s\n}\n"
           "fn add<T>(a: T, b: T) -> T\n    where T: Tensor\n{\n    return a + b\n}\n"
           "fn act<T: Float>(x: Tensor<T, [?, 2]>) -> Tensor<T, [?, 2]> {\n"
           "    return relu(x)\n}\n"
           "layer Net<T: Float>(w: TernaryTensor<trit, [4, 2]>, x: Tensor<T, [?, 4]>)\n"
           "    -> Tensor<T, [?, 2]> {\n"
           "    return identity(add(scale(x @ w, identity(2.0)), act(x @ w)))\n}\n")
    out = run_both(tmp_path, src, 3, 4)
    assert tuple(out.shape) == (3, 2)


def test_keywords_as_names_program_runs(tmp_path):
    src = ("fn run(model: Tensor, layer: int, block: float, param: bool) -> Tensor {\n"
           "    let params = layer + 1\n    let forward = model * block\n"
           "    if param {\n        return forward * params\n    }\n    return forward\n}\n"
           "model M {\n    layer layer: TernaryLinear { in_features: 4, out_features: 2 }\n"
           "    forward(x: Tensor[b, 4]) -> Tensor[b, 2] {\n        let model = layer(x)\n"
           "        return run(model, 2, 0.5, true)\n    }\n}\n")
    out = run_both(tmp_path, src, 3, 4)
    assert tuple(out.shape) == (3, 2)


SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


@pytest.mark.parametrize("name,entry,shape", [
    ("types_generic_layers", "GenericNet", (3, 8)),
    ("types_collections", "Mixer", (3, 8)),
])
def test_seed_examples_run_and_agree(tmp_path, name, entry, shape):
    out = run_both(tmp_path, (SEED / f"{name}.tri").read_text(), *shape, entry=entry)
    assert out.shape[0] == shape[0]
