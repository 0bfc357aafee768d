"""Issue 13 form 14, checking: the branch whose condition holds is the layer; every branch's
config is checked; table rows are checked like positional arguments."""

from __future__ import annotations

from tritium.check import check_source

BLOCK = """
block B {
    params { c: int, wide: bool = false }
    layer fc: if (wide) { TernaryLinear { in_features: c, out_features: 2 * c } }
              else { TernaryLinear { in_features: c, out_features: c } }
    forward(x: Tensor<float32, [?, c]>) -> Tensor<float32, [?, c]> {
        return fc(x)
    }
}
model M {
    layer b: B { c: 8 }
    forward(x: Tensor<float32, [?, 8]>) -> Tensor<float32, [?, 8]> {
        return b(x)
    }
}
"""


def codes(src: str) -> list[str]:
    return [d.code for d in check_source(src).errors]


def test_else_branch_chosen_per_instance():
    assert codes(BLOCK) == []
    # with `wide`, the `if` branch is the layer: its output no longer fits the return type
    assert set(codes(BLOCK.replace("B { c: 8 }", "B { c: 8, wide: true }"))) == {"E0504"}


def test_every_branch_config_is_checked():
    bad = BLOCK.replace("out_features: c }", "out_feature: c }")
    assert "E0301" in codes(bad)


def test_switch_and_sequential_shapes_flow():
    src = """model M {
    mode: "fp"
    layer s: Sequential { TernaryLinear(4, 8)
        ReLU }
    layer h: switch (mode) { "int8" -> TernaryLinear(8, 2)
        "fp" -> Linear(8, 3) }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
        return h(s(x))
    }
}
"""
    assert codes(src) == ["E0504"]          # "fp" chosen: 3 outputs, not 2
    assert codes(src.replace('mode: "fp"', 'mode: "int8"')) == []


def test_table_row_arity_is_checked():
    src = """block P {
    params { a: int, b: int }
    layer fc: TernaryLinear { in_features: a, out_features: b }
    forward(x: Tensor) -> Tensor { return fc(x) }
}
model M {
    layer t: P[] { [4, 8], [8, 8, 1] }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 8]> { return t(x) }
}
"""
    assert codes(src) == ["E0306"]
    assert codes(src.replace("[8, 8, 1]", "[8, 8]")) == []
    assert codes(src.replace("[8, 8, 1]", "[9, 8]")) == ["E0503"]
