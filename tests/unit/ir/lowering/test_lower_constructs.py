"""One test per construct: what each language feature lowers to, checked on the IR and by
running it in the reference interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lowering_helpers import EXAMPLES, checked, lower_text, run  # noqa: E402

from tritium.check import check_source  # noqa: E402
from tritium.ir import QuantSpec, interpret, print_module  # noqa: E402
from tritium.ir.lowering import LoweringError, lower, mono_name  # noqa: E402

EX = Path(EXAMPLES[0]).parent


def ops(low, func: str | None = None) -> list[str]:
    f = low.module.function(func or low.entry)
    return [op.name for op in f.walk()]


# ----------------------------------------------------------------------------- naming


def test_resnet_repetition_and_conditional_layer_names() -> None:
    low = lower(checked(EX / "resnet18.tri"))
    p = low.params
    assert p["layer1.0.conv1.weight"][0] == (64, 64, 3, 3)
    assert p["layer1.1.bn2.running_var"][0] == (64,)
    # the shortcut exists only where stride != 1 or c_in != c_out: layerN.0 for N >= 2
    assert not any(k.startswith("layer1.0.shortcut") for k in p)
    assert p["layer2.0.shortcut.0.weight"][0] == (128, 64, 1, 1)
    assert p["layer2.0.shortcut.1.running_mean"][0] == (128,)
    assert not any(k.startswith("layer2.1.shortcut") for k in p)
    names = {layer.name for layer in low.module.layers}
    assert "BasicBlock__c_in_64_c_out_128_stride_2" in names
    assert "BasicBlock__c_in_128_c_out_128_stride_1" in names
    assert "BasicBlock__c_in_64_c_out_64_stride_1" in names   # layer1.0 and layer1.1 share it
    root = low.module.layer("ResNet18")
    subs = {s.name: s.kind for s in root.sublayers}
    assert subs["layer1.0"] == subs["layer1.1"] == "BasicBlock__c_in_64_c_out_64_stride_1"
    assert subs["stem"] == "Conv2d"
    calls = [op.attrs.get("instance") for op in root.function("forward").walk() if op.name == "call"]
    assert calls == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
                     "layer4.0", "layer4.1"]
    assert low.entry == "ResNet18.forward"


def test_mono_name_formats_values() -> None:
    assert mono_name("B", {}) == "B"
    assert mono_name("B", {"c": 3, "p": 0.5, "neg": -2, "on": True, "q": "b1.58", "k": [3, 1]}) \
        == "B__c_3_p_0p5_neg_m2_on_true_q_b1_58_k_3x1"


def test_builtin_repetition_and_multi_kind_names() -> None:
    low = lower_text("""
model M {
    layer fcs: Linear[3] { in_features: 8, out_features: 8 }
    layer pair: if (true) {
        Linear { in_features: 8, out_features: 4 }
        ReLU { }
    }
    forward(x: Tensor[batch, 8]) -> Tensor[batch, 4] { return pair(fcs(x)) }
}""")
    assert list(low.params) == ["fcs.0.weight", "fcs.0.bias", "fcs.1.weight", "fcs.1.bias",
                                "fcs.2.weight", "fcs.2.bias", "pair.0.weight", "pair.0.bias"]
    assert ops(low).count("linear") == 4 and "relu" in ops(low)
    outs, xs, ps = run(low, {"batch": 2})
    h = xs[0].astype(np.float64)
    for i in range(3):
        h = h @ ps[f"fcs.{i}.weight"].T + ps[f"fcs.{i}.bias"]
    h = np.maximum(h @ ps["pair.0.weight"].T + ps["pair.0.bias"], 0)
    np.testing.assert_allclose(outs[0], h, rtol=1e-4, atol=1e-5)


def test_repeat_clause_chains_user_block_configs() -> None:
    low = lower_text("""
