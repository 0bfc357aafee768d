"""Lowering programs that have an entry (top-level statements, `main { }`) and f-strings:
the IR holds the definitions only (the entry has no IR form), so statements beside a model
change nothing in its IR, and a `print(f"…")` in a forward lowers to nothing while its
fields are still checked."""

from __future__ import annotations

import numpy as np

from tritium.check import check_source
from tritium.ir import interpret, print_module
from tritium.ir.lowering import lower

MODEL = """\
model Net {
    layer fc: TernaryLinear { in_features: 4, out_features: 2 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 2] {
        print(f"input {x.shape} first {x[0, 0]:.2f}")
        return relu(fc(x))
    }
}
"""

STATEMENTS = """\
let w = TernaryTensor[2, 4](1, 0, -1, 1, 0, 1, 1, 0)
print(f"w has {sum(abs(w)):.0f} nonzero trits")
main {
    let again = w * 2.0
    print(again)
}
"""


def test_statements_beside_a_model_leave_its_ir_unchanged() -> None:
    alone = check_source(MODEL)
    both = check_source(STATEMENTS + MODEL + STATEMENTS.replace("let w", "let w2")
                        .replace("{sum(abs(w))", "{sum(abs(w2))").replace("w * 2.0", "w2 * 2.0"))
    assert alone.ok and both.ok, both.diagnostics
    assert print_module(lower(alone).module) == print_module(lower(both).module)


def test_a_print_of_an_fstring_in_forward_lowers_to_nothing_and_agrees(capsys) -> None:
    import torch

    from tritium.backends.pytorch.codegen import generate

    result = check_source(MODEL)
    lowered = lower(result)
    assert "print" not in print_module(lowered.module)
    ns: dict = {}
    exec(compile(generate(result), "<gen>", "exec"), ns)
    net = ns["Net"]()
    net.eval()
    x = torch.arange(8, dtype=torch.float32).reshape(2, 4) / 8 - 0.4
    with torch.no_grad():
        ref = net(x)
    assert capsys.readouterr().out == "input [2, 4] first -0.40\n"
    state = net.state_dict()
    got = interpret(lowered.module, lowered.entry, [x.numpy()],
                    params={n: state[n].numpy() for n in lowered.params})
    got = got[0] if isinstance(got, list | tuple) else got
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref.double().numpy(),
                               rtol=1e-4, atol=1e-4)


def test_a_program_of_statements_only_has_no_model_to_lower() -> None:
    import pytest

    from tritium.ir.lowering import LoweringError
    result = check_source(STATEMENTS)
    assert result.ok
    with pytest.raises(LoweringError, match="no single model"):
        lower(result)


def test_fstrings_lower_to_their_text_when_constant_and_stay_printable_otherwise() -> None:
    from tritium.ir.lowering.expressions import RuntimeText
    from tritium.ir.lowering.lowerer import Lowerer

    src = MODEL.replace('        print(f"input', '        let msg = f"{x.shape} {x[0, 0]:.1f}"\n'
                        '        print(msg)\n        print(f"input')
    result = check_source(src)
    assert result.ok, result.diagnostics
    assert "print" not in print_module(lower(result).module)
    lowerer = Lowerer(result)
    parsed = check_source('print(f"{n:>3}|{s!r}|{[1, 2]}|{1.5:.2f}")\n').program
    field = parsed.items[0].value.args[0].value
    env = {"n": 7, "s": "a"}
    assert lowerer.fstring(field, env, None, None) == "  7|'a'|[1, 2]|1.50"
    assert isinstance(RuntimeText("x"), RuntimeText) and not isinstance(RuntimeText("x"), str)
