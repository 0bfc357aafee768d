"""Generic parameters bound at each call by unification (issue 13 item 4, checker.generics):
a type parameter gets one binding per call, from every argument that mentions it (as a whole
type, a tensor's element type, a shape variable, a list or tuple member, an optional); two
different bindings are E0843 naming the parameter, both types and both arguments; bounds
(`<T: Float>`, `where T: Numeric`) are checked against the binding (E0842); the symbolic dims
of the declared shapes (`<M, K, N>`) are bound across the arguments at the call (E0503)."""

from __future__ import annotations

import pytest

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source


def errors(src: str):
    return [d for d in check_source(src, "t.tri").diagnostics if d.is_error]


def clean(src: str) -> None:
    """No errors, and it compiles: the generated module passes the validator."""
    result = check_source(src, "t.tri")
    errs = [d for d in result.diagnostics if d.is_error]
    assert not errs, [(d.code, d.message) for d in errs]
    validate(generate(result))


def one(src: str, code: str, *words: str):
    errs = errors(src)
    assert len(errs) == 1, [(d.code, d.message) for d in errs]
    d = errs[0]
    assert d.code == code and all(w in d.message for w in words), (d.code, d.message)
    return d


PROCESS = """fn process<T: Numeric>(x: T, y: T) -> T {
    return x + y
}
"""


def test_two_ints_bind_t_and_the_result_is_t():
    clean(PROCESS + "let r = process(1, 2)\nlet f: float = process(1.5, 2.0)\nprint(r, f)\n")
    # the result is T's binding: an int is no str
    one(PROCESS + 'let s: str = process(1, 2)\nprint(s)\n', "E0401", "`s`", "int")


def test_int_then_float_names_t_both_bindings_and_where_each_came_from():
    d = one(PROCESS + "let e = process(1, 2.0)\nprint(e)\n", "E0843",
            "`T`", "`process`", "int from `x`", "float from `y`")
    assert (d.span.line, d.span.col) == (4, 20)          # at the argument that disagrees
    assert d.secondary and d.secondary[0].span.col == 17  # the one that bound T first
    assert "is int" in d.secondary[0].message


@pytest.mark.parametrize("call", ["process(1.0, 2)", "process(true, 1)",
                                  "process(zeros([2]), 1.0)",
                                  "process(zeros([2]), zeros([2], dtype=int32))",
                                  "process(zeros([2, 3]), zeros([3]))"])
def test_every_kind_of_disagreement_is_one_error(call):
    one(PROCESS + f"let e = {call}\nprint(e)\n", "E0843", "`T`")


@pytest.mark.parametrize("call", ["process(1, 2)", "process(int8(1), 2)",
                                  "process(zeros([2]), ones([2]))",
                                  "process(zeros([2, 3]), ones([2, 3]))"])
def test_one_kind_agrees(call):
    clean(PROCESS + f"let e = {call}\nprint(e)\n")


def test_bounds_from_angle_brackets_and_where_clauses_are_checked_against_the_binding():
    src = ("fn half<T>(x: T) -> T\nwhere T: Float {\n    return x * 0.5\n}\n"
           "fn inc<T: Integer>(x: T) -> T {\n    return x + 1\n}\n")
    clean(src + "let a = half(3.0)\nlet b = inc(3)\nlet c = half(zeros([2]))\nprint(a, b, c)\n")
    one(src + "let a = half(3)\nprint(a)\n", "E0842", "`T`", "Float", "int")
    one(src + "let b = inc(2.5)\nprint(b)\n", "E0842", "`T`", "Integer", "float")
    one(src + "let b = inc(zeros([2]))\nprint(b)\n", "E0842", "Integer")


def test_the_element_type_of_a_tensor_binds_t_across_arguments():
    src = ("fn mix<T>(a: Tensor<T, [n]>, b: Tensor<T, [n]>) -> Tensor<T, [n]> {\n"
           "    return a + b\n}\n")
    clean(src + "let r = mix(zeros([3]), ones([3]))\nprint(r)\n")
    one(src + "let r = mix(zeros([3]), ones([3], dtype=int32))\nprint(r)\n", "E0843",
        "`T`", "float32 from the element type of `a`", "int32 from the element type of `b`")
    # the result's element type is the binding
    one(src + "let r: Tensor<int32, [3]> = mix(zeros([3]), ones([3]))\nprint(r)\n", "E0402")


def test_shape_type_parameters_are_bound_at_the_call():
    src = ("fn mm<M, K, N>(a: Tensor<float32, [M, K]>, b: Tensor<float32, [K, N]>)\n"
           "    -> Tensor<float32, [M, N]> {\n    return a @ b\n}\n")
    clean(src + "let c: Tensor<float32, [2, 5]> = mm(ones([2, 3]), ones([3, 5]))\nprint(c)\n")
    one(src + "let c = mm(ones([2, 3]), ones([4, 5]))\nprint(c)\n", "E0503", "`mm`", "`K`")


