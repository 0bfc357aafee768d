"""Statement-list programs end to end: the entry compiles to a function of the generated
module that importing never runs, `tritium run` executes it (print to stdout, clear errors,
no torch for a program with errors), f-strings are generated safely, and a model next to
the statements still lowers and agrees with the IR interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import UnsafeSourceError, validate
from tritium.check import check_source
from tritium.cli import main as cli
from tritium.driver import compile_program
from tritium.ir import interpret
from tritium.ir.lowering import lower

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def write(tmp_path: Path, text: str, name: str = "prog.tri") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


SCRIPT = """\
let x: trit = 1
let w: TernaryTensor = TernaryTensor[2, 2](1, 0, -1, 1)
let v = Tensor[1, 2](0.5, 2.0)
let y = ternary_matmul(v, w)
fn twice(a: int) -> int {
    return a * 2
}
z = twice(21)
print(f"z={z:>4} x={x}")
print(y)
main {
    for i in 0..2 {
        print(f"step {i}: {y.sum():.3f}")
    }
}
"""


def test_the_entry_is_a_function_that_importing_does_not_run(tmp_path, capsys) -> None:
    result = compile_program(write(tmp_path, SCRIPT))
    assert "\ndef main():\n" in result.python
    module = result.module
    assert capsys.readouterr().out == ""
    module.main()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "z=  42 x=1"
    # y = v @ wᵀ = [0.5*1 + 2*0, 0.5*-1 + 2*1]
    assert out[1] == str(torch.tensor([[0.5, 1.5]]))
    assert out[2:] == ["step 0: 2.000", "step 1: 2.000"]


def test_tritium_run_prints_to_stdout(tmp_path, capsys) -> None:
    assert cli(["run", write(tmp_path, SCRIPT)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "z=  42 x=1" and out[-1] == "step 1: 2.000"


def test_a_program_without_statements_is_a_clear_error(tmp_path, capsys) -> None:
    src = ("model M {\n  layer fc: TernaryLinear { in_features: 2, out_features: 2 }\n"
           "  forward(x: Tensor[b, 2]) -> Tensor[b, 2] { return fc(x) }\n}\n")
    assert cli(["run", write(tmp_path, src)]) == 1
    err = capsys.readouterr().err
    assert "E0805" in err and "no statements to run" in err and "Traceback" not in err


def test_fn_main_is_the_entry_of_a_program_without_statements(tmp_path, capsys) -> None:
    assert cli(["run", write(tmp_path, 'fn main() {\n  print("hello")\n}\n')]) == 0
    assert capsys.readouterr().out == "hello\n"
    assert cli(["run", write(tmp_path, "fn main(n: int) {\n  print(n)\n}\n")]) == 1
    assert "E0805" in capsys.readouterr().err


def test_statements_next_to_a_fn_main_run_as_the_generated__main(tmp_path, capsys) -> None:
    src = 'fn main() {\n  print("in main")\n}\nprint("before")\nmain()\n'
    result = compile_program(write(tmp_path, src))
    assert "\ndef _main():\n" in result.python and "\ndef main():\n" in result.python
    assert cli(["run", write(tmp_path, src)]) == 0
    assert capsys.readouterr().out == "before\nin main\n"


def test_a_failure_while_running_names_the_tri_line(tmp_path, capsys) -> None:
    src = ("fn pick(xs: Tensor, i: int) -> Tensor {\n    return xs[i]\n}\n"
           "print(\"start\")\nlet v = zeros([2])\nprint(pick(v, 5))\n")
    assert cli(["run", write(tmp_path, src)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "start\n"
    assert "E0806" in captured.err and ":6:1" in captured.err
    assert "IndexError" in captured.err and "Traceback" not in captured.err


def test_check_errors_stop_run_before_torch_is_imported(tmp_path) -> None:
    bad = write(tmp_path, "print(undefined_name)\n")
    code = ("import sys\nfrom tritium.cli import main\nrc = main(['run', sys.argv[1]])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nsys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", code, bad], capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin",
                            "TRITIUM_CACHE_DIR": str(tmp_path / "c")}, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "E0304" in p.stderr and "Traceback" not in p.stderr


def test_run_usage_errors_exit_2(tmp_path, capsys) -> None:
    assert cli(["run", str(tmp_path / "missing.tri")]) == 2


# ----------------------------------------------------------------------------- f-strings

def test_fstring_text_cannot_escape_its_literal(tmp_path, capsys) -> None:
    hostile = r'let a = 1\nprint(f"\"); import os; (\" {{a}} \\ {a!r} \u{2028} {a:>3}")' + "\n"
    result = check_source(hostile.replace("\\n", "\n", 1))
    assert result.ok, result.diagnostics
    python = generate(result)
    validate(python)
    assert "import os" not in python.split('"""')[-1].split("f\"")[0]
    ns: dict = {}
    exec(compile(python, "<gen>", "exec"), ns)
    ns["main"]()
    assert capsys.readouterr().out == '"); import os; (" {a} \\ 1 \u2028   1\n'


