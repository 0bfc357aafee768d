"""UI goldens: each tests/ui/*.tri has the diagnostics `tritium check` renders for it in a
`.stderr` file beside it (as rustc's tests/ui), compared byte for byte.

A file may name another command on its first line, `// ui-command: tritium compile %s
--emit ir`, for diagnostics of a later stage. The command runs in this directory on the
file's bare name, without colour. After changing a diagnostic on purpose, rewrite the
expected files and review the diff:

    TRITIUM_BLESS=1 .venv/bin/python -m pytest tests/ui
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from tritium.cli import main

HERE = Path(__file__).parent
FILES = sorted(HERE.glob("*.tri"))
BLESS = os.environ.get("TRITIUM_BLESS") == "1"


def command(path: Path) -> list[str]:
    first = path.read_text().split("\n", 1)[0]
    if first.startswith("// ui-command:"):
        words = shlex.split(first.removeprefix("// ui-command:"))
        assert words[:1] == ["tritium"], f"{path.name}: the ui-command runs `tritium`"
        return [path.name if w == "%s" else w for w in words[1:]]
    return ["check", path.name]


def render(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(command(path))
    return code, err.getvalue()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_ui(path: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(HERE)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    code, got = render(path)
    expected = path.with_suffix(".stderr")
    if BLESS:
        expected.write_text(got)
    assert expected.exists(), f"no {expected.name}: run with TRITIUM_BLESS=1 to write it"
    assert got == expected.read_text(), (
        f"{path.name}: the rendered diagnostics changed (TRITIUM_BLESS=1 rewrites "
        f"{expected.name} after review)\n--- got ---\n{got}")
    has_error = re.search(r": error\[", got) is not None
    assert (code != 0) == has_error, f"{path.name}: exit {code} with errors={has_error}"


def test_every_expected_file_has_its_program() -> None:
    for expected in HERE.glob("*.stderr"):
        assert expected.with_suffix(".tri").exists(), f"{expected.name} has no .tri"


def test_the_ui_goldens_cover_many_diagnostics() -> None:
    codes = set()
    for expected in HERE.glob("*.stderr"):
        codes |= set(re.findall(r": (?:error|warning)\[([EW]\d{4})\]", expected.read_text(),
                                re.M))
    assert len(codes) >= 15, sorted(codes)
