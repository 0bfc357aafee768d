"""Triton source generation and kernel extraction from IR (no kernels run here)."""

from __future__ import annotations

import ast
import itertools

import pytest

from tritium.backends.triton.codegen import GEMM_CONFIGS, generate_source, runtime_source
from tritium.backends.triton.extract import extract_kernels, model_source
from tritium.backends.triton.specs import ACTIVATIONS, Conv2dSpec, LinearSpec, QuantInt8Spec
from tritium.ir import parse_module, verify
from tritium.passes import pipeline

ALL_LINEAR = [LinearSpec(f, a, q, b, r, p) for f, a, q, b, r, p in itertools.product(
    ("t2", "t1.6"), ACTIVATIONS, ("none", "int8"), (False, True), (False, True),
    ("none", "rms", "rms_weight"))]
ALL_CONV = [Conv2dSpec(f, a, q, b, r) for f, a, q, b, r in itertools.product(
    ("t2", "t1.6"), ACTIVATIONS, ("none", "int8"), (False, True), (False, True))]


def _functions(source: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def test_every_spec_generates_valid_python_with_a_unique_kernel_name():
    specs = [*ALL_LINEAR, *ALL_CONV, QuantInt8Spec()]
    assert len({s.name for s in specs}) == len(specs)
    source = generate_source(specs)
    assert max(len(line) for line in source.splitlines()) <= 100
    funcs = _functions(source)
    for s in specs:
        assert s.name in funcs
        decorators = [ast.unparse(d) for d in funcs[s.name].decorator_list]
        assert decorators[0].startswith("triton.autotune(") and decorators[1] == "triton.jit"


def test_generation_is_deterministic_and_order_independent():
    specs = [LinearSpec("t1.6", "gelu", "int8", True), Conv2dSpec("t2", "relu"), QuantInt8Spec()]
    a = generate_source(specs, title="m")
    assert a == generate_source(list(reversed(specs)) + specs[:1], title="m")
    assert [f for f in _functions(a) if f.startswith("tri_")] == \
        ["tri_conv2d_t2_relu", "tri_linear_t16_q8_gelu_bias", "tri_quantize_int8"]


def test_kernel_body_holds_only_what_its_spec_needs():
    plain = _functions(runtime_source(LinearSpec("t2")))["tri_linear_t2"]
    args = [a.arg for a in plain.args.args]
    assert args[:3] == ["x_ptr", "w_ptr", "scale_ptr"] and "bias_ptr" not in args
    assert args[-5:] == ["PER_CHANNEL", "BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"]
    assert [ast.unparse(d) for d in plain.args.defaults] == ["128", "1"]
    text = ast.unparse(plain)
    assert "_dot_f32_trits" in text and "_quantize_int8" not in text and "tl.static_range(4)" in text

    full = runtime_source(LinearSpec("t1.6", "tanh", "int8", True, True, "rms_weight"))
    fn = _functions(full)["tri_linear_t16_rmsw_q8_tanh_bias_res"]
    args = [a.arg for a in fn.args.args]
    assert args[:6] == ["x_ptr", "w_ptr", "scale_ptr", "norm_w_ptr", "bias_ptr", "res_ptr"]
    assert "eps" in args
    body = ast.unparse(fn)
    for needle in ("tl.static_range(5)", "packed * 270", "tl.cdiv(K, BLOCK_K)",
                   "tl.static_range(BLOCK_K // 160)", "out_dtype=tl.int32",
                   "inv_rms", "amax", "_tanh(y)", "other=121"):
        assert needle in body, needle
    helpers = _functions(full)
    assert {"_round_half_even", "_quantize_int8", "_tanh"} <= set(helpers)
    assert "_gelu" not in helpers and "_dot_f32_trits" not in helpers


def test_conv_geometry_is_constexpr():
    fn = _functions(runtime_source(Conv2dSpec("t2")))["tri_conv2d_t2"]
    constexpr = [a.arg for a in fn.args.args if a.annotation is not None]
    assert constexpr == ["KH", "KW", "SH", "SW", "PH", "PW", "DH", "DW", "PER_CHANNEL",
                         "BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"]


def test_autotune_configs_and_pruning():
    ns: dict = {}
    source = runtime_source(LinearSpec("t2"))
    # the prune functions are plain Python; run them without triton's decorators
    tree = ast.parse(source)
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.decorator_list]

    class Config:
        def __init__(self, kwargs, num_warps=4, num_stages=2):
            self.kwargs, self.num_warps, self.num_stages = kwargs, num_warps, num_stages

    class Triton:
        @staticmethod
        def next_power_of_2(n):
            return 1 << (n - 1).bit_length()

    ns["triton"] = Triton
    exec(compile(ast.Module(keep, []), "<prune>", "exec"), ns)
    configs = [Config({"BLOCK_M": m, "BLOCK_N": n}, w, s) for m, n, w, s in GEMM_CONFIGS]
    fit = ns["fitting_gemm_configs"]
    small = fit(configs, 1, 5, 7, 128)
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in small] == [(16, 32)]
    mid = fit(configs, 17, 130, 300, 128)
    assert {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in mid} == \
        {(16, 32), (16, 64), (32, 32), (32, 64)}
    assert all(c.kwargs["BLOCK_M"] <= 32 for c in mid)
    big = fit(configs, 4096, 4096, 4096, 128)
    assert len(big) == len(configs)
    # one packed K block: deeper pipelines than 2 stages are dropped
    assert all(c.num_stages <= 2 for c in fit(configs, 4096, 4096, 100, 128))


