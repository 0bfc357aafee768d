"""FileCheck-style golden tests for generated PyTorch code: tests/golden/codegen/*.tri.

The first line is `// RUN: tritium compile %s --emit py`; the generated source is checked
against the file's `// CHECK:` lines with the `filecheck` tool, and must also be valid
Python that defines the classes it lists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.driver import compile_program

HERE = Path(__file__).parent / "codegen"
FILES = sorted(HERE.glob("*.tri"))


def filecheck_exe() -> str:
    local = Path(sys.executable).parent / "filecheck"
    return str(local) if local.exists() else (shutil.which("filecheck") or "filecheck")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_codegen_golden(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == "// RUN: tritium compile %s --emit py", f"{path}: bad RUN line"
    out = compile_program(path, use_cache=False, with_ir=False).python
    compile(out, str(path), "exec")
    res = subprocess.run([filecheck_exe(), str(path)], input=out, text=True, capture_output=True)
    assert res.returncode == 0, f"FileCheck failed on:\n{out}\n{res.stdout}{res.stderr}"


def test_there_are_codegen_goldens() -> None:
    assert len(FILES) >= 4
