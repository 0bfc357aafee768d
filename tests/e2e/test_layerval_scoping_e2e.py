"""Lexical scoping end to end (issue 13, helper seedc): a program whose functions read
top-level variables and nest compiles to PyTorch and prints what the same Python program
prints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import run_main  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- scoping

SCOPING = """
let x = 10

fn outer() -> int {
    let y = 20
    fn inner() -> int {
        let z = 30
        return x + y + z
    }
    return inner()
}

fn shadow() -> int {
    let x = 20
    return x + twice()
}

fn twice() -> int {
    return x * 2
}

fn apply(f: fn() -> int) -> int {
    return f()
}

print(outer(), shadow(), apply(twice), x)
x = 1
print(outer(), twice())
"""


def test_lexical_scoping_runs_as_python_closures_would(tmp_path):
    out, _ = run_main(tmp_path, SCOPING)
    # reference: the same program in Python, with module-level x
    assert out.splitlines() == ["60 40 20 10", "51 2"]
