"""Forms the sweep of the seed corpus (issue 13, helper seed13) found missing, compiled and
run against a PyTorch reference: the seed's `learnable: false` parameter spec; weights bound
to a layer written as a function (`let layer = TernaryLinear(weights, bias)` then
`layer(input)`, the seed's "Hello World")."""

from __future__ import annotations

from pathlib import Path

import torch

import tritium
from tritium.driver import compile_program

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"


def test_learnable_false_is_a_frozen_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    model = tritium.load(SEED / "probe_learnable_spec.tri")
    scale = model.fc1.weight_scale
    assert not scale.requires_grad and model.fc1.weight.requires_grad
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        h = torch.relu(torch.nn.functional.linear(x, model.fc1.weight) * scale)
        assert torch.allclose(model.fc1(x), torch.nn.functional.linear(x, model.fc1.weight)
                              * scale, atol=1e-6)
        assert model(x).shape == (4, 10) and h.shape == (4, 32)
    model.train()
    model(x).sum().backward()
    assert scale.grad is None and model.fc1.weight.grad is not None


BOUND = (SEED / "probe_bound_in_function.tri").read_text(encoding="utf-8")


def test_bound_weights_compile_and_run_against_torch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "bound.tri"
    path.write_text(BOUND)
    result = compile_program(str(path))
    assert "trt.closure(bound1__Proj" in result.python and "lambda" not in result.python
    w = torch.tensor([[1., 0, -1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.module.M()(x), (x @ w + 1) + (2 * x @ w + 1))
    capsys.readouterr()
    result.module.main()
    want = torch.arange(8.).reshape(2, 4) @ w + 0.5
    assert capsys.readouterr().out == f"{want}\n"


def test_the_seed_hello_world_probe_runs(tmp_path, monkeypatch, capsys):
    from tritium.cli import main as cli
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    assert cli(["run", str(SEED / "probe_bound_layer.tri")]) == 0
    assert capsys.readouterr().out.strip() == "[32, 10] tensor(0.)"


def test_a_switch_in_a_conditional_branch_builds_the_chosen_modules(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    model = tritium.load(SEED / "probe_switch_in_branch.tri")
    model.eval()
    kinds = [[type(m).__name__ for m in s.shortcut] if s.shortcut is not None else None
             for s in (model.s1, model.s2, model.s3)]
    assert kinds == [["TernaryLinear", "LayerNorm"], ["Linear", "LayerNorm"], None]
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = x
        for s in (model.s1, model.s2, model.s3):
            h = torch.relu(s.main(h) + (s.shortcut(h) if s.shortcut is not None else h))
        torch.testing.assert_close(model(x), model.head(h))


def test_torch_dtype_methods_run_as_conversions(tmp_path, monkeypatch, capsys):
    from tritium.cli import main as cli
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "dtypes.tri"
    path.write_text("let x = linspace(-2, 2, 5)\n"
                    "print(x.half(), x.double(), x.long(), half(x * 3).float())\n")
    assert cli(["run", str(path)]) == 0
    x = torch.linspace(-2, 2, 5)
    assert capsys.readouterr().out == f"{x.half()} {x.double()} {x.long()} {(x * 3).half().float()}\n"


def test_adjacent_strings_and_string_repetition_run(tmp_path, monkeypatch, capsys):
    from tritium.cli import main as cli
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "strings.tri"
    path.write_text('fn describe(c_in: int, k: int) -> str {\n'
                    '    return (\n        f"in_channels={c_in}, "\n'
                    '        f"kernel_size={k}"\n    )\n}\n'
                    'let report = "=" * 5 + "\\n" + describe(3, 7)\nprint(report)\n')
    assert cli(["run", str(path)]) == 0
    assert capsys.readouterr().out == "=====\nin_channels=3, kernel_size=7\n"
