"""Forms of issue 13 (list methods, optional narrowing, local and anonymous functions,
`with no_grad()`, typed body constants, type aliases): programs check, compile to PyTorch,
load, run, and agree with the IR interpreter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import lower


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def run_both(src: str, tmp_path, shape=(3, 4)) -> tuple[np.ndarray, np.ndarray]:
    f = tmp_path / "p.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f)
    model.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    lowered = lower(result, None, None)
    state = model.state_dict()
    params = {n: state[n].detach().numpy() for n in lowered.params}
    got = interpret(lowered.module, lowered.entry, [x.numpy()], params=params)
    got = got[0] if isinstance(got, list | tuple) else got
    return ref.numpy(), np.asarray(got)


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