def test_spec_validation():
    with pytest.raises(ValueError, match="format"):
        LinearSpec("t3")
    with pytest.raises(ValueError, match="activation"):
        Conv2dSpec("t2", "swish")


IR = """
layer @Net {} {
  param @fc.weight : tensor<[40, 96], f32> {quantizer = "absmean", per_channel = true, format = "t1.6"}
  param @norm.weight : tensor<[96], f32>
  param @conv.weight : tensor<[8, 3, 3, 3], f32> {quantizer = "twn", per_channel = false, format = "t2"}
  param @dense.weight : tensor<[7, 40], f32>
  param @packed : tensor<[7, 32], u8>
  param @s7 : tensor<[], f32>
  func @forward(%x: tensor<[batch, 96], f32>, %img: tensor<[2, 3, 9, 9], f32>) -> (tensor<[batch, 7], f32>, tensor<[2, 8, 5, 5], f32>, tensor<[batch, 7], f32>) {
    %0 = param() {name = "fc.weight"} : () -> tensor<[40, 96], f32>
    %1, %2 = quantize_ternary(%0) {quantizer = "absmean", per_channel = true} : (tensor<[40, 96], f32>) -> (tensor<[40, 96], trit>, tensor<[40], f32>)
    %3 = param() {name = "norm.weight"} : () -> tensor<[96], f32>
    %4 = rms_norm(%x, %3) {eps = 1e-05} : (tensor<[batch, 96], f32>, tensor<[96], f32>) -> tensor<[batch, 96], f32>
    %5 = fused_linear(%4, %1, %2) {has_scale = true, act_quant = "int8", activation = "silu"} : (tensor<[batch, 96], f32>, tensor<[40, 96], trit>, tensor<[40], f32>) -> tensor<[batch, 40], f32>
    %6 = param() {name = "dense.weight"} : () -> tensor<[7, 40], f32>
    %7 = fused_linear(%5, %6) {activation = "relu"} : (tensor<[batch, 40], f32>, tensor<[7, 40], f32>) -> tensor<[batch, 7], f32>
    %8 = param() {name = "conv.weight"} : () -> tensor<[8, 3, 3, 3], f32>
    %9, %10 = quantize_ternary(%8) {quantizer = "twn"} : (tensor<[8, 3, 3, 3], f32>) -> (tensor<[8, 3, 3, 3], trit>, tensor<[], f32>)
    %11 = fused_conv2d(%img, %9, %10) {stride = [2, 2], padding = [1, 1], has_scale = true, activation = "relu"} : (tensor<[2, 3, 9, 9], f32>, tensor<[8, 3, 3, 3], trit>, tensor<[], f32>) -> tensor<[2, 8, 5, 5], f32>
    %12 = param() {name = "packed"} : () -> tensor<[7, 32], u8>
    %13 = param() {name = "s7"} : () -> tensor<[], f32>
    %14 = fused_linear(%5, %12, %13) {format = "t2", in_features = 40, has_scale = true} : (tensor<[batch, 40], f32>, tensor<[7, 32], u8>, tensor<[], f32>) -> tensor<[batch, 7], f32>
    return(%7, %11, %14) : (tensor<[batch, 7], f32>, tensor<[2, 8, 5, 5], f32>, tensor<[batch, 7], f32>) -> ()
  }
}
"""


