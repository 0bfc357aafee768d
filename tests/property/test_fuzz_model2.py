"""Fuzzing the model2 forms of issue 13 (table-driven repetition with column headers, the
builtins of the custom quantizers, `param` shapes from the block, `adaptive_ternary`, layer
kinds from sibling files): pieces mixed and cut at random points. Whatever the program, the
checker answers with diagnostics of known codes, never a traceback, and what checks also
compiles to Python that validate() accepts. TRITIUM_FUZZ_EXAMPLES sets the count."""

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

BLOCK = """block B {
    params { in_channels: int, out_channels: int, stride: int = 1, expand_ratio: int = 1 }
    layer c: TernaryConv2d { in_channels: in_channels, out_channels: out_channels,
                             kernel_size: 3, stride: stride, padding: 1 }
    forward(x: Tensor) -> Tensor { return c(x) }
}
"""

ROWS = ["[1, 8, 1, 1]", "[6, 12, 2, 2]", "[2, 4]", "[]", "{ t: 2, c: 8 }", "{ n: 0 }",
        "{ q: 1 }", "[1, 8, 99999, 1]", "[x, 8, 1, 1]", "[1.5, 8, 1, 1]", "[\"s\", 8, 1, 1]",
        "[1, -8, 1, 1]", "[1, 8, n, 1]"]
HEADERS = ["// t, c, n, s", "// expansion, output, num_blocks, stride", "// a, b",
           "# in_channels, out_channels, stride, expand_ratio", "// t, c, n, s, k", ""]


@fuzz(300)
@given(st.lists(st.sampled_from(ROWS), min_size=1, max_size=5), st.sampled_from(HEADERS),
       st.booleans(), st.integers(0, 600))
def test_table_rows_give_known_diagnostics(rows, header, stem, cut):
    body = "    layer stem: Conv2d { in_channels: 1, out_channels: 8, kernel_size: 1 }\n" \
        if stem else ""
    table = "\n        ".join(rows)
    src = (BLOCK + "model M {\n" + body + "    layer blocks: B[] {\n        " + table + "  "
           + header + "\n    }\n    forward(x: Tensor[b, 1, 8, 8]) -> Tensor {\n"
           "        return blocks(" + ("stem(x)" if stem else "x") + ")\n    }\n}\n")
    for text in (src, src[:cut]):
        result = check_source(text)
        for d in result.diagnostics:
            assert d.code in CODES, d
        if not result.errors and result.definitions:
            validate(generate(result))
        prog, diags, _ = parse(text)
        if not any(d.is_error for d in diags):
            out = format_source(text)
            assert parse(out)[0] == prog


CALLS = ["zeros_like(x)", "ones_like(x, dtype: \"int8\")", "full_like(x, 2.0)", "argmax(x, dim: 1)",
         "argmin(x)", "one_hot(argmax(x, dim: 1), 3)", "one_hot(x, 0)", "gumbel_softmax(x)",
         "gumbel_softmax(x, temperature: 0.0, hard: true)", "repeat(x, 2)", "repeat(x, [2, 1])",
         "repeat(x, [0])", "repeat(x, \"b n -> n b\")", "concatenate([x, x], dim: 1)",
         "argmax(x, dim: 9)", "full_like(x)", "one_hot(i, n)", "repeat(x, n, dim: -1)"]
OPS = [" + ", " * ", ", ", ")", "(", "[", "]", " - "]


@fuzz(300)
@given(st.lists(st.sampled_from(CALLS + OPS), min_size=1, max_size=6), st.integers(0, 300))
def test_builtin_calls_give_known_diagnostics(parts, cut):
    src = ("model M {\n    forward(x: Tensor<float32, [?, 3]>) -> Tensor {\n"
           "        i = argmax(x, dim: 1)\n        n = 2\n        y = " + "".join(parts)
           + "\n        return x\n    }\n}\n")
    for text in (src, src[:cut]):
        result = check_source(text)
        for d in result.diagnostics:
            assert d.code in CODES, d
        if not result.errors and result.definitions:
            validate(generate(result))


SHAPES = ["[n]", "[n] if pc else [1]", "pc ? [n, 2] : [1, 2]", "[n] if pc else [1, 1]",
          "if pc { [n] } else { [2] }", "n", "[n] if pc", "[[n]]", "[n if pc else 0]", "[-1]",
          "[n] if pc else [99999999999]", "\"s\""]


@fuzz(200)
@given(st.sampled_from(SHAPES), st.booleans(), st.integers(0, 400))
def test_param_shapes_give_known_diagnostics(shape, pc, cut):
    src = ("layer L {\n    params { n: int = 4, pc: bool = false }\n"
           f"    param s: Tensor {{ shape: {shape}, init: \"ones\" }}\n"
           "    forward(x: Tensor) -> Tensor { return x * s }\n}\n"
           f"model M {{\n    layer l: L {{ n: 4, pc: {str(pc).lower()} }}\n"
           "    forward(x: Tensor<float32, [?, 4]>) -> Tensor { return l(x) }\n}\n")
    for text in (src, src[:cut]):
        result = check_source(text)
        for d in result.diagnostics:
            assert d.code in CODES, d
        if not result.errors and result.definitions:
            validate(generate(result))
        prog, diags, _ = parse(text)
        if not any(d.is_error for d in diags):
            assert parse(format_source(text))[0] == prog


LIST_PARTS = ["a", "b", "2", "//", " // ", ",", "]", "(", ")", "+", " ", "# c", "\n", "g"]   # no `[`: `x[]` is another matter


@fuzz(300)
@given(st.lists(st.sampled_from(LIST_PARTS), max_size=14))
def test_floor_division_in_lists_gives_known_diagnostics(parts):
    src = ("fn f(a: int, b: int) -> int {\n    let s = [" + "".join(parts)
           + "]\n    return 0\n}\n")
    result = check_source(src)
    for d in result.diagnostics:
        assert d.code in CODES, d
    if not result.errors and result.definitions:
        validate(generate(result))
    prog, diags, _ = parse(src)
    if not any(d.is_error for d in diags):
        assert parse(format_source(src))[0] == prog


SIBLING_TEXTS = ["layer K { forward(x: Tensor) -> Tensor { return x } }\n",
                 "block K {\n", "model K { }\n", "layer K2 { }\n", "// layer K\n",
                 "layer K { forward(x: Tensor) -> Tensor { return y } }\n", "\x00", "import \"m.tri\"\n"]


@fuzz(60)
@given(st.lists(st.sampled_from(SIBLING_TEXTS), max_size=3))
def test_sibling_resolution_gives_known_diagnostics(texts):
    import tempfile
    from pathlib import Path

    from tritium.check import check_file
    with tempfile.TemporaryDirectory() as d:
        main = Path(d) / "m.tri"
        main.write_text("model M {\n    layer k: K { }\n    forward(x: Tensor<float32, [?, 2]>) -> "
                        "Tensor { return k(x) }\n}\n")
        for i, t in enumerate(texts):
            (Path(d) / f"s{i}.tri").write_text(t)
        result = check_file(main)
        for diag in result.diagnostics:
            assert diag.code in CODES, diag
        if not result.errors and result.definitions:
            validate(generate(result))
