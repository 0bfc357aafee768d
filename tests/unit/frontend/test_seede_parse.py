"""Parsing of the seed forms of helper seede (issue 13): `state x: Tensor { shape: [..],
init: "zeros" }` (the same AST as `state x: Tensor[..] = zeros([..])`), its errors, and the
formatter's round trip of it; generic signatures with `where` on the next line."""

from __future__ import annotations

import pytest

from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse


def _layer(body: str):
    prog, diags, _ = parse("layer L {\n" + body + "\n}\n")
    return prog.items[0].body, [d for d in diags if d.is_error]


def _state(body: str) -> A.StateDecl:
    items, errs = _layer(body)
    assert not errs, [(d.code, d.message) for d in errs]
    return next(i for i in items if isinstance(i, A.StateDecl))


@pytest.mark.parametrize("spec, written", [
    ('{ shape: [n, 4], init: "zeros" }', "Tensor[n, 4] = zeros([n, 4])"),
    ("{\n        shape: [n]\n        requires_grad: false\n    }", "Tensor[n] = zeros([n])"),
    ('{ shape: [n], init: "ones" }', "Tensor[n] = ones([n])"),
    ('{ shape: [2], init: "constant", value: 0.5 }', "Tensor[2] = full([2], 0.5)"),
    ('{ shape: [c // g], init: "full", value: -1 }', "Tensor[c // g] = full([c // g], -1)"),
])
def test_a_state_spec_means_a_shape_and_an_initial_value(spec, written):
    assert _state(f"    state s: Tensor {spec}") == _state(f"    state s: {written}")


@pytest.mark.parametrize("typed, written", [
    ('Tensor[2, n] { init: "ones" }', "Tensor[2, n] = ones([2, n])"),   # the type's shape
    ("int { init: \"zeros\" }", "int"),                                  # a scalar state
])
def test_a_typed_state_with_a_spec_keeps_its_type(typed, written):
    assert _state(f"    state s: {typed}") == _state(f"    state s: {written}")


def test_an_explicit_initial_value_wins_and_the_spec_is_still_checked():
    s = _state('    state s: Tensor[3] = ones([3]) { init: "zeros" }')
    assert isinstance(s.init, A.Call) and s.init.func.id == "ones"
    _, errs = _layer('    state s: Tensor[3] = ones([3]) { init: "random" }')
    assert [d.code for d in errs] == ["E1043"]


@pytest.mark.parametrize("spec, code, words", [
    ('{ shape: [4], init: "normal" }', "E1043", ('"zeros"',)),
    ("{ shape: [4], requires_grad: true }", "E1043", ("param",)),
    ('{ shape: [4], init: "constant" }', "E1043", ("value",)),
    ("{ shape: [4], std: 0.1 }", "E1043", ("std",)),
    ("{ shape: 4 }", "E1043", ("list",)),
    ("{ shape: [4], shape: [5] }", "E0206", ("twice",)),
])
def test_state_spec_errors_are_diagnostics_and_parsing_goes_on(spec, code, words):
    items, errs = _layer(f"    state s: Tensor {spec}\n    param w: Tensor[4]")
    assert [d.code for d in errs] == [code], [(d.code, d.message) for d in errs]
    assert all(w in errs[0].message + (errs[0].help or "") for w in words)
    assert any(isinstance(i, A.ParamDecl) for i in items)   # the body is still read


def test_the_formatter_writes_the_meaning_and_it_reparses_to_the_same_ast():
    src = ('layer L {\n    params { n: int }\n    state m: Tensor {\n        shape: [n]\n'
           '        init: "ones"\n    }\n    forward(x: Tensor[b, n]) -> Tensor[b, n] {\n'
           '        return x * m\n    }\n}\n')
    out = format_source(src)
    assert "state m: Tensor[n] = ones([n])" in out
    assert parse(out)[0] == parse(src)[0]
    assert format_source(out) == out


def test_a_generic_signature_over_lines_with_where():
    prog, diags, _ = parse("fn f<T>(x: T,\n      y: T)\n    -> T\nwhere T: Numeric {\n"
                           "    return x + y\n}\n")
    assert not [d for d in diags if d.is_error]
    fn = prog.items[0]
    assert fn.type_params[0].name == "T" and fn.type_params[0].bounds == ["Numeric"]
    assert parse(format_source(format_source(
        "fn f<T>(x: T) -> T\nwhere T: Float {\n    return x\n}\n")))[0].items[0].type_params[
        0].bounds == ["Float"]


def test_while_and_assert_start_top_level_statements():
    prog, diags, _ = parse("let n = 0\nwhile n < 3 {\n    n += 1\n}\nassert n == 3, \"three\"\n"
                           "while (n > 0) {\n    n -= 1\n}\n")
    assert not [d for d in diags if d.is_error], [(d.code, d.message) for d in diags]
    assert [type(i).__name__ for i in prog.items] == ["Let", "While", "Assert", "While"]
    # two names in a row elsewhere are still a misspelled item
    _, diags, _ = parse("modle M {\n}\n")
    assert [d.code for d in diags if d.is_error] == ["E0204"]
