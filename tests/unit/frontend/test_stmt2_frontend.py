"""The frontend on the forms given to `stmt2` (issue 13): properties of a type alias
become constants while aliases are expanded; `with_gradient_from` parses and formats."""

from __future__ import annotations

from tritium.frontend import ast as A
from tritium.frontend.lift import rewrite
from tritium.frontend.parser import parse


def lifted(src: str):
    program, diags, _comments = parse(src)
    assert diags == []
    return program, rewrite(program, set())


def test_alias_properties_become_literals() -> None:
    src = ("type In = Tensor<float32, [784, 128]>\n"
           "type W = TernaryTensor[4, 4]\n"
           "type N = int8\n"
           "let s = In.shape\nlet d = In.dtype\nlet r = In.rank\nlet k = W.numel\n"
           "let t = W.dtype\nlet n = N.rank\nlet m = N.dtype\n")
    program, diags = lifted(src)
    assert diags == []
    values = {i.name: i.value for i in program.items if isinstance(i, A.Let)}
    assert isinstance(values["s"], A.ListLit) and [x.value for x in values["s"].items] == [784, 128]
    assert values["d"].value == "float32" and values["r"].value == 2
    assert values["k"].value == 16 and values["t"].value == "trit"
    assert values["n"].value == 0 and values["m"].value == "int8"


def test_an_unfixed_property_is_e0991_and_other_attributes_stay() -> None:
    src = ("type B = Tensor<float32, [?, 10]>\n"
           "type U = Tensor\n"
           "let r = B.rank\nlet s = B.shape\nlet u = U.rank\nlet x = zeros([2])\nlet y = x.shape\n"
           "let other = B.foo\n")
    program, diags = lifted(src)
    assert sorted((d.code, d.span.line) for d in diags) == [("E0991", 4), ("E0991", 5)]
    values = {i.name: i.value for i in program.items if isinstance(i, A.Let)}
    assert values["r"].value == 2 and isinstance(values["s"], A.NoneLit)
    assert isinstance(values["y"], A.Attr) and isinstance(values["other"], A.Attr)


# ----------------------------------------------------------------------------- with_gradient_from

def _value(src: str) -> A.Expr:
    program, diags, _ = parse(f"fn f(x: Tensor, q: Tensor) -> Tensor {{\n    return {src}\n}}\n")
    assert diags == []
    return program.items[0].body[0].value


def test_with_gradient_from_binds_below_arithmetic_and_or() -> None:
    e = _value("q + 1 with_gradient_from x * 2")
    assert isinstance(e, A.WithGradient)
    assert isinstance(e.value, A.Binary) and e.value.op == "+"
    assert isinstance(e.source, A.Binary) and e.source.op == "*"
    e = _value("q or x with_gradient_from x")
    assert isinstance(e, A.WithGradient) and e.value.op == "or"
    e = _value("q with_gradient_from x with_gradient_from x")   # left-associative
    assert isinstance(e, A.WithGradient) and isinstance(e.value, A.WithGradient)
    e = _value("q with_gradient_from x if true else x")          # above `if … else`
    assert isinstance(e, A.CondExpr) and isinstance(e.then, A.WithGradient)


def test_with_gradient_from_is_still_a_name_where_no_operand_precedes() -> None:
    program, diags, _ = parse("let with_gradient_from = 1\nlet y = with_gradient_from + 1\n")
    assert diags == []
    assert isinstance(program.items[1].value.left, A.Name)


def test_the_formatter_prints_with_gradient_from_so_it_reparses() -> None:
    from tritium.frontend.formatter import format_source

    src = ("fn f(x: Tensor, q: Tensor) -> Tensor {\n"
           "    let a = q + 1 with_gradient_from x * 2\n"
           "    let b = (q with_gradient_from x) * 2\n"
           "    let c = q with_gradient_from (x with_gradient_from x)\n"
           "    let d = (q with_gradient_from x) if true else x\n"
           "    return a with_gradient_from x with_gradient_from x\n"
           "}\n")
    out = format_source(src)
    assert out == src
    assert format_source(out) == out
