"""The checker on a program's entry: top-level statements and `main { }` blocks are
evaluated in order (names before use, types and shapes flowing), and f-string fields are
checked expressions with format specs that fit their values."""

from __future__ import annotations

import pytest

from tritium.check import check_source
from tritium.frontend.diagnostics import CODES


def errors(src: str) -> list[str]:
    r = check_source(src)
    assert all(d.code in CODES for d in r.diagnostics)
    return [d.code for d in r.errors]


def test_a_statement_list_checks() -> None:
    src = ("let x: trit = 1\n"
           "let w: TernaryTensor = TernaryTensor[2, 2](1, 0, -1, 1)\n"
           "let v = Tensor[1, 2](0.5, 2.0)\n"
           "let y = ternary_matmul(v, w)\n"
           "fn twice(a: int) -> int { return a * 2 }\n"
           "z = twice(21)\n"
           "print(f\"y={y} z={z:>4}\", x)\n")
    assert errors(src) == []


def test_names_must_be_defined_before_use() -> None:
    r = check_source("print(q)\nlet q = 1\nprint(q)\n")
    assert [(d.code, d.span.line) for d in r.errors] == [("E0304", 1)]


def test_main_blocks_share_the_entry_scope_in_source_order() -> None:
    assert errors("let a = 1\nmain {\n  let b = a + 1\n  print(b)\n}\nprint(b)\n") == []
    assert errors("main {\n  print(c)\n}\nlet c = 1\n") == ["E0304"]


def test_shapes_flow_from_statement_to_statement() -> None:
    src = ("let w = TernaryTensor[3, 2](1, 0, -1, 1, 0, 0)\n"
           "let v = Tensor[1, 4](1.0, 2.0, 3.0, 4.0)\n"
           "let y = ternary_matmul(v, w)\n")
    assert errors(src) != []   # inner dims 4 and 2 disagree


def test_a_declared_type_is_checked_against_the_value() -> None:
    assert errors("let n: int = \"text\"\n") != []


def test_a_literal_count_that_disagrees_with_its_shape_is_reported() -> None:
    assert errors("let w = TernaryTensor[2, 2](1, 0, -1)\n") == ["E0501"]


def test_return_and_control_flow_at_the_top_level() -> None:
    src = ("let total = 0\n"
           "for i in 0..4 {\n  total += i\n}\n"
           "if total > 3 {\n  print(total)\n  return\n}\n"
           "print(\"small\")\n")
    assert errors(src) == []


def test_calls_to_definitions_are_checked() -> None:
    src = "fn f(a: int, b: int) -> int { return a + b }\nprint(f(1))\n"
    assert errors(src) == ["E0306"]


def test_a_layer_type_at_the_top_level_is_not_a_value() -> None:
    src = "model M {\n  layer fc: TernaryLinear { in_features: 2, out_features: 2 }\n" \
          "  forward(x: Tensor[b, 2]) -> Tensor[b, 2] { return fc(x) }\n}\nlet m = M(1)\n"
    assert "E0310" in errors(src)


def test_entry_names_are_checked_for_generated_code() -> None:
    assert "E0311" in errors("let __x = 1\nprint(__x)\n")


# ----------------------------------------------------------------------------- f-strings

def test_fstring_fields_are_checked_expressions() -> None:
    r = check_source("let x = 1\nprint(f\"{x} {nope} {x + 'a'}\")\n")
    assert [d.code for d in r.errors][0] == "E0304"
    assert len(r.errors) == 2


@pytest.mark.parametrize("field, ok", [
    ("{x:.3f}", True), ("{x:d}", True), ("{x:>6}", True), ("{f:.2e}", True),
    ("{f:d}", False), ("{s:.3f}", False), ("{s:>8}", True), ("{s:s}", True),
    ("{x:s}", False), ("{v:.3f}", False), ("{one:.3f}", True), ("{xs:>3}", False),
    ("{xs!s:>3}", True), ("{v!r:>30}", True), ("{t:d}", True), ("{b:d}", True),
])
def test_format_specs_must_fit_the_value(field: str, ok: bool) -> None:
    src = ("let x = 3\nlet f = 0.5\nlet s = \"a\"\nlet t = 1t\nlet b = true\n"
           "let v = Tensor[3](1.0, 2.0, 3.0)\nlet one = Tensor[1](1.0)\nlet xs = [1, 2]\n"
           f"print(f\"{field}\")\n")
    assert errors(src) == ([] if ok else ["E0804"])


def test_fstrings_in_function_bodies_are_checked_too() -> None:
    src = "fn f(a: Tensor[2, 3]) -> Tensor[2, 3] {\n  print(f\"{a:.3f}\")\n  return a\n}\n"
    assert errors(src) == ["E0804"]


@pytest.mark.parametrize("call", ["ternary_matmul(x, w)", "ternary_matmul(w, x)",
                                  "matmul(x, w)", "x @ w"])
def test_a_matrix_product_of_a_scalar_is_reported_not_left_to_torch(call: str) -> None:
    src = f"let x: trit = 1\nlet w = TernaryTensor[2, 2](1, 0, -1, 1)\nlet y = {call}\n"
    assert errors(src) in (["E0507"], ["E0405"])


def test_undefined_top_level_names_say_why() -> None:
    # (a function sees top-level variables: frontend.lift_globals; a model does not)
    src = ("let W = TernaryTensor[2, 2](1, 0, -1, 1)\n"
           "model M {\n    forward(x: Tensor[2, 2]) -> Tensor {\n"
           "        return ternary_matmul(x, W)\n    }\n}\n"
           "print(q)\nlet q = 1\n")
    helps = {d.span.line: d.help for d in check_source(src).errors}
    assert "top-level variable (line 1)" in helps[4] and "argument" in helps[4]
    assert "defined later, at line 8" in helps[7]


def test_a_string_repeated_by_an_int() -> None:
    # the seed's custom_conv report: `report += "=" * 50 + "\n"`
    assert errors('let line = "=" * 50 + "\\n"\nlet n = 2\nlet s = n * "ab"\nprint(line, s)\n') == []
    assert errors('let s = "a" * 2.5\n') == ["E0405"]
    assert errors('let s = "a" * 100000000\n') == ["E0312"]


def test_a_loop_over_a_value_already_reported_does_not_cascade() -> None:
    # the seed's custom_conv: `for name, layer in self.named_modules() { … }`
    src = ("fn f() -> int {\n    let r = 0\n    for a, b in undefined_thing {\n"
           "        r += 1\n    }\n    return r\n}\n")
    assert errors(src) == ["E0304"]   # not also "cannot unpack int into 2 names"


def test_a_list_a_closure_changes_is_no_longer_known() -> None:
    # the seed's attention_mechanism: a hook appends to `attention_maps`, then `[0]` is read
    src = ("fn apply(f: fn(Tensor) -> None, x: Tensor) {\n    f(x)\n}\n"
           "fn collect(x: Tensor) -> Tensor {\n    let seen = []\n"
           "    fn hook(v: Tensor) {\n        seen.append(v)\n    }\n"
           "    apply(hook, x)\n    return seen[0]\n}\n")
    assert errors(src) == []   # not "index 0 is out of range for a list of 0"
    reads = src.replace("seen.append(v)", "print(len(seen))")
    assert errors(reads) == ["E0508"]   # a closure that only reads it: still known empty