block Grow {
    params { n: int, m: int }
    repeat { n: m, m: m * 2 }
    layer fc: Linear { in_features: n, out_features: m }
    forward(x: Tensor[b, n]) -> Tensor[b, m] { return fc(x) }
}
model M {
    layer g: Grow[3] { n: 2, m: 4 }
    forward(x: Tensor[batch, 2]) -> Tensor[batch, 16] { return g(x) }
}""")
    assert low.params["g.0.fc.weight"][0] == (4, 2)
    assert low.params["g.1.fc.weight"][0] == (8, 4)
    assert low.params["g.2.fc.weight"][0] == (16, 8)
    assert {layer.name for layer in low.module.layers} == {
        "M", "Grow__n_2_m_4", "Grow__n_4_m_8", "Grow__n_8_m_16"}
    assert run(low, {"batch": 2})[0][0].shape == (2, 16)


# ----------------------------------------------------------------------------- control flow


def test_constant_condition_picks_a_branch_statically() -> None:
    src = EX / "mobilenetv2.tri"
    low = lower(checked(src))
    with_res = low.module.layer("InvertedResidual__c_in_24_c_out_24_stride_1_expand_6")
    without = low.module.layer("InvertedResidual__c_in_16_c_out_24_stride_1_expand_6")
    for layer, adds in ((with_res, 1), (without, 0)):
        names = [op.name for op in layer.function("forward").walk()]
        assert "if" not in names
        assert names.count("add") == adds


def test_runtime_condition_becomes_an_if_op() -> None:
    low = lower_text("""
model M {
    layer fc: Linear { in_features: 4, out_features: 4 }
    forward(x: Tensor[batch, 4], k: float) -> Tensor[batch, 4] {
        y = fc(x)
        z = 1.0
        if k > 0.0 {
            y = relu(y)
        } else {
            y = y * 2.0
            z = 3.0
        }
        return y * z
    }
}""")
    f = low.module.function(low.entry)
    assert [str(t) for t in f.arg_types] == ["tensor<[batch, 4], f32>", "f32"]
    ifs = [op for op in f.walk() if op.name == "if"]
    assert len(ifs) == 1 and len(ifs[0].results) == 2
    assert [o.name for o in ifs[0].regions[0].ops] == ["relu", "constant", "yield"]
    rng = np.random.default_rng(0)
    params = {"fc.weight": rng.standard_normal((4, 4)).astype(np.float32),
              "fc.bias": rng.standard_normal(4).astype(np.float32)}
    x = rng.standard_normal((2, 4)).astype(np.float32)
    y = x @ params["fc.weight"].T + params["fc.bias"]
    for k, expect in ((1.0, np.maximum(y, 0)), (-1.0, y * 6)):
        out = interpret(low.module, low.entry, [x, np.float32(k)], params)[0]
        np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6)


def test_return_inside_a_runtime_branch() -> None:
    low = lower_text("""
model M {
    forward(x: Tensor[batch, 4]) -> Tensor[batch, 4] {
        if x.shape[0] > 2 {
            return relu(x)
        }
        let y = x * 3.0
        return y
    }
}""")
    assert "dim" in ops(low) and "if" in ops(low)
    x2 = -np.ones((2, 4), np.float32)
    x3 = -np.ones((3, 4), np.float32)
    np.testing.assert_allclose(interpret(low.module, low.entry, [x2])[0], x2 * 3)
    np.testing.assert_allclose(interpret(low.module, low.entry, [x3])[0], np.zeros((3, 4)))


def test_for_loop_is_unrolled() -> None:
    low = lower_text("""
model M {
    layer fc: Linear { in_features: 8, out_features: 8, bias: false }
    forward(x: Tensor[batch, 8]) -> Tensor[batch, 8] {
        for i in 0..3 {
            x = fc(x) + i
        }
        for j in range(2) { x = x * 2.0 }
        return x
    }
}""")
    names = ops(low)
    assert names.count("linear") == 3 and names.count("mul") == 2
    outs, xs, ps = run(low, {"batch": 2})
    h = xs[0].astype(np.float64)
    for i in range(3):
        h = h @ ps["fc.weight"].T + i
    np.testing.assert_allclose(outs[0], h * 4, rtol=1e-4, atol=1e-5)


def test_conditional_expression_and_logic() -> None:
    low = lower_text("""
