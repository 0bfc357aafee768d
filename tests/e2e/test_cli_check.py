"""`tritium check` as a user runs it: exit codes, rendering, JSON, no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritium", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=60)


def test_clean_examples_exit_zero():
    files = sorted(str(p) for p in (ROOT / "examples").glob("*.tri"))
    r = run("check", *files)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(": ok") == len(files)


def test_errors_exit_one_with_rustc_style_rendering(tmp_path):
    f = tmp_path / "bad.tri"
    f.write_text("model M {\n    layer fc: TernaryLinear { in_features: 4, out_feature: 2 }\n"
                 "    forward(x: Tensor[b, 4]) -> Tensor { return fc(x) }\n}\n")
    r = run("check", str(f))
    assert r.returncode == 1
    assert f"{f}:2:47: error[E0301]: unknown config key `out_feature` for `TernaryLinear`" in r.stderr
    assert "2 |     layer fc: TernaryLinear" in r.stderr
    assert "^^^^^^^^^^^^^^" in r.stderr
    assert "= help: did you mean `out_features`?" in r.stderr
    assert "Traceback" not in r.stderr


def test_json_error_format(tmp_path):
    f = tmp_path / "bad.tri"
    f.write_text("fn f() -> int { let y: int32 = 3.14\n return y }\n")
    r = run("check", "--error-format", "json", str(f))
    assert r.returncode == 1
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert objs[0]["code"] == "E0402" and objs[0]["span"]["line"] == 1
    assert objs[0]["span"]["col"] == 32 and objs[0]["severity"] == "error"


def test_usage_errors_exit_two(tmp_path):
    r = run("check", str(tmp_path / "missing.tri"))
    assert r.returncode == 2 and "E0001" in r.stderr and "no such file" in r.stderr
    r = run("check", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr
    bad = tmp_path / "latin1.tri"
    bad.write_bytes(b"model M { # caf\xe9 }\n")
    r = run("check", str(bad))
    assert r.returncode == 2 and "not valid UTF-8" in r.stderr and "line 1, column 16" in r.stderr
    r = run("check")
    assert r.returncode == 2
    r = run("frobnicate")
    assert r.returncode == 2


def test_unreadable_file_exit_two(tmp_path):
    import os
    f = tmp_path / "secret.tri"
    f.write_text("fn f() -> int { return 1 }")
    f.chmod(0)
    try:
        if os.access(f, os.R_OK):  # running as root: permissions do not apply
            return
        r = run("check", str(f))
        assert r.returncode == 2 and "cannot read" in r.stderr
    finally:
        f.chmod(0o644)


def test_warnings_do_not_fail_unless_denied(tmp_path):
    f = tmp_path / "w.tri"
    f.write_text("fn f(x: Tensor[2]) -> Tensor[2] {\n    let unused = 1\n    return x\n}\n")
    r = run("check", str(f))
    assert r.returncode == 0 and "warning[W0001]" in r.stderr
    r = run("check", "-D", "warnings", str(f))
    assert r.returncode == 1


def test_help_shows_examples():
    r = run("check", "--help")
    assert r.returncode == 0 and "examples:" in r.stdout


def test_check_does_not_import_torch():
    code = ("import sys; from tritium.cli import main; "
            "rc = main(['check', '-q', 'examples/resnet18.tri']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
