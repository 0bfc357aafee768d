"""`generate(..., head=)` and `tritium generate --head`: the output head a generation runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torch import nn

import tritium.driver.generate as gen
from tritium.data.tokenizer import ByteTokenizer
from tritium.runtime.layers.freeze import freeze_model
from tritium.runtime.layers.head import Int8Head

_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bitnet_b158.tri"


@pytest.fixture
def loaded(monkeypatch):
    """generate() on a tiny frozen model with an fp32 head, as a checkpoint would load."""
    import tritium
    torch.manual_seed(0)
    model = freeze_model(tritium.load(str(_EXAMPLE), "BitNetB158", dim=32, layers=2, heads=2,
                                      ffn=48).eval())
    models = []

    def load(checkpoint):
        models.append(model)
        return model, ByteTokenizer(), {}

    monkeypatch.setattr(gen, "load_language_model", load)
    monkeypatch.setattr(gen, "generation_settings", lambda checkpoint: gen.GenerationSettings())
    return models


def test_generate_runs_an_int8_head_by_default_and_fp32_on_request(loaded):
    r8 = gen.generate("ckpt", "def ", 12, greedy=True)
    assert isinstance(loaded[-1].lm_head, Int8Head) and len(r8.tokens) == 12


def test_generate_fp32_head_keeps_the_trained_head(loaded):
    r32 = gen.generate("ckpt", "def ", 12, greedy=True, head="fp32")
    assert type(loaded[-1].lm_head) is nn.Linear and len(r32.tokens) == 12


def test_a_bad_head_is_a_clear_error(loaded):
    with pytest.raises(gen.GenerateError, match="head must be one of int8, fp32"):
        gen.generate("ckpt", "def ", 4, head="int4")
    assert not loaded      # refused before loading anything


def test_the_command_offers_head_with_int8_default():
    p = argparse.ArgumentParser()
    gen.register(p.add_subparsers(), argparse.HelpFormatter)
    args = p.parse_args(["generate", __file__, "--prompt", "x"])
    assert args.head == "int8"
    assert p.parse_args(["generate", __file__, "--prompt", "x", "--head", "fp32"]).head == "fp32"
    with pytest.raises(SystemExit):
        p.parse_args(["generate", __file__, "--prompt", "x", "--head", "int4"])
