"""`Program.lifts`: the parser marks programs holding a type alias or a local or anonymous
function, and `frontend.lift.rewrite` skips the others (a whole-tree walk that was 40% of
checking ResNet-18). The mark must never be missing where the rewrite would change
something: for every example, a program not marked is left unchanged by the rewrite."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tritium.frontend.lift import rewrite
from tritium.frontend.parser import parse

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").rglob("*.tri"))
FORMS = [
    "type W = Tensor<float32, [2, 2]>\nfn f(x: W) -> W { return x }\n",
    "fn f(x: Tensor) -> Tensor {\n    fn g(y: Tensor) -> Tensor { return y }\n    return g(x)\n}\n",
    "fn f(x: Tensor) -> Tensor {\n    let g = fn(y: Tensor) { return y }\n    return g(x)\n}\n",
    "layer L(x: Tensor) -> Tensor {\n    def g(y: Tensor) -> Tensor { return y }\n"
    "    return g(x)\n}\n",
]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_an_unmarked_program_is_unchanged_by_the_rewrite(path: Path) -> None:
    program, _diags, _ = parse(path.read_text(encoding="utf-8"), str(path))
    if program.lifts:
        return
    forced = copy.deepcopy(program)
    forced.lifts = True
    assert rewrite(forced, set()) == []
    assert forced == program


@pytest.mark.parametrize("src", FORMS)
def test_each_lifted_form_marks_its_program(src: str) -> None:
    program, diags, _ = parse(src, "t.tri")
    assert not [d for d in diags if d.is_error]
    assert program.lifts
