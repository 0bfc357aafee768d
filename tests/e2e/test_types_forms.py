"""Issue 13 forms 4, 5, 6, 7, 9 end to end: the program checks, compiles, loads in PyTorch
and agrees with the IR interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_file
from tritium.ir import interpret
from tritium.ir.lowering import lower


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def run_both(tmp_path, src: str, *shape: int, entry: str | None = None):
    path = tmp_path / "prog.tri"
    path.write_text(src)
    result = check_file(path)
    assert not result.errors, [d.message for d in result.errors]
    model = tritium.load(path, entry) if entry else tritium.load(path)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        ref = model(x)
    lowered = lower(result, entry)
    state = model.state_dict()
    params = {n: state[n].detach().numpy() for n in lowered.params}
    got = interpret(lowered.module, lowered.entry, [x.numpy()], params=params)
    got = got[0] if isinstance(got, list | tuple) else got
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref.double().numpy(),
                               rtol=1e-4, atol=1e-4)
    return ref


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
