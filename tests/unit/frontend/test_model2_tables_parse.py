"""Table-driven repetition `Kind[] { rows }`: the comment that names the columns, and the
formatter's table (issue 13, model/block dialect)."""

from __future__ import annotations

from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse


def decl(body: str) -> A.LayerDecl:
    prog, diags, _ = parse(f"model M {{\n{body}\n}}\n")
    assert not diags, diags
    return prog.items[0].body[0]


def test_a_comment_on_the_first_row_names_the_columns():
    d = decl("    layer b: Inv[] {\n        [1, 16, 1, 1],   // t, c, n, s\n"
             "        [6, 24, 2, 2]\n    }")
    assert all(k.row for k in d.kinds)
    assert [[(a.name, a.value.value) for a in k.args] for k in d.kinds] == [
        [("t", 1), ("c", 16), ("n", 1), ("s", 1)], [("t", 6), ("c", 24), ("n", 2), ("s", 2)]]


def test_a_comment_above_the_table_names_the_columns():
    d = decl("    // expansion, output, num_blocks, stride\n"
             "    layer b: Inv[] { [1, 16, 1, 1] }")
    assert [a.name for a in d.kinds[0].args] == ["expansion", "output", "num_blocks", "stride"]


def test_a_comment_that_is_not_a_header_is_ignored():
    for comment in ("// the stages of the network", "// t, c, n", "// a, in, b, c",
                    "# 1, 2, 3, 4"):
        d = decl(f"    layer b: Inv[] {{\n        [1, 16, 1, 1]  {comment}\n    }}")
        assert all(a.name is None for a in d.kinds[0].args), comment


def test_a_row_of_another_width_stays_positional():
    d = decl("    layer b: Inv[] {\n        [1, 16, 1, 1]  // t, c, n, s\n        [6, 24]\n    }")
    assert [a.name for a in d.kinds[1].args] == [None, None]


def test_plain_kinds_are_not_rows():
    d = decl("    layer b: Sequential { Inv(1, 2)\n ReLU }")
    assert not any(k.row for k in d.kinds)


SRC = """model M {
    layer b: Inv[] {
        [1, 16, 1, 1]  // t, c, n, s
        [6, 24, 2, 2]
    }
    layer q: P[] { [4, 8], { a: 8, b: 2 } }
    layer one: P[] { [4, 8] }
}
"""


def test_formatter_prints_the_table_and_round_trips():
    prog, diags, _ = parse(SRC)
    assert not diags
    out = format_source(SRC)
    prog2, diags2, _ = parse(out)
    assert not diags2 and prog2 == prog, out
    assert format_source(out) == out
    assert "layer b: Inv[] {" in out and "{ t: 6, c: 24, n: 2, s: 2 }" in out
    assert "[4, 8]" in out and "{ a: 8, b: 2 }" in out and "layer one: P[] {" in out
    assert "// t, c, n, s" in out