def test_extract_kernels_from_hand_written_ir():
    module = parse_module(IR)
    verify(module)
    uses = extract_kernels(module)
    assert [u.spec for u in uses] == [
        LinearSpec("t1.6", "silu", "int8", prenorm="rms_weight"),   # format from the param spec
        Conv2dSpec("t2", "relu"),
        LinearSpec("t2"),                                           # packed u8 with a format
    ]                                                               # (float-weight %7 skipped)
    lin, conv, packed = uses
    assert (lin.m, lin.n, lin.k, lin.per_channel, lin.site) == (None, 40, 96, True, "Net.forward %5")
    assert (conv.m, conv.n, conv.k, conv.per_channel) == (50, 8, 27, False)
    assert conv.conv is not None and conv.conv.constexprs() == {
        "KH": 3, "KW": 3, "SH": 2, "SW": 2, "PH": 1, "PW": 1, "DH": 1, "DW": 1}
    assert (packed.n, packed.k) == (7, 40)
    source = model_source(module, "Net")
    assert "#   Net.forward %11: M=50 N=8 K=27 conv 3x3 s2 p1 d1 g1\n" in source
    assert source == model_source(parse_module(IR), "Net")


def test_extract_after_the_o2_pipeline_fuses_a_ternary_linear():
    text = """
model @M {} {
  param @fc.weight : tensor<[10, 64], f32> {quantizer = "twn", per_channel = false, format = "t1.6"}
  param @fc.bias : tensor<[10], f32>
  func @forward(%x: tensor<[batch, 64], f32>) -> (tensor<[batch, 10], f32>) {
    %0 = param() {name = "fc.weight"} : () -> tensor<[10, 64], f32>
    %1, %2 = quantize_ternary(%0) {quantizer = "twn"} : (tensor<[10, 64], f32>) -> (tensor<[10, 64], trit>, tensor<[], f32>)
    %3 = dequantize(%1, %2) : (tensor<[10, 64], trit>, tensor<[], f32>) -> tensor<[10, 64], f32>
    %4 = param() {name = "fc.bias"} : () -> tensor<[10], f32>
    %5 = linear(%x, %3, %4) : (tensor<[batch, 64], f32>, tensor<[10, 64], f32>, tensor<[10], f32>) -> tensor<[batch, 10], f32>
    %6 = relu(%5) : (tensor<[batch, 10], f32>) -> tensor<[batch, 10], f32>
    return(%6) : (tensor<[batch, 10], f32>) -> ()
  }
}
"""
    module = parse_module(text)
    assert extract_kernels(module) == []
    pipeline("O2").run(module)
    [use] = extract_kernels(module)
    assert use.spec == LinearSpec("t1.6", "relu", has_bias=True)
    assert (use.n, use.k) == (10, 64)


@pytest.mark.parametrize("title", ['a\\N.tri', 'x"""; import os; """y', "two\nlines\u2028", "C:\\temp\\m.tri"])
def test_a_title_from_a_file_name_cannot_break_the_module_docstring(title):
    # the title (the program's file name) went into the docstring with only `"` replaced:
    # `a\N.tri` made a module that does not parse (\N{...} escape)
    src = generate_source([LinearSpec("t2", "relu", has_bias=True)], title=title)
    tree = ast.parse(src)
    doc = ast.get_docstring(tree)
    assert doc.splitlines()[0].startswith("Triton kernels generated by Tritium (")
    assert not any(isinstance(n, ast.Import) and n.names[0].name == "os" for n in tree.body)
