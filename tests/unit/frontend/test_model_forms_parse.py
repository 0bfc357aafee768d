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