def test_a_shape_variable_binds_the_whole_shape():
    src = ("fn q<S>(x: Tensor<float32, S>) -> TernaryTensor<trit, S>\nwhere S: Shape {\n"
           "    return ternary_quantize(x)\n}\n"
           "fn both<S>(x: Tensor<float32, S>, y: Tensor<float32, S>) -> Tensor<float32, S> {\n"
           "    return x + y\n}\n")
    clean(src + "let a: TernaryTensor<trit, [3, 4]> = q(ones([3, 4]))\n"
                "let b = both(ones([2]), zeros([2]))\nprint(a, b)\n")
    one(src + "let a: TernaryTensor<trit, [3, 5]> = q(ones([3, 4]))\nprint(a)\n", "E0401")
    one(src + "let b = both(ones([2, 2]), ones([2, 3]))\nprint(b)\n", "E0843", "`S`",
        "[2, 2]", "[2, 3]")


def test_lists_tuples_and_optionals_bind_their_members():
    src = ("fn first<T>(xs: List<T>, d: T) -> T {\n    return xs[0]\n}\n"
           "fn pair<A, B>(a: A, b: B) -> Tuple<A, B> {\n    return (a, b)\n}\n"
           "fn or_else<T>(x: T?, d: T) -> T {\n    if x is None {\n        return d\n"
           "    }\n    return x\n}\n")
    clean(src + "let a = first([1, 2], 3)\nlet p = pair(1, 2.0)\nlet o = or_else(None, 2)\n"
                "let o2 = or_else(1, 2)\nprint(a, p, o, o2)\n")
    one(src + "let a = first([1, 2], 2.5)\nprint(a)\n", "E0843", "`T`", "element")
    # the elements of one list literal join as the literal means ([1, 2.5]: floats)
    clean(src + "let a = first([1, 2.5], 3.0)\nprint(a)\n")
    one(src + 'let a = first([1, "s"], 3)\nprint(a)\n', "E0843", "`T`")
    one(src + "let o = or_else(1, 2.5)\nprint(o)\n", "E0843", "`T`", "`x`", "`d`")
    one(src + "let p = pair(1, 2.0)\nlet q: int = p[1]\nprint(q)\n", "E0402")


def test_a_generic_layer_binds_t_when_called_directly():
    src = ("layer GenericLinear<T>(\n    weights: Tensor<T, [in_features, out_features]>,\n"
           "    input: Tensor<T, [batch, in_features]>\n"
           ") -> Tensor<T, [batch, out_features]> {\n    return input @ weights\n}\n")
    clean(src + "let y = GenericLinear(ones([4, 3]), ones([2, 4]))\nprint(y)\n")
    one(src + "let y = GenericLinear(ones([4, 3]), ones([2, 4], dtype=int32))\nprint(y)\n",
        "E0843", "`T`", "`GenericLinear`", "`weights`", "`input`")
    one(src + "let y = GenericLinear(ones([4, 3]), ones([2, 5]))\nprint(y)\n", "E0503",
        "in_features")


def test_an_unbound_generic_body_is_checked_once_on_its_own():
    # no call: the body is checked with T abstract, and nothing is reported
    clean("fn identity<T>(x: T) -> T {\n    return x\n}\n"
          "fn clamp<T: Comparable>(x: T, lo: T, hi: T) -> T {\n"
          "    if x < lo {\n        return lo\n    } else if x > hi {\n        return hi\n"
          "    }\n    return x\n}\n")


def test_a_generic_layer_with_a_forward_binds_t_at_each_use():
    src = ("layer Scale<T: Float> {\n    param s: Tensor[4]\n"
           "    forward(x: Tensor<T, [b, 4]>) -> Tensor<T, [b, 4]> {\n        return x * s\n"
           "    }\n}\n"
           "model M {\n    layer sc: Scale {}\n    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {\n"
           "        return sc(x)\n    }\n}\n")
    clean(src)
    d = one(src.replace("forward(x: Tensor[b, 4]) -> Tensor[b, 4]",
                        "forward(x: Tensor<int32, [b, 4]>) -> Tensor"), "E0503", "`T`", "Float",
            "int32")
    assert "Scale" in d.message


def test_a_local_generic_function_is_named_as_written():
    src = ("fn outer(k: float) -> float {\n    fn inner<T: Numeric>(x: T, y: T) -> T {\n"
           "        return x * y + k\n    }\n    let a = inner(2.0, 3.0)\n    return a\n}\n"
           "print(outer(1.0))\n")
    clean(src)
    one(src.replace("inner(2.0, 3.0)", "inner(2, 3.0)"), "E0843", "of `inner`")
