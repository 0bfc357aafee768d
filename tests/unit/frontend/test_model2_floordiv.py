"""`//` inside a list opened on its line, whose `]` a comment would hide: the seed's floor
division (W1001); everywhere else `//` stays a comment."""

from __future__ import annotations

import pytest

from tritium.check import check_source
from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.lexer import T, tokenize
from tritium.frontend.parser import parse


def ops(line: str) -> list[str]:
    return [t.text for t in tokenize(line).tokens if t.kind is T.OP]


def test_inside_a_list_it_is_floor_division():
    lexed = tokenize("let s = [out, in_channels // groups, k, k]\n")
    assert "//" in [t.text for t in lexed.tokens] and not lexed.comments
    assert [d.code for d in lexed.diagnostics] == ["W1001"]
    prog, diags, _ = parse("fn f(a: int, b: int) -> int {\n    let s = [a // b, 2]\n"
                           "    return s[0]\n}\n")
    v = prog.items[0].body[0].value
    assert isinstance(v.items[0], A.Binary) and v.items[0].op == "//"


@pytest.mark.parametrize("line", [
    "let s = [a, b]  // a, b]",              # after `,`: a comment
    "let s = [a,\n b]  // b]",               # the list opened on another line
    "let k = floordiv(a // 2, 1)",           # in `( … )`: a comment (W0901)
    "let k = a // b",                        # no list: a comment (W0900)
    "let s = [a // the widths\n]",           # the comment hides no `]`
    "// [a // b]",                           # a comment on its own line
])
def test_elsewhere_it_is_a_comment(line):
    lexed = tokenize(line + "\n")
    assert "//" not in [t.text for t in lexed.tokens if t.kind is T.OP]
    assert "W1001" not in [d.code for d in lexed.diagnostics]


def test_value_and_round_trip():
    src = ("fn f(a: int) -> int {\n    let s = [a // 4, (a + 3) // 2, a // (1 + 1)]\n"
           "    return s[0] + s[1] + s[2]\n}\n")
    r = check_source(src)
    assert not r.errors
    out = format_source(src)
    assert "[a // 4, (a + 3) // 2, a // (1 + 1)]" in out
    assert parse(out)[0] == parse(src)[0]


def test_the_shape_of_a_grouped_kernel():
    src = """layer G {
    params { c_in: int, c_out: int, groups: int = 2 }
    param weight: Tensor { shape: [c_out, c_in // groups, 3, 3], init: "kaiming_normal" }
    forward(x: Tensor) -> Tensor { return conv2d(x, weight, None, 1, 1, 1, groups) }
}
model M {
    layer g: G { c_in: 4, c_out: 6 }
    forward(x: Tensor[b, 4, 5, 5]) -> Tensor[b, 6, 5, 5] { return g(x) }
}
"""
    r = check_source(src)
    assert not r.errors, r.errors
    assert [d.code for d in r.diagnostics] == ["W1001"]
    # with the `//` a comment the shape list stayed open: a parse error
    assert check_source(src.replace("c_in // groups", "c_in // groups (in)")).errors
