"""`tritium opt` on hostile textual IR and options: deep nesting, huge splat constants, bad pass
options and pipeline bindings are one clear diagnostic (no traceback, no unbounded memory)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from tritium.cli import main
from tritium.ir import ParseError, parse_module
from tritium.ir.types import TensorType
from tritium.passes import run_opt

MLP = """model @M {} {
  func @forward(%x: tensor<[batch, 4], f32>) -> (tensor<[batch, 4], f32>) {
    %0 = relu(%x) : (tensor<[batch, 4], f32>) -> tensor<[batch, 4], f32>
    return(%0) : (tensor<[batch, 4], f32>) -> ()
  }
}
"""

BIG = "tensor<[100000, 100000], f32>"
SPLAT = f"""model @M {{}} {{
 func @f() -> ({BIG}) {{
 %0 = constant() {{value = VALUE}} : () -> {BIG}
 %1 = OP(%0, %0) : ({BIG}, {BIG}) -> {BIG}
 return(%1) : ({BIG}) -> ()
 }}
}}
"""


def _opt(tmp_path, capsys, text: str, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "x.ir"
    path.write_text(text)
    code = main(["opt", str(path), *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Error:" not in err
    return code, out, err


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_attributes_are_a_parse_error(tmp_path, capsys, depth):
    text = "model @M {} { sublayer @a : @L {x = " + "[" * depth + "]" * depth + "} }"
    code, _, err = _opt(tmp_path, capsys, text, "-O0")
    assert code == 1 and "nested more than 100 levels deep" in err
    assert len(err.strip().splitlines()) == 1


def test_nesting_at_the_limit_still_parses():
    parse_module("model @M {} { sublayer @a : @L {x = " + "[" * 100 + "]" * 100 + "} }")
    deep_dict = "{a = " * 50 + "1" + "}" * 50
    parse_module(f"model @M {{}} {{ sublayer @a : @L {{x = {deep_dict}}} }}")


def test_deeply_nested_regions_are_a_parse_error():
    text = "func @f() -> () {\n%c = constant() {value = true} : () -> bool\n"
    with pytest.raises(ParseError, match="regions nested more than 100"):
        parse_module(text + "if(%c) : (bool) -> () { " * 1000)


@pytest.mark.parametrize("op, value, passes", [
    ("add", "1.0", "canonicalize"),
    ("add", "0.0", "canonicalize"),      # x + 0: the identity rewrite must not build 10**10
    ("mul", "1.0", "canonicalize"),
    ("add", "1.0", "constant-fold"),
    ("add", "1.0", "constant-fold{max_elements=4194304}"),
    ("add", "0.0", "canonicalize,constant-fold,cse,dce"),
])
def test_a_huge_splat_constant_is_never_materialized(tmp_path, capsys, op, value, passes):
    text = SPLAT.replace("VALUE", value).replace("OP", op)
    tracemalloc.start()
    t = time.monotonic()
    try:
        code, out, err = _opt(tmp_path, capsys, text, "--passes", passes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, err
    assert peak < 64 << 20 and time.monotonic() - t < 5
    assert BIG in out


def test_a_huge_splat_under_O3_stays_a_splat(tmp_path, capsys):
    code, out, err = _opt(tmp_path, capsys, SPLAT.replace("VALUE", "2.0").replace("OP", "add"),
                          "-O3")
    assert code == 0, err and "value = 2.0" in out


def test_numel_is_exact_for_huge_dims():
    assert TensorType((2**40, 2**40), "f32").numel() == 2**80
    assert TensorType((99999999999999999999999, 2), "f32").numel() == 2 * 99999999999999999999999


@pytest.mark.parametrize("args, message", [
    (["--pipeline", "O3{batch=99999999999999999999999}"], "--pipeline: pipeline binding"),
    (["--pipeline", "O3{batch=\u00b2}"], "--pipeline: pipeline binding"),
    (["--passes", "constant-fold{max_elements=abc}"],
     "--passes: pass 'constant-fold': option max_elements='abc' must be an integer"),
    (["--passes", "constant-fold{max_elements=-1}"], "must be an integer from 0"),
    (["--passes", "constant-fold{max_elements=1e9}"], "must be an integer from 0"),
    (["--passes", "constant-fold{max_elements=99999999999999999999}"], "must be an integer"),
    (["--passes", "constant-fold{max_elements=99999999999}"], "must be an integer from 0 to"),
    (["--passes", "quant-dequant-elim{lossy=3}"], "lossy=3 must be true or false"),
    (["--passes", "shape-specialize{batch=x}"], "option batch='x' must be an integer"),
    (["--passes", "shape-specialize{batch=99999999999999999999}"], "must be an integer"),
])
def test_bad_pass_options_and_bindings_are_usage_errors(tmp_path, capsys, args, message):
    code, _, err = _opt(tmp_path, capsys, MLP, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_large_binding_within_range_runs():
    out = run_opt(MLP, pipeline="O3{batch=999999999999999999}")
    assert "tensor<[999999999999999999, 4], f32>" in out


def test_a_constant_of_non_numbers_is_a_verify_error(tmp_path, capsys):
    text = ("model @M {} {\n func @f() -> (tensor<[2], f32>) {\n"
            ' %0 = constant() {value = dense<["a", "b"]>} : () -> tensor<[2], f32>\n'
            " %1 = add(%0, %0) : (tensor<[2], f32>, tensor<[2], f32>) -> tensor<[2], f32>\n"
            " return(%1) : (tensor<[2], f32>) -> ()\n }\n}\n")
    code, _, err = _opt(tmp_path, capsys, text, "--passes", "constant-fold")
    assert code == 1 and "a constant's elements must be numbers" in err


@pytest.mark.parametrize("text, message", [
    ("model @M {} { sublayer @a : @L {x = " + "9" * 5000 + "} }",
     "an integer attribute has at most 100 digits"),
    ("model @M {} { func @f(%x: tensor<[" + "9" * 5000 + "], f32>) -> () "
     "{ return() : () -> () } }", "a dim has at most 18 digits"),
    # a string attribute with an escape JSON does not have: was json's ValueError, reported
    # as '--passes: Invalid \escape' (a usage error about the command line)
    ('model @M {} { sublayer @a : @L {s = "\\x1b[31m"} }', ":1:37: error: bad escape in a string"),
])
def test_a_huge_number_is_a_parse_error_not_a_usage_error(tmp_path, capsys, text, message):
    code, _, err = _opt(tmp_path, capsys, text, "-O0")
    assert code == 1 and message in err and "--passes" not in err and len(err) < 300
