"""The one golden harness: every tests/golden/**/*.ir and *.tri file holds its own RUN lines.

A RUN line is a real shell command (`tritium` and `filecheck` on PATH run it as written):

    // RUN: tritium opt %s --split-input-file --passes canonicalize,dce | filecheck %s
    // RUN: not tritium opt %s --split-input-file -O0 2>&1 | filecheck %s
    // RUN: tritium compile %s --emit py | filecheck %s
    // RUN: tritium compile %s --target triton --emit triton | filecheck %s --check-prefix=K

`%s` is the file itself. The harness runs the `tritium` part in this process (the command
`tritium.cli.main`), with `not` expecting a failing exit code and `2>&1` adding stderr to the
output, and feeds the output to the `filecheck` tool with the flags the line gives. A file
holds many cases: `.ir` inputs are split at `// -----` lines by `--split-input-file` (as
MLIR's `-split-input-file`), and each case's checks start with a `CHECK-LABEL`. Generated
Python (`--emit py`, `--emit triton`) must also compile.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.cli import main

HERE = Path(__file__).parent
FILES = sorted([*HERE.rglob("*.ir"), *HERE.rglob("*.tri")])


def filecheck_exe() -> str:
    local = Path(sys.executable).parent / "filecheck"
    return str(local) if local.exists() else (shutil.which("filecheck") or "filecheck")


def run_lines(path: Path) -> list[str]:
    return [ln.removeprefix("// RUN:").strip() for ln in path.read_text().splitlines()
            if ln.startswith("// RUN:")]


def parse_run(line: str, path: Path) -> tuple[bool, list[str], bool, list[str]]:
    """(expect failure, tritium argv, stderr too, filecheck flags) of one RUN line."""
    command, bar, check = line.partition("|")
    assert bar, f"{path}: a RUN line pipes into filecheck: {line}"
    words = shlex.split(command)
    negate = words[:1] == ["not"]
    words = words[1:] if negate else words
    merge = words[-1:] == ["2>&1"]
    words = words[:-1] if merge else words
    assert words[:1] == ["tritium"], f"{path}: a RUN line runs `tritium`: {line}"
    checker = shlex.split(check)
    assert checker[:2] == ["filecheck", "%s"], f"{path}: pipe into `filecheck %s`: {line}"
    argv = [str(path) if w == "%s" else w for w in words[1:]]
    return negate, argv, merge, checker[2:]


def run_tritium(argv: list[str], merge: bool) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out if merge else err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


CASES = [pytest.param(path, k, id=f"{path.relative_to(HERE)}:{k}")
         for path in FILES for k in range(len(run_lines(path)))]


@pytest.mark.parametrize("path,k", CASES)
def test_golden(path: Path, k: int, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")
    line = run_lines(path)[k]
    negate, argv, merge, flags = parse_run(line, path)
    code, out, err = run_tritium(argv, merge)
    if negate:
        assert code != 0, f"{path}: `{line}` should fail\n{out}"
    else:
        assert code == 0, f"{path}: `{line}` exited {code}\n{err}"
    if "--emit" in argv and argv[argv.index("--emit") + 1] in ("py", "triton"):
        compile(out, str(path), "exec")
    res = subprocess.run([filecheck_exe(), *flags, str(path)], input=out, text=True,
                         capture_output=True)
    assert res.returncode == 0, f"FileCheck failed on:\n{out}\n{res.stdout}{res.stderr}"


def test_every_golden_file_has_a_run_line_and_labelled_cases() -> None:
    for path in FILES:
        text = path.read_text()
        assert run_lines(path), f"{path}: no RUN line"
        cases = re.split(r"(?m)^// -----[ \t]*$", text)
        if len(cases) > 1:
            assert all("--split-input-file" in ln for ln in run_lines(path)), path
            assert all(re.search(r"(?m)^// [A-Z]+-LABEL:", c) for c in cases), \
                f"{path}: every case of a split file starts its checks with a CHECK-LABEL"


def test_every_pass_and_level_has_goldens() -> None:
    """At least two cases per pass directory (a case: a part between `// -----` lines)."""
    counts: dict[str, int] = {}
    for path in FILES:
        counts[path.parent.name] = counts.get(path.parent.name, 0) + len(
            re.split(r"(?m)^// -----[ \t]*$", path.read_text()))
    for d in ("canonicalize", "constant-fold", "dce", "cse", "quant-dequant-elim", "bn-fold",
              "fuse", "shape-specialize", "pipeline", "verify", "codegen", "triton"):
        assert counts.get(d, 0) >= 2, (d, counts.get(d))
