"""The checker on the forms given to `stmt2` (issue 13): integer division stored into an
int, quantizers that return a pair, `if` over a tensor condition, `with_gradient_from`,
constructing a layer by calling its type, properties of a type alias."""

from __future__ import annotations

from tritium.check import check_source
from tritium.frontend.diagnostics import CODES


def diags(src: str) -> list[tuple[str, int]]:
    r = check_source(src)
    assert all(d.code in CODES for d in r.diagnostics), r.diagnostics
    return [(d.code, d.span.line) for d in r.diagnostics if d.code != "W0001"]


def errors(src: str) -> list[tuple[str, int]]:
    r = check_source(src)
    assert all(d.code in CODES for d in r.diagnostics), r.diagnostics
    return [(d.code, d.span.line) for d in r.errors]


# ----------------------------------------------------------------------------- int division

def test_exact_known_division_stored_in_an_int_is_its_quotient() -> None:
    src = ("model M {\n"
           "    embed_dim: 64\n"
           "    num_heads: 4\n"
           "    head_dim: int = embed_dim / num_heads\n"
           "    patches: int = (embed_dim / num_heads) ** 2\n"
           "    layer fc: TernaryLinear { in_features: head_dim, out_features: patches }\n"
           "    forward(x: Tensor[b, 16]) -> Tensor[b, 256] { return fc(x) }\n"
           "}\n")
    assert diags(src) == []
    # 64 / 4 = 16 stays an int: a wrong declared output shape shows the value flowed
    assert errors(src.replace("Tensor[b, 256]", "Tensor[b, 255]")) == [("E0504", 7)]


def test_inexact_known_division_names_the_remainder_and_suggests_floordiv() -> None:
    r = check_source("let z: int = 7 / 2\n")
    (d,) = r.errors
    assert d.code == "E0990" and "remainder 1" in d.message
    assert "floordiv(7, 2)" in (d.help or "") and "3" in d.help


def test_unknown_values_are_integer_division_with_a_warning() -> None:
    src = ("fn f(a: int, b: int) -> int {\n"
           "    let q: int = (a * b) / (a + b)\n"
           "    let r: int\n"
           "    r = a / 2\n"
           "    return q + r\n"
           "}\n")
    assert diags(src) == [("W0990", 2), ("W0990", 4)]


def test_the_return_value_of_an_int_function_is_stored_into_an_int() -> None:
    src = ("fn head_dim(e: int, h: int) -> int {\n    return e / h\n}\n"
           "fn ratio(e: int, h: int) -> float {\n    return e / h\n}\n"
           "fn exact() -> int {\n    return 64 / 4\n}\n"
           "fn inexact() -> int {\n    return 7 / 2\n}\n")
    assert diags(src) == [("W0990", 2), ("E0990", 11)]


def test_division_of_ints_is_a_float_everywhere_else() -> None:
    assert errors("let w = 7 / 2\nlet f: float = 7 / 2\n") == []
    # inside a call's argument the `/` is not the stored value's: still a float
    assert errors("let k: int = round(7 / 2)\n") == [("E0402", 1)]
    assert errors("let k: int = 6 / 2.0\n") == [("E0402", 1)]
    # an untyped `let` holds a float, which the int return then refuses
    assert errors("fn f(a: int) -> int {\n    let q = a / 2\n    return q\n}\n") == [("E0402", 3)]


def test_division_by_zero_stays_an_error() -> None:
    assert errors("let z: int = 4 / 0\n") == [("E0309", 1)]


# ----------------------------------------------------------------------------- pair quantizers

def test_xnor_quantize_destructured_is_values_and_a_scalar_scale() -> None:
    src = ("let w = randn([8, 4])\n"
           "let (q, scale) = xnor_quantize(w)\n"
           "let y: Tensor<float32, [8, 4]> = q * scale\n"
           "let s: Tensor<float32, [3]> = scale\n")
    r = check_source(src)
    assert [(d.code, d.span.line) for d in r.errors] == [("E0401", 4)]   # scale is 0-d
    assert "values_scale" in r.call_forms.values()


def test_xnor_quantize_as_one_value_keeps_its_meaning() -> None:
    src = "let w = randn([8, 4])\nlet q = xnor_quantize(w)\nlet (a, b) = q\n"
    r = check_source(src)
    assert [(d.code, d.span.line) for d in r.errors] == [("E0864", 3)]
    assert "values_scale" not in r.call_forms.values()


def test_a_pair_needs_exactly_two_names_and_a_user_function_of_that_name_wins() -> None:
    assert errors("let (a, b, c) = xnor_quantize(randn([2, 2]))\n") == [("E0864", 1)]
    src = ("fn xnor_quantize(x: Tensor) -> Tensor {\n    return x\n}\n"
           "let (a, b) = xnor_quantize(randn([2, 2]))\n")
    assert ("E0864", 4) in errors(src)


# ----------------------------------------------------------------------------- alias properties

