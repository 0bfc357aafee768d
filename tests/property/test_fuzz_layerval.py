"""Fuzzing the forms of helper seedc (issue 13): layers and models as values, lexical
scoping of top-level variables and nested functions, methods of a layer body.

* scoping programs: random top-level lets, functions that read some of them, shadow some
  (`let` at the top of their body), nest a function that reads both, and call each other;
  the program prints what the same program prints in Python (module-level variables, nested
  `def`s), and formats back to the same AST;
* snippet soup: random combinations of the layer-value forms, well and badly typed; every
  diagnostic has a known code, never a traceback, and what checks generates a module the
  validator accepts (`tritium check` and `tritium compile` agree).

The number of examples comes from TRITIUM_FUZZ_EXAMPLES (`make fuzz` runs 20,000 per target),
like tests/property/test_fuzz_hostile.py.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source
from tritium.frontend.diagnostics import CODES
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402
from fuzzing import run_main as _run_main


def _py_output(py: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(py, "<reference>", "exec"), {})
    return buf.getvalue()


# ----------------------------------------------------------------------------- scoping

GLOBALS = ["a", "b", "c", "d"]


@st.composite
def scoping_programs(draw) -> tuple[str, str]:
    """A `.tri` program and the same program in Python."""
    tri: list[str] = []
    py: list[str] = []
    values = {g: draw(st.integers(-5, 9)) for g in GLOBALS}
    for g, v in values.items():
        tri.append(f"let {g} = {v}")
        py.append(f"{g} = {v}")
    n_fns = draw(st.integers(1, 4))
    names = [f"f{i}" for i in range(n_fns)]
    for i, name in enumerate(names):
        shadow = draw(st.lists(st.sampled_from(GLOBALS), max_size=2, unique=True))
        reads = draw(st.lists(st.sampled_from(GLOBALS), min_size=1, max_size=3))
        callee = names[i - 1] if i and draw(st.booleans()) else None
        nested = draw(st.booleans())
        tri.append(f"fn {name}(p: int) -> int {{")
        py.append(f"def {name}(p):")
        for g in shadow:
            k = draw(st.integers(-3, 3))
            tri.append(f"    let {g} = p + {k}")
            py.append(f"    {g} = p + {k}")
        expr = " + ".join(reads) + " * p"
        if callee:
            expr += f" + {callee}(p - 1)"
        if nested:
            inner = draw(st.lists(st.sampled_from(GLOBALS), min_size=1, max_size=2))
            tri.append("    fn inner(q: int) -> int {")
            tri.append(f"        return q * 2 + {' - '.join(inner)}")
            tri.append("    }")
            py.append("    def inner(q):")
            py.append(f"        return q * 2 + {' - '.join(inner)}")
            expr += " + inner(p)"
        tri.append(f"    return {expr}")
        tri.append("}")
        py.append(f"    return {expr}")
    for _ in range(draw(st.integers(1, 3))):
        f = draw(st.sampled_from(names))
        arg = draw(st.integers(-2, 4))
        if draw(st.booleans()):
            g = draw(st.sampled_from(GLOBALS))
            v = draw(st.integers(-4, 4))
            tri.append(f"{g} = {v}")
            py.append(f"{g} = {v}")
        tri.append(f"print({f}({arg}))")
        py.append(f"print({f}({arg}))")
    return "\n".join(tri) + "\n", "\n".join(py) + "\n"


@fuzz(60)
@given(scoping_programs())
def test_scoping_programs_print_what_python_prints(prog):
    tri, py = prog
    result = check_source(tri)
    assert result.ok, (tri, [(d.code, d.message) for d in result.errors])
    assert _run_main(generate(result)) == _py_output(py), tri
    assert parse(format_source(tri))[0] == parse(tri)[0]


# ----------------------------------------------------------------------------- soup

SNIPPETS = [
    "fn f{i}(l: Layer, x: Tensor) -> Tensor {{ return l(x) }}",
    "fn f{i}(l: Layer, x: Tensor) -> Tensor {{ return l(x, x) }}",
    "fn f{i}(l: TernaryLayer) -> Tensor {{ return l(3) }}",
    "fn f{i}(m: Model) {{ for l in m.layers {{ l.weights = l.weights * 0.5 }} }}",
    "fn f{i}(m: Model) {{ for (k, l) in enumerate(m.layers) {{ l.weights = k }} }}",
    "fn f{i}(m: Model) -> Tensor {{ return m.bias }}",
    "fn f{i}(ls: [Layer]) -> Model {{ return Model(ls) }}",
    "fn f{i}(ls: [Layer]) -> Model {{ return Sequential([1, ls]) }}",
    "fn f{i}(g: fn(Layer) -> Layer, m: Model) -> [Layer] {{\n let out = []\n"
    " for l in m.layers {{ out.append(g(l)) }}\n return out\n}}",
    "fn f{i}(ls: [Layer]) -> fn(Tensor) -> Tensor {{\n return fn(x: Tensor) {{\n"
    "  let y = x\n  for l in ls {{ y = l(y) }}\n  return y\n }}\n}}",
    "fn f{i}(l: Layer, x: Tensor) -> Tensor {{ return top * l(x) }}",
    "fn f{i}() -> int {{\n let top = 1\n fn g() -> int {{ return top + 1 }}\n return g()\n}}",
    "fn f{i}() -> int {{ return top }}",
    "layer L{i} {{\n forward(x: Tensor) -> Tensor {{ return self.h(x) + h(x) }}\n"
    " function h(b: Tensor) -> Tensor {{\n if self.training {{ return b }}\n return b * 2.0\n }}\n}}",
    "layer L{i} {{\n forward(x: Tensor) -> Tensor {{ return h(x, x) }}\n"
    " method h(b: Tensor) -> Tensor {{ return b }}\n}}",
    "model N{i} {{\n layer fc: Linear {{ in_features: 2, out_features: 2 }}\n"
    " forward(x: Tensor[b, 2]) -> Tensor {{ return x @ fc.weights + self.w(x) }}\n"
    " fn w(x: Tensor) -> Tensor {{ return fc(x) }}\n}}",
    "let top = {v}",
    "print(top)",
    "let net{i} = Model([])",
]


@fuzz(150)
@given(st.lists(st.tuples(st.sampled_from(range(len(SNIPPETS))), st.integers(-3, 3)),
                min_size=1, max_size=6))
def test_snippet_soup_has_known_codes_and_compiles_when_it_checks(picks):
    src = "\n".join(SNIPPETS[k].format(i=n, v=v) for n, (k, v) in enumerate(picks)) + "\n"
    result = check_source(src)
    for d in result.diagnostics:
        assert d.code in CODES, (d.code, d.message)
    if result.ok:
        validate(generate(result))
        assert parse(format_source(src))[0] == parse(src)[0]
