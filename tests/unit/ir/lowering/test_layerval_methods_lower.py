"""Lowering a layer's methods (issue 13, helper seedc): inlined where they are called,
`self.training` false."""

from __future__ import annotations

import numpy as np

from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import lower


def lowered(src: str):
    r = check_source(src)
    assert r.ok, [(d.code, d.message) for d in r.errors]
    return lower(r)


def run(src: str, x: np.ndarray):
    low = lowered(src)
    out = interpret(low.module, low.entry, [x], params={})
    return np.asarray(out[0] if isinstance(out, list | tuple) else out)


def test_methods_are_inlined_and_self_training_is_false():
    src = """
layer L {
    params { k: float = 3.0 }
    forward(x: Tensor[2, 2]) -> Tensor[2, 2] {
        return self.step(x) + bump(x, 1.0)
    }
    function step(x: Tensor) -> Tensor {
        if self.training { return x * 100.0 }
        return x * k
    }
    method bump(x: Tensor, by: float = 5.0) -> Tensor {
        if self.training { return x }
        return x + by + step(x)
    }
}
"""
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    np.testing.assert_allclose(run(src, x), x * 3 + (x + 1.0 + x * 3), rtol=1e-6)
