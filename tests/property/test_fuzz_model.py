"""Fuzzing the `model` area of issue 13: foreign forms (`struct`, `impl`, `global`,
`extends`, `throws`, spread), `//` after operands, and the model-level layer forms, mixed
and cut at random points. Whatever the program, the checker answers with diagnostics of
known codes, never a traceback. TRITIUM_FUZZ_EXAMPLES sets the count (`make fuzz`)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source
from tritium.frontend.diagnostics import CODES

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402

PIECES = [
    "struct P { x: float }\n", "trait T {\n fn f(self) -> int\n}\n", "impl T for P { }\n",
    "impl<T> W<T> {\n", "global g = 1\n", "enum E { A, B }\n", "class C:\n",
    "model M extends Base {\n", "model M {\n", "block B {\n", "}\n", "{", "}", "(", ")",
    "fn f(x: int) throws IO -> int {\n", "fn f(x: int) -> int raises E {\n",
    "return g(...xs)\n", "let a = in_channels // groups\n", "let k = f(a // 2, 1)\n",
    "    layer fc: TernaryLinear { in_features: 4, out_features: 2 }\n",
    "    layer s: Sequential {\n TernaryLinear { in_features: 4, out_features: 4 }\n"
    "        ReLU {}\n    }\n",
    "    layer p: if (flag) { TernaryLinear { in_features: 4, out_features: 2 } } "
    "else { Linear { in_features: 4, out_features: 2 } }\n",
    "    layer c: switch (mode) {\n \"int8\" -> TernaryLinear { in_features: 4, "
    "out_features: 2 }\n  \"fp\" -> Linear { in_features: 4, out_features: 2 }\n }\n",
    "    layer d: if (flag) {\n switch (mode) { \"int8\" -> TernaryLinear(4, 2)\n"
    " \"fp\" -> Linear(4, 2) }\n ReLU {}\n }\n",
    "    layer r: TernaryLinear[] { [4, 4], [4, 2] }\n",
    "    training {\n gradient_estimator: \"ste\"\n epochs: 2\n odd_key: 3\n }\n",
    "    performance { expected_accuracy: 0.9, params: 300M, flops: 16.8B }\n",
    "    quantization: \"deterministic\"\n", "    quantization { per_channel: true }\n",
    "    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {\n",
    "        return fc(x)\n", "        let y = x +\n", "    flag: true\n",
    "    mode: \"int8\"\n", "    hidden: 4\n    layer hidden: Linear(4, 4) { quantization: \"ternary\" }\n",
    "    layer at: MultiHeadAttention { embed_dim: 4, num_heads: 2, quantization: \"x\" }\n",
    "    layer ta: TernaryActivation { method: \"sign\", clip_value: 1.5 }\n",
    "    optimization { format: \"t1.6\", packing: 3 }\n", "    quantization { exclude: [1] }\n",
    "    training { gradient_estimator: \"clipped_ste\", qat_schedule: {} }\n",
    "300M", "16.8B", "1.5K", "99999999999T", "x", "...", "//", "throws", "extends", "global", "\n",
]


@fuzz(400)
@given(st.lists(st.sampled_from(PIECES), max_size=14), st.integers(0, 2000))
def test_model_area_programs_give_known_diagnostics(pieces, cut):
    src = "".join(pieces)
    for text in (src, src[:cut]):
        result = check_source(text)
        for d in result.diagnostics:
            assert d.code in CODES, d
        if not result.errors and result.definitions:
            validate(generate(result))     # what checks also compiles, to safe Python


LAYER_FORMS = [
    "layer s: Sequential {\n TernaryLinear { in_features: 4, out_features: 4 }\n ReLU\n}",
    "layer s: Sequential { Sequential { ReLU }\n GELU }",
    "layer p: if (flag) { ReLU } else { GELU }",
    "layer p: if flag and not other { ReLU\n Dropout(0.1) } else if other { GELU }",
    "layer c: switch (mode) { \"a\" -> ReLU\n \"b\" -> { GELU\n ReLU }\n default -> Identity }",
    "layer c: switch (n + 1) { 1 -> ReLU, 2 -> GELU }",
    "layer d: if (flag) { switch (mode) { \"a\" -> ReLU\n \"b\" -> GELU }\n Dropout(0.1) }"
    " else { Tanh }",
    "layer s: Sequential { Linear(4, 4)\n switch (mode) { \"a\" -> ReLU\n default -> GELU } }",
    "layer r: Blk[] { [1, 16, 1, 1], [6, 24, 2, 2] }",
    "layer r: TernaryLinear[] { [4, 4]\n [4, 2] }",
    "layer x: TernaryLinear(4, 2) { quantization: \"deterministic\" }",
]


@fuzz(300)
@given(st.lists(st.sampled_from(LAYER_FORMS), min_size=1, max_size=6))
def test_layer_forms_format_to_the_same_ast(forms):
    from tritium.frontend.formatter import format_source
    from tritium.frontend.parser import parse

    src = "model M {\n" + "".join(f"    {f}\n" for f in forms) + "}\n"
    prog, diags, _ = parse(src)
    assert not diags, diags
    out = format_source(src)
    prog2, diags2, _ = parse(out)
    assert not diags2 and prog2 == prog, out
    assert format_source(out) == out