model M {
    k: 3
    forward(x: Tensor[batch, 4]) -> Tensor[batch, 4] {
        let s = 2.0 if k > 2 and not (k == 5) else 7.0
        let y = x * s
        return y if x.shape[0] > 2 or k < 0 else -y
    }
}""")
    assert "select" in ops(low)
    x = np.array([[1, 2, 3, 4], [1, 1, 1, 1]], np.float32)
    np.testing.assert_allclose(interpret(low.module, low.entry, [x])[0], -x * 2)
    x3 = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(interpret(low.module, low.entry, [x3])[0], x3 * 2)


# ----------------------------------------------------------------------------- expressions


def test_indexing_slicing_shapes_and_reshape_with_symbolic_dims() -> None:
    low = lower_text("""
model M {
    forward(x: Tensor[b, s, 12]) -> Tensor[b, s, 3, 2] {
        let y = x[:, :, 0:6]
        let z = reshape(y, [b, s, 3, 2])
        let first = x[0]
        let n = x.shape[1]
        return z + reshape(first[0:1, 0:6], [1, 1, 3, 2]) * 0.0 + float(n) * 0.0
    }
}""")
    x = np.arange(2 * 5 * 12, dtype=np.float32).reshape(2, 5, 12)
    out = interpret(low.module, low.entry, [x])[0]
    np.testing.assert_array_equal(out, x[:, :, 0:6].reshape(2, 5, 3, 2))
    t = print_module(low.module)
    assert "slice(" in t and "index(" in t and "{shape = [0, 0, 3, 2]}" in t


def test_reshape_of_trailing_dynamic_dims_splits_with_slices() -> None:
    low = lower_text("""
model M {
    forward(x: Tensor[6, b, s]) -> Tensor[2, 3, b, s] {
        return reshape(x, [2, 3, b, s])
    }
}""")
    names = ops(low)
    assert "reshape" not in names and names.count("slice") == 2 and "stack" in names
    x = np.arange(6 * 2 * 5, dtype=np.float32).reshape(6, 2, 5)
    np.testing.assert_array_equal(interpret(low.module, low.entry, [x])[0], x.reshape(2, 3, 2, 5))


def test_reshape_with_one_dynamic_dim_uses_minus_one() -> None:
    low = lower_text("""
model M {
    forward(x: Tensor[batch, 2, 4]) -> Tensor[batch, 8] {
        return x.reshape([x.shape[0], 8])
    }
}""")
    f = low.module.function(low.entry)
    r = [op for op in f.walk() if op.name == "reshape"][0]
    assert r.attrs["shape"] == [-1, 8] and str(r.results[0].type) == "tensor<[batch, 8], f32>"
    x = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    np.testing.assert_array_equal(interpret(low.module, low.entry, [x])[0], x.reshape(3, 8))


def test_user_functions_become_module_functions_or_fold() -> None:
    low = lower_text("""
fn double(n: int) -> int { return n * 2 }
fn scaled_gelu(x: Tensor, k: float) -> Tensor { return gelu(x) * k }
model M {
    forward(x: Tensor[batch, 4]) -> Tensor[batch, 4] {
        return scaled_gelu(x, 0.5) + scaled_gelu(x, 0.5) + x * double(3)
    }
}""")
    fns = [f.name for f in low.module.functions]
    assert fns == ["scaled_gelu"]
    calls = [op for op in low.module.function(low.entry).walk() if op.name == "call"]
    assert len(calls) == 2 and all(c.attrs["callee"] == "scaled_gelu" for c in calls)
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
    from math import erf, sqrt
    g = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / sqrt(2))))(x.astype(np.float64))
    np.testing.assert_allclose(interpret(low.module, low.entry, [x])[0], g + x * 6, rtol=1e-5)


def test_builtin_functions_lower_to_ops() -> None:
    low = lower_text("""
