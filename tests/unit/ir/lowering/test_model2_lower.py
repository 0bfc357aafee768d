"""Lowering the model/block dialect forms of issue 13 (the model2 forms) to IR."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lowering_helpers import lower_text  # noqa: E402

from tritium.ir.lowering.values import LoweringError  # noqa: E402

TABLE = """
block P {
    params { in_features: int, out_features: int, expand: int }
    layer up: TernaryLinear { in_features: in_features, out_features: in_features * expand }
    layer down: TernaryLinear { in_features: in_features * expand, out_features: out_features }
    forward(x: Tensor) -> Tensor { return down(relu(up(x))) }
}
model M {
    layer stem: Linear { in_features: 4, out_features: 6 }
    layer t: P[] {
        [2, 8, 2]   // t, c, n
        [1, 5, 1]
    }
    forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 5]> { return t(stem(x)) }
}
"""


def test_table_rows_lower_to_chained_instances():
    low = lower_text(TABLE, "M")
    shapes = {n: tuple(p[0]) for n, p in low.params.items() if n.endswith("weight")}
    # row 1: in 6 (the stem's width) -> 8, expand 2, twice (the second chained 8 -> 8);
    # row 2: in 8 (row 1's out) -> 5, expand 1
    assert shapes == {"stem.weight": (6, 4),
                      "t.0.0.up.weight": (12, 6), "t.0.0.down.weight": (8, 12),
                      "t.0.1.up.weight": (16, 8), "t.0.1.down.weight": (8, 16),
                      "t.1.0.up.weight": (8, 8), "t.1.0.down.weight": (5, 8)}


ADAPTIVE = """
model M {
    quantization { method: "adaptive_ternary" }
    layer fc: TernaryLinear { in_features: 8, out_features: 4 }
    layer fixed: TernaryLinear { in_features: 4, out_features: 4, quantizer: "twn" }
    layer own: TernaryLinear { in_features: 4, out_features: 4, quantizer: "adaptive" }
    forward(x: Tensor<float32, [?, 8]>) -> Tensor<float32, [?, 4]> { return own(fixed(fc(x))) }
}
"""


def test_adaptive_ternary_lowers_to_twn_per_channel():
    low = lower_text(ADAPTIVE, "M")
    q = {n: p[3] for n, p in low.params.items() if n.endswith("weight")}
    assert (q["fc.weight"].quantizer, q["fc.weight"].per_channel) == ("twn", True)
    # a layer that names its own quantizer does not take the section's per-channel setting
    assert (q["fixed.weight"].quantizer, q["fixed.weight"].per_channel) == ("twn", False)
    assert (q["own.weight"].quantizer, q["own.weight"].per_channel) == ("twn", True)


def test_a_tensor_hyperparameter_is_a_clear_lowering_error():
    src = (Path(__file__).resolve().parents[4] / "examples" / "seed"
           / "model2_adaptive.tri").read_text(encoding="utf-8")
    with pytest.raises(LoweringError, match="`threshold` of `SoftThresholdLinear` is a tensor"):
        lower_text(src, "AdaptiveMLP")


def test_a_conditional_param_shape_lowers_per_instance():
    src = (Path(__file__).resolve().parents[4] / "examples" / "seed"
           / "model2_params.tri").read_text(encoding="utf-8")
    low = lower_text(src, "LSQNet")
    assert low.params["q1.step_size"][0] == (32,) and low.params["q2.step_size"][0] == (1,)
