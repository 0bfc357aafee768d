"""The seed's declaration and list forms (issue 13, `decl`) end to end: a declaration used
before any assignment (E0840, never a default value), tensors constructed by their type (zeros), spread and rest, `shuffle`, a list used as a
tensor, `Result`/`Ok`/`Err`/`panic`. Programs check, compile to PyTorch, load and run, agree
with a PyTorch reference, and (where the IR can express them) with the IR interpreter; the
example programs of examples/seed/decl_*.tri run with `tritium run`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tritium.check import check_source
from tritium.cli import main as cli
from tritium.driver import compile_program
from tritium.runtime.decl_ops import shuffle

sys.path.insert(0, str(Path(__file__).parent))  # the shared helpers (any import mode)
from programs import checked, ir_output  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def write(tmp_path: Path, text: str, name: str = "prog.tri") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def run_main(tmp_path: Path, src: str, capsys) -> list[str]:
    result = compile_program(write(tmp_path, src))
    capsys.readouterr()
    result.module.main()
    return capsys.readouterr().out.splitlines()


def agree_with_ir(src: str, path: str, model, inputs: list[torch.Tensor]) -> None:
    model.eval()
    with torch.no_grad():
        ref = model(*inputs).numpy()
    got = ir_output(checked(src, Path(path)), model, inputs)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- declared without a value

def test_a_declaration_is_assigned_before_it_runs(tmp_path, capsys) -> None:
    src = ("let a: Tensor<float32, [3, 1]>\n"
           "let b: Tensor<float32, [1, 4]>\n"
           "a = Tensor<float32, [3, 1]>()\n"
           "b = ones([1, 4])\n"
           "let c = a + b\n"
           "let i: int8\n"
           "i = 2\n"
           "print(c.shape, c.sum(), i)\n")
    out = run_main(tmp_path, src, capsys)
    assert out == [f"{[3, 4]} {torch.tensor(12.0)!s} 2"]


def test_a_declaration_in_a_forward_agrees_with_the_ir(tmp_path) -> None:
    src = ("model M {\n"
           "    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {\n"
           "        let z: Tensor<float32, [2, 4]>\n"
           "        let k: float\n"
           "        z = Tensor<float32, [2, 4]>()\n"
           "        k = 0.0\n"
           "        return x + z[0] + k + Tensor<float32, [4]>()\n"
           "    }\n"
           "}\n")
    path = write(tmp_path, src)
    model = compile_program(path).module.M()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), x)
    agree_with_ir(src, path, model, [x])


def test_run_refuses_a_use_before_any_assignment(tmp_path, capsys) -> None:
    path = write(tmp_path, "let a: Tensor<float32, [2, 2]>\nprint(a.sum())\n")
    assert cli(["run", path]) == 1
    cap = capsys.readouterr()
    assert "E0840" in cap.err and "`a` is used before it is assigned" in cap.err
    assert "W1030" not in cap.err and "Traceback" not in cap.err and cap.out == ""


def test_the_neg_programs_fail_for_their_real_reason(tmp_path, capsys) -> None:
    shape = write(tmp_path, "let a: Tensor<float32, [128, 256]>\nlet d: Tensor<float32, [128, 100]>\n"
                            "let e = a @ d\n", "shape.tri")
    assert cli(["check", shape]) == 1
    err = capsys.readouterr().err
    assert "E0502" in err and "E0840" in err and "Traceback" not in err
    tern = write(tmp_path, "let w: TernaryTensor<trit, [10]> = Tensor<float32, [10]>\n", "t.tri")
    assert cli(["check", tern]) == 1
    err = capsys.readouterr().err
    assert "E1031" in err and "Traceback" not in err


def test_a_constructed_tensor_by_its_type(tmp_path, capsys) -> None:
    src = ("fn scale<S>(t: Tensor<float32, S>) -> Tensor<float32, S> where S: Shape {\n"
           "    return t * 2.0 + 1.0\n"
           "}\n"
           "let n = 3\n"
           "let z = scale(Tensor<float32, [2, n]>())\n"
           "let c = Tensor<int32, [4]>()\n"
           "let t = TernaryTensor<trit, [2]>()\n"
           "print(z)\n"
           "print(c.dtype, t.dtype, c)\n")
    out = run_main(tmp_path, src, capsys)
    assert "\n".join(out) == (f"{torch.ones(2, 3)}\n"
                              f"torch.int32 torch.int8 {torch.zeros(4, dtype=torch.int32)}")


# ----------------------------------------------------------------------------- lists

def test_joined_lists_shuffle_and_a_list_as_a_tensor(tmp_path, capsys) -> None:
    src = ("fn balanced(shape: [int, int]) -> TernaryTensor<trit, [?, ?]> {\n"
           "    let total = shape[0] * shape[1]\n"
           "    let per_value = total / 3\n"
           "    let values = [trit(-1)] * per_value + [trit(0)] * per_value + [trit(1)] * per_value\n"
           "    return shuffle(values).reshape(shape)\n"
           "}\n"
           "let numbers = [1, 2, 3, 4, 5]\n"
           "let [a, b] = numbers[:2]\n"
           "print(a, b, numbers[1:] + [a, b])\n"
           "print(balanced([3, 4]))\n")
    out = run_main(tmp_path, src, capsys)
    assert out[0] == "1 2 [2, 3, 4, 5, 1, 2]"
    values = [-1] * 4 + [0] * 4 + [1] * 4
    want = torch.tensor(shuffle(values, 0), dtype=torch.float32).reshape(3, 4)
    assert "\n".join(out[1:]) == str(want)


@pytest.mark.parametrize("line, message", [
    ("let ys = [...xs, 4]", "spread (`...xs`) has no meaning in .tri"),
    ("let [first, ...rest] = xs", "a rest pattern (`...rest`) has no meaning in .tri"),
    ("let (h, ...mid, last) = xs", "a rest pattern (`...rest`) has no meaning in .tri"),
    ("print(len(...xs))", "spread (`...xs`) has no meaning in .tri"),
])
def test_spread_and_rest_are_refused_by_check_and_run(tmp_path, capsys, line, message) -> None:
    path = write(tmp_path, f"let xs = [1, 2, 3]\n{line}\nlet bad: int = \"s\"\n")
    for cmd in ("check", "run"):
        assert cli([cmd, path]) == 1
        err = capsys.readouterr().err
        assert err.count("E0900") == 1 and message in err, err
        assert "E0401" in err and "Traceback" not in err   # checking went on


# ----------------------------------------------------------------------------- Result, panic

def test_result_ok_err_and_panic(tmp_path, capsys) -> None:
    src = ("fn checked(x: Tensor<float32, [?, ?]>, k: float) -> Result<Tensor<float32, [?, ?]>, Error> {\n"
           "    if k <= 0.0 {\n"
           "        return Err(\"the scale must be positive\")\n"
           "    }\n"
           "    return Ok(x * k)\n"
           "}\n"
           "let y = checked(ones([1, 2]), 2.0)\n"
           "print(y)\n"
           "let z = checked(y, -1.0)\n"
           "print(\"not reached\")\n")
    path = write(tmp_path, src)
    assert cli(["check", path]) == 0
    capsys.readouterr()
    assert cli(["run", path]) == 1
    cap = capsys.readouterr()
    assert cap.out.strip() == str(torch.full((1, 2), 2.0))
    assert "the scale must be positive" in cap.err and "E0806" in cap.err
    assert "Traceback" not in cap.err and ":9:" in cap.err


def test_undefined_functions_stay_the_reason_of_failure(tmp_path, capsys) -> None:
    src = ("fn process(x: Tensor<float32, [?, ?]>) -> Tensor<float32, [?, ?]> {\n"
           "    if x.shape[1] != 784 {\n"
           "        panic(\"Invalid input dimension\")\n"
           "    }\n"
           "    return transform(x)\n"
           "}\n")
    r = check_source(src)
    assert [(d.code, d.span.line) for d in r.errors] == [("E0305", 5)]
    assert "transform" in r.errors[0].message


@pytest.mark.parametrize("name", ["decl_placeholders", "decl_lists", "decl_result"])
def test_the_examples_run(name, capsys) -> None:
    assert cli(["run", str(ROOT / "examples" / "seed" / f"{name}.tri")]) == 0
    assert "Traceback" not in capsys.readouterr().err
