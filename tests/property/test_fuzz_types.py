"""Fuzzing the type forms of issue 13 (list/tuple/optional/union/function types, generics,
`where`, `let x: T` without a value, split signatures, contextual keywords): any program
built from them, well-formed or mangled, gets diagnostics with known codes and never a
traceback; what checks clean generates PyTorch source that validate() accepts and that
the formatter prints back to the same AST. TRITIUM_FUZZ_EXAMPLES sets the number of
examples (`make fuzz` runs 20,000)."""

from __future__ import annotations

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

NAMES = ["x", "y", "model", "layer", "block", "param", "T", "U", "params", "forward"]
SCALARS = ["int", "float", "bool", "str", "trit", "T", "U", "Layer", "void", "None"]


@st.composite
def types_(draw, depth: int = 0) -> str:
    if depth > 2:
        return draw(st.sampled_from(SCALARS))
    kind = draw(st.sampled_from(["scalar", "scalar", "list", "List", "brackets", "tuple", "opt",
                                 "Optional", "union", "fn", "tensor", "Tensor", "paren"]))
    sub = lambda: draw(types_(depth + 1))  # noqa: E731
    if kind == "scalar":
        return draw(st.sampled_from(SCALARS))
    if kind in ("list", "List"):
        return f"{kind}[{sub()}]"
    if kind == "brackets":
        return "[" + ", ".join(sub() for _ in range(draw(st.integers(1, 3)))) + "]"
    if kind == "tuple":
        return f"{draw(st.sampled_from(['Tuple', 'tuple']))}[{sub()}, {sub()}]"
    if kind == "opt":
        return f"{sub()}?"
    if kind == "Optional":
        return f"Optional[{sub()}]"
    if kind == "union":
        return f"{sub()} | {sub()}"
    if kind == "fn":
        return f"fn({', '.join(sub() for _ in range(draw(st.integers(0, 2))))}) -> {sub()}"
    if kind == "tensor":
        return f"tensor<{draw(st.sampled_from(['float32', 'trit', 'T']))}, [?, 4]>"
    if kind == "Tensor":
        return draw(st.sampled_from(["Tensor", "Tensor<float32, [?, 4]>", "Tensor<T, [?, 4]>"]))
    return f"({sub()})"


VALUES = ["1", "2.5", '"s"', "None", "[1, 2]", "[1, \"a\"]", "[1, 2, 3]", "x", "f", "true",
          "zeros([2, 4])", "identity(3)"]


@st.composite
def programs(draw) -> str:
    tparams = draw(st.sampled_from(["", "<T>", "<T: Numeric>", "<T, U: Float>",
                                    "<T: Tensor + Numeric>", "<T: Bogus>"]))
    where = draw(st.sampled_from(["", " where T: Numeric", "\nwhere T: Float"]))
    if not tparams:
        where = ""
    p1, p2 = draw(st.sampled_from(NAMES)), draw(st.sampled_from(NAMES))
    t1, t2, tr = draw(types_()), draw(types_()), draw(types_())
    nl = draw(st.sampled_from([" ", "\n", "\n    "]))
    brace_nl = draw(st.sampled_from([" ", "\n"]))
    body = []
    for _ in range(draw(st.integers(0, 4))):
        form = draw(st.sampled_from(["let", "decl", "assign", "if", "call", "ret"]))
        v = draw(st.sampled_from(NAMES))
        if form == "let":
            body.append(f"let {v}: {draw(types_())} = {draw(st.sampled_from(VALUES))}")
        elif form == "decl":
            body.append(f"let {v}: {draw(types_())}")
        elif form == "assign":
            body.append(f"{v} = {draw(st.sampled_from(VALUES))}")
        elif form == "if":
            body.append(f"if {draw(st.sampled_from(['true', 'x > 1', p1]))} {{\n"
                        f"        {v} = {draw(st.sampled_from(VALUES))}\n    }}" +
                        draw(st.sampled_from(["", f" else {{\n        {v} = 1\n    }}"])))
        elif form == "call":
            body.append(f"g({draw(st.sampled_from(VALUES))}, {draw(st.sampled_from(VALUES))})")
        else:
            body.append(f"return {draw(st.sampled_from(NAMES + VALUES))}")
    stmts = "\n".join("    " + s for s in body)
    src = (f"fn identity<T>(x: T) -> T {{\n    return x\n}}\n"
           f"fn f(x: int) -> int {{\n    return x\n}}\n"
           f"fn g{tparams}({p1}: {t1}, {p2}: {t2}){nl}-> {tr}{where}{brace_nl}{{\n"
           f"{stmts}\n}}\n")
    if draw(st.booleans()):   # mangle: drop or repeat a slice of the text
        i = draw(st.integers(0, len(src)))
        j = draw(st.integers(i, min(len(src), i + 6)))
        src = src[:i] + draw(st.sampled_from(["", src[i:j] * 2, "<", "|", "?", "where"])) + src[j:]
    return src


@fuzz(300)
@given(programs())
def test_type_forms_never_crash(src):
    result = check_source(src, "fuzz.tri")
    for d in result.diagnostics:
        assert d.code in CODES, (d.code, d.message)
    if result.errors:
        return
    validate(generate(result))
    program, diags, _ = parse(src)
    assert not diags
    again, diags2, _ = parse(format_source(src))
    assert not diags2 and again == program, format_source(src)
