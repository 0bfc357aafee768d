"""Fuzzing the seed language's builtin functions (issue 13, form 2): random calls of every
builtin with random positional and keyword arguments (numbers, strings, dtype names, lists,
tensors of several shapes, the `axis=` alias, unknown names) check with diagnostics of known
codes and never a traceback; whatever checks generates PyTorch source the validator accepts,
and lowers to IR or says why not (LoweringError). TRITIUM_FUZZ_EXAMPLES sets the number of
examples (`make fuzz`)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.check import check_source
from tritium.check.builtins import FUNCTIONS
from tritium.frontend.diagnostics import CODES
from tritium.ir.lowering import LoweringError, lower

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402

SEED = sorted(n for n in FUNCTIONS if n not in ("print", "range", "len"))

ATOMS = st.sampled_from([
    "x", "v", "m", "x[0]", "0", "1", "2", "-1", "3", "0.5", "-0.25", "0.0", "1e-5", "true",
    "false", "\"twn\"", "\"absmean\"", "\"mean\"", "\"none\"", "\"trit\"", "\"float33\"",
    "float32", "int8", "trit", "float64", "[2, 3]", "[6]", "[1, 3]", "[4, 6]", "[]",
    "[[1.0, 2.0], [3.0, 4.0]]", "[[1, 0], [-1]]", "[1, 0, -1]", "[x, x]", "None",
    "reshape(x, [1, 1, 4, 6])", "zeros([2, 1, 3, 3])", "abs(v) + 0.5",
])
KEYS = st.sampled_from(["dim", "axis", "dtype", "seed", "requires_grad", "training",
                        "threshold", "temperature", "hard", "keepdim", "quantizer", "min_val",
                        "max", "eps", "reduction", "stride", "padding", "groups", "scale",
                        "gamma", "beta", "clip", "factor", "bogus", "unbiased", "split_size"])


BY_KIND = {
    "tensor": ["x", "v", "m", "x[0]", "abs(v) + 0.5", "0.5"],
    "int": ["0", "1", "-1", "2"], "float": ["0.5", "0.1", "1.0", "2", "0.0"],
    "bool": ["true", "false"], "str": ["\"twn\"", "\"absmean\"", "\"mean\"", "float32"],
    "ints": ["1", "0", "[1]", "[1, 1]", "[6]"], "shape": ["[2, 3]", "[6]", "[4, 6]"],
    "any": ["x", "[1.0, 2.0]", "[[1, 0], [0, -1]]", "[2, 2]", "m"], "tensors": ["[x, x]"],
}


@st.composite
def typed_calls(draw) -> str:
    """A call whose arguments have the kinds of the signature (so many of them check)."""
    name = draw(st.sampled_from(SEED))
    spec = FUNCTIONS[name]
    args = [draw(st.sampled_from(BY_KIND.get(p.kind, ["x"]))) for p in spec.params if p.required]
    for p in spec.params:
        if not p.required and draw(st.integers(0, 3)) == 0:
            key = "axis" if p.name == "dim" and draw(st.booleans()) else p.name
            args.append(f"{key}={draw(st.sampled_from(BY_KIND.get(p.kind, ['x'])))}")
    return f"{name}({', '.join(args)})"


@st.composite
def calls(draw, depth: int = 0) -> str:
    if depth == 0 and draw(st.booleans()):
        return draw(typed_calls())
    name = draw(st.sampled_from(SEED))
    n = draw(st.integers(0, 4))
    args = []
    for _ in range(n):
        arg = draw(calls(depth + 1)) if depth < 1 and draw(st.integers(0, 5)) == 0 else draw(ATOMS)
        args.append(arg)
    for _ in range(draw(st.integers(0, 2))):
        args.append(f"{draw(KEYS)}={draw(ATOMS)}")
    return f"{name}({', '.join(args)})"


PROGRAM = """
fn f(x: Tensor<float32, [4, 6]>, v: Tensor<float32, [6]>, m: Tensor<float32, [6, 6]>) -> Tensor {
    let r = CALL
    return x
}

layer L(x: Tensor<float32, [4, 6]>, v: Tensor<float32, [6]>, m: Tensor<float32, [6, 6]>) -> Tensor {
    return CALL
}
"""


@fuzz(300)
@given(calls())
def test_random_builtin_calls_never_crash(call):
    src = PROGRAM.replace("CALL", call)
    result = check_source(src, "fuzz.tri")
    for d in result.diagnostics:
        assert d.code in CODES, (d.code, d.message)
    if not result.ok:
        return
    generate(result)   # validated inside: no unsafe or broken source
    try:
        lower(result, "L")
    except LoweringError:
        pass
