"""FileCheck-style golden tests for the generated Triton source: tests/unit/triton/golden/*.tri.

The first line is `// RUN: tritium compile %s --target triton --emit triton [flags]`; the
command's output is checked against the file's `// CHECK:` lines with the `filecheck` tool
and must be valid Python.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.cli import main

HERE = Path(__file__).parent / "golden"
FILES = sorted(HERE.glob("*.tri"))
PREFIX = "// RUN: tritium compile %s --target triton --emit triton"


def _filecheck() -> str:
    local = Path(sys.executable).parent / "filecheck"
    return str(local) if local.exists() else (shutil.which("filecheck") or "filecheck")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_triton_golden(path: Path, capsys) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith(PREFIX), f"{path}: bad RUN line"
    argv = first.removeprefix("// RUN: tritium ").replace("%s", str(path)).split()
    assert main([*argv, "--no-cache"]) == 0
    out = capsys.readouterr().out
    compile(out, str(path), "exec")
    res = subprocess.run([_filecheck(), str(path)], input=out, text=True, capture_output=True)
    assert res.returncode == 0, f"FileCheck failed on:\n{out}\n{res.stdout}{res.stderr}"


def test_there_are_triton_goldens() -> None:
    assert len(FILES) >= 2
