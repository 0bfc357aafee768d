"""Model summaries: counts by bit width, packed vs fp32 bytes, output shapes, rendering."""

from __future__ import annotations

import io
import json

import pytest
import torch
from rich.console import Console
from torch import nn

from tritium.runtime.layers import (
    Int4Linear,
    Int8Linear,
    TernaryConv2d,
    TernaryLinear,
    freeze_model,
)
from tritium.runtime.packing import packed_row_bytes
from tritium.runtime.summary import render_summary, summarize


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(TernaryLinear(64, 128), nn.ReLU(), TernaryLinear(128, 10, per_channel=True))


def _expected_packed(fmt: str) -> int:
    fc1 = 128 * packed_row_bytes(64, fmt) + 4 * 1 + 4 * 128  # packed rows, one scale, bias
    fc2 = 10 * packed_row_bytes(128, fmt) + 4 * 10 + 4 * 10  # per-channel scales, bias
    return fc1 + fc2


def test_mlp_rows_counts_and_shapes() -> None:
    s = summarize(_mlp(), torch.zeros(5, 64))
    assert [(r.name, r.kind) for r in s.layers] == [
        ("0", "TernaryLinear"),
        ("1", "ReLU"),
        ("2", "TernaryLinear"),
    ]
    assert [r.output_shape for r in s.layers] == [(5, 128), (5, 128), (5, 10)]
    fc1, relu, fc2 = s.layers
    assert (fc1.ternary_params, fc1.fp32_params) == (64 * 128, 128)
    assert (fc2.ternary_params, fc2.fp32_params) == (128 * 10, 10)
    assert relu.params == 0 and relu.packed_bytes == 0
    assert s.ternary_params == 64 * 128 + 1280 and s.fp32_params == 138
    assert s.int8_params == s.int4_params == 0
    assert s.fp32_bytes == 4 * (64 * 128 + 1280 + 138)
    assert s.packed_bytes == _expected_packed("t2")
    assert s.compression_ratio == pytest.approx(s.fp32_bytes / s.packed_bytes)
    assert fc1.packing_format == "t2"


def test_frozen_matches_estimate_and_format_option() -> None:
    for fmt in ("t2", "t1.6"):
        estimate = summarize(_mlp(), ternary_format=fmt)
        frozen = summarize(freeze_model(_mlp(), fmt))
        assert estimate.packed_bytes == frozen.packed_bytes == _expected_packed(fmt)
        assert frozen.ternary_params == estimate.ternary_params
        assert frozen.fp32_bytes == estimate.fp32_bytes
        assert [r.packing_format for r in frozen.layers if r.kind == "TernaryLinear"] == [fmt, fmt]
        assert all(r.output_shape is None for r in frozen.layers)
    with pytest.raises(ValueError, match="ternary format"):
        summarize(_mlp(), ternary_format="t3")


def test_mixed_model_int_layers_and_batchnorm() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        TernaryConv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.Flatten(),
        Int8Linear(8 * 4 * 4, 16),
        Int4Linear(16, 6, group_size=8),
    )
    model.train()
    running = model[1].running_mean.clone()
    s = summarize(model, torch.randn(2, 3, 4, 4), name="Mixed")
    assert model.training and model[1].training  # modes restored
    assert torch.equal(model[1].running_mean, running)  # eval-mode pass: statistics untouched
    assert s.model_name == "Mixed"
    conv, bn, flat, i8, i4 = s.layers
    assert conv.ternary_params == 8 * 27 and conv.fp32_params == 0
    assert conv.output_shape == (2, 8, 4, 4) and flat.output_shape == (2, 128)
    assert bn.fp32_params == 4 * 8  # weight, bias, running mean and var
    assert bn.packed_bytes == bn.fp32_bytes == 4 * 32 + 8  # + num_batches_tracked (int64)
    assert (i8.int8_params, i8.fp32_params) == (128 * 16, 16)
    assert i8.packed_bytes == 128 * 16 + 4 * 16 + 4 * 16
    assert (i4.int4_params, i4.fp32_params) == (16 * 6, 6)
    assert i4.packed_bytes == 6 * 8 + 4 * 6 * 2 + 4 * 6
    import copy

    frozen = summarize(freeze_model(copy.deepcopy(model), fold_bn=False))
    assert [r.packed_bytes for r in frozen.layers] == [r.packed_bytes for r in s.layers]
    assert frozen.int8_params == s.int8_params and frozen.int4_params == s.int4_params
    # with the batch norm folded into the convolution (per-channel scale and a bias)
    folded = summarize(freeze_model(model))
    fconv, fbn = folded.layers[:2]
    assert fbn.packed_bytes == 0 and fconv.packed_bytes == conv.packed_bytes - 4 + 2 * 4 * 8


def test_single_layer_and_tuple_input() -> None:
    layer = TernaryLinear(16, 4)
    s = summarize(layer, (torch.zeros(3, 16),))
    assert len(s.layers) == 1 and s.layers[0].name == "(root)"
    assert s.layers[0].output_shape == (3, 4)


def test_render_and_to_dict() -> None:
    s = summarize(_mlp(), torch.zeros(1, 64))
    table = render_summary(s)
    assert table.row_count == len(s.layers)
    assert [c.header for c in table.columns][:4] == ["layer", "kind", "output shape", "format"]
    out = io.StringIO()
    Console(file=out, width=160).print(table)
    text = out.getvalue()
    assert "TernaryLinear" in text and "total" in text and "compression" in text
    assert "1×128" in text
    data = json.loads(json.dumps(s.to_dict()))
    assert data["totals"]["packed_bytes"] == s.packed_bytes
    assert data["totals"]["compression_ratio"] == pytest.approx(s.compression_ratio)
    assert len(data["layers"]) == 3 and data["layers"][0]["output_shape"] == [1, 128]


def test_checkpoint_bytes_and_macs_match_the_saved_file(tmp_path):
    from tritium.runtime import TernaryConv2d, TernaryLinear, freeze_model, save_checkpoint
    from tritium.runtime.summary import summarize as _summarize

    torch.manual_seed(0)
    model = nn.Sequential(TernaryConv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten(), TernaryLinear(8 * 6 * 6, 10), nn.Linear(10, 4))
    model.train()
    model(torch.randn(4, 3, 6, 6))
    for frozen in (False, True):
        if frozen:
            freeze_model(model.eval())
        s = _summarize(model, torch.randn(2, 3, 6, 6))
        path = tmp_path / f"m{frozen}.safetensors"
        save_checkpoint(path, model)
        raw = path.read_bytes()
        assert s.checkpoint_bytes == len(raw) - 8 - int.from_bytes(raw[:8], "little")
        assert s.macs == 8 * 36 * 27 + 10 * 288 + 4 * 10
        assert s.ternary_mac_share == (8 * 36 * 27 + 10 * 288) / s.macs
