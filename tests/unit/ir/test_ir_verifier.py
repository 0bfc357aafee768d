"""The verifier rejects malformed IR with messages naming the function, op and value."""

from __future__ import annotations

import pytest

from tritium.ir import Block, Module, Op, VerifyError, new_function, parse_module, tensor, verify

GOOD = '''\
layer @Inner {} {
  param @w : tensor<[4, 4], f32>
  func @forward(%x: tensor<[N, 4], f32>) -> (tensor<[N, 4], f32>) {
    %0 = param() {name = "w"} : () -> tensor<[4, 4], f32>
    %1 = linear(%x, %0) : (tensor<[N, 4], f32>, tensor<[4, 4], f32>) -> tensor<[N, 4], f32>
    return(%1) : (tensor<[N, 4], f32>) -> ()
  }
}

model @Outer {} {
  sublayer @a : @Inner
  sublayer @fc : @TernaryLinear {in_features = 4, out_features = 4}
  param @fc.weight : tensor<[4, 4], f32>
  func @forward(%x: tensor<[b, 4], f32>) -> (tensor<[b, 4], f32>) {
    %0 = call(%x) {callee = "forward", instance = "a"} : (tensor<[b, 4], f32>) -> tensor<[b, 4], f32>
    %1 = param() {name = "a.w"} : () -> tensor<[4, 4], f32>
    %2 = param() {name = "fc.weight"} : () -> tensor<[4, 4], f32>
    %3 = call(%0) {callee = "helper"} : (tensor<[b, 4], f32>) -> tensor<[b, 4], f32>
    return(%3) : (tensor<[b, 4], f32>) -> ()
  }
}

func @helper(%x: tensor<[n, 4], f32>) -> (tensor<[n, 4], f32>) {
  %0 = relu(%x) : (tensor<[n, 4], f32>) -> tensor<[n, 4], f32>
  return(%0) : (tensor<[n, 4], f32>) -> ()
}
'''


def test_good_module_verifies() -> None:
    verify(parse_module(GOOD))


@pytest.mark.parametrize("old,new,message", [
    ('{name = "a.w"}', '{name = "a.v"}', r"no parameter 'a.v' in layer Outer"),
    ('{name = "fc.weight"} : () -> tensor<[4, 4], f32>', '{name = "fc.weight"} : () -> tensor<[4, 5], f32>',
     r"parameter 'fc.weight' has type tensor<\[4, 4\], f32>, the op says tensor<\[4, 5\], f32>"),
    ('instance = "a"', 'instance = "zz"', "no sub-layer instance 'zz'"),
    ('instance = "a"', 'instance = "fc"', "builtin kind 'TernaryLinear'"),
    ('{callee = "helper"}', '{callee = "nope"}', "no function 'nope'"),
    ('    return(%3) : (tensor<[b, 4], f32>) -> ()\n  }\n}', '    return(%0) : (tensor<[b, 4], f32>) -> ()\n    return(%3) : (tensor<[b, 4], f32>) -> ()\n  }\n}',
     "terminator in the middle of a block"),
    ("  %0 = relu(%x) : (tensor<[n, 4], f32>) -> tensor<[n, 4], f32>\n  return(%0)",
     "  %0 = relu(%x) : (tensor<[n, 4], f32>) -> tensor<[n, 4], f32>\n  yield(%0)", "function body must end with 'return'"),
    ("-> (tensor<[n, 4], f32>) {\n  %0 = relu", "-> (tensor<[n, 5], f32>) {\n  %0 = relu",
     "results do not match callee 'helper' results"),
    ("sublayer @fc :", "sublayer @a :", "duplicate member names: a"),
    ("func @helper", "func @Inner", "duplicate module item names: Inner"),
])
def test_verifier_errors(old: str, new: str, message: str) -> None:
    assert old in GOOD
    m = parse_module(GOOD.replace(old, new, 1))
    with pytest.raises(VerifyError, match=message):
        verify(m)


@pytest.mark.parametrize("value,type_,message", [
    ("dense<[1, 2]>", "tensor<[2], trit>", "trit constants must be -1, 0 or 1"),
    ("dense<[1.5, 2.0]>", "tensor<[2], i32>", "float value"),
    ("dense<[1.0]>", "tensor<[2], f32>", "has 1 elements"),
    ("dense<[1.0]>", "tensor<[n], f32>", "needs a static type"),
    ("0.0", "tensor<[?, 2], f32>", "needs a static type"),
    ("dense<[1.0]>", "f32", "needs a tensor type"),
    ("300", "tensor<[2], i8>", "out of range for i8"),
    ("dense<[1, 99999999999999999999]>", "tensor<[2], i64>", "out of range for i64"),
    ("-1", "tensor<[2], u8>", "out of range for u8"),
    ("1", "bool", "non-bool"),
])
def test_bad_constants(value: str, type_: str, message: str) -> None:
    text = f"func @f() -> () {{\n  %0 = constant() {{value = {value}}} : () -> {type_}\n  return() : () -> ()\n}}\n"
    with pytest.raises(VerifyError, match=message):
        verify(parse_module(text))


