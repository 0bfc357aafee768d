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


SWITCH_IN_BRANCH = """block B {
    params { c: int, mode: str, use: bool }
    layer p: if (use) {
        switch (mode) {
            "a" -> TernaryLinear { in_features: c, out_features: c }
            "b" -> Linear { in_features: c, out_features: 3 }
        }
        ReLU {}
    } else {
        Tanh {}
    }
    forward(x: Tensor[n, c]) -> Tensor[n, c] {
        if p is not None { x = p(x) }
        return x
    }
}
model M {
    layer a: B { c: 4, mode: "MODE", use: USE }
    forward(x: Tensor[n, 4]) -> Tensor[n, 4] { return a(x) }
}
"""


def test_a_switch_in_a_conditional_branch_chooses_per_instance():
    def src(mode: str, use: str) -> str:
        return SWITCH_IN_BRANCH.replace("MODE", mode).replace("USE", use)
    assert codes(src("a", "true")) == []
    assert codes(src("z", "true")) == []      # no case: the layer is None (guarded)
    assert codes(src("b", "false")) == []     # the `else`: Tanh
    assert "E0504" in codes(src("b", "true"))   # Linear(4, 3): not the declared [n, 4]


def test_a_body_layer_with_a_syntax_error_does_not_cascade():
    src = """model M {
    layer fc: Linear { in_features: 4, out_features: 4 }
    layer d: if (true) { Linear { in_features: 4, out_features: } }
    forward(x: Tensor[n, 4]) -> Tensor[n, 4] {
        if d is not None { x = d(x) }
        return fc(x)
    }
}
"""
    assert codes(src) == ["E0201"]   # no "undefined name `d`" nor "undefined function `d`"
