"""`tritium opt` (passes on textual IR) and the staged `tritium compile` as a user runs them:
real commands, real exit codes, diagnostics with codes, no torch import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp.tri"

IR = """func @f(%x: tensor<[4], f32>) -> (tensor<[4], f32>) {
  %0 = constant() {value = -0.0} : () -> f32
  %1 = add(%x, %0) : (tensor<[4], f32>, f32) -> tensor<[4], f32>
  %2 = exp(%x) : (tensor<[4], f32>) -> tensor<[4], f32>
  return(%1) : (tensor<[4], f32>) -> ()
}
"""
BROKEN = """func @g(%x: tensor<[4], f32>) -> (tensor<[4], f32>) {
  return(%y) : (tensor<[4], f32>) -> ()
}
"""


def run(*args: str, cwd: Path | None = None, env_dir: Path | None = None
        ) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    if env_dir is not None:
        env["TRITIUM_CACHE_DIR"] = str(env_dir)
    return subprocess.run([sys.executable, "-m", "tritium", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=120, env=env)


def test_opt_runs_passes_and_pipelines(tmp_path):
    f = tmp_path / "f.ir"
    f.write_text(IR)
    r = run("opt", str(f))                                      # parse + verify only
    assert r.returncode == 0 and "exp(%x)" in r.stdout and "add(%x, %0)" in r.stdout
    r = run("opt", str(f), "--passes", "canonicalize,dce")
    assert r.returncode == 0, r.stderr
    assert "exp(" not in r.stdout and "add(" not in r.stdout and "return(%x)" in r.stdout
    r = run("opt", str(f), "-O1")
    assert r.returncode == 0 and "return(%x)" in r.stdout
    r = run("opt", str(f), "--pipeline", "O3{n=2}", "-o", str(tmp_path / "out.ir"))
    assert r.returncode == 0 and r.stdout == ""
    assert "return(%x)" in (tmp_path / "out.ir").read_text()


def test_opt_split_input_file_reports_errors_at_file_lines(tmp_path):
    f = tmp_path / "cases.ir"
    f.write_text(IR + "// -----\n" + BROKEN)
    r = run("opt", str(f), "--split-input-file", "--passes", "dce")
    assert r.returncode == 1
    assert "// -----" in r.stdout and "func @f" in r.stdout        # the good case still runs
    first_line_of_g = IR.count("\n") + 2
    assert f"{f}:{first_line_of_g + 1}:10: error: use of undefined value %y" in r.stderr
    r = run("opt", str(f), "--passes", "dce")                       # unsplit: one input
    assert r.returncode == 1 and "error:" in r.stderr and r.stdout == ""


def test_opt_usage_errors_exit_2(tmp_path):
    f = tmp_path / "f.ir"
    f.write_text(IR)
    for args in (["--passes", "no-such-pass"], ["--passes", "dce", "-O2"],
                 ["--pipeline", "O9"], ["--passes", ""]):
        r = run("opt", str(f), *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("tritium: error:") and "Traceback" not in r.stderr
    r = run("opt", str(tmp_path / "missing.ir"))
    assert r.returncode == 2 and "E0001" in r.stderr


def test_opt_reads_what_compile_emits(tmp_path):
    ir = tmp_path / "mlp.ir"
    r = run("compile", str(MLP), "--emit", "ir", "-o", str(ir), env_dir=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    r = run("opt", str(ir), "-O2")
    want = run("compile", str(MLP), "--emit", "ir-opt", "-O2", env_dir=tmp_path / "c")
    assert r.returncode == 0 and r.stdout == want.stdout


def test_optimization_levels_say_they_do_not_change_the_pytorch_source(tmp_path):
    o0 = run("compile", str(MLP), "-O0", "--no-cache")
    o3 = run("compile", str(MLP), "-O3", "--no-cache")
    plain = run("compile", str(MLP), "--no-cache")
    assert o0.returncode == o3.returncode == plain.returncode == 0
    assert o0.stdout == o3.stdout == plain.stdout
    assert "note: -O3 does not change `--emit py`" in o3.stderr
    assert "note:" not in plain.stderr
    ir = run("compile", str(MLP), "-O3", "--emit", "ir-opt", "--no-cache")
    assert ir.returncode == 0 and "note:" not in ir.stderr


def test_a_lowering_failure_has_a_code_and_a_snippet(tmp_path):
    f = tmp_path / "loop.tri"
    f.write_text("layer L {\n    fn forward(x: Tensor[n, 4]) -> Tensor[n, 4] {\n"
                 "        let y = x\n        for i in range(5000) { y = y + x }\n"
                 "        return y\n    }\n}\n")
    r = run("compile", str(f), "--no-cache")
    assert r.returncode == 0 and "class L(" in r.stdout
    r = run("compile", str(f), "--emit", "ir", "--no-cache")
    assert r.returncode == 1
    assert f"{f}:4:9: error[E0701]: cannot lower to IR: a loop of 5000 iterations" in r.stderr
    assert "4 |         for i in range(5000)" in r.stderr
    r = run("compile", str(f), "--emit", "ir", "--no-cache", "--error-format", "json")
    assert r.returncode == 1 and '"code": "E0701"' in r.stdout


def test_annotate_is_refused_clearly_where_it_cannot_apply(tmp_path):
    r = run("compile", str(MLP), "--annotate", "--emit", "ir")
    assert r.returncode == 2 and "--annotate applies to the generated PyTorch source" in r.stderr
    from tritium.driver.stages import codegen_annotates
    r = run("compile", str(MLP), "--annotate", "--no-cache")
    if codegen_annotates():
        assert r.returncode == 0 and "class DigitsMLP" in r.stdout
    else:
        assert r.returncode == 2 and "--annotate needs" in r.stderr


def test_compile_and_opt_do_not_import_torch(tmp_path):
    code = ("import sys\nfrom tritium.cli import main\n"
            f"assert main(['compile', {str(MLP)!r}, '--emit', 'ir-opt', '--no-cache', "
            f"'-o', {str(tmp_path / 'm.ir')!r}]) == 0\n"
            f"assert main(['opt', {str(tmp_path / 'm.ir')!r}, '-O3', '-o', "
            f"{str(tmp_path / 'o.ir')!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
