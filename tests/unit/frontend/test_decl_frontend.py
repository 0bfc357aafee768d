"""The frontend on the seed's declarations (issue 13, `decl`): a tensor type where a value
stands parses as `ast.TypeValue` (only `Tensor`/`TernaryTensor` followed by `<`), comparisons
of other names stay comparisons, and the formatter prints it back to the same AST; a spread
`...xs` and a rest pattern `let [first, ...rest] = xs` are one parse error E0900 each (no
AST node), and `let [a, b] = xs` is a destructuring."""

from __future__ import annotations

import pytest

from tritium.frontend import ast as A
from tritium.frontend.diagnostics import DiagnosticError
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse


def value(src: str) -> A.Expr:
    program, diags, _ = parse(f"let v = {src}\n")
    assert [d for d in diags if d.is_error] == [], diags
    return program.items[0].value


def test_a_tensor_type_called_is_a_call_of_a_type_value() -> None:
    e = value("Tensor<int32, [10, 10]>()")
    assert isinstance(e, A.Call) and e.args == []
    assert isinstance(e.func, A.TypeValue)
    t = e.func.type
    assert (t.name, t.dtype, [d.value for d in t.shape]) == ("Tensor", "int32", [10, 10])
    e = value("TernaryTensor<trit, [n, ?]>()")
    assert e.func.type.name == "TernaryTensor" and [d.value for d in e.func.type.shape] == ["n", None]


def test_a_bare_tensor_type_is_a_type_value() -> None:
    e = value("Tensor<float32, [10]>")
    assert isinstance(e, A.TypeValue) and e.type.dtype == "float32"


@pytest.mark.parametrize("src", ["a < b", "n < 3 and m > 2", "Tensors < b", "x < y > z"])
def test_comparisons_of_other_names_stay_comparisons(src: str) -> None:
    e = value(src)
    assert not isinstance(e, A.TypeValue)
    assert isinstance(e, A.Binary)


def test_the_literal_form_is_unchanged() -> None:
    e = value("TernaryTensor[2, 2](1, 0, -1, 1)")
    assert isinstance(e, A.Call) and isinstance(e.func, A.Index)


@pytest.mark.parametrize("src", [
    "let z = Tensor<int32, [10, 10]>()\n",
    "let z = TernaryTensor<trit, [n, ?]>()\n",
    "let z = Tensor<[3, 4]>()\n",
    "let z = Tensor<float32, [2 * n, 3]>()\n",
    "let w: TernaryTensor<trit, [10]> = Tensor<float32, [10]>\n",
    "let e = f(Tensor<int32, [10, 10]>(), 2) + Tensor<float32, [1]>().sum()\n",
    "let a: Tensor<float32, [3, 1]>\na = Tensor<float32, [3, 1]>()\nlet c = a + a\n",
])
def test_type_values_and_declarations_format_back_to_the_same_ast(src: str) -> None:
    out = format_source(src)
    assert parse(out)[0] == parse(src)[0], out
    assert format_source(out) == out


def errors(src: str):
    program, diags, _ = parse(src)
    return program, [d for d in diags if d.is_error]


@pytest.mark.parametrize("item", ["[...xs]", "[1, ...xs, 2]", "[...(0..3)]", "f(...xs)",
                                  "[...xs for x in xs]"])
def test_a_spread_is_one_e0900_and_no_node(item: str) -> None:
    program, errs = errors(f"let v = {item}\nlet w = 1\n")
    assert [(d.code, d.span.line) for d in errs] == [("E0900", 1)]
    assert errs[0].message == "spread (`...xs`) has no meaning in .tri"
    assert "`a + b`" in errs[0].help
    assert not hasattr(A, "Spread")
    # the statement is skipped; the next one parses
    assert [type(i).__name__ for i in program.items][-1:] == ["Let"]
    with pytest.raises(DiagnosticError):
        format_source(f"let v = {item}\n")


@pytest.mark.parametrize("item", ["...", "[0, 1, 2, ..., 9]", "f(x, ...)", "f(w: ...)",
                                  "{ a: ... }", "...  # elided"])
def test_an_elided_placeholder_is_one_e0900_saying_so(item: str) -> None:
    # the docs' `let a: Tensor<float32, [10, 20]> = ...`: code left out, not a spread
    program, errs = errors(f"let v = {item}\nlet w = 1\n")
    assert [(d.code, d.span.line) for d in errs] == [("E0900", 1)]
    assert errs[0].message == "`...` stands for code the example leaves out: it is not a value"
    assert [type(i).__name__ for i in program.items] == ["Let"]   # `let w` still parses
    assert program.unparsed == {"v"}


def test_a_name_whose_let_had_a_syntax_error_is_not_reported_undefined() -> None:
    from tritium.check import check_source
    src = ("let a: Tensor<float32, [10, 20]> = ...\nlet b = a.transpose()\n"
           "let c = a @ b\nlet d = zz\n")
    assert [(d.code, d.span.line) for d in check_source(src).errors] == [
        ("E0900", 1), ("E0304", 4)]


@pytest.mark.parametrize("pattern", ["[first, ...rest]", "(first, ...rest)", "first, ...rest",
                                     "[...rest]", "...rest", "(a, ...m, z)", "[a, ...r, ...s]"])
def test_a_rest_pattern_is_one_e0900(pattern: str) -> None:
    program, errs = errors(f"let {pattern} = xs\nlet w = 1\n")
    assert [(d.code, d.span.line) for d in errs] == [("E0900", 1)]
    d = errs[0]
    assert d.message == "a rest pattern (`...rest`) has no meaning in .tri"
    assert d.help == "take the items by index: `let first = xs[0]` and `let rest = xs[1:]`"
    assert d.span.col == 5 + pattern.index("...")
    assert "rest" not in A.Unpack.__dataclass_fields__


def test_bracket_destructuring_is_an_unpack_and_formats_back() -> None:
    program, errs = errors("let [a, b] = xs\n")
    assert errs == []
    (node,) = program.items
    assert isinstance(node, A.Unpack) and node.targets == ["a", "b"] and node.declare
    out = format_source("let [a, b] = xs\n")
    assert parse(out)[0] == program and format_source(out) == out
