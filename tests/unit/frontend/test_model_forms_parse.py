"""Issue 13 form 14, parsing and formatting: `Sequential { … }`, `if … else if … else`,
`switch` (read as the `if` chain of its cases) and table-driven repetition `Kind[] { rows }`."""

from __future__ import annotations

import pytest

from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse


def decl(line: str) -> A.LayerDecl:
    prog, diags, _ = parse(f"model M {{\n    flag: true\n    {line}\n}}\n")
    assert not diags, diags
    return prog.items[0].body[1]


def test_sequential_is_a_list_of_kinds():
    d = decl("layer s: Sequential {\n TernaryLinear { in_features: 4, out_features: 4 }\n"
             " ReLU\n Dropout(0.1)\n }")
    assert [k.kind for k in d.kinds] == ["TernaryLinear", "ReLU", "Dropout"]
    assert d.cond is None and d.orelse == []


def test_sequential_nested_is_flattened_and_config_form_untouched():
    d = decl("layer s: Sequential { Sequential { ReLU\n ReLU }\n GELU }")
    assert [k.kind for k in d.kinds] == ["ReLU", "ReLU", "GELU"]
    # `Sequential { key: value }` stays a kind with a config (the checker judges the kind)
    d = decl("layer s: Sequential { layers: 2 }")
    assert d.kinds[0].kind == "Sequential" and d.kinds[0].config[0].key == "layers"


def test_if_else_if_else():
    d = decl("layer p: if (flag) { ReLU } else if (not flag) { GELU }\n"
             "    else { Identity }")
    assert isinstance(d.cond, A.Name) and [k.kind for k in d.kinds] == ["ReLU"]
    assert [(b.cond is None, b.kinds[0].kind) for b in d.orelse] == [(False, "GELU"),
                                                                    (True, "Identity")]


def test_switch_is_the_if_chain_of_its_cases():
    d = decl('layer c: switch (mode) {\n "int8" -> TernaryLinear(4, 2)\n'
             ' "fp" -> { Linear(4, 2)\n ReLU }\n default -> Identity\n }')
    assert isinstance(d.cond, A.Binary) and d.cond.op == "=="
    assert d.cond.left.id == "mode" and d.cond.right.value == "int8"
    assert [k.kind for k in d.orelse[0].kinds] == ["Linear", "ReLU"]
    assert d.orelse[1].cond is None and d.orelse[1].kinds[0].kind == "Identity"


def test_table_rows_are_positional_instances():
    d = decl("layer b: Inverted[] {\n [1, 16, 1, 1],\n [6, 24, 2, 2]\n }")
    assert [k.kind for k in d.kinds] == ["Inverted", "Inverted"]
    assert [[a.value.value for a in k.args] for k in d.kinds] == [[1, 16, 1, 1], [6, 24, 2, 2]]
    assert all(a.name is None for k in d.kinds for a in k.args)


@pytest.mark.parametrize("line, msg", [
    ("layer b: K[] { }", "at least one row"),
    ("layer b: K[] { 1, 2 }", "expected a row"),
    ("layer c: switch (m) { default -> ReLU }", "a case before its default"),
    ('layer c: switch (m) { "a" -> ReLU\n default -> GELU\n "b" -> ReLU }', "comes last"),
    ("layer p: if (flag) { }", "at least one layer kind"),
    ("layer p: if (flag) { ReLU } else { }", "at least one layer kind"),
])
def test_malformed_forms_are_diagnostics(line, msg):
    _, diags, _ = parse(f"model M {{\n    {line}\n}}\n")
    assert diags and msg in diags[0].message and diags[0].code == "E0202"


SRC = """model M {
    flag: true
    mode: "int8"
    layer s: Sequential { TernaryLinear { in_features: 4, out_features: 4 }
        ReLU }
    layer p: if (flag) { ReLU } else if (mode == "fp") { GELU } else { Identity }
    layer c: switch (mode) {
        "int8" -> TernaryLinear(4, 2)
        "fp" -> { Linear(4, 2)
            ReLU }
    }
    layer b: Blk[] { [1, 16], [6, 24] }
}
"""


