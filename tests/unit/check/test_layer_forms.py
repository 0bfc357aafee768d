"""The checker on the layer forms of the earlier Triton DSL (issue 13): `let` in a layer
written as a function, calling a layer definition, the benchmark form, explicit layers with
`params { }`, `param … { init }`, conditional params and `state` buffers."""

from __future__ import annotations

from tritium.check import check_source


def diags(src: str) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in check_source(src, "t.tri").diagnostics]


def errors(src: str) -> list[str]:
    return [d.code for d in check_source(src, "t.tri").diagnostics if d.is_error]


# ----------------------------------------------------------------------------- form 3

def test_lets_in_a_layer_function_see_the_arguments():
    src = """
layer L(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
    let y = x @ w
    return y
}"""
    assert diags(src) == []


def test_lets_in_a_layer_function_keep_their_order():
    # `y` is used before its `let`: an error (it was hoisted before)
    src = """
layer L(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
    x = y
    let y = x @ w
    return y
}"""
    assert "E0304" in errors(src)
    # shapes flow through the lets in order: a wrong one is caught at its `let`
    bad = """
layer L(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> {
    let y = x @ w
    let z = y @ w
    return z
}"""
    assert errors(bad) == ["E0502"]


def test_lets_of_an_explicit_layer_with_forward_stay_state():
    src = """
layer Proj(in_features: int, out_features: int) {
    let W: TernaryTensor = random_ternary([out_features, in_features])
    let k = 2
    fn forward(x: Tensor<float32, [?, in_features]>) -> Tensor {
        return ternary_matmul(x, W) * k
    }
}"""
    assert diags(src) == []


def test_a_layer_function_let_cannot_see_a_later_let():
    src = """
layer L(x: Tensor<float32, [?, 4]>) -> Tensor {
    let a = b + 1.0
    let b = x
    return a
}"""
    assert errors(src) == ["E0304"]


# ----------------------------------------------------------------------------- form 11

FC = """
layer FC(w: TernaryTensor<trit, [n_in, n_out]>, x: Tensor<float32, [?, n_in]>) -> Tensor<float32, [?, n_out]> {
    return x @ w
}
"""


def test_a_layer_function_can_be_called_by_name():
    src = FC + """
fn two(w1: TernaryTensor<trit, [8, 4]>, w2: TernaryTensor<trit, [4, 2]>, x: Tensor[b, 8]) -> Tensor[b, 2] {
    return FC(w2, FC(w1, x))
}"""
    assert diags(src) == []


def test_a_direct_layer_call_checks_shapes_and_arity():
    wrong_ret = FC + """
fn f(w1: TernaryTensor<trit, [8, 4]>, x: Tensor[b, 8]) -> Tensor[b, 3] {
    return FC(w1, x)
}"""
    assert errors(wrong_ret) == ["E0504"]
    inner = FC + """
fn f(w1: TernaryTensor<trit, [8, 4]>, x: Tensor[b, 5]) -> Tensor {
    return FC(w1, x)
}"""
    assert errors(inner) == ["E0503"]
    arity = FC + """
fn f(x: Tensor[b, 8]) -> Tensor { return FC(x) }"""
    assert errors(arity) == ["E0306"]
    named = FC + """
fn f(w1: TernaryTensor<trit, [8, 4]>, x: Tensor[b, 8]) -> Tensor { return FC(w1, x: x) }"""
    assert errors(named) == ["E0307"]


def test_a_layer_with_state_cannot_be_called_by_name():
    src = """
layer Head {
    param w: TernaryTensor[8, 2]
    fn forward(x: Tensor[N, 8]) -> Tensor[N, 2] { return x @ w }
}
fn f(x: Tensor[b, 8]) -> Tensor { return Head(x) }"""
    d = [x for x in check_source(src, "t.tri").diagnostics if x.is_error]
    assert [x.code for x in d] == ["E0310"] and "instance" in d[0].message


# ----------------------------------------------------------------------------- form 12

def test_benchmark_form_weights_are_visible_in_forward():
    src = """
layer TinyNet(weights: TernaryTensor[10, 5]) {
    forward(x: TernaryTensor[5]) -> TernaryTensor[10] {
        return weights @ x
    }
}"""
    assert diags(src) == []
    assert errors(src.replace("TernaryTensor[10]", "TernaryTensor[9]")) == ["E0504"]
    assert errors(src.replace("x: TernaryTensor[5]", "x: TernaryTensor[6]")) == ["E0502"]


def test_benchmark_form_weight_dims_are_hyperparameters():
    src = """
layer S(w: TernaryTensor[n_out, n_in], gain: float = 1.0) {
    fn forward(x: Tensor[B, n_in]) -> Tensor[B, n_out] { return x @ transpose(w, 0, 1) * gain }
}
model M {
    layer s: S { n_out: 3, n_in: 8 }
    forward(x: Tensor[b, 8]) -> Tensor[b, 3] { return s(x) }
}"""
    assert diags(src) == []
    assert errors(src.replace("n_in: 8", "n_in: 7")) == ["E0503"]


def test_a_signature_weight_needs_a_static_shape():
    for ty in ("TernaryTensor", "Tensor[?, 4]"):
        src = f"""
layer T(w: {ty}) {{
    fn forward(x: Tensor[B, 4]) -> Tensor {{ return x @ w }}
}}"""
        assert "E0880" in errors(src), ty
    form_b = """
layer A(w: TernaryTensor, x: Tensor[B, 4]) -> Tensor { return x @ w }"""
    assert errors(form_b) == ["E0880"]
