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


# ----------------------------------------------------------------------------- form 10

EXPLICIT = """
layer MyLinear {
    params {
        in_features: int
        out_features: int
        use_bias: bool = true
    }
    param weight: TernaryTensor[out_features, in_features] { init: "kaiming", mode: "fan_out", nonlinearity: "relu" }
    param bias: if (use_bias) Tensor { shape: [out_features] }
    state steps: int = 0
    layer norm: LayerNorm { normalized_shape: out_features }
    forward(x: Tensor[B, in_features]) -> Tensor[B, out_features] {
        let y = x @ transpose(weight, 0, 1)
        if bias is not None { y = y + bias }
        steps += 1
        return norm(y)
    }
}
model M {
    layer a: MyLinear { in_features: 8, out_features: 4 }
    layer b: MyLinear { in_features: 4, out_features: 2, use_bias: false }
    forward(x: Tensor[n, 8]) -> Tensor[n, 2] { return b(a(x)) }
}"""


def test_explicit_layer_with_params_block_sub_layers_and_state_checks():
    assert diags(EXPLICIT) == []
    # the params block gives the hyperparameters: a missing one is reported at the instance
    assert errors(EXPLICIT.replace("in_features: 8, ", "")) == ["E0302"]


def test_an_unguarded_use_of_an_absent_conditional_param_is_an_error():
    src = EXPLICIT.replace("if bias is not None { y = y + bias }", "y = y + bias")
    assert diags(src.replace("use_bias: false", "use_bias: true")) == []
    found = errors(src)
    assert found and all(c.startswith("E04") or c.startswith("E05") for c in found), found


def test_init_specs_are_validated():
    base = """
layer P {
    param w: Tensor[2, 4] { SPEC }
    fn forward(x: Tensor[n, 4]) -> Tensor { return x @ transpose(w, 0, 1) }
}"""
    ok = ['init: "normal", std: 0.02', 'init: "uniform", low: -0.1, high: 0.1', 'init: "zeros"',
          'init: "ones"', 'init: "xavier", gain: 2.0', 'init: "kaiming", a: 0.1',
          'init: "xavier_normal"', 'init: "kaiming_normal", mode: "fan_in"',
          'init: "constant", value: 0.5']
    for spec in ok:
        assert diags(base.replace("SPEC", spec)) == [], spec
    bad = {'init: "gaussian"': "E0881", 'init: "normal", gain: 1.0': "E0881",
           'init: "normal", std: "big"': "E0882", 'init: "normal", std: -1.0': "E0882",
           'init: "uniform", low: 1.0, high: 0.0': "E0882",
           'init: "kaiming", mode: "fan_middle"': "E0882", 'std: 0.02': "E0881",
           'init: 3': "E0881", 'init: "zeros", shape: [2, 4]': "E0881",
           'init: "normal", init: "zeros"': "E0206"}
    for spec, code in bad.items():
        assert code in errors(base.replace("SPEC", spec)), spec


def test_a_param_needs_a_shape_and_state_a_simple_type():
    assert "E0880" in errors("""
layer P {
    param w: Tensor { init: "zeros" }
    fn forward(x: Tensor) -> Tensor { return x }
}""")
    assert "E0883" in errors("""
layer P {
    state s: str = "a"
    fn forward(x: Tensor) -> Tensor { return x }
}""")
    assert diags("""
layer P {
    state count: int = 0
    state buf: Tensor[4]
    fn forward(x: Tensor[n, 4]) -> Tensor[n, 4] { return x + buf * float(count) }
}""") == []


def test_summary_counts_present_params_and_not_state():
    from tritium.check.summary import summarize_definition
    src = """
layer P {
    params { n: int, use_bias: bool = false }
    state steps: int = 0
    param w: TernaryTensor[n, n]
    param bias: if (use_bias) Tensor { shape: [n] }
    fn forward(x: Tensor[b, n]) -> Tensor[b, n] { return x @ w }
}"""
    res = check_source(src, "t.tri")
    assert res.ok
    rows = summarize_definition(res, res.definitions["P"], {"n": 4}).rows
    names = [r.name for r in rows]
    assert any(n.endswith("w") for n in names) and not any("bias" in n or "steps" in n
                                                          for n in names)


# ----------------------------------------------------------------------------- form 11: bound weights

BOUND = FC + """
let w = ternary_weights([8, 4])
let layer = FC(w)
let y: Tensor<float32, [2, 4]> = layer(randn([2, 8]))
let z = layer(x: randn([3, 8]))
"""


def test_binding_a_layer_functions_weights_makes_a_function_of_its_input():
    assert diags(BOUND) == []


def test_a_call_through_bound_weights_is_checked_as_the_full_call():
    bad = BOUND + "let bad = layer(randn([2, 5]))\n"
    r = check_source(bad)
    assert [(d.code, d.span.line) for d in r.errors] == [("E0503", 10)]
    assert r.errors[0].message.startswith("`FC` cannot be called with these arguments")
    wrong_ret = BOUND.replace("[2, 4]> = layer", "[2, 5]> = layer")
    assert errors(wrong_ret) == ["E0401"]
    assert errors(BOUND + "let q = layer(q: randn([2, 8]))\n") == ["E0307"]
    assert errors(BOUND + "let q = layer()\n") == ["E0306"]


def test_too_few_arguments_outside_a_let_stay_an_arity_error():
    src = FC + "fn f(w1: TernaryTensor<trit, [8, 4]>) -> Tensor { return FC(w1) }\n"
    assert errors(src) == ["E0306"]
