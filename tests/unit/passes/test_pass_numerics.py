"""Each rewriting pass on its own preserves the interpreter's results, on the cases the
pipelines do not reach in the differential test (e.g. bn-fold into an already fused op)."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.ir import Module, interpret, new_function, parse_module, tensor, verify
from tritium.passes import PASSES, run_opt

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


MODEL = '''\
layer @Block {} {
  param @conv.weight : tensor<[4, 4, 3, 3], f32> {quantizer = "twn", per_channel = true, format = "t2"}
  param @bn.mean : tensor<[4], f32>
  param @bn.var : tensor<[4], f32>
  param @bn.weight : tensor<[4], f32>
  param @bn.bias : tensor<[4], f32>
  func @forward(%x: tensor<[N, 4, 6, 6], f32>) -> (tensor<[N, 4, 6, 6], f32>) {
    %0 = param() {name = "conv.weight"} : () -> tensor<[4, 4, 3, 3], f32>
    %1, %2 = quantize_ternary(%0) {per_channel = true} : (tensor<[4, 4, 3, 3], f32>) -> (tensor<[4, 4, 3, 3], trit>, tensor<[4], f32>)
    %3 = dequantize(%1, %2) : (tensor<[4, 4, 3, 3], trit>, tensor<[4], f32>) -> tensor<[4, 4, 3, 3], f32>
    %4 = conv2d(%x, %3) {padding = [1, 1]} : (tensor<[N, 4, 6, 6], f32>, tensor<[4, 4, 3, 3], f32>) -> tensor<[N, 4, 6, 6], f32>
    %5 = param() {name = "bn.mean"} : () -> tensor<[4], f32>
    %6 = param() {name = "bn.var"} : () -> tensor<[4], f32>
    %7 = param() {name = "bn.weight"} : () -> tensor<[4], f32>
    %8 = param() {name = "bn.bias"} : () -> tensor<[4], f32>
    %9 = batch_norm(%4, %5, %6, %7, %8) : (tensor<[N, 4, 6, 6], f32>, tensor<[4], f32>, tensor<[4], f32>, tensor<[4], f32>, tensor<[4], f32>) -> tensor<[N, 4, 6, 6], f32>
    %10 = add(%9, %x) : (tensor<[N, 4, 6, 6], f32>, tensor<[N, 4, 6, 6], f32>) -> tensor<[N, 4, 6, 6], f32>
    %11 = relu(%10) : (tensor<[N, 4, 6, 6], f32>) -> tensor<[N, 4, 6, 6], f32>
    return(%11) : (tensor<[N, 4, 6, 6], f32>) -> ()
  }
}

model @Net {depth = 2} {
  sublayer @b1 : @Block
  sublayer @b2 : @Block
  param @fc.weight : tensor<[3, 4], f32>
  func @forward(%x: tensor<[batch, 4, 6, 6], f32>, %deep: bool) -> (tensor<[batch, 3], f32>) {
    %0 = call(%x) {callee = "forward", instance = "b1"} : (tensor<[batch, 4, 6, 6], f32>) -> tensor<[batch, 4, 6, 6], f32>
    %1 = if(%deep) : (bool) -> tensor<[batch, 4, 6, 6], f32> {
      %2 = call(%0) {callee = "forward", instance = "b2"} : (tensor<[batch, 4, 6, 6], f32>) -> tensor<[batch, 4, 6, 6], f32>
      yield(%2) : (tensor<[batch, 4, 6, 6], f32>) -> ()
    } {
      yield(%0) : (tensor<[batch, 4, 6, 6], f32>) -> ()
    }
    %3 = adaptive_avg_pool2d(%1) {output_size = [1, 1]} : (tensor<[batch, 4, 6, 6], f32>) -> tensor<[batch, 4, 1, 1], f32>
    %4 = flatten(%3) {start_dim = 1} : (tensor<[batch, 4, 1, 1], f32>) -> tensor<[batch, 4], f32>
    %5 = param() {name = "fc.weight"} : () -> tensor<[3, 4], f32>
    %6, %7 = quantize_ternary(%5) {quantizer = "absmean"} : (tensor<[3, 4], f32>) -> (tensor<[3, 4], trit>, tensor<[], f32>)
    %8 = dequantize(%6, %7) : (tensor<[3, 4], trit>, tensor<[], f32>) -> tensor<[3, 4], f32>
    %9 = linear(%4, %8) : (tensor<[batch, 4], f32>, tensor<[3, 4], f32>) -> tensor<[batch, 3], f32>
    return(%9) : (tensor<[batch, 3], f32>) -> ()
  }
}
'''


@pytest.mark.parametrize("level", ["O0", "O1", "O2", "O3"])
def test_pipelines_on_a_model_with_calls(level: str) -> None:
    from tritium.ir import parse_module, print_module
    from tritium.passes import pipeline

    params = {"fc.weight": arr(3, 4)}
    for blk in ("b1", "b2"):
        params.update({f"{blk}.conv.weight": arr(4, 4, 3, 3), f"{blk}.bn.mean": arr(4),
                       f"{blk}.bn.var": arr(4, positive=True), f"{blk}.bn.weight": arr(4), f"{blk}.bn.bias": arr(4)})
    x = arr(2, 4, 6, 6)
    m = parse_module(MODEL)
    refs = [interpret(m, "Net.forward", [x, deep], params)[0] for deep in (True, False)]
    pipeline(level, bindings={"batch": 2} if level == "O3" else None, verify_each=True).run(m)
    text = print_module(m)
    if level == "O3":
        assert "fused_conv2d" in text and "fused_linear" in text and "tensor<[2, 3], f32>" in text
    for deep, ref in zip((True, False), refs):
        np.testing.assert_allclose(interpret(m, "Net.forward", [x, deep], params)[0], ref, rtol=1e-5, atol=1e-5)


def test_fuse_extends_fused_ops_numerics() -> None:
    f, b = new_function("f", [("x", tensor((2, 3, 8))), ("t", tensor((4, 8), "trit")), ("s", tensor((4,))),
                              ("bias", tensor((4,))), ("r", tensor((2, 3, 4)))])
    x, t, s, bias, r = f.args
    y = b.gelu(b.add(r, b.add(b.fused_linear(x, t, s, has_scale=True, act_quant="int8"), bias)))
    b.ret(y)
    f.result_types = [y.type]
    m = Module([f])
    inputs = [arr(2, 3, 8), rng.integers(-1, 2, (4, 8)).astype(np.int8), arr(4, positive=True), arr(4), arr(2, 3, 4)]
    ref = interpret(m, "f", inputs)[0]
    assert PASSES["fuse"]().run(m)
    verify(m)
    assert [op.name for op in m.walk()] == ["fused_linear", "return"]
    np.testing.assert_allclose(interpret(m, "f", inputs)[0], ref, rtol=1e-5, atol=1e-5)


def test_load_time_ops_after_bn_fold() -> None:
    from tritium.ir import load_time_ops, parse_module
    from tritium.passes import pipeline

    m = parse_module(MODEL)
    pipeline(3).run(m)
    f = m.function("Block.forward")
    pre = load_time_ops(f)
    names = {op.name for op in pre}
    assert {"param", "quantize_ternary", "sqrt", "div"} <= names
    assert not names & {"fused_conv2d", "return"}
    runtime = [op.name for op in f.body.ops if op not in pre]
    assert runtime == ["fused_conv2d", "return"]


@pytest.mark.parametrize("scale_kind", ["none", "tensor", "out"])
def test_fuse_matmul_numerics(scale_kind: str) -> None:
    f, b = new_function("f", [("x", tensor((3, 8))), ("t", tensor((8, 4), "trit")), ("bias", tensor((4,)))])
    x, t, bias = f.args
    w = t
    if scale_kind == "tensor":
        w = b.dequantize(t, b.constant(0.5, tensor(())))
    elif scale_kind == "out":
        w = b.dequantize(t, b.constant(np.array([1.0, 2.0, 0.5, 3.0], np.float32), tensor((4,))), axis=1)
    y = b.relu(b.add(b.matmul(x, w), bias))
    b.ret(y)
    f.result_types = [y.type]
    m = Module([f])
    inputs = [arr(3, 8), rng.integers(-1, 2, (8, 4)).astype(np.int8), arr(4)]
    ref = interpret(m, "f", inputs)[0]
    assert PASSES["fuse"]().run(m)
    PASSES["dce"]().run(m)
    verify(m)
    assert "fused_linear" in [op.name for op in m.walk()] and "matmul" not in [op.name for op in m.walk()]
    np.testing.assert_allclose(interpret(m, "f", inputs)[0], ref, rtol=1e-5, atol=1e-5)


def test_canonicalize_keeps_what_a_zero_of_an_outer_reshape_copies() -> None:
    """reshape(reshape(x, [-1, 4]), [0, -1]) of an x [2, 8] of unknown dims is [4, 4]: the 0
    copies the inner result's dim, so composing into reshape(x, [0, -1]) gave [2, 8] (the
    types [?, 4] and [?, ?] agree, so the verifier could not tell)."""
    text = """func @f(%x: tensor<[?, ?], f32>) -> (tensor<[?, 4], f32>) {
  %0 = reshape(%x) {shape = [-1, 4]} : (tensor<[?, ?], f32>) -> tensor<[?, 4], f32>
  %1 = reshape(%0) {shape = [0, -1]} : (tensor<[?, 4], f32>) -> tensor<[?, 4], f32>
  return(%1) : (tensor<[?, 4], f32>) -> ()
}
"""
    x = arr(2, 8)
    ref = interpret(parse_module(text), "f", [x])[0]
    got = interpret(parse_module(run_opt(text, ["canonicalize"])), "f", [x])[0]
    assert got.shape == ref.shape == (4, 4)
    np.testing.assert_array_equal(got, ref)
