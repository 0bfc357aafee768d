"""Formatter properties, on every example program and on generated programs:

* the formatted text parses to the same AST (spans aside) as the original;
* formatting is idempotent;
* every comment's text is still there, and the comments keep their order.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse

sys.path.insert(0, str(Path(__file__).parent))  # the strategies module (any import mode)
from strategies import programs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.tri"))
DESIGN_SNIPPETS = sorted((Path(__file__).parent / "data").glob("*.tri"))
N = int(os.environ.get("TRITIUM_PROP_EXAMPLES", "150"))


def check_round_trip(src: str) -> str:
    program, diagnostics, comments = parse(src)
    # warnings (a `//` comment that reads like floor division, W0900) are not parse errors
    diagnostics = [d for d in diagnostics if d.is_error]
    assert not diagnostics, f"the input itself does not parse: {diagnostics[0].message}\n{src}"
    out = format_source(src)
    program2, diagnostics2, comments2 = parse(out)
    diagnostics2 = [d for d in diagnostics2 if d.is_error]
    assert not diagnostics2, (f"formatted text does not parse: {diagnostics2[0].message} at "
                              f"{diagnostics2[0].span}\n--- input\n{src}\n--- output\n{out}")
    assert program2 == program, f"AST changed\n--- input\n{src}\n--- output\n{out}"
    again = format_source(out)
    assert again == out, f"not idempotent\n--- once\n{out}\n--- twice\n{again}"
    for c in comments:
        assert c.text.rstrip() in out, f"comment {c.text!r} lost\n--- output\n{out}"
    assert [c.text.rstrip() for c in comments2] == [c.text.rstrip() for c in comments], \
        f"comments reordered\n--- input\n{src}\n--- output\n{out}"
    assert out.endswith("\n") and not out.endswith("\n\n")
    return out


def test_examples_exist() -> None:
    assert EXAMPLES, "examples/*.tri is empty"
    assert DESIGN_SNIPPETS, "tests/property/data/*.tri is empty"


@pytest.mark.parametrize("path", EXAMPLES + DESIGN_SNIPPETS, ids=lambda p: p.name)
def test_files_round_trip(path: Path) -> None:
    check_round_trip(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", EXAMPLES + DESIGN_SNIPPETS, ids=lambda p: p.name)
def test_files_round_trip_from_squashed_layout(path: Path) -> None:
    """Reformatting the canonical text with different indentation gives it back."""
    canonical = check_round_trip(path.read_text(encoding="utf-8"))
    squashed = "\n".join(line.strip() for line in canonical.split("\n"))
    if "/*" in canonical:
        # Stripping lines changes the text of multi-line block comments; the code must not.
        assert parse(squashed)[0] == parse(canonical)[0]
        check_round_trip(squashed)
    else:
        assert format_source(squashed) == canonical


@settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.data_too_large])
@given(programs())
def test_generated_programs_round_trip(src: str) -> None:
    check_round_trip(src)
