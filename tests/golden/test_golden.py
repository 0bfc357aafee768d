"""FileCheck-style golden tests: every tests/golden/**/*.ir file.

The first line of each file is `// RUN: tritium-opt %s <flags>` with flags
    --pass=a,b{key=value}   run these passes in order (may be repeated)
    --pipeline=O2           run a pipeline (O0..O3)
    --expect-error          parsing or verification must fail; CHECK lines match the message
The printed IR (or the error message) is checked against the file's `// CHECK:` lines by
the `filecheck` tool.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.ir import ParseError, VerifyError
from tritium.passes import PassError, run_opt

HERE = Path(__file__).parent
FILES = sorted(HERE.rglob("*.ir"))


def filecheck_exe() -> str:
    local = Path(sys.executable).parent / "filecheck"
    return str(local) if local.exists() else (shutil.which("filecheck") or "filecheck")


def run_line(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    assert first.startswith("// RUN: tritium-opt %s"), f"{path}: first line must be a RUN line"
    return shlex.split(first.removeprefix("// RUN: tritium-opt %s"))


def produce(path: Path) -> str:
    passes: list[str] = []
    pipeline = None
    expect_error = False
    for flag in run_line(path):
        if flag.startswith("--pass="):
            passes.append(flag.removeprefix("--pass="))
        elif flag.startswith("--pipeline="):
            pipeline = flag.removeprefix("--pipeline=")
        elif flag == "--expect-error":
            expect_error = True
        else:
            raise AssertionError(f"{path}: unknown RUN flag {flag}")
    text = path.read_text()
    try:
        out = run_opt(text, ",".join(passes) if pipeline is None else None, pipeline)
    except (ParseError, VerifyError, PassError) as e:
        if expect_error:
            return f"error: {e}\n"
        raise
    assert not expect_error, f"{path}: expected an error, got:\n{out}"
    return out


def test_golden_files_exist() -> None:
    dirs = {p.parent.name for p in FILES}
    for d in ("canonicalize", "constant-fold", "dce", "cse", "quant-dequant-elim", "bn-fold",
              "fuse", "shape-specialize", "pipeline", "verify"):
        assert d in dirs
        assert len([p for p in FILES if p.parent.name == d]) >= 2, d


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(HERE)) for p in FILES])
def test_golden(path: Path) -> None:
    out = produce(path)
    res = subprocess.run([filecheck_exe(), str(path)], input=out, text=True, capture_output=True)
    assert res.returncode == 0, f"FileCheck failed on:\n{out}\n{res.stdout}{res.stderr}"
