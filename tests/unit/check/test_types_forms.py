"""The checker's meaning of the earlier DSL's types (issue 13, forms 4, 6, 7, 9): list,
tuple, optional, union and function types, `let` without a value, generics, contextual
keywords."""

from __future__ import annotations

from tritium.check import check_source


def diags(src: str):
    return [d for d in check_source(src, "t.tri").diagnostics if d.is_error]


def clean(src: str) -> None:
    errs = diags(src)
    assert not errs, [(d.code, d.message) for d in errs]


def fails(src: str, code: str, *words: str):
    errs = diags(src)
    found = [d for d in errs if d.code == code and all(w in d.message for w in words)]
    assert found, [(d.code, d.message) for d in errs]
    return found[0]


# ----------------------------------------------------------------- form 6
COMPOSITE_OK = """
fn inc(x: int) -> int {
    return x + 1
}
fn apply(f: fn(int) -> int, x: int) -> int {
    return f(x)
}
fn first_or(x: int?, d: int) -> int {
    if x is None {
        return d
    }
    return x
}
fn scale_all(x: Tensor, sizes: list[int], k: [int, int], s: float?) -> Tensor {
    let total: int = sizes[0] + k[1] + apply(inc, 1) + first_or(None, 2)
    if s is None {
        return x * total
    }
    return x * s
}
fn log(x: int) -> void {
    print(x)
}
layer Net(w: TernaryTensor<trit, [4, 2]>, x: tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
    let pair: Tuple[int, float] = [1, 2.0]
    let u: int | str = "a"
    let g: fn(int) -> int = inc
    let o: Optional[int] = None
    log(g(pair[0]))
    print(u, o)
    return scale_all(x @ w, [1, 2], [3, 4], None)
}
"""


def test_composite_types_accept_what_they_declare():
    clean(COMPOSITE_OK)


def test_list_element_types_are_checked():
    fails('fn f() -> int {\n let xs: list[int] = [1, "a"]\n return xs[0]\n}', "E0401",
          "element 1", "list[int]")
    fails("fn f() -> int {\n let xs: [int] = 3\n return 0\n}", "E0401", "list[int]", "int")


def test_tuple_length_and_positions_are_checked():
    fails("fn f() -> int {\n let p: [int, int] = [1, 2, 3]\n return p[0]\n}", "E0401",
          "2 element(s)", "has 3")
    fails('fn f() -> int {\n let p: Tuple[int, str] = [1, 2]\n return p[0]\n}', "E0401",
          "element 1")
    fails("fn g(k: [int, int]) -> int {\n return k[0]\n}\n"
          "fn f() -> int {\n return g([1, 2, 3])\n}", "E0401", "`k`")


def test_optional_and_union_members():
    clean("fn f() -> int? {\n return None\n}")
    fails("fn f() -> int {\n let x: int = None\n return x\n}", "E0401", "None")
    fails("fn f() -> int {\n let u: int | str = 2.5\n return 0\n}", "E0401", "int | str",
          "float")
    fails("fn g(x: Tensor?) -> int {\n return 0\n}\nfn f() -> int {\n return g(3)\n}",
          "E0401", "| None", "int")


def test_function_types():
    fails("fn two(a: int, b: int) -> int {\n return a + b\n}\n"
          "fn f() -> int {\n let g: fn(int) -> int = two\n return g(1)\n}", "E0401",
          "takes 2")
    fails("fn f() -> int {\n let g: fn(int) -> int = 3\n return 0\n}", "E0401", "fn(int)")
    fails("fn ap(g: fn(int) -> int) -> int {\n return g(1, 2)\n}", "E0306", "fn(int) -> int")


def test_void_functions_return_no_value():
    fails("fn f(x: int) -> void {\n return x\n}", "E0401", "declares no result")
    clean("fn f(x: int) -> void {\n print(x)\n return\n}")


# ----------------------------------------------------------------- form 7
def test_let_without_value_assigned_on_both_branches():
    clean("fn f(x: Tensor, big: bool) -> Tensor {\n let y: Tensor\n if big {\n  y = x * 2.0\n"
          " } else {\n  y = relu(x)\n }\n return y\n}")
    clean("fn f(x: int) -> int {\n let y: int\n y = x + 1\n return y\n}")