def test_fields_holding_quotes_or_backslashes_become_a_concatenation(capsys) -> None:
    result = check_source('let s = "a\\nb"\nprint(f"[{s + "\\"q\\""}] [{s!r:>8}] {2:03d}")\n')
    assert result.ok, result.diagnostics
    python = generate(result)
    validate(python)
    ns: dict = {}
    exec(compile(python, "<gen>", "exec"), ns)
    ns["main"]()
    assert capsys.readouterr().out == "[a\nb\"q\"] [  'a\\nb'] 002\n"


@pytest.mark.parametrize("src", [
    'def main():\n    print(f"{1:{2}}")\n',
    'def main():\n    print(f"{1:x{2}}")\n',
    'def main():\n    print(f"{1:\'}")\n',
    'def main():\n    print(f"{open(1)}")\n',
])
def test_the_validator_refuses_fields_the_generator_never_writes(src: str) -> None:
    head = '"""x"""\n\nfrom __future__ import annotations\n\n\n'
    with pytest.raises(UnsafeSourceError):
        validate(head + src)
    validate(head + 'def main():\n    print(f"{(1):>3} {(2)!r}")\n')


# ----------------------------------------------------------------------------- with a model

MODEL_AND_SCRIPT = """\
model Tiny {
    layer fc: TernaryLinear { in_features: 4, out_features: 3 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 3] {
        return fc(x)
    }
}
let a = Tensor[2, 4](1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0)
let w = TernaryTensor[3, 4](1, 0, -1, 1, 0, 1, 1, -1, -1, -1, 0, 0)
print(f"{ternary_matmul(a, w).sum():.4f}")
"""


def test_a_model_beside_statements_lowers_and_matches_the_interpreter(tmp_path, capsys):
    result = check_source(MODEL_AND_SCRIPT)
    assert result.ok, result.diagnostics
    compiled = compile_program(write(tmp_path, MODEL_AND_SCRIPT))
    model = compiled.classes["Tiny"]()
    model.eval()
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    lowered = lower(result)
    state = model.state_dict()
    got = interpret(lowered.module, lowered.entry, [x.numpy()],
                    params={n: state[n].numpy() for n in lowered.params})
    got = got[0] if isinstance(got, list | tuple) else got
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref.double().numpy(),
                               rtol=1e-4, atol=1e-4)
    # the statements compute what numpy computes from the same literals
    compiled.module.main()
    a = np.array([[1, 2, 3, 4], [-1, 0.5, 0, 2]])
    w = np.array([[1, 0, -1, 1], [0, 1, 1, -1], [-1, -1, 0, 0]])
    assert capsys.readouterr().out == f"{(a @ w.T).sum():.4f}\n"


def test_training_dependent_builtins_run_as_inference_outside_a_module(tmp_path, capsys):
    # templates that read `self.training` have no `self` in a `fn` or in the entry
    src = ("fn tern(t: Tensor) -> Tensor {\n    return quantize_ternary(t)\n}\n"
           "let w = Tensor[4](0.9, -0.05, 0.4, -1.2)\n"
           "print(tern(w))\nprint(quantize_ternary(w * 2.0))\n")
    python = compile_program(write(tmp_path, src)).python
    assert "self" not in python
    assert cli(["run", write(tmp_path, src)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("tensor([") for line in lines)


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "seed").glob("stmts_*.tri")),
                         ids=lambda p: p.name)
def test_seed_statement_programs_check_and_run(path, capsys) -> None:
    assert check_source(path.read_text(), str(path)).ok
    assert cli(["run", str(path)]) == 0
    assert capsys.readouterr().out.strip()


