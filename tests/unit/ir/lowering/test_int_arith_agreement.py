"""The checker's type, the IR's type and value, and the generated PyTorch module's dtype and
value agree on integer and trit arithmetic (each case a disagreement differential testing
found: the IR typed `trit @ trit` i32 where the module computes on floats, the checker typed
`sum(int32(x))` int32 where torch sums to int64, `clip(trit(x), …)` was float32, trit or
int8 depending on who was asked)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from lowering_helpers import checked  # noqa: E402

import tritium  # noqa: E402
from tritium import vocab  # noqa: E402
from tritium.check import check_source  # noqa: E402
from tritium.check.checker import Checker  # noqa: E402
from tritium.check.summary import pick_definition  # noqa: E402
from tritium.check.types import TensorT  # noqa: E402
from tritium.ir import interpret  # noqa: E402
from tritium.ir.interpreter import InterpretError  # noqa: E402
from tritium.ir.lowering import LoweringError, lower  # noqa: E402

X = np.array([[0.7, -0.2, 3.4], [-1.5, 0.9, -4.6]], np.float32)


def _checker_dtype(result) -> str | None:
    d = pick_definition(result, None)
    ck = Checker(result.definitions, [])
    ck.call_forms = dict(result.call_forms)   # what the whole file's check recorded
    scope, layers = ck.definition_env(d.node, {}, abstract=False)
    ty = ck.check_function(ck.forward_of(d.node), scope, layers, form_b=False).ty
    return ty.dtype if isinstance(ty, TensorT) else None


def agree(tmp_path: Path, body: str, x: np.ndarray = X, shape: str = "2, 3") -> np.ndarray:
    """Check, lower and interpret, and compile and run, `forward(x) { body }`; assert the
    three dtypes are one and the two values equal; the value."""
    return _agree_source(tmp_path, f"model M {{\n    forward(x: Tensor<float32, [{shape}]>) "
                                   f"-> Tensor {{ {body} }}\n}}\n", x)


def _agree_source(tmp_path: Path, src: str, x: np.ndarray = X) -> np.ndarray:
    path = tmp_path / "m.tri"
    path.write_text(src)
    result = checked(src)
    low = lower(result)
    ir_dtype = low.module.function(low.entry).result_types[0].dtype
    model = tritium.load(path).eval()
    state = model.state_dict()
    got = np.asarray(interpret(low.module, low.entry, [x],
                               {n: state[n].numpy() for n in low.params})[0])
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    # in torch's terms (trits are int8 there)
    torch_of = [vocab.DTYPES[d].torch for d in (_checker_dtype(result), vocab.IR_TO_LANG[ir_dtype])]
    assert torch_of == [str(ref.dtype).removeprefix("torch.")] * 2
    tol = 2e-3 if ref.dtype == torch.float16 else 1e-6   # float16: rounded once or twice
    np.testing.assert_allclose(got, ref.numpy(), rtol=tol, atol=tol)
    return got


@pytest.mark.parametrize("body", [
    "return trit(x) @ transpose(trit(x))",           # IR: i32; checker, module: float32
    "return int32(x) @ transpose(int32(x))",
    "return matmul(int64(x), transpose(int8(x)))",
])
def test_an_integer_or_trit_matmul_is_a_float(tmp_path, body):
    agree(tmp_path, body)


@pytest.mark.parametrize("body", [
    "return float16(x) @ transpose(float16(x))",    # the checker said float32
    "return matmul(cast(x, \"float64\"), transpose(cast(x, \"float64\")))",
    "return trit(x) @ transpose(cast(x, \"float64\"))",
    "return int32(x) @ transpose(float16(x))",
])
def test_a_float_matmul_keeps_its_dtype(tmp_path, body):
    agree(tmp_path, body)


@pytest.mark.parametrize("body", ["x @ transpose(float16(x))",
                                  "matmul(cast(x, \"float64\"), transpose(x))"])
def test_a_matmul_of_two_float_dtypes_is_a_check_error(body):
    # torch: 'expected m1 and m2 to have the same dtype, but got: float != double'
    result = check_source("model M {\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
                          f"{{ return {body} }}\n}}\n", "p.tri")
    assert [d.code for d in result.errors] == ["E0405"]
    assert "cast(" in result.errors[0].help


@pytest.mark.parametrize("body", [
    "return clip(trit(x), -1, 1)",                   # checker: float32; IR: trit; torch: int8
    "return clip(trit(x), min=0.5)",                 # IR's trit held 0, torch's float32 0.5
    "return clamp(trit(x), -3, -2)",                 # not trits any more
])
def test_a_clipped_trit_tensor_is_float32(tmp_path, body):
    # clipped as floats, whether the trits are held as int8 (`trit(x)`) or as a caller's
    # floats (a TernaryTensor argument: tests/e2e/test_corpus_forms_e2e.py)
    got = agree(tmp_path, body)
    assert got.dtype == np.float32


@pytest.mark.parametrize("body", [
    "return sum(int32(x))", "return sum(int8(x), dim=1)", "return sum(trit(x))",
    "return sum(x > 0)", "return amax(int32(x))",    # a max keeps the dtype
])
def test_an_integer_sum_is_int64(tmp_path, body):
    agree(tmp_path, body)


@pytest.mark.parametrize("body", [
    "return int32(x) % 2",                           # failed to lower ('only supported on
    "return int32(x) % -3",                          # values known when lowering')
    "return 7 % int32(x + 10)", "return int64(x) % int32(x + 10)",
    "return x % -1.5", "return int32(x) % 2.5",
])
def test_modulo_of_tensors_lowers_with_the_divisors_sign(tmp_path, body):
    got = agree(tmp_path, body)
    if "-3" in body:
        np.testing.assert_array_equal(got, [[0, 0, 0], [-1, 0, -1]])   # of [[0, 0, 3], [-1, 0, -4]]


def test_modulo_of_a_run_time_size(tmp_path):
    agree(tmp_path, "return x * (x.shape[0] % 3)", shape="b, 3")   # b = 2: x * 2


def test_an_integer_tensor_to_a_negative_integer_power_is_a_check_error():
    # torch raises 'Integers to negative integer powers are not allowed' (and the IR
    # interpreter raised numpy's twin of it): the checker says so first, with the way out
    result = check_source("model M {\n    forward(x: Tensor<int32, [4]>) -> Tensor "
                          "{ return x ** -1 }\n}\n", "p.tri")
    assert [d.code for d in result.errors] == ["E0405"]
    assert "float32(x) ** -1" in result.errors[0].help


def test_an_integer_tensor_to_a_negative_power_known_only_when_lowering():
    src = ("fn p(x: Tensor<int32, [4]>, k: int) -> Tensor { return x ** k }\nmodel M {\n"
           "    forward(x: Tensor<int32, [4]>) -> Tensor { return p(x, x.shape[0] - 5) }\n}\n")
    with pytest.raises(LoweringError, match=r"an integer tensor \(int32\) to a negative "
                                            r"integer power \(-1\)"):
        lower(checked(src))


@pytest.mark.parametrize("body", [
    "return 2 ** (x - 5)",                           # the IR raised, torch gives 0
    "return int32(x) ** int32(x + 2)",
    "return int32(x) ** 2", "return 3 ** int8(x + 5)",
])
def test_integer_tensor_powers_are_torchs(tmp_path, body):
    agree(tmp_path, body.replace("(x", "(int32(x)") if body.startswith("return 2") else body)


@pytest.mark.parametrize("body, shape", [
    # (an exponent the check cannot know is taken non-negative: `x.shape[0] ** (x.shape[0]
    # - 3)` of b = 2 is Python's 0.5 in the module, the IR's integer power 0)
    ("return int32(x) * x.shape[0] ** (x.shape[0] - 1)", "b, 3"),
    ("return x * x.shape[1] ** -1", "2, c"),
    ("return int32(x) * x.shape[0] ** x.shape[1]", "b, c"),
])
def test_a_power_of_sizes_agrees(tmp_path, body, shape):
    agree(tmp_path, body, shape=shape)


def test_a_power_of_a_layer_param_is_an_int_size(tmp_path):
    # `2 ** (bits - 1)` in a layer's body, bits not known there: typed float and computed as
    # float(2) ** (bits - 1), it was 8.0, a size torch.zeros refuses (a TypeError at run time)
    path = tmp_path / "m.tri"
    path.write_text("layer L {\n    params { bits: int }\n    forward(x: Tensor<float32, [2, 3]>) "
                    "-> Tensor {\n        let k = 2 ** (bits - 1)\n        return zeros([k, 3]) "
                    "}\n}\nmodel M {\n    layer l: L { bits: 4 }\n    forward(x: Tensor<float32, "
                    "[2, 3]>) -> Tensor { return l(x) }\n}\n")
    result = check_source(path.read_text(), str(path), path)
    assert result.ok, [d.message for d in result.diagnostics]
    with torch.no_grad():
        assert tritium.load(path)(torch.zeros(2, 3)).shape == (8, 3)


@pytest.mark.parametrize("n", [-1, 3])
@pytest.mark.parametrize("fn_first", [True, False])
def test_a_power_of_int_arguments_is_a_float(tmp_path, n, fn_first):
    # `d ** n` with n a function's argument: typed int, and 0.5 at run time for n = -1
    fn = "fn h(d: int, n: int) -> float { return d ** n }\n"
    model = (f"model M {{\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
             f"{{ return int32(x) * h(2, {n}) }}\n}}\n")
    _agree_source(tmp_path, fn + model if fn_first else model + fn)


def test_a_power_of_config_values_is_an_int(tmp_path):
    src = ("block B {\n    params { depth: int }\n    hidden: 2 ** depth\n"
           "    layer fc: Linear { in_features: 3, out_features: hidden }\n"
           "    forward(x: Tensor[b, 3]) -> Tensor { return fc(x) }\n}\n"
           "model M {\n    depth: 3\n    width: 2 ** depth\n    layer b: B { depth: 2 }\n"
           "    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
           "{ return b(x) + sum(zeros([width])) }\n}\n")
    assert _agree_source(tmp_path, src).shape == (2, 4)


def test_a_power_stored_into_an_int_stays_an_int(tmp_path):
    src = ("fn h(d: int, n: int) -> int {\n    let k: int = d ** n\n    return k\n}\n"
           "model M {\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
           "{ return int32(x) * h(2, 3) + h(2, -1) }\n}\n")
    assert check_source(src, "p.tri").ok
    _agree_source(tmp_path, src)


@pytest.mark.parametrize("body", [
    "return int32(x) + sum(int32(x))",               # IR: i64 (the sum's); torch: int32
    "return sum(int32(x)) + int32(x)",               # the checker said int64 too
    "return amax(int32(x)) * int8(x)",
    "return sum(x) + float16(x)",                    # IR: f32; torch: float16
    "return where(x > 0, int32(x), sum(int32(x)))",
    "return int32(x) - mean(x)",                     # a 0-d float decides: float32
])
def test_a_0d_tensor_decides_the_dtype_only_when_of_a_higher_kind(tmp_path, body):
    agree(tmp_path, body)


@pytest.mark.parametrize("body", [
    "return (x > 0) * 2",                            # IR: bool; torch: int64
    "return (x > 0) + (x < 1)", "return (x > 0) + cast(x, \"int16\")",
    "return int8(x) + int32(x)",                     # the checker took the left's int8
    "return float16(x) + x",                         # the checker took the left's float16
])
def test_trit_bool_and_mixed_arithmetic_has_torchs_dtype(tmp_path, body):
    agree(tmp_path, body)


@pytest.mark.parametrize("call", ["where(x > 0, 0, 1)", "where(x > 0, 0.5, 1)"])
def test_where_of_two_numbers_checks(call):
    # elementwise_dtype of two numbers (no tensor) failed an assertion inside the checker
    result = check_source("model M {\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
                          f"{{ return {call} }}\n}}\n", "p.tri")
    assert result.ok, [d.message for d in result.errors]


@pytest.mark.parametrize("body", [
    "return where(x > 0, 0, 1)",                     # the checker said float32; torch: int64
    "return where(x > 0, 0.5, 1)", "return where(x > 0, true, false)",
    "return where(x > 0, true, 2)",
    "return floordiv(where(x > 0, 7, 3), 2) + x",
])
def test_where_of_two_numbers_has_torchs_dtype(tmp_path, body):
    agree(tmp_path, body)


@pytest.mark.parametrize("body", ["(x > 0) - 1", "x - (x > 0)", "-(x > 0)",
                                  "(x > 0) % (x < 1)", "(x > 0) ** (x < 1)"])
def test_arithmetic_torch_refuses_on_a_mask_is_a_check_error(body):
    # torch: 'Subtraction, the `-` operator, with a bool tensor is not supported', …
    result = check_source("model M {\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
                          f"{{ return {body} }}\n}}\n", "p.tri")
    assert [d.code for d in result.errors] == ["E0405"]
    assert "int32(m)" in result.errors[0].help


@pytest.mark.parametrize("body", ["return (x > 0) % 3", "return 1 - int32(x > 0)"])
def test_mask_floor_division_has_torchs_dtype(tmp_path, body):
    agree(tmp_path, body)


@pytest.mark.parametrize("body", ["return int32(x) % int32(x)", "return floordiv(int8(x), int8(x))"])
def test_integer_division_by_zero_raises_as_in_torch(tmp_path, body):
    # numpy's floor_divide gave 0 where torch raises ZeroDivisionError
    x = np.array([[0.2, 1.5, 2.0], [3.0, -1.0, 4.0]], np.float32)   # int32(x) holds a 0
    low = lower(checked(f"model M {{\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
                        f"{{ {body} }}\n}}\n"))
    with pytest.raises(InterpretError, match="integer division by zero"):
        interpret(low.module, low.entry, [x])


@pytest.mark.parametrize("fn, model", [
    ("fn h(d: int, n: int) -> float { return d ** n }\n",
     "model M {\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor { let k = h(2, 3)\n"
     "        return zeros([k, 3]) + x }\n}\n"),
    ("layer L {\n    params { bits: int }\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
     "{\n        let k = 2 ** (bits - 1)\n        return zeros([k, 3]) + x }\n}\n",
     "model M {\n    layer l: L { bits: 4 }\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor "
     "{ return l(x) }\n}\n"),
])
def test_a_function_checks_the_same_before_or_after_its_callers(fn, model):
    # h's own body marks `d ** n` a float; a call checked before it typed h(2, 3) as the int 8
    first, last = (check_source(src, "p.tri") for src in (fn + model, model + fn))
    assert [d.message for d in last.errors] == [d.message for d in first.errors]


@pytest.mark.parametrize("body", [
    "return trit(x) + trit(x)", "return trit(x) * trit(x)", "return trit(x) * 2",
    "return 2 * trit(x) - 1", "return trit(x) + int32(x)",
    "return trit(x) % 3", "return floordiv(trit(x), 2)",   # the IR typed them i64 (torch: int8)
])
def test_trit_arithmetic_has_torchs_values(tmp_path, body):
    # typed float32 in the checker (trit(x) is int8 at run time, a TernaryTensor argument the
    # caller's floats): the checker's type is float32, and the IR's and torch's values agree
    src = f"model M {{\n    forward(x: Tensor<float32, [2, 3]>) -> Tensor {{ {body} }}\n}}\n"
    path = tmp_path / "m.tri"
    path.write_text(src)
    result = checked(src)
    assert _checker_dtype(result) == "float32"
    low = lower(result)
    got = np.asarray(interpret(low.module, low.entry, [X])[0])
    with torch.no_grad():
        ref = tritium.load(path).eval()(torch.from_numpy(X))
    np.testing.assert_array_equal(got.astype(np.float64), ref.numpy().astype(np.float64))


def test_a_clip_of_ternary_arguments_added_clips_their_floats(tmp_path):
    # `x + x` of a TernaryTensor argument: the caller's floats; typed int8, its clip took
    # truncated bounds (0 where torch's float clip gives 0.5)
    path = tmp_path / "m.tri"
    path.write_text("model M {\n forward(x: TernaryTensor[b, 3]) -> Tensor[b, 3] {\n"
                    "  return clip(x + x, -0.5, 0.5)\n }\n}\n")
    with torch.no_grad():
        out = tritium.load(path)(torch.tensor([[1.0, -1.0, 0.0]]))
    assert torch.equal(out, torch.tensor([[0.5, -0.5, 0.0]]))


@pytest.mark.parametrize("body", [
    "return where(x > 0, 0.0, 1.0)",                 # checker: shape [] (E0504 against [2, 3])
    "return where(x > 0, x, 0.0)", "return where(x[0] > 0, x, 2.0 * x)",
])
def test_where_has_the_shape_of_its_condition_and_values_broadcast(tmp_path, body):
    got = agree(tmp_path, body)
    assert got.shape == (2, 3)
    src = f"model M {{\n    forward(x: Tensor[b, 3]) -> Tensor[b, 3] {{ {body} }}\n}}\n"
    result = check_source(src, "m.tri")
    assert result.ok, [d.message for d in result.diagnostics]


@pytest.mark.parametrize("dims", ["[x.shape[0] / 2, 3]", "[2.0, 3]"])
def test_a_float_dimension_is_a_check_error(dims):
    # torch refuses it at run time ('must be tuple of ints, but found element of type float')
    result = check_source("model M {\n    forward(x: Tensor[b, 3]) -> Tensor "
                          f"{{ return zeros({dims}) }}\n}}\n", "p.tri")
    assert [d.code for d in result.errors] == ["E0308"]
    assert "floordiv" in result.errors[0].help
