"""Each rewriting pass on its own preserves the interpreter's results, on the cases the
pipelines do not reach in the differential test (e.g. bn-fold into an already fused op)."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.ir import Module, interpret, new_function, tensor, verify
from tritium.passes import PASSES

rng = np.random.default_rng(3)


def arr(*shape: int, positive: bool = False) -> np.ndarray:
    a = rng.standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.5 if positive else a


def bn_case(producer: str, weight_dtype: str) -> tuple[Module, list[np.ndarray]]:
    conv = "conv2d" in producer
    xs, ws = ((2, 3, 5, 5), (4, 3, 3, 3)) if conv else ((3, 6), (4, 6))
    f, b = new_function("f", [("x", tensor(xs)), ("w", tensor(ws, weight_dtype)), ("s", tensor((4,))),
                              ("bias", tensor((4,)))] + [(n, tensor((4,))) for n in ("m", "v", "g", "be")])
    x, w, s, bias, m, v, g, be = f.args
    if producer == "fused_linear":
        y = b.fused_linear(x, w, s, bias, has_scale=True, has_bias=True)
    elif producer == "fused_conv2d":
        y = b.fused_conv2d(x, w, bias, has_bias=True, padding=[1, 1])
    elif producer == "conv2d":
        y = b.conv2d(x, w, bias, stride=[2, 2])
    else:
        y = b.linear(x, w)
    out = b.batch_norm(y, m, v, g, be, eps=1e-3)
    b.ret(out)
    f.result_types = [out.type]
    wv = rng.integers(-1, 2, ws).astype(np.int8) if weight_dtype == "trit" else arr(*ws)
    return Module([f]), [arr(*xs), wv, arr(4, positive=True), arr(4), arr(4), arr(4, positive=True), arr(4), arr(4)]


@pytest.mark.parametrize("producer,weight_dtype", [
    ("fused_linear", "trit"), ("fused_linear", "f32"), ("fused_conv2d", "trit"), ("fused_conv2d", "f32"),
    ("conv2d", "f32"), ("linear", "trit"), ("linear", "f32"),
])
def test_bn_fold_numerics(producer: str, weight_dtype: str) -> None:
    m, inputs = bn_case(producer, weight_dtype)
    ref = interpret(m, "f", inputs)[0]
    assert PASSES["bn-fold"]().run(m)
    verify(m)
    names = [op.name for op in m.walk()]
    assert "batch_norm" not in names
    for op in m.walk():  # ternary weights stay ternary: never multiplied
        if op.name == "mul":
            assert all(o.type.dtype != "trit" for o in op.operands)
    np.testing.assert_allclose(interpret(m, "f", inputs)[0], ref, rtol=1e-5, atol=1e-5)


def test_lossy_quant_elim_changes_numerics_only_when_asked() -> None:
    f, b = new_function("f", [("x", tensor((4, 8)))])
    q, s = b.quantize_int8(f.args[0])
    y = b.dequantize(q, s)
    b.ret(y)
    f.result_types = [y.type]
    m = Module([f])
    assert not PASSES["quant-dequant-elim"]().run(m)
    assert PASSES["quant-dequant-elim"](lossy=True).run(m)
    x = arr(4, 8)
    np.testing.assert_array_equal(interpret(m, "f", [x])[0], x)
