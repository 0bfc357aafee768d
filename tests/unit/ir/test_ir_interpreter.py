"""Interpreter semantics that torch does not define: quantizers, packing, fused ops, calls."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tritium.ir import Interpreter, InterpretError, interpret, parse_module
from tritium.ir.interpreter import dequantize, pack, quantize_int, quantize_ternary, unpack

rng = np.random.default_rng(1)


def test_twn_per_tensor_and_per_channel() -> None:
    w = np.array([[1.0, 0.1, -0.5, 0.0], [0.2, 0.2, -0.2, 0.0]])
    t, s = quantize_ternary(w)
    delta = 0.7 * np.abs(w).mean()
    kept = np.abs(w) > delta
    np.testing.assert_array_equal(t, np.sign(w) * kept)
    assert s == pytest.approx(np.abs(w)[kept].mean())
    t, s = quantize_ternary(w, per_channel=True)
    np.testing.assert_array_equal(t, [[1, 0, -1, 0], [1, 1, -1, 0]])
    np.testing.assert_allclose(s, [0.75, 0.2], rtol=1e-6)


def test_absmean_and_threshold() -> None:
    w = np.array([0.9, -0.05, 0.3, -2.0])
    t, s = quantize_ternary(w, "absmean")
    assert s == pytest.approx(np.abs(w).mean())
    np.testing.assert_array_equal(t, np.clip(np.round(w / (s + 1e-5)), -1, 1))
    t, s = quantize_ternary(w, "threshold", threshold=0.5)
    np.testing.assert_array_equal(t, [1, 0, 0, -1])
    assert s == pytest.approx(1.45)


@pytest.mark.parametrize("bits,qmax", [(8, 127), (4, 7)])
def test_int_quantization(bits: int, qmax: int) -> None:
    x = rng.standard_normal((5, 6))
    q, s = quantize_int(x, bits, per_channel=True, axis=1)
    assert s.shape == (6,) and np.abs(q).max(axis=0).tolist() == [qmax] * 6
    np.testing.assert_allclose(dequantize(q, s, axis=1), x, atol=float(s.max()) / 2 + 1e-7)
    q, s = quantize_int(np.zeros(3), bits)
    assert s == 0 and not q.any()


@settings(max_examples=60, deadline=None)
@given(arrays(np.int8, st.tuples(st.integers(1, 4), st.integers(1, 300)), elements=st.integers(-1, 1)),
       st.sampled_from(["t2", "t1.6"]))
def test_pack_unpack_roundtrip(t: np.ndarray, fmt: str) -> None:
    p = pack(t, fmt)
    assert p.dtype == np.uint8
    np.testing.assert_array_equal(unpack(p, fmt, list(t.shape)), t)
    np.testing.assert_array_equal(unpack(pack(t[0], fmt), fmt, [t.shape[1]]), t[0])


def test_t2_layout() -> None:
    t = np.zeros(128, dtype=np.int8)
    t[0], t[32], t[64], t[96], t[1] = 1, -1, 1, 0, -1
    p = pack(t, "t2")
    assert p.shape == (32,)
    assert p[0] == 2 | (0 << 2) | (2 << 4) | (1 << 6)
    assert p[1] == 0 | (1 << 2) | (1 << 4) | (1 << 6)
    assert (p[2:] == 0b01010101).all()


def test_t16_layout() -> None:
    t = np.zeros(170, dtype=np.int8)
    t[0], t[32], t[64], t[96], t[128], t[5], t[165] = 1, -1, 0, 1, -1, 1, -1
    p = pack(t, "t1.6")
    assert p.shape == (64,)
    assert p[0] == 81 * 2 + 27 * 0 + 9 * 1 + 3 * 2 + 0
    assert p[5] == 81 * 2 + 27 + 9 + 3 + 1
    assert p[32 + 5] == 81 * 0 + 27 + 9 + 3 + 1
    assert p[1] == 121 and p[63] == 121  # all-zero trits (also the padding)


FUSED = '''\
func @f(%x: tensor<[3, 130], f32>, %p: tensor<[4, 32], u8>, %s: tensor<[4], f32>, %b: tensor<[4], f32>, %r: tensor<[3, 4], f32>) -> (tensor<[3, 4], f32>) {
  %0 = fused_linear(%x, %p, %s, %b, %r) {format = "t1.6", in_features = 130, activation = "silu", has_scale = true, has_bias = true, has_residual = true, act_quant = "int8"} : (tensor<[3, 130], f32>, tensor<[4, 32], u8>, tensor<[4], f32>, tensor<[4], f32>, tensor<[3, 4], f32>) -> tensor<[3, 4], f32>
  return(%0) : (tensor<[3, 4], f32>) -> ()
}
'''


def test_fused_linear_packed_with_act_quant() -> None:
    x, t = rng.standard_normal((3, 130)), rng.integers(-1, 2, (4, 130))
    s, b, r = rng.random(4), rng.standard_normal(4), rng.standard_normal((3, 4))
    got = interpret(parse_module(FUSED), "f", [x, pack(t, "t1.6"), s, b, r])[0]
    xs = np.abs(x).max(axis=1, keepdims=True) / 127
    xq = np.clip(np.round(x / xs), -127, 127) * xs
    y = (xq @ t.T) * s + b + r
    np.testing.assert_allclose(got, y / (1 + np.exp(-y)), rtol=1e-5, atol=1e-5)


CALLS = '''\
layer @Inner {} {
  param @w : tensor<[2], f32>
  func @forward(%x: tensor<[N, 2], f32>) -> (tensor<[N, 2], f32>) {
    %0 = param() {name = "w"} : () -> tensor<[2], f32>
    %1 = mul(%x, %0) : (tensor<[N, 2], f32>, tensor<[2], f32>) -> tensor<[N, 2], f32>
    return(%1) : (tensor<[N, 2], f32>) -> ()
  }
}

model @Outer {} {
  sublayer @a : @Inner
  sublayer @b : @Inner
  func @forward(%x: tensor<[b, 2], f32>, %c: bool) -> (tensor<[b, 2], f32>) {
    %0 = call(%x) {callee = "forward", instance = "a"} : (tensor<[b, 2], f32>) -> tensor<[b, 2], f32>
    %1 = if(%c) : (bool) -> tensor<[b, 2], f32> {
      %2 = call(%0) {callee = "forward", instance = "b"} : (tensor<[b, 2], f32>) -> tensor<[b, 2], f32>
      yield(%2) : (tensor<[b, 2], f32>) -> ()
    } {
      yield(%0) : (tensor<[b, 2], f32>) -> ()
    }
    return(%1) : (tensor<[b, 2], f32>) -> ()
  }
}
'''


def test_calls_params_and_if() -> None:
    m = parse_module(CALLS)
    params = {"a.w": np.array([2.0, 3.0]), "b.w": np.array([10.0, 100.0])}
    x = np.ones((3, 2))
    np.testing.assert_array_equal(interpret(m, "Outer.forward", [x, True], params)[0], [[20, 300]] * 3)
    np.testing.assert_array_equal(interpret(m, "Outer.forward", [x, False], params)[0], [[2, 3]] * 3)
    with pytest.raises(InterpretError, match="no value for parameter 'b.w'"):
        interpret(m, "Outer.forward", [x, True], {"a.w": params["a.w"]})
    with pytest.raises(InterpretError, match=r"argument %x has shape \[3\], its type is tensor<\[b, 2\], f32>"):
        Interpreter(m, params).run("Outer.forward", [np.ones(3), True])


def test_symbolic_dims_bind_consistently() -> None:
    text = '''\
func @f(%x: tensor<[n], f32>, %y: tensor<[n], f32>) -> (tensor<[n], f32>) {
  %0 = add(%x, %y) : (tensor<[n], f32>, tensor<[n], f32>) -> tensor<[n], f32>
  return(%0) : (tensor<[n], f32>) -> ()
}
'''
    with pytest.raises(InterpretError, match="argument %y has shape"):
        interpret(parse_module(text), "f", [np.ones(2), np.ones(3)])


def test_compiler_does_not_import_torch() -> None:
    code = ("import sys, tritium.ir, tritium.passes; "
            "from tritium.passes import run_opt; "
            "assert 'torch' not in sys.modules and 'scipy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_op_has_semantics() -> None:
    from tritium.ir import OPS
    from tritium.ir.interpreter import KERNELS

    structural = {"constant", "param", "call", "if", "yield", "return"}
    assert set(OPS) - set(KERNELS) == structural
    assert set(KERNELS) <= set(OPS)


def test_integer_arithmetic_is_exact() -> None:
    text = """func @f(%a: i64, %b: i64, %t: tensor<[3], trit>) -> (i64, tensor<[3], i8>, f32) {
  %0 = mul(%a, %b) : (i64, i64) -> i64
  %1 = add(%t, %t) : (tensor<[3], trit>, tensor<[3], trit>) -> tensor<[3], i8>
  %2 = div(%a, %b) : (i64, i64) -> f32
  return(%0, %1, %2) : (i64, tensor<[3], i8>, f32) -> ()
}
"""
    big = 2**40 + 1
    p, s, q = interpret(parse_module(text), "f", [big, 3, np.array([1, -1, 1])])
    assert int(p) == big * 3 and s.tolist() == [2, -2, 2] and float(q) == pytest.approx(big / 3)


def test_trace_sees_every_op_with_its_instance_prefix() -> None:
    m = parse_module(CALLS)
    params = {"a.w": np.array([2.0, 3.0]), "b.w": np.array([10.0, 100.0])}
    seen: list[tuple[str, str]] = []
    Interpreter(m, params, trace=lambda op, outs, prefix: seen.append((op.name, prefix))).run(
        "Outer.forward", [np.ones((1, 2)), True])
    assert seen == [("param", "a."), ("mul", "a."), ("call", ""), ("param", "b."), ("mul", "b."),
                    ("call", ""), ("if", "")]
