"""Table-driven repetition `Kind[] { rows }` (check.repetition.expand_table): columns named
by a header comment or by position, the count column, chaining of `in_X` from row to row
and from the layer before the table."""

from __future__ import annotations

from pathlib import Path

from tritium.check import check_source

BLOCK = """
block IR {
    params { in_channels: int, out_channels: int, stride: int, expand_ratio: int }
    hidden: int = in_channels * expand_ratio
    layer up: TernaryConv2d { in_channels: in_channels, out_channels: hidden, kernel_size: 1 }
    layer dw: TernaryConv2d { in_channels: hidden, out_channels: hidden, kernel_size: 3,
                              stride: stride, padding: 1, groups: hidden }
    layer down: TernaryConv2d { in_channels: hidden, out_channels: out_channels, kernel_size: 1 }
    forward(x: Tensor) -> Tensor { return down(relu6(dw(up(x)))) }
}
"""
MODEL = """
model M {
    layer stem: Conv2d { in_channels: 3, out_channels: 8, kernel_size: 3, padding: 1 }
    layer bn: BatchNorm2d { num_features: 8 }
    layer blocks: IR[] {
        ROWS
    }
    forward(x: Tensor[b, 3, 16, 16]) -> Tensor[b, OUT, H, H] {
        return blocks(relu(bn(stem(x))))
    }
}
"""


def check(rows: str, out: int, h: int):
    src = BLOCK + MODEL.replace("ROWS", rows).replace("OUT", str(out)).replace("H, H",
                                                                          f"{h}, {h}")
    return check_source(src)


def kwargs(result) -> list[list[tuple[str, object]]]:
    d = next(i for i in result.program.items if getattr(i, "name", "") == "M")
    decl = next(i for i in d.body if getattr(i, "name", "") == "blocks")
    return [[(a.name, a.value.value) for a in k.args] for k in decl.kinds]


def test_header_columns_map_by_role_and_count_repeats():
    r = check("[1, 16, 1, 1],  // t, c, n, s\n        [6, 24, 3, 2]", 24, 8)
    assert not r.errors, r.errors
    d = next(i for i in r.program.items if getattr(i, "name", "") == "M")
    kinds = d.body[2].kinds
    assert [k.repeat.value for k in kinds] == [1, 3]
    # in_channels of the first row: the width of the layer before the table (bn: 8);
    # of the second: the first row's out_channels
    assert kwargs(r) == [
        [("expand_ratio", 1), ("out_channels", 16), ("stride", 1), ("in_channels", 8)],
        [("expand_ratio", 6), ("out_channels", 24), ("stride", 2), ("in_channels", 16)]]


def test_a_prose_header_on_its_own_line_maps_without_regard_to_case():
    # the seed's int8_mobilenet: the header is a comment line above the rows, capitalized
    r = check("// Expansion, output, num_blocks, stride\n        [1, 16, 1, 1],\n"
              "        [6, 24, 3, 2]", 24, 8)
    assert not r.errors, r.errors
    assert kwargs(r)[1] == [("expand_ratio", 6), ("out_channels", 24), ("stride", 2),
                            ("in_channels", 16)]


def test_a_wrong_count_or_stride_is_a_shape_error():
    # three stride-2 stages make 2x2, not the declared 8x8
    r = check("[1, 16, 1, 2],  // t, c, n, s\n        [6, 24, 3, 2]", 24, 8)
    assert [d.code for d in r.errors] == ["E0504"]


def test_positional_rows_follow_the_declared_order():
    r = check("[8, 16, 1, 1]\n        [16, 24, 2, 6]", 24, 8)
    assert not r.errors, r.errors
    assert kwargs(r)[1] == [("in_channels", 16), ("out_channels", 24), ("stride", 2),
                            ("expand_ratio", 6)]


def test_named_rows_use_the_same_roles():
    r = check("{ t: 1, c: 16, s: 1 }\n        { expansion: 6, output: 24, num_blocks: 2, s: 2 }",
              24, 8)
    assert not r.errors, r.errors


def test_unknown_column_is_an_unknown_key():
    r = check("[1, 16, 1, 1],  // t, c, n, q\n        [6, 24, 2, 2]", 24, 8)
    assert {"E0301", "E0302"} <= {d.code for d in r.errors}
    assert any("`q`" in d.message for d in r.errors)


def test_first_row_without_a_width_before_it_is_a_missing_key():
    src = BLOCK + """
model M {
    layer blocks: IR[] { [1, 16, 1, 1]  // t, c, n, s
    }
    forward(x: Tensor[b, 8, 4, 4]) -> Tensor[b, 16, 4, 4] { return blocks(x) }
}
"""
    errs = check_source(src).errors
    assert [d.code for d in errs] == ["E0302"] and "in_channels" in errs[0].message


def test_the_seed_example_checks():
    path = Path(__file__).resolve().parents[3] / "examples" / "seed" / "model2_table.tri"
    r = check_source(path.read_text(encoding="utf-8"), str(path), path)
    assert not r.errors, r.errors
