"""Forms of issue 13 (list methods, optional narrowing, local and anonymous functions,
`with no_grad()`, typed body constants, type aliases): programs check, compile to PyTorch,
load, run, and agree with the IR interpreter."""

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


def run_both(src: str, tmp_path, shape=(3, 4)) -> tuple[np.ndarray, np.ndarray]:
    ref, got, _, _ = agree_with_ir(tmp_path, src, shape, name="p.tri")
    return ref, got


LISTS = """
fn scales(n: int) -> list[float] {
    let out = []
    for i in 0..n { out.append(1.0 / (i + 1)) }
    out.reverse()
    return out
}

model Lists {
    forward(x: Tensor[batch, 4]) -> Tensor {
        let dims = [3]
        dims.append(2)
        dims.insert(1, 1)
        let unused = dims.pop(1)
        let ws = scales(3)
        ws.extend([0.5, 0.25])
        ws.remove(0.5)
        let y = x * ws[ws.index(1.0)] + x * ws.count(0.25)
        let z = reshape(y, [dims[0], dims[1] * 2])
        return z + unused
    }
}
"""


def test_list_methods_agree(tmp_path):
    ref, got = run_both(LISTS, tmp_path)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(ref, x * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


OPTIONAL = """
fn add_bias(x: Tensor, b: Tensor | None) -> Tensor {
    if b != None { return x + b }
    return x
}

fn scale(x: Tensor, s: float?) -> Tensor {
    if s is None { return x }
    return x * s
}

model Opt {
    forward(x: Tensor[batch, 4]) -> Tensor {
        let y = add_bias(x, None)
        let z = add_bias(y, ones([4]))
        return scale(z, 2.0) + scale(x, None)
    }
}
"""


def test_optional_parameters_narrowed_by_none_tests_agree(tmp_path):
    ref, got = run_both(OPTIONAL, tmp_path)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(ref, (x + 1) * 2 + x, rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


FORMS = """
type Act = Tensor<float32, [?, 8]>

model Net {
    c: 4
    e: 2
    hidden: int = c * e
    layer fc: TernaryLinear { in_features: c, out_features: hidden }
    forward(x: Tensor[batch, 4]) -> Tensor[batch, hidden] {
        let k = 0.5
        fn act(z: Tensor) -> Act {
            return relu(fc(z)) * k
        }
        let twice = fn(z: Tensor) -> Tensor { return z * 2.0 }
        with no_grad() {
            let y = twice(x)
        }
        return act(y)
    }
}
"""


def test_local_functions_with_aliases_and_typed_constants_agree(tmp_path):
    ref, got = run_both(FORMS, tmp_path)
    assert ref.shape == (3, 8)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


SCRIPT = """\
type Vec = Tensor<float32, [?]>

fn apply(f: fn(Vec) -> Vec, v: Vec) -> Vec {
    return f(v)
}

fn outer(v: Vec, k: float) -> Vec {
    fn scale(z: Vec) -> Vec {
        return z * k
    }
    let shift = fn(z: Vec) -> Vec { return z + 1.0 }
    return shift(scale(v))
}

fn doubled(w: Vec) -> Vec {
    with no_grad() {
        let u = w * 2.0
    }
    return u
}

let v = ones([3])
print(outer(v, 2.0))
let inc = fn(z: Vec) -> Vec { return z + 10.0 }
print(apply(inc, v))
"""


def test_a_statement_program_with_the_forms_runs(tmp_path, capsys):
    from tritium.driver import compile_program
    p = tmp_path / "s.tri"
    p.write_text(SCRIPT)
    result = compile_program(str(p))
    assert "lambda" not in result.python and "\n    def " not in result.python
    assert "with torch.no_grad():" in result.python
    result.module.main()
    out = capsys.readouterr().out.splitlines()
    assert out == [str(torch.full((3,), 3.0)), str(torch.full((3,), 11.0))]
    w = torch.ones(3, requires_grad=True)
    u = result.module.doubled(w)
    assert not u.requires_grad and torch.equal(u, torch.full((3,), 2.0))