model M {
    forward(x: Tensor[batch, 2, 8, 8]) -> Tensor[batch, 4] {
        let a = max_pool2d(x, 2)
        let b = avg_pool2d(x, kernel_size: 2, stride: 2)
        let c = adaptive_avg_pool2d(x, 4)
        let d = flatten(clamp(a + b + c, min: -1.0, max: 1.0), start_dim: 2)
        let e = softmax(mean(d, dim: 2, keepdim: true), dim: 1)
        let f = concat([transpose(d, 1, 2), permute(d, [0, 2, 1])], dim: 2)
        let g = squeeze(unsqueeze(sum(f, dim: 1), 1), 1)
        return where(g > 0.0, g, maximum(g, minimum(g, 0.5))) + sigmoid(e[:, 0])
    }
}""")
    names = set(ops(low))
    for want in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "flatten", "maximum",
                 "minimum", "softmax", "mean", "concat", "transpose", "permute", "sum",
                 "squeeze", "unsqueeze", "select", "sigmoid"):
        assert want in names, want
    outs, _, _ = run(low, {"batch": 2})
    assert outs[0].shape == (2, 4) and np.all(np.isfinite(outs[0]))


def test_floordiv_pooling_modes_and_sign() -> None:
    low = lower_text("""
model M {
    half: floordiv(7, 2)
    layer pool: MaxPool2d { kernel_size: 2, ceil_mode: true }
    forward(x: Tensor[1, 1, 5, 5]) -> Tensor[1, 1, 3, 3] {
        return floordiv(pool(x), 2.0) * half + sign(x[:, :, 0:3, 0:3])
    }
}""")
    names = ops(low)
    assert "floordiv" in names and "sign" in names
    pool = [op for op in low.module.function(low.entry).walk() if op.name == "max_pool2d"][0]
    assert pool.attrs["ceil_mode"] is True
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5) - 12
    p = np.full((1, 1, 3, 3), -np.inf, np.float32)
    for i in range(3):
        for j in range(3):
            p[0, 0, i, j] = x[0, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max()
    expect = np.floor_divide(p, 2.0) * 3 + np.sign(x[:, :, 0:3, 0:3])
    np.testing.assert_array_equal(interpret(low.module, low.entry, [x])[0], expect)


def test_tensor_literals_and_constants() -> None:
    low = lower_text("""
model M {
    forward(x: Tensor[2, 2]) -> Tensor[2, 2] {
        let t = TernaryTensor[2, 2](1, 0, -1, 1)
        return x @ t + ones([2, 2]) + zeros([2]) * 3.0
    }
}""")
    x = np.array([[1, 2], [3, 4]], np.float32)
    t = np.array([[1, 0], [-1, 1]], np.float32)
    np.testing.assert_allclose(interpret(low.module, low.entry, [x])[0], x @ t + 1)


# ----------------------------------------------------------------------------- parameters


def test_ternary_params_get_quant_specs_and_inits() -> None:
    low = lower_text("""
