"""Lowering the seed's declaration and list forms (issue 13, `decl`) to IR: tensors
constructed by their type are zeros constants, a declaration takes its later assignment,
bracket destructuring and joined lists are lists known when lowering, `shuffle` permutes as the runtime does, `Ok(v)` is v and a stop
(`panic`, `Err`) has no IR form."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import LoweringError, lower
from tritium.runtime.decl_ops import shuffle


def lowered(src: str):
    r = check_source(src)
    assert r.ok, [d.message for d in r.errors]
    return lower(r)


def run(src: str, x: np.ndarray):
    low = lowered(src)
    out = interpret(low.module, low.entry, [x], params={})
    return np.asarray(out[0] if isinstance(out, list | tuple) else out)


def test_declarations_assigned_later_and_constructed_tensors_are_zeros() -> None:
    src = ("model M {\n"
           "    forward(x: Tensor[2, 3]) -> Tensor {\n"
           "        let z: Tensor<float32, [2, 3]>\n"
           "        let c: int\n"
           "        z = Tensor<float32, [2, 3]>()\n"
           "        c = 0\n"
           "        let i = Tensor<int32, [3]>()\n"
           "        return x + z + c + i\n"
           "    }\n"
           "}\n")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run(src, x), x)


def test_destructuring_joining_and_shuffle_are_lists_known_when_lowering() -> None:
    src = ("model M {\n"
           "    forward(x: Tensor[4, 6]) -> Tensor {\n"
           "        let s = shuffle([2, 3, 4], seed=5)\n"
           "        let [a, b, c] = s\n"
           "        let rest = (s + [1])[1:]\n"
           "        return reshape(x, rest + [a])\n"
           "    }\n"
           "}\n")
    s = shuffle([2, 3, 4], 5)
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert run(src, x).shape == (*s[1:], 1, s[0])


def test_ok_is_its_value_and_a_reached_stop_is_a_lowering_error() -> None:
    src = ("fn f(x: Tensor[2, 2]) -> Result<Tensor[2, 2], Error> {\n"
           "    return Ok(x * 2.0)\n"
           "}\n"
           "model M {\n"
           "    forward(x: Tensor[2, 2]) -> Tensor { return f(x) }\n"
           "}\n")
    x = np.ones((2, 2), dtype=np.float32)
    np.testing.assert_allclose(run(src, x), 2 * x)
    stop = ("model M {\n"
            "    forward(x: Tensor[2, 2]) -> Tensor {\n"
            "        panic(\"no\")\n"
            "        return x\n"
            "    }\n"
            "}\n")
    with pytest.raises(LoweringError, match="stops here"):
        lowered(stop)
