"""Issue 13 form 14, sections and keys: the model's `quantization { }` section applies to
its ternary layers (a layer's own key wins), `quantization:` on single layers (a default
threshold for "deterministic", full-precision kinds made ternary), `TernaryActivation`'s
`method`/`clip_value`, the training/performance/optimization keys, magnitude suffixes and
a config constant sharing a name with a layer."""

from __future__ import annotations

import pytest

from tritium.backends.pytorch.codegen import generate
from tritium.check import check_source
from tritium.check import library as L
from tritium.frontend.parser import parse
from tritium.ir.lowering import lower

HEAD = "model M {\n"
TAIL = """    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> {
        return b(a(x))
    }
}
"""


def program(layers: str, sections: str = "") -> str:
    return HEAD + layers + sections + TAIL


def quant(src: str) -> dict[str, object]:
    result = check_source(src)
    assert not result.errors, result.errors
    return {n: spec[3] for n, spec in lower(result).params.items() if n.endswith("weight")}


def diag_codes(src: str) -> list[str]:
    return [d.code for d in check_source(src).diagnostics]


LAYERS = ("    layer a: TernaryLinear { in_features: 4, out_features: 4 }\n"
          "    layer b: TernaryLinear { in_features: 4, out_features: 4, quantizer: \"absmean\" }\n")


def test_quantization_section_reaches_the_ternary_layers_and_a_layers_key_wins():
    q = quant(program(LAYERS, "    quantization { quantizer: \"threshold\", threshold: 0.2,"
                              " per_channel: true, weights: \"ternary\" }\n"))
    assert (q["a.weight"].quantizer, q["a.weight"].per_channel) == ("threshold", True)
    assert (q["b.weight"].quantizer, q["b.weight"].per_channel) == ("absmean", True)
    # without the section the defaults stand
    q = quant(program(LAYERS))
    assert (q["a.weight"].quantizer, q["a.weight"].per_channel) == ("twn", False)


def test_deterministic_quantization_gets_the_default_threshold():
    src = program(LAYERS.replace("out_features: 4 }\n", "out_features: 4, quantization: "
                                 "\"deterministic\" }\n", 1))
    result = check_source(src)
    assert not result.errors
    assert quant(src)["a.weight"].quantizer == "threshold"
    assert "quantizer='threshold', threshold=0.05)" in generate(result)


def test_exclude_and_bad_section_values_are_errors():
    assert "E0901" in diag_codes(program(LAYERS, "    quantization { exclude: [\"a\"] }\n"))
    assert "E0309" in diag_codes(program(LAYERS, "    quantization { quantizer: \"int3\" }\n"))
    assert "E0309" in diag_codes(program(LAYERS, "    training { gradient_estimator: \"x\" }\n"))
    assert "E0309" in diag_codes(program(LAYERS, "    optimization { format: \"t9\" }\n"))


@pytest.mark.parametrize("entry,code", [
    ('threshold: "high"', "E0308"),
    ("threshold: -1.0", "E0309"),
    ('per_channel: "yes"', "E0308"),
    ('ste: "bogus"', "E0309"),
    ('act_quant: "int4"', "E0309"),
])
def test_section_settings_of_the_ternary_layers_are_checked(entry, code):
    # `threshold: "high"` was accepted and reached every ternary layer's config
    src = program(LAYERS, f"    quantization {{ {entry} }}\n")
    assert [d.code for d in check_source(src).errors] == [code]


@pytest.mark.parametrize("entry", ["threshold: 0.5", "per_channel: true", 'ste: "clipped"',
                                   'act_quant: "int8"', 'activations: "fp32"'])
def test_good_section_settings_pass(entry):
    assert check_source(program(LAYERS, f"    quantization {{ {entry} }}\n")).errors == []


def test_unused_keys_warn_naming_the_key():
    d = check_source(program(LAYERS, "    training { mixed_precision: true }\n"
                                     "    performance { flops: 16.8B }\n"
                                     "    optimization { fuse_bn: true }\n")).diagnostics
    assert [x.code for x in d] == ["W0004"] * 3
    assert "`mixed_precision`" in d[0].message and "no effect" in d[0].message


def test_full_precision_kind_made_ternary_by_quantization_key():
    src = program("    layer a: Linear { in_features: 4, out_features: 4, quantization: \"ternary\" }\n"
                  "    layer b: Linear(4, 4) { quantization: \"none\" }\n")
    q = quant(src)
    assert q["a.weight"] is not None and q["b.weight"] is None
    bad = src.replace("layer b: Linear(4, 4)", "layer b: LayerNorm(4)").replace(
        '"none"', '"ternary"')
    assert diag_codes(bad) == ["E0309"]


def test_ternary_activation_keys():
    src = program(LAYERS.replace("layer b: TernaryLinear", "layer c: TernaryActivation { method:"
                                 " \"deterministic\", clip_value: 2.0 }\n    layer b: TernaryLinear"))
    assert diag_codes(src) == ["W0002"]   # `c` declared, not used
    assert "E0309" in diag_codes(src.replace('"deterministic"', '"stochastic"'))


@pytest.mark.parametrize("text, value", [("300M", 300_000_000), ("16.8B", 16_800_000_000),
                                         ("1.5K", 1500), ("2T", 2 * 10 ** 12)])
def test_magnitude_suffixes(text, value):
    prog, diags, _ = parse(f"model M {{\n    performance {{ params: {text} }}\n}}\n")
    assert not diags and prog.items[0].body[0].entries[0].value.value == value


def test_performance_keys_under_the_measured_names():
    got = L.performance_expectations({"expected_accuracy": 92.5, "model_size_mb": 2,
                                      "inference_ms": 3, "compression_ratio": 8,
                                      "params": 300_000_000, "flops": 1})
    assert got == {"min_accuracy": 0.925, "max_size_kb": 2048, "max_latency_ms": 3,
                   "min_compression": 8, "max_params": 300_000_000, "flops": 1}


def test_gradient_estimator_sets_the_ste_of_ternary_layers():
    src = program(LAYERS, "    training { gradient_estimator: \"clipped_ste\" }\n")
    code = generate(check_source(src))
    assert code.count("ste='clipped'") == 2


def test_config_constant_and_layer_share_a_name():
    src = ("model M {\n    a: 4\n"
           "    layer a: TernaryLinear { in_features: 4, out_features: a }\n"
           "    layer b: TernaryLinear { in_features: 4, out_features: 4 }\n" + TAIL)
    assert diag_codes(src) == []
    # two layers of one name are still an error
    assert "E0206" in diag_codes(src.replace("layer b:", "layer a:"))


def test_section_reading_is_shared_by_ternary_params():
    src = """layer Raw {
    param w: TernaryTensor[4, 4]
    quantization { weights: "ternary", quantizer: "deterministic", per_channel: true }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> {
        return x @ w
    }
}
"""
    result = check_source(src)
    assert not result.errors
    spec = lower(result).params["w"][3]
    assert (spec.quantizer, spec.per_channel) == ("threshold", True)
    assert "threshold=0.05," in generate(result)
