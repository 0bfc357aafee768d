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


DEFAULTS = """
let scale = 3

fn mul(x: int, k: int = 2, j: int = 1) -> int {
    return x * k * j * scale
}

fn outer() -> int {
    let s = 5
    fn inner(x: int, k: int = 2) -> int { return x * k * s }
    return inner(1) + inner(x: 1) + inner(1, k: 3) + inner(1, 4)
}

print(mul(1), mul(x: 1), mul(1, k: 4), mul(1, j: 5), mul(1, 2, 3), outer())
"""


def test_a_function_with_defaults_reads_outer_names(tmp_path):
    # the values read from around a function are appended after its parameters: after a
    # default, the generated `def mul(x, k=2, j=1, scale)` was a SyntaxError (E0021), and a
    # local function's call `inner(1)` passed `s` in the place of `k`
    out, _ = run_main(tmp_path, DEFAULTS)
    assert out.splitlines() == ["6 6 12 30 18 55"]