model M {
    layer a: TernaryLinear { in_features: 8, out_features: 4, quantizer: "b1.58", per_channel: true, format: "t1.6" }
    layer c: TernaryConv2d { in_channels: 2, out_channels: 4, kernel_size: 3, padding: 1, quantizer: "fixed", threshold: 0.1, bias: false }
    layer q8: Int8Linear { in_features: 4, out_features: 4 }
    layer q4: Int4Linear { in_features: 4, out_features: 4 }
    forward(x: Tensor[batch, 8], y: Tensor[batch, 2, 4, 4]) -> Tensor[batch, 4] {
        return q4(q8(a(x))) + mean(c(y), dim: [2, 3])
    }
}""")
    p = low.params
    assert p["a.weight"] == ((4, 8), "f32", "kaiming_uniform", QuantSpec("absmean", True, "t1.6"))
    assert p["a.bias"] == ((4,), "f32", "zeros", None)
    assert p["c.weight"][3] == QuantSpec("threshold", False, "t2") and "c.bias" not in p
    assert p["q8.weight"][3] == QuantSpec("int8", True, "none")
    assert p["q4.weight"][3] == QuantSpec("int4", True, "none")
    t = print_module(low.module)
    assert 'quantize_ternary(%0) {quantizer = "absmean", per_channel = true}' in t
    assert 'quantizer = "threshold", threshold = 0.1' in t
    assert "quantize_int8" in t and "quantize_int4" in t


def test_explicit_layer_params_and_lets() -> None:
    low = lower(checked(Path(__file__).parent / "data" / "design_intro.tri"), "Scaled",
                {"in_features": 8, "out_features": 3})
    assert low.params["W"] == ((3, 8), "f32", "random_ternary", QuantSpec("twn", False, "t2"))
    assert low.params["alpha"] == ((1,), "f32", "ones", None)
    outs, xs, ps = run(low, {})
    w = ps["W"].astype(np.float64)
    delta = 0.7 * np.abs(w).mean()
    keep = np.abs(w) > delta
    wq = np.sign(w) * keep * np.abs(w)[keep].mean()
    np.testing.assert_allclose(outs[0], ps["alpha"] * (xs[0] @ wq.T), rtol=1e-4, atol=1e-5)


def test_quantization_section_sets_user_weight_quantizer() -> None:
    low = lower_text("""
layer Head {
    param w: TernaryTensor[16, 4]
    quantization { quantizer: "absmean", per_channel: true }
    fn forward(x: Tensor[N, 16]) -> Tensor[N, 4] { return x @ w }
}""")
    assert low.params["w"][3] == QuantSpec("absmean", True, "t2")


# ----------------------------------------------------------------------------- layers


def test_bitlinear_ops() -> None:
    low = lower_text("""
model M {
    layer q: BitLinear { in_features: 16, out_features: 8, eps: 1e-6 }
    forward(x: Tensor[batch, 16]) -> Tensor[batch, 8] { return q(x) }
}""")
    f = low.module.function(low.entry)
    names = [op.name for op in f.walk()]
    assert names == ["param", "rms_norm", "quantize_ternary", "fused_linear", "return"]
    by = {op.name: op for op in f.walk()}
    assert by["rms_norm"].attrs["eps"] == 1e-6 and len(by["rms_norm"].operands) == 1
    assert by["quantize_ternary"].attrs == {"quantizer": "absmean"}
    assert by["fused_linear"].attrs == {"act_quant": "int8", "has_scale": True}
    assert low.params["q.weight"][3] == QuantSpec("absmean", False, "t2")
    assert "q.bias" not in low.params


def test_attention_layers() -> None:
    for kind in ("MultiheadAttention", "TernaryAttention"):
        low = lower_text(f"""
model M {{
    layer att: {kind} {{ embed_dim: 8, num_heads: 2, causal: true, bias: true }}
    forward(x: Tensor[batch, seq, 8]) -> Tensor[batch, seq, 8] {{ return att(x) }}
}}""")
        assert [k for k in low.params if k.endswith("weight")] == [
            "att.q_proj.weight", "att.k_proj.weight", "att.v_proj.weight", "att.o_proj.weight"]
        names = ops(low)
        assert names.count("linear") == 4 and "scaled_dot_product_attention" in names
        assert (names.count("quantize_ternary") == 4) == (kind == "TernaryAttention")
        outs, _, _ = run(low, {"batch": 2, "seq": 3})
        assert outs[0].shape == (2, 3, 8)


def test_layernorm_embedding_activation_layers() -> None:
    low = lower_text("""