def test_alias_properties_are_constants_the_checker_can_use() -> None:
    src = ("type InputTensor = Tensor<float32, [784, 128]>\n"
           "let input_shape = InputTensor.shape\n"
           "let w: Tensor<float32, [784, 128]> = zeros(InputTensor.shape)\n"
           "let v: Tensor<float32, [784]> = zeros([InputTensor.shape[0]])\n"
           "let r: int = InputTensor.rank\n"
           "let d: str = InputTensor.dtype\n"
           "let bad: Tensor<float32, [3]> = zeros(InputTensor.shape)\n")
    assert errors(src) == [("E0401", 7)]


# ----------------------------------------------------------------------------- with_gradient_from

def test_with_gradient_from_types_as_the_value_broadcast_with_the_source() -> None:
    src = ("fn ste(x: Tensor<float32, [?, 4]>) -> TernaryTensor<trit, [?, 4]> {\n"
           "    let quantized = ternary_quantize(x)\n"
           "    return quantized with_gradient_from x\n"
           "}\n"
           "fn scaled(x: Tensor<float32, [3, 4]>, s: Tensor<float32, [4]>) -> Tensor<float32, [3, 4]> {\n"
           "    let a: Tensor<float32, [3, 4]> = s with_gradient_from x\n"
           "    let b: Tensor<float32, [3, 4]> = 2.0 with_gradient_from x\n"
           "    return a + b\n"
           "}\n")
    assert errors(src) == []


def test_with_gradient_from_rejects_mismatched_shapes_and_non_tensors() -> None:
    src = ("fn f(x: Tensor<float32, [3, 4]>, y: Tensor<float32, [5]>) -> Tensor {\n"
           "    let a = x with_gradient_from y\n"
           "    let b = x with_gradient_from 2.0\n"
           "    let c = \"s\" with_gradient_from x\n"
           "    return x\n"
           "}\n")
    assert errors(src) == [("E0505", 2), ("E0992", 3), ("E0992", 4)]


# ----------------------------------------------------------------------------- elementwise if

def test_if_over_a_tensor_condition_selects_elementwise() -> None:
    src = ("fn tq(x: Tensor<float32, [?, 4]>, t: float32 = 0.5) -> TernaryTensor<trit, [?, 4]> {\n"
           "    return if abs(x) < t { trit(0) } else if x > 0 { trit(1) } else { trit(-1) }\n"
           "}\n"
           "fn relu_ish(x: Tensor<float32, [3, 4]>, b: Tensor<float32, [4]>) -> Tensor<float32, [3, 4]> {\n"
           "    let y: Tensor<float32, [3, 4]> = if x > 0 { x } else { b * 0.1 }\n"
           "    let z: Tensor<float32, [3, 4]> = if x > 0 { 1.0 } else { 0 }\n"
           "    return y + z\n"
           "}\n")
    r = check_source(src)
    assert [(d.code, d.span.line) for d in r.errors] == []
    assert sorted(v for v in r.call_forms.values() if v.startswith("where")) == [
        "where", "where", "where_trit", "where_trit"]


def test_a_scalar_condition_keeps_its_meaning() -> None:
    src = ("fn pick(a: float, b: float) -> float {\n"
           "    return if a > b { a } else { b }\n"
           "}\n")
    r = check_source(src)
    assert r.errors == [] and "where" not in r.call_forms.values()


def test_elementwise_if_errors() -> None:
    src = ("fn f(x: Tensor<float32, [3, 4]>, y: Tensor<float32, [5]>) -> Tensor {\n"
           "    let a = if x > 0 { x } else { y }\n"
           "    let b = if x > 0 { \"s\" } else { x }\n"
           "    let c = if x { 1.0 } else { 0.0 }\n"
           "    let d = if x > 0 {\n"
           "        let t = x * 2\n"
           "        t\n"
           "    } else { x }\n"
           "    return x\n"
           "}\n")
    assert errors(src) == [("E0505", 2), ("E0993", 3), ("E0993", 4), ("E0993", 5)]


# ----------------------------------------------------------------------------- layer construction

LAYERS = """
layer Affine(w: TernaryTensor<trit, [n_in, n_out]>, b: TernaryTensor<trit, [n_out]>,
             x: Tensor<float32, [?, n_in]>) -> Tensor<float32, [?, n_out]> {
    return x @ w + b
}
layer Fixed(w: TernaryTensor<trit, [4, 3]>, scale: float = 2.0,
            x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 3]> {
    return x @ w * scale
}
"""


def test_calling_a_layer_type_without_its_inputs_constructs_an_instance() -> None:
    src = LAYERS + ("let a = Affine(n_in: 4, n_out: 3)\n"
                    "let f = Fixed(scale: 3.0)\n"
                    "let g = Fixed()\n"
                    "let h = Affine(w: ternary_quantize(randn([4, 3])), b: ones([3]))\n"
                    "let x = randn([2, 4])\n"
                    "let y: Tensor<float32, [2, 3]> = a(x) + f(x) + g(x) + h(x) + g(x: x)\n"
                    "let direct = Fixed(ternary_quantize(randn([4, 3])), 1.0, x)\n")
    r = check_source(src)
    assert [(d.code, d.span.line) for d in r.errors] == []
    assert list(r.call_forms.values()).count("construct") == 4


