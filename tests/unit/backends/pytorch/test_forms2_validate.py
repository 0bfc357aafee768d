"""The validator's narrow allowances for `forms2` (issue 13): exactly `with
torch.no_grad():` and the list methods; every other `with`, a nested `def` and a `lambda`
are still refused, and what a program writes never reaches them."""

from __future__ import annotations

import pytest

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import UnsafeSourceError, validate
from tritium.check import check_source

PROGRAM = """
fn f(x: Tensor, k: float) -> Tensor {
    fn scale(z: Tensor) -> Tensor { return z * k }
    let xs = [1, 2]
    xs.append(3)
    with no_grad() {
        let y = scale(x) * xs.pop()
    }
    return y
}
"""


def generated() -> str:
    r = check_source(PROGRAM)
    assert r.ok, [d.message for d in r.errors]
    return generate(r)


def test_generated_forms_validate() -> None:
    src = generated()
    validate(src)
    assert "with torch.no_grad():" in src and "xs.append(3)" in src
    assert "def f__scale(z, k):" in src


@pytest.mark.parametrize("replacement", [
    "with torch.no_grad() as g:",
    "with torch.enable_grad():",
    "with torch.no_grad(True):",
    "with torch.no_grad(), torch.no_grad():",
    "with no_grad():",
    "with open('x'):",
    "with trt.no_grad():",
    "with torch.autograd.no_grad():",
    "with (lambda: None)():",
])
def test_any_other_with_is_refused(replacement: str) -> None:
    src = generated()
    bad = src.replace("with torch.no_grad():", replacement, 1)
    assert bad != src
    with pytest.raises(UnsafeSourceError):
        validate(bad)


@pytest.mark.parametrize("stmt", [
    "def inner():\n            return 1",
    "g = lambda z: z",
    "xs.__class__",
    "open('x').append(1)",
])
def test_nested_functions_and_other_attributes_stay_refused(stmt: str) -> None:
    src = generated()
    marker = "        y = "
    assert marker in src
    bad = src.replace(marker, "        " + stmt + "\n" + marker, 1)
    with pytest.raises(UnsafeSourceError):
        validate(bad)


def test_a_program_cannot_choose_the_context() -> None:
    r = check_source(PROGRAM.replace("no_grad()", "open(\"x\")"))
    assert [d.code for d in r.errors] == ["E0964"]


@pytest.mark.parametrize("expr", ["[1, 2][0, 1]", "'a'(1)", "(1, 2)(3)"])
def test_code_the_compiler_warns_about_is_refused(expr: str) -> None:
    """A SyntaxWarning is code that fails when it runs (a list indexed by a tuple, a string
    called): the checker should have refused its program, so the module is not loaded."""
    src = generated()
    marker = "        y = "
    bad = src.replace(marker, f"        z = {expr}\n" + marker, 1)
    with pytest.raises(UnsafeSourceError, match="does not compile"):
        validate(bad)
