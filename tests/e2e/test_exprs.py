"""Statements and expressions of the earlier DSL (issue 13, form 13): programs that use them
check, compile to PyTorch, load, run, and agree with the IR interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_source
from tritium.ir.lowering import lower

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import agree_with_ir  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def _run_both(src: str, tmp_path, shape=(3, 4)) -> tuple[np.ndarray, np.ndarray]:
    ref, got, _, _ = agree_with_ir(tmp_path, src, shape, name="p.tri")
    return ref, got


OPERATORS = """
model Ops {
    forward(x: Tensor[batch, 4]) -> Tensor {
        let mask = 0xF0 + 0b1010 + 0o17 + 1_000
        let flag = !(mask == 0) && (mask > 2 || false)
        let s = 0
        for i in 0..=4 { s += i }
        for i in 0..10 step 3 { s += i }
        for i in (10..=0).step_by(-4) { s += i }
        for i in range(1, 8, 2) { s += i }
        if 0 < s <= 1000 < mask && flag {
            return x * s
        }
        return x
    }
}
"""


def test_operators_literals_ranges_agree(tmp_path):
    ref, got = _run_both(OPERATORS, tmp_path)
    s = sum(range(5)) + sum(range(0, 10, 3)) + sum(range(10, -1, -4)) + sum(range(1, 8, 2))
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(ref, x * s, rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


LOOPS = """
model Loops {
    forward(x: Tensor[batch, 4]) -> Tensor {
        "Counts with while, break and continue; asserts what it knows."
        let i = 0
        let y = x
        while i < 10 {
            i += 1
            if i % 2 == 0 { continue }
            if i > 7 { break }
            y = y + i        // i = 1, 3, 5, 7
        }
        for j in 0..5 {
            if j == 3 { break }
            pass
            y = y * 2.0      // j = 0, 1, 2
        }
        assert i == 9, "the loop stops at 9"
        assert(i > 0, "positive")
        return y
    }
}
"""


def test_loops_agree(tmp_path):
    ref, got = _run_both(LOOPS, tmp_path)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(ref, (x + 16) * 8, rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


RUNTIME_WHILE = """
model Count {
    forward(x: Tensor[batch, 4]) -> Tensor {
        let n = x.shape[0]
        let i = 0
        let y = x
        while i < n {
            y = y + 1.0
            i += 1
        }
        assert i == n, "counted the batch"
        return y
    }
}
"""


def test_runtime_while_compiles_to_pytorch_and_is_e0701_for_the_ir(tmp_path):
    from tritium.ir.lowering import LoweringError
    f = tmp_path / "h.tri"
    f.write_text(RUNTIME_WHILE)
    result = check_source(RUNTIME_WHILE, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f)
    x = torch.randn(5, 4)
    torch.testing.assert_close(model(x), x + 5)
    with pytest.raises(LoweringError, match="known only at run time"):
        lower(result, None, None)


TUPLES = """
fn split2(x: Tensor[batch, 4]) {
    return x * 2.0, x + 1.0
}

model Tuples {
    layer fc: Linear { in_features: 4, out_features: 4 }
    forward(x: Tensor[batch, 4]) -> Tensor {
        let (a, b) = (fc(x), x * 3.0)
        a, b = b, a                        // a swap: the right side first
        let scales = [0.5, 2.0, 4.0]
        let y = a
        for s in scales { y = y + s }
        for (i, s) in enumerate(scales) { y = y + i * s }
        for i, w in zip(scales, [1.0, 10.0]) { y = y + i * w }
        let (p, q) = split2(b)
        return y + p - q
    }
}
"""


def test_destructuring_agrees(tmp_path):
    ref, got = _run_both(TUPLES, tmp_path)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_seed_example_agrees(tmp_path):
    from pathlib import Path
    src = (Path(__file__).resolve().parents[2] / "examples/seed/exprs_loops.tri").read_text()
    ref, got = _run_both(src, tmp_path, shape=(3, 16))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


BLOCKS = """
fn clip_scale(v: int) -> int {
    if v > 4 { 4 } else { v }
}