SECTIONS = """
layer Head {
    params { n: int, m: int = 2 }
    layer fc: Linear { in_features: n, out_features: m }
    forward(x: Tensor[b, n]) -> Tensor[b, m] { return fc(x) }
}
layer Both(k: int) {
    params { n: int }
    layer fc: Linear { in_features: n, out_features: k }
    forward(x: Tensor[b, n]) -> Tensor[b, k] { return fc(x) }
}
"""


def test_a_layer_with_a_params_section_is_constructed_by_name() -> None:
    # `Head(n: 3)` was E0310 ("a layer type"): construction read only the signature
    src = SECTIONS + ("let h = Head(n: 3)\n"
                      "let g = Head(3, 5)\n"
                      "let b = Both(4, n: 3)\n"
                      "let y: Tensor[1, 2] = h(ones([1, 3]))\n"
                      "let z: Tensor[1, 5] = g(ones([1, 3]))\n"
                      "let w: Tensor[1, 4] = b(ones([1, 3]))\n")
    r = check_source(src)
    assert [(d.code, d.span.line, d.message) for d in r.errors] == []
    assert list(r.call_forms.values()).count("construct") == 3
    assert [d.code for d in check_source(SECTIONS + "let h = Head(q: 3)\n").errors] == ["E0310"]


def test_construction_errors() -> None:
    src = LAYERS + ("let a = Affine()\n"                      # 10: dims unknown
                    "let b = Fixed(w: randn([5, 3]))\n"       # 11: declared [4, 3]
                    "let c = Fixed(scale: \"s\")\n"           # 12: a number
                    "let e = Fixed(scale: 1.0)\n"
                    "let y = e(randn([2, 5]))\n"              # 14: input shape
                    "let z = e(q: randn([2, 4]))\n")          # 15: not an input
    assert errors(src) == [("E0302", 10), ("E0302", 10), ("E0994", 11), ("E0308", 12),
                           ("E0503", 14), ("E0307", 15)]


# ----------------------------------------------------------------------------- gradient hooks

def test_register_hook_takes_a_function_of_the_gradient() -> None:
    src = ("fn scale(g: Tensor<float32, [?, ?]>) -> Tensor<float32, [?, ?]> {\n"
           "    return g * 2.0\n"
           "}\n"
           "fn check(x: Tensor<float32, [?, ?]>) {\n"
           "    x.register_hook(fn(grad) {\n"
           "        print(f\"mean {mean(grad)} zeros {sum(grad == 0) / grad.numel()}\")\n"
           "    })\n"
           "    x.register_hook(scale)\n"
           "}\n")
    assert errors(src) == []
    bad = ("fn check(x: Tensor<float32, [?, ?]>, name: str) {\n"
           "    x.register_hook(3)\n"
           "    x.register_hook(fn(grad) { print(name) })\n"   # a closure over `name`
           "    x.register_hook(fn(grad) { return \"s\" })\n"
           "}\n")
    assert errors(bad) == [("E0404", 2), ("E0404", 4)]


def test_a_hook_reads_its_gradient_as_a_tensor() -> None:
    # `grad` has no type: `grad.mena` (and `grad.foo`) passed check
    src = ("fn watch(x: Tensor, name: str) -> Tensor {\n"
           "    x.register_hook(fn(grad) {\n"
           "        print(name, grad.mena, grad.shape)\n"
           "    })\n"
           "    return x\n"
           "}\n"
           "print(watch(ones([2]), \"w\"))\n")
    assert errors(src) == [("E0304", 3)]
    assert errors(src.replace("grad.mena", "grad.ndim")) == []


def test_an_unknown_method_of_an_untyped_value_is_reported() -> None:
    assert errors("fn f(g) {\n    print(g.foo())\n}\n") == [("E0305", 2)]
    assert errors("fn f(g) {\n    print(g.numel(), g.size(0))\n}\n") == []


# ----------------------------------------------------------------------------- closures

def test_functions_reading_outer_names_are_closure_values() -> None:
    src = ("fn apply(f: fn(Tensor) -> Tensor, x: Tensor) -> Tensor {\n"
           "    return f(x)\n"
           "}\n"
           "fn scaler(k: float) -> fn(Tensor) -> Tensor {\n"
           "    return fn(z: Tensor) -> Tensor { return z * k }\n"
           "}\n"
           "fn g(x: Tensor<float32, [2, 3]>, k: float) -> Tensor<float32, [2, 3]> {\n"
           "    fn reads(z: Tensor) -> Tensor { return z * k }\n"
           "    let s = scaler(10.0)\n"
           "    return apply(reads, x) + s(x)\n"
           "}\n"
           "fn bad(k: float) -> fn(Tensor, Tensor) -> Tensor {\n"
           "    return fn(z: Tensor) -> Tensor { return z * k }\n"
           "}\n")
    assert errors(src) == [("E0401", 13)]   # the closure takes one argument, not two
