"""Every example program is a real program (issue 13's done-when): each `.tri` file under
examples/ (the seed dialects of examples/seed/ included) checks without an error and compiles
to its PyTorch module, and each one that carries a `training { }` section trains with
`tritium train` on the embedded digits and writes its packed checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tritium.check import check_file
from tritium.cli import main
from tritium.driver import compile_program
from tritium.frontend.diagnostics import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.tri"))
_TRAINING = re.compile(r"^\s*training\s*\{", re.MULTILINE)
# the language-model programs train on text (tests/e2e/test_lm.py); the rest on digits
TRAINED = [p for p in EXAMPLES
           if p.parent.name == "seed" and _TRAINING.search(p.read_text(encoding="utf-8"))]


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT / "examples"))


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 80 and len(TRAINED) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=_id)
def test_every_example_checks_and_compiles(path: Path):
    res = check_file(path)
    assert not res.errors, [render(d, res.sources) for d in res.errors]
    compiled = compile_program(str(path))
    assert compiled.module is not None


@pytest.mark.parametrize("path", TRAINED, ids=_id)
def test_every_seed_model_with_a_training_section_trains(path: Path, tmp_path):
    out = tmp_path / "run"
    rc = main(["train", str(path), "--epochs", "1", "--no-baseline", "--no-progress",
               "--latency-runs", "2", "-q", "--out", str(out)])
    assert rc == 0
    assert (out / "model.safetensors").stat().st_size > 0
    assert (out / "metrics.json").is_file()
