"""`tritium summary` against the model it describes: every parameter counted (layers and
`param`/state declarations), MACs, the checkpoint's tensor bytes, missing hyperparameters
and `--format`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tritium
from tritium.check import check_file, check_source
from tritium.check.summary import MissingHyperparameters, pick_definition, summarize_definition
from tritium.cli import main
from tritium.runtime import TernaryLayer, freeze_model, save_checkpoint, tritium_layers

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ["mlp", "lenet5", "resnet18", "mobilenetv2", "bitnet_block"]


def _summary(path, name=None, **hyper):
    r = check_file(path)
    return summarize_definition(r, pick_definition(r, name), hyper)


def _tensor_bytes(path: Path) -> int:
    raw = path.read_bytes()
    return len(raw) - 8 - int.from_bytes(raw[:8], "little")


@pytest.mark.parametrize("example", EXAMPLES)
def test_counts_and_checkpoint_bytes_match_the_built_model(example: str, tmp_path: Path):
    path = ROOT / "examples" / f"{example}.tri"
    s = _summary(path)
    model = tritium.load(path)
    assert s.total("params") == sum(p.numel() for p in model.parameters())
    torch.manual_seed(0)
    freeze_model(model.eval())
    # scales and biases the checkpoint can store as float16 (a trained model's are; an
    # untrained fold can leave values below float16's normal range, kept float32)
    for _, layer in tritium_layers(model):
        if isinstance(layer, TernaryLayer) and layer.bias is not None:
            with torch.no_grad():
                layer.bias[layer.bias.abs() < 2 ** -14] = 0.0
    out = tmp_path / "m.safetensors"
    save_checkpoint(out, model)
    assert s.total("checkpoint_bytes") == _tensor_bytes(out)


def test_model_level_params_and_state_lets_are_counted():
    src = """
layer Head {
    param w: TernaryTensor[16, 4]
    param b: Tensor[4]
    fn forward(x: Tensor[N, 16]) -> Tensor[N, 4] {
        return x @ w + b
    }
}
model M {
    layer fc: TernaryLinear { in_features: 8, out_features: 16 }
    layer head: Head
    param gain: Tensor[4]
    forward(x: Tensor[batch, 8]) -> Tensor[batch, 4] {
        return head(relu(fc(x))) * gain
    }
}
"""
    r = check_source(src, "m.tri")
    assert not [d for d in r.diagnostics if d.is_error], r.diagnostics
    s = summarize_definition(r, pick_definition(r, "M"))
    rows = {x.name: x for x in s.rows}
    assert rows["head.w"].ternary == 64 and rows["head.b"].fp32 == 4
    assert rows["gain"].fp32 == 4
    assert s.total("params") == (8 * 16 + 16) + 64 + 4 + 4
    model = tritium.load_source(src, "M")
    assert s.total("params") == sum(p.numel() for p in model.parameters())


def test_missing_hyperparameters_are_named(capsys):
    with pytest.raises(MissingHyperparameters) as info:
        _summary(ROOT / "examples" / "resnet18.tri", "BasicBlock")
    assert info.value.missing == ["c_in", "c_out"]
    rc = main(["summary", str(ROOT / "examples" / "resnet18.tri"), "--model", "BasicBlock"])
    err = capsys.readouterr().err
    assert rc == 2 and "c_in, c_out" in err and "--set c_in=" in err
    rc = main(["summary", str(ROOT / "examples" / "resnet18.tri"), "--model", "BasicBlock",
               "--set", "c_in=8", "--set", "c_out=8", "--set", "nope=1"])
    assert rc == 2 and "no hyperparameter nope" in capsys.readouterr().err
    s = _summary(ROOT / "examples" / "resnet18.tri", "BasicBlock", c_in=64, c_out=128)
    assert s.total("ternary") == 64 * 128 * 9 + 128 * 128 * 9 + 64 * 128


def test_macs_and_their_ternary_share():
    s = _summary(ROOT / "examples" / "lenet5.tri")
    rows = {x.name: x for x in s.rows}
    assert rows["conv1"].macs == 6 * 28 * 28 * 25
    assert rows["conv2"].macs == 16 * 10 * 10 * 6 * 25
    assert rows["fc1"].macs == 400 * 120
    assert s.macs == sum(r.macs for r in s.rows) and s.ternary_mac_share == 1.0
    r18 = _summary(ROOT / "examples" / "resnet18.tri")
    # the fp32 stem and classifier: the rest of ResNet-18's MACs are ternary
    stem = {x.name: x for x in r18.rows}["stem"]
    assert 0.99 < r18.ternary_mac_share < 1.0
    assert r18.macs - r18.total("ternary_macs") == stem.macs + 512 * 10


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 400), st.integers(1, 64), st.booleans())
def test_linear_sizes_follow_the_formats(k: int, n: int, per_channel: bool):
    src = f"""
model M {{
    layer fc: TernaryLinear {{ in_features: {k}, out_features: {n}, per_channel: {str(per_channel).lower()}, bias: false }}
    forward(x: Tensor[batch, {k}]) -> Tensor[batch, {n}] {{
        return fc(x)
    }}
}}
"""
    r = check_source(src, "m.tri")
    d = pick_definition(r, "M")
    t2 = summarize_definition(r, d, fmt="t2")
    t16 = summarize_definition(r, d, fmt="t1.6")
    scales = n if per_channel else 1
    assert t2.total("packed_bytes") == n * -(-k // 128) * 32 + 4 * scales
    assert t16.total("packed_bytes") == n * -(-k // 160) * 32 + 4 * scales
    # the checkpoint stores dense trits whatever the kernel format
    assert t2.total("checkpoint_bytes") == t16.total("checkpoint_bytes") \
        == -(-(n * k) // 5) + 2 * scales
    assert t2.macs == n * k and t2.ternary_mac_share == 1.0


def test_format_flag_changes_the_memory_size(capsys):
    lenet = str(ROOT / "examples" / "lenet5.tri")
    assert main(["summary", lenet, "--json"]) == 0
    import json
    a = json.loads(capsys.readouterr().out)
    assert main(["summary", lenet, "--json", "--format", "t1.6"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["format"] == "t1.6" and b["packed_bytes"] < a["packed_bytes"]
    assert a["checkpoint_bytes"] == b["checkpoint_bytes"]
    assert main(["summary", lenet]) == 0
    out = capsys.readouterr().out
    assert "MACs per sample" in out and "ternary)" in out
