"""Lowering the forms of issue 13 given to `forms2` (list methods, local and anonymous
functions, `with no_grad()`, typed body constants, type aliases) to IR."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import LoweringError, lower


def lowered(src: str):
    r = check_source(src)
    assert r.ok, [d.message for d in r.errors]
    return lower(r)


def run(src: str, x: np.ndarray):
    low = lowered(src)
    out = interpret(low.module, low.entry, [x], params={})
    return np.asarray(out[0] if isinstance(out, list | tuple) else out)


def test_list_methods_run_while_lowering_in_program_order() -> None:
    src = """
fn build(k: int) -> list[int] {
    let xs = []
    for i in 0..k { xs.append(i) }
    xs.insert(0, 10)
    xs.pop()
    return xs
}
model M {
    forward(x: Tensor[2, 4]) -> Tensor {
        let a = build(3)          // 10 0 1
        let b = build(3)          // the same: a call's lists are its own
        a.sort()                  // 0 1 10
        return x * (a[2] + b.index(1) + len(b) * 100)
    }
}
"""
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(run(src, x), x * (10 + 2 + 300))


def test_a_function_changing_a_list_passed_to_it_is_refused_with_its_span() -> None:
    src = """
fn grow(ys: list[int]) -> int {
    ys.append(1)
    return len(ys)
}
model M {
    forward(x: Tensor[2, 4]) -> Tensor {
        let xs = [1]
        return x * grow(xs)
    }
}
"""
    with pytest.raises(LoweringError) as err:
        lowered(src)
    assert "changes the list passed as `ys`" in err.value.message
    assert err.value.span is not None and err.value.span.line == 9


def test_list_method_errors_are_lowering_errors() -> None:
    low_src = """
model M {
    forward(x: Tensor[2, 4]) -> Tensor {
        let xs = [x, x]
        let i = xs.index(x)
        return x
    }
}
"""
    with pytest.raises(LoweringError, match="compares items"):
        lowered(low_src)


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


def test_local_functions_with_and_typed_constants_lower_and_compute() -> None:
    low = lowered(FORMS)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    params = {n: rng.standard_normal(shape).astype(np.float32) * 0.5
              for n, (shape, _d, _i, _q) in low.params.items()}
    assert low.params["fc.weight"][0] == (8, 4)      # hidden: int = c * e
    out = interpret(low.module, low.entry, [x], params=params)
    out = np.asarray(out[0] if isinstance(out, list | tuple) else out)
    w, bias = params["fc.weight"], params["fc.bias"]
    a = np.abs(w)
    delta = 0.7 * a.mean()
    t = np.where(w > delta, 1.0, np.where(w < -delta, -1.0, 0.0))
    alpha = a[np.abs(t) > 0].mean()
    ref = np.maximum((x * 2.0) @ (t * alpha).T + bias, 0.0) * 0.5
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
