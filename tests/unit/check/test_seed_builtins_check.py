"""The checker on the seed language's builtin functions (issue 13, form 2): result types and
shapes, the one argument binding (aliases, `axis=` as `dim=`), dtype names, and the
diagnostics for bad arguments (E0820-E0823 and the shared ones)."""

from __future__ import annotations

import pytest

from tritium.check import check_source
from tritium.check.builtins import FUNCTIONS, BindError, bind
from tritium.check.types import TensorT

FN = """
fn f(x: Tensor<float32, [4, 6]>, v: Tensor<float32, [5]>, w: Tensor<float32, [3, 6]>) -> Tensor {
    let r = EXPR
    return x
}
"""


def _check(expr: str):
    return check_source(FN.replace("EXPR", expr), "t.tri")


def _type(expr: str):
    """The checked type of `expr` (through a `let` whose type the checker reports)."""
    from tritium.check.checker import Checker, Scope
    from tritium.frontend.parser import parse
    src = FN.replace("EXPR", expr)
    res = check_source(src, "t.tri")
    assert res.ok, [d.message for d in res.diagnostics]
    prog = parse(src, "t.tri")[0]
    ck = Checker(res.definitions, [])
    fn = prog.items[0]
    scope = Scope()
    for p in fn.params:
        from tritium.check.types import Value
        scope.vars[p.name] = Value(ck.type_from_expr(p.type, Scope()))
    return ck.eval_expr(fn.body[0].value, scope).ty


@pytest.mark.parametrize("expr,shape,dtype,ternary", [
    ("tensor([[1.0, 2.0], [3.0, 4.0]])", (2, 2), "float32", False),
    ("tensor([1, 0, -1], dtype=trit)", (3,), "trit", True),
    ("tensor(3.0)", (), "float32", False),
    ("ternary_tensor([[1, 0], [-1, 1], [0, 0]])", (3, 2), "trit", True),
    ("arange(5)", (5,), "int64", False),
    ("arange(1, 8, 3)", (3,), "int64", False),
    ("arange(0.0, 1.0, 0.25)", (4,), "float32", False),
    ("linspace(0.0, 1.0, 7)", (7,), "float32", False),
    ("eye(3)", (3, 3), "float32", False),
    ("eye(2, 5)", (2, 5), "float32", False),
    ("zeros([2, 3], dtype=float64, requires_grad=true)", (2, 3), "float64", False),
    ("ones([4], dtype=\"int8\")", (4,), "int8", False),
    ("std(x, axis=1)", (4,), "float32", False),
    ("std(x, dim=0, keepdim=true)", (1, 6), "float32", False),
    ("std(x)", (), "float32", False),
    ("dot(v, v)", (), "float32", False),
    ("outer(v, x[0])", (5, 6), "float32", False),
    ("transpose(x)", (6, 4), "float32", False),
    ("clip(x, min_val=0.0, max_val=6.0)", (4, 6), "float32", False),
    ("pow(x, 2.0)", (4, 6), "float32", False),
    ("conv2d(reshape(x, [1, 1, 4, 6]), zeros([8, 1, 3, 3]), padding=1)", (1, 8, 4, 6), "float32",
     False),
    ("conv2d(reshape(x, [1, 1, 4, 6]), zeros([8, 1, 3, 3]), stride=2)", (1, 8, 1, 2), "float32",
     False),
    ("mse_loss(x, x)", (), "float32", False),
    ("mse_loss(x, x, reduction=\"none\")", (4, 6), "float32", False),
    ("cross_entropy(x, arange(4))", (), "float32", False),
    ("cross_entropy(x, arange(4), reduction=\"none\")", (4,), "float32", False),
    ("layer_norm(x, [6], gamma=x[0], beta=x[1])", (4, 6), "float32", False),
    ("batch_norm(x, x[0], x[1], training=true)", (4, 6), "float32", False),
    ("ternary_quantize(x)", (4, 6), "float32", True),
    ("threshold_quantize(x, threshold=0.1)", (4, 6), "float32", True),
    ("stochastic_quantize(x, seed=1)", (4, 6), "float32", True),
    ("gumbel_softmax_quantize(x, temperature=0.5)", (4, 6), "float32", True),
    ("gumbel_softmax_quantize(x, hard=false)", (4, 6), "float32", False),
    ("soft_quantize(x)", (4, 6), "float32", False),
    ("xnor_quantize(x)", (4, 6), "float32", True),
    ("dequantize(ternary_weights(x), 0.5)", (4, 6), "float32", False),
    ("ternary_weights(x)", (4, 6), "trit", True),
    ("ternary_weights([2, 2])", (2, 2), "trit", True),
    ("quantized_linear(x, w)", (4, 3), "float32", False),
    ("quantized_matmul(x, transpose(w))", (4, 3), "float32", False),
])
def test_result_types(expr, shape, dtype, ternary):
    t = _type(expr)
    assert isinstance(t, TensorT), t
    assert (t.shape, t.dtype, t.ternary) == (shape, dtype, ternary)


def test_split_gives_a_list_of_tensors_with_their_shapes():
    assert _check("split(x, 4, axis=1)[1] + zeros([4, 2])").ok
    res = _check("split(x, 4, axis=1)[1] + zeros([4, 3])")
    assert [d.code for d in res.diagnostics if d.severity.name == "ERROR"] == ["E0505"]


