"""Issue 13 form 14, lowering: the chosen branch of `if`/`switch`, the `Sequential` stack
and table rows become the IR's sublayers, named as the generated PyTorch names them."""

from __future__ import annotations

from pathlib import Path

from tritium.check import check_source
from tritium.ir.lowering import lower

SEED = Path(__file__).resolve().parents[4] / "examples" / "seed" / "model_forms.tri"


def subs(src: str) -> dict[str, str]:
    result = check_source(src)
    assert not result.errors
    low = lower(result)
    return {s.name: s.kind for s in low.module.layer("SeedForms").sublayers}


def test_seed_forms_lower_to_sublayers():
    s = subs(SEED.read_text(encoding="utf-8"))
    assert [s[f"stem.{i}"] for i in range(3)] == ["TernaryLinear", "ReLU", "TernaryLinear"]
    assert s["norm"] == "LayerNorm" and s["head"] == "TernaryLinear"
    assert s["blocks.0"].startswith("Expand__") and s["blocks.1"].startswith("Expand__")
    assert s["blocks.0"] != s["blocks.1"]   # the rows give different parameters


def test_other_branches_lower_when_chosen():
    src = SEED.read_text(encoding="utf-8").replace("use_norm: true", "use_norm: false")
    src = src.replace('precision: "int8"', 'precision: "fp32"')
    s = subs(src)
    assert s["norm"] == "Identity" and s["head"] == "Linear"
