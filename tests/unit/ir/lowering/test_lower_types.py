"""Lowering of issue 13's type forms: generic functions specialize per argument types,
function arguments per function, `let x: T` without a value, `-> void` calls."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lowering_helpers import lower_text, run  # noqa: E402

from tritium.ir import interpret  # noqa: E402


def funcs(low) -> list[str]:
    return sorted(f.name for f in low.module.functions)


GENERIC = """
fn scale<T: Numeric>(x: T, s: float) -> T {
    return x * s
}
fn twice(f: fn(Tensor) -> Tensor, x: Tensor) -> Tensor {
    return f(f(x))
}
fn halve(x: Tensor) -> Tensor {
    return scale(x, 0.5)
}
fn neg(x: Tensor) -> Tensor {
    return -x
}
fn note(x: int) -> void {
    print(x)
}
fn pick(x: Tensor, big: bool) -> Tensor {
    let y: Tensor
    if big {
        y = x * 3.0
    } else {
        y = x
    }
    return y
}
layer Net(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
    note(1)
    return twice(halve, pick(x @ w, true)) + twice(neg, x @ w) * scale(2.0, 1.0)
}
"""


def test_generic_and_function_arguments_lower_and_compute():
    low = lower_text(GENERIC, "Net")
    names = funcs(low)
    # one specialization of `twice` per function passed to it
    assert sum(n.startswith("twice") for n in names) == 2, names
    out, xs, params = run(low, {"?": 3})
    x = xs[0]
    assert x.shape[1] == 4
    # the reference: the interpreter on the same program written without the forms
    plain = lower_text("layer Net(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>)"
                       " -> Tensor<float32, [?, 2]> {\n"
                       " return (x @ w) * 3.0 * 0.25 + (x @ w) * 2.0\n}\n", "Net")
    ref = interpret(plain.module, plain.entry, [x], params)
    np.testing.assert_allclose(np.asarray(out[0] if isinstance(out, list) else out),
                               np.asarray(ref[0] if isinstance(ref, list) else ref),
                               rtol=1e-5, atol=1e-5)