@pytest.mark.parametrize("expr,code", [
    ("soft_quantize(x, temperature=0.0)", "E0820"),
    ("threshold_quantize(x, threshold=-0.5)", "E0820"),
    ("adaptive_threshold_quantize(x, factor=0.0)", "E0820"),
    # a quantile of |x| is a fraction (90.0 checked and failed at run time)
    ("adaptive_threshold_quantize(x, percentile=90.0)", "E0820"),
    ("adaptive_threshold_quantize(x, target_sparsity=-0.1)", "E0820"),
    ("arange(0, 5, 0)", "E0820"),
    ("linspace(0.0, 1.0, -2)", "E0820"),
    ("split(x, 0)", "E0820"),
    ("tensor([[1.0, 2.0], [3.0]])", "E0821"),
    ("tensor([1.0, \"a\"])", "E0821"),
    ("ternary_tensor([1, 2])", "E0821"),
    ("split(x, [2, 3], dim=1)", "E0822"),
    ("layer_norm(x, [5])", "E0823"),
    ("layer_norm(x, [6], v)", "E0823"),
    ("batch_norm(x, v, v)", "E0823"),
    ("dequantize(x, x)", "E0823"),
    ("transpose(reshape(x, [24]))", "E0507"),
    ("dot(x, v)", "E0507"),
    ("dot(v, x[0])", "E0502"),
    ("conv2d(x, x)", "E0507"),
    ("conv2d(reshape(x, [1, 2, 2, 6]), zeros([4, 3, 1, 1]))", "E0503"),
    ("conv2d(reshape(x, [1, 2, 2, 6]), zeros([4, 2, 1, 1]), stride=0)", "E0820"),
    ("conv2d(reshape(x, [1, 2, 2, 6]), zeros([4, 2, 1, 1]), stride=[1, 0])", "E0820"),
    ("conv2d(reshape(x, [1, 2, 2, 6]), zeros([4, 2, 1, 1]), dilation=0)", "E0820"),
    ("conv2d(reshape(x, [1, 2, 2, 6]), zeros([4, 2, 1, 1]), padding=-1)", "E0820"),
    ("max_pool2d(reshape(x, [1, 2, 2, 6]), [1, 1], stride=[0, 0])", "E0820"),
    ("zeros([2], dtype=\"float33\")", "E0309"),
    ("mse_loss(x, x, reduction=\"avg\")", "E0309"),
    ("cross_entropy(x, arange(5))", "E0502"),
    ("cross_entropy(x, x[0:4, 0])", "E0404"),
    ("cross_entropy(x, arange(4), reduction=\"avg\")", "E0309"),
    ("sum(x, axis=1, dim=0)", "E0306"),
    ("std(x, axes=1)", "E0307"),
    ("quantized_linear(x, v)", "E0507"),
])
def test_bad_arguments_are_diagnostics(expr, code):
    res = _check(expr)
    codes = [d.code for d in res.diagnostics if d.severity.name == "ERROR"]
    assert codes == [code], [(d.code, d.message) for d in res.diagnostics]


def test_one_binding_for_every_stage():
    spec = FUNCTIONS["sum"]
    bound, where = bind(spec, [(None, "X"), ("axis", 1), ("keepdim", True)])
    assert bound == {"x": "X", "dim": 1, "keepdim": True} and where["dim"] == 1
    with pytest.raises(BindError) as exc:
        bind(spec, [(None, "X"), ("axis", 1), ("dim", 0)])
    assert exc.value.kind == "twice"
    with pytest.raises(BindError) as exc:
        bind(FUNCTIONS["clamp"], [(None, "X"), ("bogus", 1)])
    assert exc.value.kind == "unknown" and exc.value.index == 1
    with pytest.raises(BindError) as exc:
        bind(FUNCTIONS["pow"], [(None, "X")])
    assert exc.value.kind == "missing" and exc.value.name == "exponent"
    # every builtin with a `dim` takes `axis=`
    for name, s in FUNCTIONS.items():
        if any(p.name == "dim" for p in s.params):
            args = [(p.name, "X") for p in s.params if p.required and p.name != "dim"]
            assert bind(s, args + [("axis", 0)])[0]["dim"] == 0, name


def test_a_program_variable_named_like_a_dtype_is_not_a_dtype():
    res = check_source("""
fn f(x: Tensor<float32, [4]>) -> Tensor {
    let float64 = 2.0
    return x * float64
}
""", "t.tri")
    assert res.ok, [d.message for d in res.diagnostics]


@pytest.mark.parametrize("expr", [
    "ternary_quantize(x, quantizer=\"tw\")", "quantized_linear(x, w, quantizer=float32)",
    "quantize_ternary(x, quantizer=\"threshold\")",
    "ternary_quantize(x, quantizer=\"absmean\", threshold=0.1)",
    "ternary_weights(x, quantizer=\"nope\")",
])
def test_quantizer_names_are_checked(expr):
    res = _check(expr)
    assert [d.code for d in res.diagnostics if d.severity.name == "ERROR"] == ["E0309"]


@pytest.mark.parametrize("dims,ok", [("[1, 0]", True), ("[-1, -2]", True), ("[-3, 0]", False),
                                     ("[2, 0]", False), ("[0, 0]", False)])
def test_permute_dims_must_be_in_range(dims, ok):
    """A dim outside -rank..rank-1 is E0508 (it used to pass the permutation check modulo
    the rank and crash the checker)."""
    codes = [d.code for d in _check(f"permute(x, {dims})").errors]
    assert codes == ([] if ok else ["E0508"])


@pytest.mark.parametrize("method, dtype", [("half", "float16"), ("double", "float64"),
                                           ("long", "int64")])
def test_torch_dtype_methods_convert(method, dtype):
    # the seed's mixed_precision: `x = x.half()`
    assert _type(f"x.{method}()") == TensorT(dtype, (4, 6), False)
    assert _type(f"{method}(v)") == TensorT(dtype, (5,), False)
