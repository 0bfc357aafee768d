"""Forms of issue 13 given to `stmt2`: `print(x, label=)`, quantizers that return a pair,
`if` over a tensor condition, `a with_gradient_from b`, constructing a layer by calling its
type, properties of a type alias, integer division stored into an int. Programs check,
compile to PyTorch, load and run, agree with a PyTorch reference, and (where the IR can
express them) with the IR interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tritium.cli import main as cli
from tritium.driver import compile_program


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def write(tmp_path: Path, text: str, name: str = "prog.tri") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def run_main(tmp_path: Path, src: str, capsys) -> list[str]:
    result = compile_program(write(tmp_path, src))
    capsys.readouterr()
    result.module.main()
    return capsys.readouterr().out.splitlines()


# ----------------------------------------------------------------------------- print(label=)

def test_print_label_prefixes_the_values(tmp_path, capsys) -> None:
    src = ('let x = Tensor[1, 2](0.5, 2.0)\n'
           'print(x, label="Tensor X")\n'
           'print(1, 2, label="pair", sep="|")\n'
           'let name = "n"\n'
           'print(3, label=name, end="!\\n")\n')
    out = run_main(tmp_path, src, capsys)
    assert out == [f"Tensor X: {torch.tensor([[0.5, 2.0]])}", "pair:|1|2", "n: 3!"]


def test_print_label_must_be_a_string(tmp_path, capsys) -> None:
    assert cli(["check", write(tmp_path, "print(1, label=2)\n")]) == 1
    err = capsys.readouterr().err
    assert "E0404" in err and "label" in err and "Traceback" not in err
