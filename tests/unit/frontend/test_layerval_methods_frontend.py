"""Frontend of layer methods (issue 13, helper seedc): `self.helper(…)` in a layer body is
a call of the method `helper`, which stays in the body when it reads `self`."""

from __future__ import annotations

from tritium.frontend import ast as A
from tritium.frontend.lift import rewrite
from tritium.frontend.parser import parse


def lifted(src: str, main: bool = True) -> A.Program:
    prog, diags, _ = parse(src)
    assert not diags
    assert not rewrite(prog, set(), main)
    return prog


def test_self_helper_calls_are_plain_calls_of_the_method():
    prog = lifted("layer L {\n forward(x: Tensor) -> Tensor { return self.q(x) }\n"
                  " function q(b: Tensor) -> Tensor {\n if self.training { return b }\n"
                  " return b * 2.0\n }\n}\n")
    layer = prog.items[0]
    fwd = next(i for i in layer.body if isinstance(i, A.FnDef) and i.name == "forward")
    assert isinstance(fwd.body[0].value.func, A.Name) and fwd.body[0].value.func.id == "q"
    assert any(isinstance(i, A.FnDef) and i.name == "q" for i in layer.body)   # stays a method
