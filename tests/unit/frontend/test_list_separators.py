"""Every comma-separated list of the parser (Parser.list_separator, Parser.comma_list: one
home for the loop written seven times before) says which list lacks its `,` or closer, and
takes a trailing comma."""

from __future__ import annotations

import pytest

from tritium.frontend.parser import parse


@pytest.mark.parametrize("src, message, help", [
    ("fn f(x: Tensor) -> Tensor { return x[0 1] }", "expected `,` or `]` in an index, found `1`",
     None),
    ("fn f(x: int) -> int { return g(1 2) }",
     "expected `,` or `)` in the argument list, found `2`", "a `)` may be missing"),
    ("fn f(x: int) -> int { return [1 2] }", "expected `,` or `]` in a list, found `2`", None),
    ("fn f(a: int b: int) -> int { return a }",
     "expected `,` or `)` in the parameter list, found `b`", None),
    ("fn f<T U>(a: T) -> T { return a }",
     "expected `,` or `>` in the type parameters, found `U`", "write `<T>` or `<T: Numeric, U>`"),
    ("fn f(a: (int float)) -> int { return 1 }",
     "expected `,` or `)` in a list of types, found `float`", None),
    ("fn f(a: fn(int float) -> int) -> int { return 1 }",
     "expected `,` or `)` in a list of types, found `float`", None),
    ("fn f(a: Tensor[1 2]) -> int { return 1 }", "expected `,` or `]` in a shape, found `2`",
     None),
])
def test_a_missing_comma_names_the_list(src: str, message: str, help: str | None) -> None:
    _, diags, _ = parse(src, "p.tri")
    assert [(d.code, d.message, d.help) for d in diags] == [("E0202", message, help)]


def test_trailing_commas_are_taken() -> None:
    src = "fn f<T,>(a: int, b: (int, float,),) -> int { return g(1, 2,) + [1,][0] + x[0,] }"
    program, diags, _ = parse(src, "p.tri")
    assert diags == []
    fn = program.items[0]
    assert [p.name for p in fn.params] == ["a", "b"]
    assert len(fn.params[1].type.args) == 2
