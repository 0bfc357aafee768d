"""The checker on the QAT schedule keys of `training { }` (`qat_schedule`,
`quantization_schedule`): the seed's spellings check clean, bad values are E0970 at the
part at fault, unknown sub-keys are W0004 naming the key, and what checks compiles."""

from __future__ import annotations

import pytest

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source

HEAD = """model M {
    layer fc: TernaryLinear { in_features: 4, out_features: 2 }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
        return fc(x)
    }
"""

SEED = """    training {
        epochs: 100
        quantization_schedule: {
            warmup_epochs: 10           // train without quantization
            gradual_quantization: true  // gradually increase quantization
            quantization_epochs: [10, 30, 50]  // stages of quantization
        }
    }
"""


def program(training: str) -> str:
    return HEAD + training + "}\n"


def diags(src: str):
    return check_source(src).diagnostics


@pytest.mark.parametrize("training", [
    SEED,
    "    training { epochs: 100, qat_schedule: \"progressive\" }\n",
    "    training { qat_schedule: \"gradual\" }\n",
    "    training { qat_schedule: \"immediate\" }\n",
    "    training { qat_schedule: \"none\" }\n",
    "    training { qat_schedule: \"delayed\" }\n",
    "    training { qat_schedule: {} }\n",
    "    training { epochs: 20\n qat_schedule: { type: \"progressive\", "
    "gradual_quantization: true } }\n",
    "    training { epochs: 8, quantization_schedule: { warmup_epochs: 2 } }\n",
])
def test_the_schedule_spellings_check_clean_and_compile(training: str):
    result = check_source(program(training))
    assert result.diagnostics == [], [d.message for d in result.diagnostics]
    code = generate(result)
    validate(code)
    assert "tritium_training" in code


def test_the_schedule_reaches_the_generated_training_block():
    code = generate(check_source(program(SEED)))
    ns: dict = {}
    exec(compile(code, "<generated>", "exec"), ns)    # noqa: S102 - our own generated code
    assert ns["M"]().tritium_training["quantization_schedule"] == {
        "warmup_epochs": 10, "gradual_quantization": True, "quantization_epochs": [10, 30, 50]}


@pytest.mark.parametrize("training,at,words", [
    ("    training { qat_schedule: { warmup_epochs: -1 } }\n", "-1", "whole number"),
    ("    training { epochs: 40, qat_schedule: { quantization_epochs: [10, 20, 40] } }\n",
     "40]", "the stage at epoch 40 does not begin before the end of training"),
    ("    training { qat_schedule: { quantization_epochs: [10, 5] } }\n", "5]",
     "must increase: 5 after 10"),
    ("    training { qat_schedule: { gradual_quantization: \"yes\" } }\n", "\"yes\"",
     "true or false"),
    ("    training { epochs: 10, qat_schedule: { warmup_epochs: 10 } }\n", "10 }",
     "does not end before the end of training"),
    ("    training { qat_schedule: { warmup_epochs: 5, quantization_epochs: [3] } }\n", "5,",
     "ends after the first stage begins"),
    ("    training { qat_schedule: \"progresive\" }\n", "\"progresive\"",
     "unknown QAT schedule"),
    ("    training { qat_schedule: 3 }\n", "3 }", "a schedule name or a dictionary"),
    ("    training { qat_schedule: { type: \"cosine\" } }\n", "\"cosine\"",
     "unknown QAT schedule"),
])
def test_bad_values_are_errors_at_the_part_at_fault(training, at, words):
    d = [x for x in diags(program(training)) if x.code == "E0970"]
    assert len(d) == 1, [x.message for x in diags(program(training))]
    assert words in d[0].message
    assert (d[0].span.line, d[0].span.col) == (6, training.index(at) + 1)


def test_unknown_sub_keys_warn_naming_the_key():
    src = program(SEED.replace("            quantization_epochs",
                               "            ramp: \"cosine\"\n            quantization_epochs"))
    d = diags(src)
    assert [x.code for x in d] == ["W0004"]
    assert "`ramp`" in d[0].message and "`quantization_schedule`" in d[0].message
    assert "no effect" in d[0].message and d[0].span.line == 11


def test_a_second_schedule_has_no_effect_and_says_so():
    src = program(SEED[:-len("    }\n")] + "        qat_schedule: \"progressive\"\n    }\n")
    d = diags(src)
    assert [x.code for x in d] == ["W0004"]
    assert "`qat_schedule` has no effect" in d[0].message and "line 8" in d[0].message


def test_a_misspelt_name_suggests_the_right_one():
    d = diags(program("    training { qat_schedule: \"gradul\" }\n"))
    assert d[0].code == "E0970" and "did you mean `gradual`" in (d[0].help or "")


def test_other_training_keys_still_warn():
    d = diags(program("    training { qat_mode: \"x\" }\n"))
    assert [x.code for x in d] == ["W0004"] and "`qat_mode`" in d[0].message


def test_a_value_known_only_when_built_is_left_to_tritium_train():
    src = """block B {
    params { warm: int = 2 }
    layer fc: TernaryLinear { in_features: 4, out_features: 2 }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
        return fc(x)
    }
    training { epochs: 10, qat_schedule: { warmup_epochs: warm } }
}
"""
    assert [d.code for d in diags(src) if d.code == "E0970"] == []
