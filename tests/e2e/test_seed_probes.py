"""The probe programs of helper seede (examples/seed/probe_*.tri, issue 13): small programs
written as a user of the earlier DSL writes them, mixing its forms (statement lists with fn,
layer and model items, generics, layer functions with lets, next-line return types,
collections, f-strings, keyword names, params/param/state blocks, direct layer calls,
destructuring, while/break, comprehensions, ranges, no_grad, Sequential/if/switch/table
models, ...). Each checks; a statement program runs with `tritium run` and prints; a model
loads, runs a forward pass and agrees with the IR interpreter on its own weights."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_source
from tritium.cli import main as cli
from tritium.ir import interpret
from tritium.ir.lowering import lower

ROOT = Path(__file__).resolve().parents[2]
PROBES = sorted((ROOT / "examples" / "seed").glob("probe_*.tri"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def test_there_are_probes():
    assert len(PROBES) >= 30


def _has_entry(text: str) -> bool:
    """Top-level statements or a `main { }` block."""
    depth = 0
    for raw in text.splitlines():
        line = raw.split("#")[0].split("//")[0].strip()
        if depth == 0 and line and not re.match(r"(layer|model|block|fn|type|}|->|where)", line):
            return True
        depth += line.count("{") + line.count("(") - line.count("}") - line.count(")")
    return False


@pytest.mark.parametrize("path", PROBES, ids=lambda p: p.name)
def test_probe_checks_and_runs(path, capsys):
    text = path.read_text()
    result = check_source(text, str(path), path)
    assert result.ok, [(d.code, d.message) for d in result.errors]
    if _has_entry(text):
        assert cli(["run", str(path)]) == 0
        assert capsys.readouterr().out.strip()
        return
    models = re.findall(r"^model (\w+)", text, re.M)
    assert models, "a probe is a statement program or has a model"
    model = tritium.load(path)
    model.eval()
    m = re.search(rf"model {models[-1]} {{.*?forward\(x: (?:Ternary)?Tensor\[([^\]]*)\]", text,
                  re.S)
    dims = [int(d) if d.strip().isdigit() else 2 for d in m.group(1).split(",")]
    x = torch.randn(*dims, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    lowered = lower(result, models[-1], None)
    state = model.state_dict()
    params = {n: state[n].detach().numpy() for n in lowered.params}
    got = interpret(lowered.module, lowered.entry, [x.numpy()], params=params)
    got = np.asarray(got[0] if isinstance(got, list | tuple) else got)
    assert np.allclose(ref.numpy(), got, rtol=1e-4, atol=1e-4)