model Blocks {
    layer fc: Linear { in_features: 4, out_features: 4 }
    forward(x: Tensor[batch, 4]) -> Tensor {
        let k = if clip_scale(9) == 4 { 2.0 } else { 3.0 }
        let h = fc(x)
        let y = if h.shape[1] == 4 {
            let t = h * k
            t + 1.0
        } else if k > 0.0 {
            h
        } else {
            x
        }
        let z = { let u = y * 0.5; u - x }
        let w = (if k > 1.0 { z } else { y }) * 2.0
        w + { y }
    }
}
"""


def test_block_values_agree(tmp_path):
    ref, got = _run_both(BLOCKS, tmp_path)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


TRAINING = """
model T {
    layer fc: Linear { in_features: 4, out_features: 4 }
    forward(x: Tensor[batch, 4]) -> Tensor {
        if self.training { return fc(x) * 0.5 }
        return fc(x)
    }
}
"""


def test_self_training_in_forward(tmp_path):
    ref, got = _run_both(TRAINING, tmp_path)     # eval mode: the IR is the inference graph
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    f = tmp_path / "p.tri"
    model = tritium.load(f)
    x = torch.randn(2, 4)
    model.train()
    train_out = model(x)
    model.eval()
    torch.testing.assert_close(train_out, model(x) * 0.5)
    bad = "fn f(x: Tensor) -> Tensor {\n    if self.training { return x }\n    return x\n}\n"
    assert [d.code for d in check_source(bad, "b.tri").errors] == ["E0304"]


def test_function_keyword_compiles(tmp_path):
    src = ("function double(x: Tensor[batch, 4]) -> Tensor {\n    x * 2.0\n}\n"
           "model M {\n    forward(x: Tensor[batch, 4]) -> Tensor {\n"
           "        let function = 3.0\n        return double(x) * function\n    }\n}\n")
    ref, got = _run_both(src, tmp_path)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(ref, x * 6.0, rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_list_repetition_agrees(tmp_path):
    src = ("model R {\n    forward(x: Tensor[batch, 4]) -> Tensor {\n"
           "        let scales = [0.5] * 3 + 2 * [2.0]\n        let y = x\n"
           "        for s in scales { y = y * s }\n        let zs = [y] * 2\n"
           "        return zs[0] + zs[1]\n    }\n}\n")
    ref, got = _run_both(src, tmp_path)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(ref, x * 0.125 * 4 * 2, rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_list_comprehension_agrees(tmp_path):
    src = ("model C {\n    forward(x: Tensor[batch, 4]) -> Tensor {\n"
           "        let ys = [x * s for s in [0.5, 1.0, 2.0, 3.0] if s != 1.0]\n"
           "        let ws = [i * 1.0 for (i, y) in enumerate(ys)]\n"
           "        let out = x\n        for (w, y) in zip(ws, ys) { out = out + w * y }\n"
           "        return out\n    }\n}\n")
    ref, got = _run_both(src, tmp_path)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(ref, x + 1 * 2 * x + 2 * 3 * x, rtol=1e-5)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("product", "trits_only"), [
    ("trit(x) @ transpose(trit(x), 0, 1)", True),
    ("matmul(trit(x), transpose(trit(x), 0, 1))", True),
    ("x @ transpose(trit(x), 0, 1)", False),
])
def test_a_trit_matmul_in_a_layer_does_not_wrap_in_int8(tmp_path, product, trits_only):
    # trits computed in a layer's forward are int8: their product, a sum over 300 columns,
    # was computed by torch in int8 and wrapped (172 came out as -84) where the IR sums in
    # i32; with a float operand torch refused the mixed dtypes
    src = (f"layer L(x: Tensor<float32, [2, 300]>) -> Tensor {{\n"
           f"    return {product}\n}}\n")
    ref, got = _run_both(src, tmp_path, shape=(2, 300))
    assert ref.dtype == np.float32
    assert not trits_only or float(np.abs(got).max()) > 127
    np.testing.assert_allclose(ref, got.astype(np.float32), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("reduction", [
    "mean(int32(x), axis=1)", "mean(trit(x))", "int32(x).mean(1)", "std(int32(x), 1)",
    "var(trit(x), 1, keepdim=true)",
])
def test_a_mean_of_integers_is_a_float(tmp_path, reduction):
    # torch.mean/var refuse integer tensors ("could not infer output dtype"); the checker
    # and the IR type the mean float32: the generated code reduces the tensor cast to floats
    src = f"layer L(x: Tensor<float32, [2, 30]>) -> Tensor {{\n    return {reduction}\n}}\n"
    ref, got = _run_both(src, tmp_path, shape=(2, 30))
    assert ref.dtype == np.float32
    np.testing.assert_allclose(ref, got, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clip", [
    "clip(int32(x * 4.0), -2.5, 2.5)", "clamp(int32(x * 4.0), min=-1.5)",
    "clip(int32(x * 4.0), max_val=0.5)",
])
def test_a_clip_of_integers_with_float_bounds_stays_integer(tmp_path, clip):
    # torch.clamp of an int32 tensor with a float bound returned float32 (-2.5) where the
    # checker and the IR type int32 (-2): the bounds are truncated, the dtype kept
    src = f"layer L(x: Tensor<float32, [2, 30]>) -> Tensor {{\n    return {clip}\n}}\n"
    ref, got = _run_both(src, tmp_path, shape=(2, 30))
    assert ref.dtype == got.dtype == np.int32
    np.testing.assert_array_equal(ref, got)


@pytest.mark.parametrize("call", [
    "gelu(int32(x * 3.0))", "silu(int32(x * 3.0))", "softmax(int32(x * 3.0), 1)",
    "log_softmax(trit(x))", "rms_norm(int32(x * 3.0))", "gelu(trit(x))", "sqrt(int32(x))",
    "layer_norm(int32(x * 3.0))",
])
def test_a_float_function_of_integers_computes_on_floats(tmp_path, call):
    # F.gelu, F.silu, softmax, rms_norm and layer_norm raised "not implemented for 'Int'" on an int32 or
    # int8 (trit) tensor, and the checker typed sqrt(int32(x)) int32: like the IR, the
    # result is float32, computed on the tensor cast to floats
    src = f"layer L(x: Tensor<float32, [2, 8]>) -> Tensor {{\n    return {call}\n}}\n"
    ref, got = _run_both(src, tmp_path, shape=(2, 8))
    assert ref.dtype == got.dtype == np.float32
    np.testing.assert_allclose(ref, got, rtol=1e-5, atol=1e-6)
    typed = check_source(f"fn f(x: Tensor<float32, [2, 8]>) -> Tensor<float32, [2, 8]> {{\n"
                         f"    let y: Tensor<int32, [2, 8]> = {call}\n    return x\n}}\n", "t.tri")
    assert not typed.ok, call   # a float tensor is not an int32 one