def test_use_before_assignment_names_the_variable_and_its_declaration():
    d = fails("fn f(x: Tensor, big: bool) -> Tensor {\n let z: Tensor\n if big {\n  z = x\n }\n"
              " return z\n}", "E0840", "`z`")
    assert d.span.line == 6 and d.secondary[0].span.line == 2
    fails("fn f(x: int) -> int {\n let w: int\n return x * w\n}", "E0840", "`w`")


def test_the_declared_type_checks_the_later_assignment():
    fails("fn f() -> int {\n let q: int\n q = 2.5\n return q\n}", "E0402", "`q`")
    fails('fn f() -> int {\n let q: list[int]\n q = ["a"]\n return 0\n}', "E0401", "list[int]")


def test_scalar_let_without_value_in_a_layer_body_needs_one():
    fails("layer L(n: int) {\n let k: int\n fn forward(x: Tensor) -> Tensor {\n  return x\n }\n}",
          "E0841", "`let k: int`")


# ----------------------------------------------------------------- form 4
GENERIC = """
fn identity<T>(x: T) -> T {
    return x
}
fn scale<T: Numeric>(x: T, s: float) -> T {
    return x * s
}
fn add<T>(a: T, b: T) -> T where T: Tensor {
    return a + b
}
fn act<T: Float>(x: Tensor<T, [?, 2]>) -> Tensor<T, [?, 2]> {
    return relu(x)
}
fn firsts<T>(xs: list[T]) -> T {
    return xs[0]
}
"""


def test_generic_functions_bind_their_type_parameters_per_call():
    clean(GENERIC + "layer Net<T: Float>(w: TernaryTensor<trit, [4, 2]>, x: Tensor<T, [?, 4]>)"
                    " -> Tensor<T, [?, 2]> {\n"
                    " return identity(add(scale(x @ w, 2.0), act(x @ w)))\n}\n"
                    "fn ints() -> int {\n let f: float = scale(2.0, 3.0)\n print(f)\n"
                    " return identity(3) + firsts([1, 2])\n}")


def test_the_return_type_follows_the_binding():
    fails(GENERIC + "fn f() -> int {\n let s: str = identity(3)\n return 0\n}", "E0401",
          "`s`", "int")
    fails(GENERIC + 'fn f() -> int {\n let s: int = firsts(["a"])\n return 0\n}', "E0401",
          "`s`", "str")


def test_bound_violations_are_reported_at_the_call_naming_the_parameter():
    d = fails(GENERIC + 'fn f() -> int {\n let s = scale("a", 2.0)\n return 0\n}', "E0842",
              "`T`", "`scale`", "Numeric", "str")
    assert d.span.line == GENERIC.count("\n") + 2
    fails(GENERIC + "fn f() -> int {\n let t = add(1, 2)\n return 0\n}", "E0842", "`T`",
          "Tensor", "int")
    fails(GENERIC + "fn f(x: Tensor<int8, [3, 2]>) -> int {\n let t = act(x)\n return 0\n}",
          "E0842", "Float", "int8")


def test_one_parameter_bound_to_two_types_and_unknown_bounds():
    fails(GENERIC + "fn f() -> int {\n let u = add(zeros([2]), 3)\n return 0\n}", "E0843",
          "`T`", "from `a`", "from `b`")
    fails("fn f<T: Numberish>(x: T) -> T {\n return x\n}", "E0843", "Numberish")
    fails("layer Bad<T>(w: TernaryTensor<trit, [4, 2]>, x: T) -> Tensor {\n return w\n}",
          "E0843", "`x`")


# ----------------------------------------------------------------- form 9
def test_keywords_as_names_check():
    clean("fn run(model: Tensor, layer: int, block: float, param: bool) -> Tensor {\n"
          " let params = layer + 1\n let forward = model * block\n let training = param\n"
          " if training {\n  return forward * params\n }\n return forward\n}\n"
          "model M {\n layer layer: TernaryLinear { in_features: 4, out_features: 2 }\n"
          " forward(x: Tensor[b, 4]) -> Tensor[b, 2] {\n  let model = layer(x)\n"
          "  return run(model, 2, 0.5, true)\n }\n}")
    fails("fn f(model: int) -> int {\n return layer\n}", "E0304", "`layer`")