def test_print_takes_sep_and_end_by_name_and_nothing_else(tmp_path, capsys) -> None:
    src = 'print("a", 2, sep="-", end="!\\n")\nprint()\nprint(f"{3:>2}", end="")\n'
    assert cli(["run", write(tmp_path, src)]) == 0
    assert capsys.readouterr().out == "a-2!\n\n 3"
    assert [d.code for d in check_source("print(1, flush=true)\n").errors] == ["E0307"]
    assert [d.code for d in check_source("print(1, sep=2)\n").errors] == ["E0404"]


def test_a_function_held_in_a_list_or_dict_is_called(tmp_path, capsys) -> None:
    """What checks compiles: a call whose callee is an expression (not a name) calls what it
    evaluates to (found by `make fuzz`: `Err("e")()` checked, then failed to generate)."""
    src = ("fn inc(x: int) -> int {\n    return x + 1\n}\n"
           "fn twice(x: int) -> int {\n    return 2 * x\n}\n"
           "let fs = [inc, twice]\nlet d = {\"t\": twice}\n"
           "print(fs[0](2), fs[1](x=5), d[\"t\"](4))\n")
    assert cli(["run", write(tmp_path, src)]) == 0
    assert capsys.readouterr().out == "3 10 8\n"
    assert cli(["run", write(tmp_path, 'Err("stopped here")()\n', "err.tri")]) == 1
    err = capsys.readouterr().err
    assert "ProgramError: stopped here" in err and "err.tri:1:1" in err


PARENTHESIZED_COMPARISONS = """\
fn same_order(a: int, b: int, c: int) -> bool {
    return (a < b) == (b < c)
}
print((1 < 2) == true)
print(same_order(3, 2, 1), same_order(1, 2, 1))
print((1 == 1) != (2 == 3), 1 < 2 < 3, (3 > 2) > 0)
print((-2) ** 2, -2 ** 2, 2 ** 3 ** 2, (2 ** 3) ** 2, 1 - (2 - 3))
"""


def test_parenthesized_comparisons_do_not_become_python_chains(tmp_path, capsys) -> None:
    # Python reads `a < b == c` as `a < b and b == c`: a comparison that the program
    # compares must keep its parentheses in the generated code, or the program prints False
    # for `(1 < 2) == true`
    assert cli(["run", write(tmp_path, PARENTHESIZED_COMPARISONS)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "True", "True False", "True True True", "4 -4 512 64 2"]



POSTFIX_OF_OPERATORS = """\
let a = ones([2, 2])
let b = tensor([[1.0, 2.0], [3.0, 4.0]])
let w = tensor([[0.0, 1.0], [1.0, 0.0]])
print((a + b)[0])
print((a - b).shape)
print((a @ w).T)
print((a * 2.0).sum(), (-b).abs().sum())
print((a if false else b)[1])
"""


def test_an_operator_expression_stays_whole_under_index_attribute_and_method(
        tmp_path, capsys) -> None:
    # `(a + b)[0]` was generated as `a + b[0]` (and `(a - b).shape` as `a - b.shape`)
    assert cli(["run", write(tmp_path, POSTFIX_OF_OPERATORS)]) == 0
    a, b = torch.ones(2, 2), torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    w = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    want = [str((a + b)[0]), "[2, 2]", str((a @ w).T),
            f"{(a * 2.0).sum()!s} {(-b).abs().sum()!s}", str(b[1])]
    assert capsys.readouterr().out.splitlines() == "\n".join(want).splitlines()


CLOSURE_DEFAULTS = """\
let scale = 3
fn mul(x: int, k: int = 2, j: int = 1) -> int { return x * k * j * scale }
fn apply(f: fn(int) -> int, v: int) -> int { return f(v) }
fn apply2(f: fn(int, int) -> int, v: int) -> int { return f(v, 5) }
fn outer(base: int) -> int {
    fn inner(x: int, k: int = 10) -> int { return x * k + base }
    return apply(inner, 1) + apply2(inner, 1) + inner(2)
}
print(mul(1), apply(mul, 1), apply2(mul, 1))
print(outer(100))
"""


def test_a_function_with_defaults_that_reads_outer_names_works_as_a_value(
        tmp_path, capsys) -> None:
    # passed as a value (trt.closure), a call that left a default out was a TypeError: the
    # generated def has no default before the values it reads from around it
    assert cli(["run", write(tmp_path, CLOSURE_DEFAULTS)]) == 0
    assert capsys.readouterr().out.splitlines() == ["6 6 15", "335"]