model M {
    layer emb: Embedding { num_embeddings: 10, embedding_dim: 6 }
    layer ln: LayerNorm { normalized_shape: 6 }
    layer act: TernaryActivation { threshold: 0.3 }
    layer drop: Dropout { p: 0.1 }
    layer sm: Softmax { dim: -1 }
    layer fl: Flatten { }
    forward(t: Tensor<int64, [batch, seq]>) -> Tensor[batch, ?] {
        return fl(sm(drop(act(ln(emb(t))))))
    }
}""")
    outs, xs, ps = run(low, {"batch": 2, "seq": 3})
    e = ps["emb.weight"][xs[0]].astype(np.float64)
    mu, var = e.mean(-1, keepdims=True), e.var(-1, keepdims=True)
    n = (e - mu) / np.sqrt(var + 1e-5) * ps["ln.weight"] + ps["ln.bias"]
    a = np.sign(n) * (np.abs(n) > 0.3)
    s = np.exp(a - a.max(-1, keepdims=True))
    np.testing.assert_allclose(outs[0], (s / s.sum(-1, keepdims=True)).reshape(2, -1), rtol=1e-5)


# ----------------------------------------------------------------------------- errors


def test_check_errors_raise_lowering_error() -> None:
    r = check_source("model M { forward(x: Tensor[2]) -> Tensor[2] { return y } }")
    with pytest.raises(LoweringError, match="cannot lower a program with errors") as e:
        lower(r)
    assert e.value.span is not None


@pytest.mark.parametrize("body,msg", [
    ('layer c: TernaryConv2d { in_channels: 1, out_channels: 2, kernel_size: 1, act_quant: "int8" }',
     "act_quant"),
])
def test_unsupported_layer_configs(body: str, msg: str) -> None:
    src = f"""
model M {{
    {body}
    forward(x: Tensor[1, 1, 4, 2]) -> Tensor {{ return c(x) }}
}}"""
    with pytest.raises(LoweringError, match=msg):
        lower(checked(src))


def test_same_padding_with_an_even_kernel_is_a_check_error_before_lowering() -> None:
    # the lowering still refuses it (a defence for IR built by hand), but the checker
    # stops it first, so `tritium check` and `compile --emit ir` agree
    r = check_source("model M {\n    layer c: Conv2d { in_channels: 1, out_channels: 2, "
                     'kernel_size: 2, padding: "same" }\n'
                     "    forward(x: Tensor[1, 1, 4, 2]) -> Tensor { return c(x) }\n}\n")
    assert [d.code for d in r.errors] == ["E0309"]


def test_threshold_without_the_threshold_quantizer_is_a_check_error() -> None:
    """The default quantizer (twn) takes no `threshold`: the checker says so (E0309) rather
    than the lowering or the runtime."""
    r = check_source("model M {\n    layer c: TernaryLinear { in_features: 2, out_features: 2, "
                     "threshold: 0.2 }\n    forward(x: Tensor[1, 2]) -> Tensor { return c(x) }\n}\n")
    assert [d.code for d in r.errors] == ["E0309"]
    assert "applies only to the threshold quantizer" in r.errors[0].message


def test_unsupported_expressions_name_the_problem() -> None:
    # (`x % 2.0` of a tensor lowers: test_int_arith_agreement.py)
    with pytest.raises(LoweringError, match="assignment to an element"):
        lower_text("""
model M {
    forward(x: Tensor[b, 4]) -> Tensor {
        x[0] = 1.0
        return x
    }
}""")


def test_stochastic_quantizer_lowers_to_the_runtime_eval_rule() -> None:
    low = lower_text("""
model M {
    layer fc: TernaryLinear { in_features: 6, out_features: 3, quantizer: "stochastic", bias: false }
    forward(x: Tensor[batch, 6]) -> Tensor[batch, 3] { return fc(x) }
}""")
    assert low.params["fc.weight"][3] == QuantSpec("stochastic", False, "t2")
    assert "quantize_ternary" not in ops(low)
    w = np.array([[1.0, -0.6, 0.4, 0.0, -1.2, 0.59], [0.1, 0.2, 0.3, -0.3, 0.2, 0.1],
                  [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    x = np.eye(6, dtype=np.float32)
    out = interpret(low.module, low.entry, [x], {"fc.weight": w})[0]
    m = np.abs(w).max()
    expect = np.where(2 * np.abs(w) >= m, np.sign(w) * m, 0.0)
    np.testing.assert_allclose(out, expect.T, rtol=1e-6)