def test_formatter_round_trips_the_forms():
    prog, diags, _ = parse(SRC)
    assert not diags
    out = format_source(SRC)
    prog2, diags2, _ = parse(out)
    assert not diags2 and prog2 == prog
    assert format_source(out) == out
    assert "Sequential {" in out and "} else if " in out and "Blk[] {" in out and "[1, 16]" in out


def test_table_rows_by_name():
    d = decl("layer b: Inverted[] {\n [1, 16, 1, 1]\n { t: 6, c: 24, n: 2, s: 2 }\n }")
    assert [a.name for a in d.kinds[1].args] == ["t", "c", "n", "s"]
    assert [a.value.value for a in d.kinds[1].args] == [6, 24, 2, 2]


def test_switch_case_with_several_values():
    d = decl('layer c: switch (mode) { "a" | "b" -> ReLU\n "c", "d" -> GELU, default -> Identity }')
    assert d.cond.op == "or" and [d.cond.left.right.value, d.cond.right.right.value] == ["a", "b"]
    assert d.orelse[0].cond.op == "or" and d.orelse[1].cond is None


def _text(e) -> str:
    if isinstance(e, A.Binary):
        return f"{_text(e.left)} {e.op} {_text(e.right)}"
    if isinstance(e, A.Unary):
        return f"{e.op} {_text(e.operand)}"
    if isinstance(e, A.Name):
        return e.id
    return repr(e.value).replace("'", '"').replace("True", "true")


def _kinds(d: A.LayerDecl) -> list[tuple[str, list[str]]]:
    branches = [(d.cond, d.kinds)] + [(b.cond, b.kinds) for b in d.orelse]
    return [(_text(c) if c is not None else "else", [k.kind for k in ks])
            for c, ks in branches]


def test_a_switch_in_a_conditional_branch_makes_the_chain_of_its_cases():
    # the seed's mixed_precision: `layer downsample: if (…) { switch (precision) { … } BN }`
    d = decl('layer d: if (flag) {\n switch (mode) { "a" -> Linear(4, 4)\n'
             ' "b" -> TernaryLinear(4, 4) }\n BatchNorm1d(4)\n } else { ReLU }')
    assert _kinds(d) == [
        ('flag and mode == "a"', ["Linear", "BatchNorm1d"]),
        ('flag and mode == "b"', ["TernaryLinear", "BatchNorm1d"]),
        # no default: when `flag` holds and no case matches the layer is None, not `ReLU`
        ("not flag", ["ReLU"])]


def test_a_switch_with_a_default_covers_the_head_and_switches_multiply():
    d = decl('layer d: if (flag) { switch (mode) { "a" -> ReLU\n default -> GELU } }'
             ' else { Tanh }')
    assert _kinds(d) == [('flag and mode == "a"', ["ReLU"]), ("flag", ["GELU"]),
                         ("else", ["Tanh"])]
    d = decl('layer s: Sequential { Linear(4, 4)\n switch (mode) { "a" -> ReLU\n'
             ' default -> GELU }\n switch (flag) { true -> Dropout(0.1)\n default -> Identity } }')
    assert _kinds(d) == [
        ('mode == "a" and flag == true', ["Linear", "ReLU", "Dropout"]),
        ('mode == "a"', ["Linear", "ReLU", "Identity"]),
        ("flag == true", ["Linear", "GELU", "Dropout"]),
        ("else", ["Linear", "GELU", "Identity"])]


def test_a_switch_elsewhere_among_kinds_is_one_diagnostic():
    _, diags, _ = parse('model M {\n    layer c: switch (m) { "a" -> { ReLU\n'
                        ' switch (n) { "b" -> GELU } } }\n}\n')
    assert [d.code for d in diags] == ["E0202"]
    assert "cannot stand among the kinds" in diags[0].message
