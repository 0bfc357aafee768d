"""Fuzzing the seed-corpus forms (shape variables `Tensor<T, S>`, generic aliases, multi-line
`where` clauses with shape relations, `Tuple<A, B>`, a loop range's `:` step, `method`,
triple-quoted docstrings, helper functions beside `forward`, `requires_grad` in an init
spec, `extends` / `optimizer` / `mutates`): random assemblies of these pieces and random
cuts and splices of them check without a traceback, every diagnostic has a known code,
whatever checks generates PyTorch the validator accepts, and whatever parses formats to
text that parses to the same AST. TRITIUM_FUZZ_EXAMPLES sets the number of examples."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.check import check_source
from tritium.frontend.diagnostics import CODES
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402

DTYPE = st.sampled_from(["float32", "float16", "E", "int8", "trit"])
SHAPE = st.sampled_from(["S", "?", "[?, ?]", "[n]", "[2, 3]", "R"])
BOUND = st.sampled_from(["Comparable", "Quantizable", "Differentiable", "Hashable", "Shape",
                         "Numeric", "int32", "Sortable", "Float + Comparable"])


@st.composite
def pieces(draw) -> str:
    kind = draw(st.integers(0, 9))
    d, s, b = draw(DTYPE), draw(SHAPE), draw(BOUND)
    if kind == 0:
        return f"type Al<E> = Tensor<{d}, {s}>\nlet a: Al<float32> = zeros([2, 2])\n"
    if kind == 1:
        return (f"fn f<E: {b}, S>(x: Tensor<E, {s}>) -> Tensor<{d}, {s}> {{\n"
                f"    return x\n}}\nlet y = f(ones([2, 3]))\n")
    if kind == 2:
        rel = draw(st.sampled_from(["S[1] == R[0]", "S.dims == 2", "E: Float", "n > 0"]))
        return (f"fn g<E, S, R>(a: Tensor<E, S>, b: Tensor<E, R>) -> Tensor<E, ?>\nwhere\n"
                f"    E: {b},\n    {rel}\n{{\n    return a @ b\n}}\n")
    if kind == 3:
        return "fn p<A, B>(a: A, b: B) -> Tuple<A, List<B>> {\n    return (a, [b])\n}\n"
    if kind == 4:
        k = draw(st.integers(-1, 4))
        return f"let t = 0\nfor i in 0..{draw(st.integers(0, 9))}:{k} {{\n    t += i\n}}\n"
    if kind == 5:
        return ('layer H {\n    params { lim: float = 1.0 }\n    forward(x: Tensor) -> Tensor {\n'
                '        """doc"""\n        return bound(x) + self.bound(x)\n    }\n'
                '    function bound(x: Tensor) -> Tensor {\n        return clamp(x, -lim, lim)\n'
                '    }\n    method info() -> str {\n        return "h"\n    }\n}\n')
    if kind == 6:
        rg = draw(st.sampled_from(["true", "false", "\"no\"", "1"]))
        return (f"layer P {{\n    params {{ n: int = 2 }}\n    param g: Tensor {{ shape: [n], "
                f"init: \"ones\", requires_grad: {rg} }}\n    forward(x: Tensor) -> Tensor {{\n"
                f"        return x * g\n    }}\n}}\n")
    if kind == 7:
        return ("layer K extends Linear {\n    dtype: \"float16\"\n}\n"
                "optimizer O {\n    rate: 0.1\n}\n")
    if kind == 8:
        return "fn m(c: int) -> int mutates State {\n    return c\n}\n"
    return ('let w = randn([4, 4])\nlet q = learned_quantize(w, 0.1, -0.1, 2.0)\n'
            'print(max(0.5, 0.25), max_abs(q), stop_gradient(q).sum())\n')


@st.composite
def programs(draw) -> str:
    src = "".join(draw(st.lists(pieces(), min_size=1, max_size=4)))
    if draw(st.booleans()):   # cut a random span out, or splice one in elsewhere
        i = draw(st.integers(0, len(src)))
        j = draw(st.integers(i, min(len(src), i + 12)))
        src = src[:i] + src[j:] if draw(st.booleans()) else src[:i] + src[i:j] + src[i:]
    return src


@fuzz(300)
@given(programs())
def test_corpus_forms_never_crash(src: str) -> None:
    result = check_source(src, "fuzz.tri")
    for d in result.diagnostics:
        assert d.code in CODES, (d.code, d.message)
    if result.ok:
        generate(result)   # raises if the generated source is refused by the validator
    program, diags, _ = parse(src, "fuzz.tri")
    if not [d for d in diags if d.is_error]:
        out = format_source(src, "fuzz.tri")
        again, diags2, _ = parse(out, "fuzz.tri")
        assert not [d for d in diags2 if d.is_error], out
        assert again == program, f"--- input\n{src}\n--- output\n{out}"
