"""Issue 13 form 14 end to end: `Sequential`, `if … else`, `switch` and table-driven
repetition compile, load, run in PyTorch and agree with the IR interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tritium import runtime as trt
from tritium.check import check_source

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import agree_with_ir  # noqa: E402

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed" / "model_forms.tri"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def _agree(src: str, path: Path, shape: tuple[int, ...]) -> torch.nn.Module:
    ref, got, model, _ = agree_with_ir(path.parent, src, shape, randomize=0.5, name=path.name)
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64),
                               rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    return model


def test_seed_example_runs_and_agrees(tmp_path):
    model = _agree(SEED.read_text(encoding="utf-8"), tmp_path / "m.tri", (3, 16))
    assert isinstance(model.stem, torch.nn.Sequential) and len(model.stem) == 3
    assert isinstance(model.norm, torch.nn.LayerNorm)
    assert isinstance(model.head, trt.TernaryLinear)
    assert len(model.blocks) == 2 and model.blocks[1].up.out_features == 64


DEFAULT = '        default -> Identity\n'
FP32 = '        "fp32" -> Linear { in_features: 32, out_features: 10 }\n'


@pytest.mark.parametrize("precision, default, want", [
    ("fp32", "", torch.nn.Linear),
    ("int8", DEFAULT, trt.TernaryLinear),
])
def test_switch_takes_the_matching_case(tmp_path, precision, default, want):
    src = SEED.read_text(encoding="utf-8").replace('precision: "int8"',
                                                   f'precision: "{precision}"')
    src = src.replace(FP32, FP32 + default)
    model = _agree(src, tmp_path / "m.tri", (2, 16))
    assert isinstance(model.head, want)


def test_switch_default_and_no_match():
    src = SEED.read_text(encoding="utf-8").replace('precision: "int8"', 'precision: "int4"')
    # no case matches and there is no default: `head` is None, and calling it is an error
    assert [d.code for d in check_source(src).errors] == ["E0313"]
    with_default = src.replace(FP32, FP32 + DEFAULT).replace("[?, 10]", "[?, 32]")
    assert not check_source(with_default).errors


def test_else_branch_is_taken(tmp_path):
    src = SEED.read_text(encoding="utf-8").replace("use_norm: true", "use_norm: false")
    model = _agree(src, tmp_path / "m.tri", (2, 16))
    assert isinstance(model.norm, torch.nn.Identity)


SECTIONS = SEED.with_name("model_sections.tri")


def test_sections_example_runs_and_agrees(tmp_path):
    model = _agree(SECTIONS.read_text(encoding="utf-8"), tmp_path / "s.tri", (4, 64))
    assert isinstance(model.mix, trt.TernaryLinear)          # `quantization: "ternary"`
    assert isinstance(model.head, torch.nn.Linear)           # `quantization: "none"`
    assert model.act.clip == 1.5
    assert model.tritium_performance == {"min_accuracy": 0.8, "max_size_kb": 1024,
                                         "max_params": 10000}


def test_attention_made_ternary_by_its_quantization_key(tmp_path):
    src = """model A {
    layer attn: MultiHeadAttention { embed_dim: 16, num_heads: 2, quantization: "ternary" }
    layer fc: Linear { in_features: 16, out_features: 4, quantization: "deterministic" }
    forward(x: Tensor<float32, [?, 3, 16]>) -> Tensor<float32, [?, 3, 4]> {
        return fc(attn(x))
    }
}
"""
    model = _agree(src, tmp_path / "a.tri", (2, 3, 16))
    assert any(isinstance(m, trt.TernaryLinear) for m in model.attn.modules())
    assert isinstance(model.fc, trt.TernaryLinear)
