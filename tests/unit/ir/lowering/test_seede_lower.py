"""Lowering the forms of helper seede (issue 13) to IR and interpreting them against numpy:
generic functions (monomorphized per binding), `masked_fill` (a select), Python's `sum` of a
list (adds), `unbind` (index ops), dict items set in `forward` (compile-time dicts), a layer
name reassigned in `forward`, and `state` buffers declared with a spec."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.check import check_source
from tritium.ir import interpret
from tritium.ir.lowering import LoweringError, lower
from tritium.ir.printer import print_module


def lowered(src: str):
    r = check_source(src)
    assert r.ok, [(d.code, d.message) for d in r.errors]
    return lower(r)


def run(src: str, x: np.ndarray, params: dict | None = None) -> np.ndarray:
    low = lowered(src)
    out = interpret(low.module, low.entry, [x], params=params or {})
    return np.asarray(out[0] if isinstance(out, list | tuple) else out)


X = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)


def test_generic_functions_are_lowered_per_binding():
    src = ("fn scale<T: Numeric>(x: T, k: T) -> T {\n    return x * k\n}\n"
           "fn mm<M, K, N>(a: Tensor<float32, [M, K]>, b: Tensor<float32, [K, N]>)\n"
           "    -> Tensor<float32, [M, N]> {\n    return a @ b\n}\n"
           "model G {\n    forward(x: Tensor[3, 4]) -> Tensor[3, 4] {\n"
           "        let w = ones([4, 4]) * scale(0.5, 2.0)\n"
           "        return mm(scale(x, x), w) + scale(2, 3)\n    }\n}\n")
    assert np.allclose(run(src, X), (X * X) @ np.ones((4, 4), np.float32) + 6, atol=1e-5)


def test_masked_fill_is_a_select():
    src = ("model F {\n    forward(x: Tensor[3, 4]) -> Tensor[3, 4] {\n"
           "        let a = masked_fill(x, x > 0.0, -5.0)\n"
           "        return a.masked_fill(x < -0.5, 1.0)\n    }\n}\n")
    low = lowered(src)
    assert "select" in print_module(low.module)
    want = np.where(X < -0.5, 1.0, np.where(X > 0, -5.0, X))
    assert np.allclose(run(src, X), want)


def test_sum_of_a_list_adds_and_sum_of_a_tensor_reduces():
    src = ("model S {\n    forward(x: Tensor[3, 4]) -> Tensor[3, 4] {\n"
           "        let parts = [x, x * 2.0, relu(x)]\n"
           "        return sum(parts) + sum([p * 0.5 for p in parts]) + sum(x)\n    }\n}\n")
    want = 1.5 * (X + 2 * X + np.maximum(X, 0)) + X.sum()
    assert np.allclose(run(src, X), want, atol=1e-5)


def test_unbind_and_a_reassigned_layer_name():
    src = ("model U {\n    layer qkv: Linear { in_features: 4, out_features: 12, bias: false }\n"
           "    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {\n        qkv = qkv(x)\n"
           "        qkv = reshape(qkv, [-1, 3, 4])\n        q, k, v = unbind(qkv, dim: 1)\n"
           "        return q * k + v\n    }\n}\n")
    w = np.arange(48, dtype=np.float32).reshape(12, 4) / 48.0
    y = (X @ w.T).reshape(-1, 3, 4)
    got = run(src, X, {"qkv.weight": w})
    assert np.allclose(got, y[:, 0] * y[:, 1] + y[:, 2], atol=1e-5)


def test_dict_items_set_in_forward():
    src = ('model D {\n    forward(x: Tensor[3, 4]) -> Tensor[3, 4] {\n'
           '        let cfg = {"scale": 2.0}\n        cfg["shift"] = 0.5\n'
           '        cfg["scale"] += 1.0\n        return x * cfg["scale"] + cfg["shift"]\n'
           '    }\n}\n')
    assert np.allclose(run(src, X), X * 3.0 + 0.5)


def test_state_buffers_declared_with_a_spec():
    src = ('layer N {\n    params { c: int }\n'
           '    state mu: Tensor { shape: [c], init: "zeros", requires_grad: false }\n'
           '    state var: Tensor { shape: [c], init: "constant", value: 4.0 }\n'
           '    forward(x: Tensor[b, c]) -> Tensor[b, c] {\n'
           '        return (x - mu) / sqrt(var)\n    }\n}\n'
           'model M {\n    layer n: N { c: 4 }\n'
           '    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {\n        return n(x)\n    }\n}\n')
    low = lowered(src)
    assert {n: tuple(low.params[n][0]) for n in ("n.mu", "n.var")} == {"n.mu": (4,), "n.var": (4,)}
    mu, var = np.full(4, 0.25, np.float32), np.full(4, 4.0, np.float32)
    assert np.allclose(run(src, X, {"n.mu": mu, "n.var": var}), (X - mu) / 2.0)


def test_unbind_of_an_unknown_dim_is_a_lowering_error():
    src = ("fn parts(x: Tensor) -> Tensor {\n    let (a, b) = unbind(x)\n    return a + b\n}\n"
           "model P {\n    forward(x: Tensor[n, 4]) -> Tensor[4] {\n        return parts(x)\n"
           "    }\n}\n")
    with pytest.raises(LoweringError, match="unbind"):
        lowered(src)


def test_named_arguments_of_user_functions_bind_by_name():
    src = ("fn affine(x: Tensor, scale: float = 2.0, shift: float = 0.0) -> Tensor {\n"
           "    return x * scale + shift\n}\n"
           "model N {\n    forward(x: Tensor[3, 4]) -> Tensor[3, 4] {\n"
           "        return affine(shift: 1.0, x: x) + affine(x, shift: -1.0, scale: 3.0)\n"
           "    }\n}\n")
    assert np.allclose(run(src, X), (X * 2.0 + 1.0) + (X * 3.0 - 1.0), atol=1e-5)
