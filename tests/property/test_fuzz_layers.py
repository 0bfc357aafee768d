"""Fuzzing the layer forms of issue 13 (`let` in a layer function, calling a layer by name,
signature weights, `param` init specs and conditions, `state` buffers): whatever the
combination, the compiler answers with diagnostics of known codes, never a traceback, and
what checks clean also compiles to a validated module and lowers (or says why not).
TRITIUM_FUZZ_EXAMPLES sets the number of examples (`make fuzz`)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source
from tritium.check.checker.model import PARAM_INITS
from tritium.frontend.diagnostics import CODES
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse
from tritium.ir.lowering import LoweringError, lower

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402

_KEYS = ["mean", "std", "low", "high", "value", "gain", "a", "mode", "nonlinearity", "shape",
         "init", "bogus"]
_VALUES = ["0.02", "-1.0", "1", "0", '"fan_out"', '"relu"', '"normal"', "[4]", "[n]", "true",
           "n", '"x"', "1e400", "[?]"]
_DIMS = ["4", "n", "?", "2 * n", "m"]
_TYPES = ["Tensor", "TernaryTensor", "int", "float", "bool", "str"]


@st.composite
def dims(draw) -> str:
    return "[" + ", ".join(draw(st.lists(st.sampled_from(_DIMS), min_size=0, max_size=3))) + "]"


@st.composite
def param_decl(draw, i: int) -> str:
    ty = draw(st.sampled_from(["Tensor", "TernaryTensor"]))
    shaped = draw(st.booleans())
    text = f"param p{i}: "
    if draw(st.booleans()):
        text += f"if ({draw(st.sampled_from(['use_bias', 'n > 2', 'true', 'false', 'x']))}) "
    text += ty + (draw(dims()) if shaped else "")
    if draw(st.booleans()):
        entries = []
        if draw(st.booleans()):
            entries.append(f'init: "{draw(st.sampled_from([*PARAM_INITS, "bad"]))}"')
        for _ in range(draw(st.integers(0, 3))):
            entries.append(f"{draw(st.sampled_from(_KEYS))}: {draw(st.sampled_from(_VALUES))}")
        text += " { " + ", ".join(entries) + " }"
    return text


@st.composite
def layer_programs(draw) -> str:
    items = ["params { n: int = 4, use_bias: bool = true }"]
    names = []
    for i in range(draw(st.integers(0, 3))):
        items.append(draw(param_decl(i)))
        names.append(f"p{i}")
    for i in range(draw(st.integers(0, 2))):
        ty = draw(st.sampled_from(_TYPES))
        shape = draw(dims()) if ty in ("Tensor", "TernaryTensor") and draw(st.booleans()) else ""
        init = f" = {draw(st.sampled_from(_VALUES))}" if draw(st.booleans()) else ""
        items.append(f"state s{i}: {ty}{shape}{init}")
        names.append(f"s{i}")
    body = ["let y = x"]
    for n in names:
        op = draw(st.sampled_from(["guard", "add", "update", "skip"]))
        if op == "guard":
            body.append(f"if {n} is not None {{ y = y + {n} }}")
        elif op == "add":
            body.append(f"y = y + {n}")
        elif op == "update":
            body.append(f"{n} += 1")
    sig = draw(st.sampled_from(["", "(w: TernaryTensor[4, 4])", "(w: TernaryTensor)",
                                "(w: Tensor[n, 4], k: int = 2)"]))
    fn_layer = ("layer F(w: TernaryTensor<trit, [a, b]>, x: Tensor<float32, [?, a]>) -> "
                "Tensor<float32, [?, b]> {\n    let y = x @ w\n    return y\n}\n")
    call = draw(st.sampled_from(["", "y = F(w, y)", "y = F(y)", "y = F(w, y, 1)"]))
    if call and "w:" in sig:
        body.append(call)
    body.append("return y")
    fwd = "    forward(x: Tensor[B, 4]) -> Tensor {\n" + "".join(
        f"        {s}\n" for s in body) + "    }\n"
    return fn_layer + f"layer L{sig} {{\n" + "".join(f"    {it}\n" for it in items) + fwd + "}\n"


@fuzz(300)
@given(layer_programs())
def test_layer_forms_never_crash_and_what_checks_compiles(src: str) -> None:
    res = check_source(src, "t.tri")
    assert all(d.code in CODES for d in res.diagnostics), [d.code for d in res.diagnostics]
    prog, diags, _ = parse(src)
    if not diags:
        out = format_source(src)
        assert parse(out)[0] == prog
    if not res.ok:
        return
    validate(generate(res))
    try:
        lower(res, "L", {})
    except LoweringError as e:
        assert "internal error" not in str(e), str(e)
