"""Forms of the seed's example models: a ternary input feeding a float layer, the
`requires_grad` key of a parameter's init spec, helper functions beside `forward` called by
name or through `self`, `method name()`, triple-quoted docstrings, and a `//` comment of
prose after a number (no floor-division warning)."""

from __future__ import annotations

from tritium.check import check_source
from tritium.frontend.lexer import tokenize


def _diags(src: str):
    return check_source(src, "t.tri").diagnostics


def _errors(src: str) -> list[str]:
    return [d.code for d in _diags(src) if d.severity.name == "ERROR"]


TERNARY_INPUT = """\
model Tiny {
    layer fc: TernaryLinear { in_features: 6, out_features: 2 }
    forward(x: TernaryTensor[b, 6]) -> Tensor[b, 2] {
        return fc(x)
    }
}
"""


def test_a_ternary_input_feeds_a_float_layer() -> None:
    assert _errors(TERNARY_INPUT) == []
    ints = TERNARY_INPUT.replace("TernaryTensor[b, 6]", "Tensor<int32, [b, 6]>")
    assert _errors(ints) == ["E0404"]     # integer tensors still need a conversion


PARAMS = """\
layer Scale {
    params { n: int }
    param gain: Tensor { shape: [n], init: "ones", requires_grad: true }
    param bias: Tensor { shape: [n], init: "constant", value: 0.5, requires_grad: false }
    forward(x: Tensor) -> Tensor {
        return x * gain + bias
    }
}
model M {
    layer s: Scale { n: 4 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {
        return s(x)
    }
}
"""


def test_requires_grad_in_an_init_spec() -> None:
    assert _errors(PARAMS) == []
    bad = PARAMS.replace("requires_grad: false", "requires_grad: \"no\"")
    assert "E0882" in _errors(bad)


def test_learnable_is_the_seeds_spelling_of_requires_grad() -> None:
    # the seed's int8_mobilenet: `param weight_scale: Tensor { …, init: "ones", learnable: false }`
    seed = PARAMS.replace("requires_grad: false", "learnable: false")
    assert _errors(seed) == []
    from tritium.check.checker.model import param_trainable
    r = check_source(seed)
    scale = next(i for i in r.program.items if getattr(i, "name", "") == "Scale")
    params = [i for i in scale.body if type(i).__name__ == "ParamDecl"]
    assert [param_trainable(p) for p in params] == [True, False]
    assert "E0882" in _errors(seed.replace("learnable: false", "learnable: 0"))
    both = seed.replace("learnable: false", "learnable: false, requires_grad: false")
    assert "E0206" in _errors(both)


HELPERS = '''\
layer Clip {
    params { limit: float = 1.0 }
    forward(x: Tensor) -> Tensor {
        """Clip, then round to a grid."""
        return snap(self.bound(x))
    }
    function bound(x: Tensor) -> Tensor {
        return clamp(x, -limit, limit)
    }
    function snap(x: Tensor) -> Tensor {
        return round(x * 4.0) / 4.0
    }
    method info() -> str {
        """What this is."""
        return "clip"
    }
}
model M {
    layer c: Clip { limit: 0.5 }
    forward(x: Tensor[b, 3]) -> Tensor[b, 3] {
        return c(x)
    }
}
'''


def test_helpers_beside_forward_and_methods() -> None:
    assert _errors(HELPERS) == [], [(d.code, d.message) for d in _diags(HELPERS)]


def test_docstrings_span_lines() -> None:
    toks = tokenize('fn f() -> int {\n    """one\n    two"""\n    return 1\n}\n', "t.tri")
    s = [t for t in toks.tokens if t.kind.name == "STRING"]
    assert s[0].value == "one\n    two" and s[0].line == 2
    ret = next(t for t in toks.tokens if t.text == "return")
    assert (ret.line, ret.col) == (4, 5)


def test_prose_after_a_number_is_not_floor_division() -> None:
    src = "model M {\n    n: 4\n    performance {\n        expected_accuracy: 0.9  // 90% on the test set\n    }\n}\n"
    assert not [d for d in _diags(src) if d.code == "W0900"]
    src2 = "fn f(a: int, groups: int) -> int {\n    return a // groups\n}\n"
    assert [d.code for d in _diags(src2) if d.code == "W0900"] == ["W0900"]
