"""`tritium summary`: static per-layer shapes, parameter counts by bit width, sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tritium.check import check_file, check_source
from tritium.check.summary import packed_ternary_bytes, pick_definition, summarize_definition

ROOT = Path(__file__).resolve().parents[3]


def test_lenet_shapes_and_counts():
    r = check_file(ROOT / "examples" / "lenet5.tri")
    s = summarize_definition(r, pick_definition(r, None))
    rows = {x.name: x for x in s.rows}
    assert rows["conv1"].output == "[batch, 6, 28, 28]"
    assert rows["pool2"].output == "[batch, 16, 5, 5]"
    assert rows["conv2"].ternary == 16 * 6 * 5 * 5 and rows["conv2"].fp32 == 16
    assert rows["fc1"].ternary == 400 * 120
    # fc1: 120 rows of 400 trits -> 4 blocks of 32 bytes per row, one fp32 scale, fp32 bias
    assert rows["fc1"].packed_bytes == 120 * 4 * 32 + 4 + 4 * 120
    assert s.total("params") == sum(x.params for x in s.rows)


def test_repeated_blocks_are_expanded_with_qualified_names():
    r = check_file(ROOT / "examples" / "resnet18.tri")
    s = summarize_definition(r, pick_definition(r, None))
    names = [x.name for x in s.rows]
    assert "layer1.0.conv1" in names and "layer1.1.conv2" in names
    assert "layer2.0.shortcut.0" in names and "layer2.1.shortcut.0" not in names
    rows = {x.name: x for x in s.rows}
    assert rows["layer2.0.conv1"].output == "[batch, 128, 16, 16]"
    assert rows["layer4.1.conv2"].output == "[batch, 512, 4, 4]"
    assert s.output == "Tensor[batch, 10]"
    assert s.ratio > 14   # 99.9% of ResNet-18's weights are ternary


def test_block_with_hyperparameters():
    src = """
block Dense {
    params { n: int, m: int }
    layer fc: TernaryLinear { in_features: n, out_features: m, format: "t1.6", per_channel: true }
    forward(x: Tensor[b, n]) -> Tensor[b, m] { return fc(x) }
}"""
    r = check_source(src, "d.tri")
    s = summarize_definition(r, pick_definition(r, "Dense"), {"n": 100, "m": 3})
    row = s.rows[0]
    assert row.ternary == 300 and row.output == "[b, 3]"
    assert row.packed_bytes == packed_ternary_bytes(3, 100, "t1.6", True) + 4 * 3
    assert packed_ternary_bytes(3, 100, "t1.6", True) == 3 * 32 + 12


def test_cli_summary_json_and_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tritium", "summary", "--json",
                        str(ROOT / "examples" / "mlp.tri")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"] == "DigitsMLP" and data["total_params"] == 64 * 128 + 128 + 256 + 1290
    r = subprocess.run([sys.executable, "-m", "tritium", "summary", "--model", "Nope",
                        str(ROOT / "examples" / "mlp.tri")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "no model, block or layer named `Nope`" in r.stderr


def test_set_values_are_checked_against_the_hyperparameter_types():
    # `--set ch=abc` reached the summary as a string (an int hyperparameter)
    from tritium.check.summary import MissingHyperparameters
    r = check_source("block Dense {\n    params { n: int, m: int }\n"
                     "    layer fc: TernaryLinear { in_features: n, out_features: m }\n"
                     "    forward(x: Tensor[b, n]) -> Tensor[b, m] { return fc(x) }\n}", "d.tri")
    d = pick_definition(r, "Dense")
    for bad in ("abc", 4.5, True):
        try:
            summarize_definition(r, d, {"n": bad, "m": 3})
        except MissingHyperparameters as exc:
            assert "`n` of `Dense` must be an integer" in str(exc)
        else:
            raise AssertionError(f"n={bad!r} accepted")
    assert summarize_definition(r, d, {"n": 4, "m": 3}).rows[0].ternary == 12


def test_summary_of_a_file_without_models(tmp_path):
    # it said "the file has several models" with an empty list of them
    f = tmp_path / "f.tri"
    f.write_text("fn helper(x: int) -> int {\n    return x * 2\n}\nprint(helper(2))\n")
    r = subprocess.run([sys.executable, "-m", "tritium", "summary", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "defines no model, block or layer" in r.stderr
    assert "several" not in r.stderr


def test_layers_are_named_by_their_state_dict_keys(tmp_path):
    # a layer or parameter whose name the generated nn.Module reserves (`state_dict`,
    # `train`, `eval`, a trailing `_`) is renamed there: the summary showed the program's
    # name, which no state_dict key nor IR parameter carries
    import tritium

    src = ("block B {\n    params { d: int }\n"
           "    layer state_dict: Linear { in_features: d, out_features: d }\n"
           "    forward(x: Tensor[batch, d]) -> Tensor[batch, d] { return state_dict(x) }\n}\n"
           "model M {\n    layer forward_: TernaryLinear(4, 4)\n"
           "    layer blocks: B[2] { d: 4 }\n    layer train: B { d: 4 }\n"
           "    param eval: Tensor[4]\n"
           "    forward(x: Tensor[batch, 4]) -> Tensor {\n"
           "        return train(blocks(forward_(x))) + eval\n    }\n}\n")
    path = tmp_path / "m.tri"
    path.write_text(src)
    r = check_file(path)
    names = [x.name for x in summarize_definition(r, pick_definition(r, None)).rows]
    keys = set(tritium.load(path).state_dict())
    assert len(names) == 5
    assert all(n in keys or f"{n}.weight" in keys for n in names), (names, sorted(keys))
