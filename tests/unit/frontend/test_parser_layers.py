"""Parsing and formatting the layer-body forms of issue 13: `param` with an init spec or a
condition, `state` buffers."""

from __future__ import annotations

import sys
from pathlib import Path

from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "property"))
from test_formatter_props import check_round_trip  # noqa: E402

SRC = """layer L {
    params { n: int, use_bias: bool = true }
    param w: Tensor[2, 4] { init: "normal", std: 0.02 }
    param bias: if (use_bias) Tensor { shape: [n] }
    param g: if use_bias and n > 2 TernaryTensor[n, n] = zeros([n, n])
    state steps: int = 0
    state buf: Tensor[4]
    fn forward(x: Tensor) -> Tensor { return x }
}
"""


def test_param_specs_conditions_and_state_parse():
    prog, diags, _ = parse(SRC)
    assert diags == []
    body = prog.items[0].body
    w, bias, g, steps, buf = body[1:6]
    assert isinstance(w, A.ParamDecl) and [e.key for e in w.spec] == ["init", "std"]
    assert w.cond is None and w.type.shape is not None
    assert isinstance(bias.cond, A.Name) and bias.type.shape is None
    assert [e.key for e in bias.spec] == ["shape"]
    assert isinstance(g.cond, A.Binary) and isinstance(g.init, A.Call) and g.spec is None
    assert isinstance(steps, A.StateDecl) and steps.type.name == "int"
    assert isinstance(steps.init, A.Num) and steps.init.value == 0
    assert isinstance(buf, A.StateDecl) and buf.init is None


def test_state_stays_a_name_elsewhere():
    # `state` is not reserved: a config entry, a variable and a call keep working
    prog, diags, _ = parse("""model M {
    state: 3
    forward(x: Tensor) -> Tensor {
        state = x
        return state
    }
}
""")
    assert diags == []
    assert isinstance(prog.items[0].body[0], A.ConfigEntry)


def test_new_forms_format_and_round_trip():
    out = check_round_trip(SRC)
    assert 'param w: Tensor[2, 4] { init: "normal", std: 0.02 }' in out
    assert "param bias: if (use_bias) Tensor { shape: [n] }" in out
    assert "state steps: int = 0" in out
    assert format_source(out) == out


def test_a_bad_spec_is_a_syntax_error_not_a_crash():
    for bad in ("param w: Tensor[2] { init }", "param w: if Tensor[2]",
                "state s: = 1", "param w: Tensor[2] { init: }"):
        _, diags, _ = parse("layer L {\n    " + bad + "\n}\n")
        assert diags and all(d.code.startswith("E02") for d in diags), bad