def test_dominance_of_programmatic_ir() -> None:
    """Use before def is impossible in parsed text, but can be built in Python."""
    f, b = new_function("f", [("x", tensor([4]))])
    late = Op("exp", [f.args[0]], {}, [tensor([4])])
    ret = b.ret(b.relu(late.results[0]))
    f.body.insert_before(ret, late)
    f.result_types = [tensor([4])]
    with pytest.raises(VerifyError, match=r"op 'relu' .*operand #0 .* is not defined before its use"):
        verify(Module([f]))


def test_region_must_end_with_yield_and_if_types() -> None:
    f, b = new_function("f", [("c", tensor([], "bool")), ("x", tensor([4]))])
    op = b.create("if", [f.args[0]], {}, [tensor([4])], [Block(), Block()])
    op.regions[0].append(Op("yield", [f.args[1]]))
    b.ret(op.results[0])
    f.result_types = [tensor([4])]
    with pytest.raises(VerifyError, match="region must end with 'yield'"):
        verify(Module([f]))
    op.regions[1].append(Op("yield", [f.args[0]]))
    with pytest.raises(VerifyError, match=r"region yields \(tensor<\[\], bool>\)"):
        verify(Module([f]))


def test_param_outside_layer() -> None:
    text = "func @f() -> () {\n  %0 = param() {name = \"w\"} : () -> f32\n  return() : () -> ()\n}\n"
    with pytest.raises(VerifyError, match="no parameter 'w' in a module-level function"):
        verify(parse_module(text))


def test_return_types_checked() -> None:
    text = """func @f(%x: tensor<[n, 4], f32>) -> (tensor<[n, 5], f32>) {
  return(%x) : (tensor<[n, 4], f32>) -> ()
}
"""
    with pytest.raises(VerifyError, match=r"returns \(tensor<\[n, 4\], f32>\) but the function declares \(tensor<\[n, 5\], f32>\)"):
        verify(parse_module(text))
    with pytest.raises(VerifyError, match="op 'yield' .* terminator in the middle of a block"):
        verify(parse_module(text.replace("  return(%x)", "  yield(%x) : (tensor<[n, 4], f32>) -> ()\n  return(%x)")))


def test_return_inside_region_rejected() -> None:
    text = """func @f(%c: bool, %x: tensor<[4], f32>) -> (tensor<[4], f32>) {
  %0 = if(%c) : (bool) -> tensor<[4], f32> {
    return(%x) : (tensor<[4], f32>) -> ()
  } {
    yield(%x) : (tensor<[4], f32>) -> ()
  }
  return(%0) : (tensor<[4], f32>) -> ()
}
"""
    with pytest.raises(VerifyError, match="'return' is not allowed here"):
        verify(parse_module(text))


def test_recursion_rejected() -> None:
    text = """func @a(%x: f32) -> (f32) {
  %0 = call(%x) {callee = "b"} : (f32) -> f32
  return(%0) : (f32) -> ()
}

func @b(%x: f32) -> (f32) {
  %0 = call(%x) {callee = "a"} : (f32) -> f32
  return(%0) : (f32) -> ()
}
"""
    with pytest.raises(VerifyError, match="recursive calls are not allowed: a -> b -> a"):
        verify(parse_module(text))
    verify(parse_module(text.replace('{callee = "a"}', '{callee = "c"}').replace(
        "func @b", 'func @c(%x: f32) -> (f32) {\n  return(%x) : (f32) -> ()\n}\n\nfunc @b')))


def test_error_messages_use_printed_value_names() -> None:
    text = """func @f(%x: tensor<[4], f32>) -> (tensor<[4], f32>) {
  %0 = exp(%x) : (tensor<[4], f32>) -> tensor<[4], f32>
  %1 = softmax(%0) {dim = 3} : (tensor<[4], f32>) -> tensor<[4], f32>
  return(%1) : (tensor<[4], f32>) -> ()
}
"""
    with pytest.raises(VerifyError, match=r"op 'softmax' \(%1 = softmax\(%0\) \{dim = 3\} .*\): dim 3 out of range"):
        verify(parse_module(text))


def test_bad_quant_spec() -> None:
    text = 'layer @L {} {\n  param @w : tensor<[2], f32> {quantizer = "twn", per_channel = false, format = "t3"}\n}\n'
    with pytest.raises(VerifyError, match="invalid quantization spec"):
        verify(parse_module(text))


def test_layer_instantiation_cycle_rejected() -> None:
    text = "layer @A {} {\n  sublayer @b : @B\n}\n\nlayer @B {} {\n  sublayer @a : @A\n}\n"
    with pytest.raises(VerifyError, match="layers instantiate themselves: A -> B -> A"):
        verify(parse_module(text))
    with pytest.raises(VerifyError, match="layers instantiate themselves: A -> A"):
        verify(parse_module("layer @A {} {\n  sublayer @me : @A\n}\n"))
