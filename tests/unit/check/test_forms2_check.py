"""The checker on the forms given to `forms2` (issue 13, form 13): type aliases expanded
where they are in scope, local and anonymous functions lifted (reading outer names as extra
parameters; a closure when such a one is used as a value), `with no_grad()` (E0964 for other
contexts), typed body constants checked against their value, and optional parameters
narrowed by a test for None."""

from __future__ import annotations

from tritium.check import check_source
from tritium.frontend.diagnostics import CODES


def errors(src: str) -> list[tuple[str, int]]:
    r = check_source(src)
    assert all(d.code in CODES for d in r.diagnostics), r.diagnostics
    return [(d.code, d.span.line) for d in r.errors]


# ----------------------------------------------------------------------------- type aliases

def test_aliases_stand_for_their_types_in_scope() -> None:
    src = ("type Weights = TernaryTensor<trit, [4, 4]>\n"
           "type Batch = Tensor<float32, [?, 4]>\n"
           "fn project(w: Weights, x: Batch) -> Batch {\n"
           "    type Out = Tensor<float32, [?, 4]>\n"
           "    let y: Out = x @ w\n"
           "    return y\n"
           "}\n"
           "main {\n"
           "    let y = project(TernaryTensor[4, 4](1, 0, -1, 1, 0, 1, 1, 0, 1, 0, -1, 1, 0, 1, "
           "1, 0), ones([2, 4]))\n"
           "    let bad = project(\"w\", ones([2, 4]))\n"
           "}\n")
    assert errors(src) == [("E0404", 10)]   # a str where the alias says TernaryTensor


def test_top_level_aliases_may_name_later_ones_and_body_aliases_end_with_the_body() -> None:
    src = ("type Pair = tuple[Count, Count]\n"
           "type Count = int\n"
           "fn f(p: Pair) -> Count {\n"
           "    if p[0] > 0 {\n"
           "        type Local = float\n"
           "        let a: Local = 1.5\n"
           "    }\n"
           "    let b: Local = 2.5\n"
           "    return p[0] + p[1]\n"
           "}\n")
    assert [c for c, _ in errors(src)] and all(line == 8 for _, line in errors(src))


def test_bad_aliases_are_e0962() -> None:
    src = ("type int = float\n"
           "type A = B\n"
           "type B = A\n"
           "type Twice = int\n"
           "type Twice = float\n")
    assert errors(src) == [("E0962", 1), ("E0962", 2), ("E0962", 3), ("E0962", 5)]


def test_a_generic_parameter_hides_an_alias_of_its_name() -> None:
    src = ("type T = int\n"
           "fn ident<T>(x: T) -> T {\n"
           "    return x\n"
           "}\n"
           "main {\n"
           "    let s = ident(\"text\")\n"
           "    print(s)\n"
           "}\n")
    assert errors(src) == []


# ----------------------------------------------------------------------------- functions

LOCAL = """
fn outer(x: Tensor[2, 4], k: float) -> Tensor[2, 4] {
    let base = 1.0
    fn scale(z: Tensor) -> Tensor {
        return z * k + base
    }
    fn twice(z: Tensor) -> Tensor {
        return scale(scale(z))
    }
    let shift = fn(z: Tensor) -> Tensor { return z + 1.0 }
    return shift(twice(x))
}
"""


def test_local_functions_read_outer_names_through_calls() -> None:
    assert errors(LOCAL) == []
    r = check_source(LOCAL)
    lifted = {n: [p.name for p in d.node.params] for n, d in r.definitions.items()}
    assert lifted["outer__scale"] == ["z", "base", "k"]
    assert lifted["outer__twice"] == ["z", "base", "k"]   # through scale
    assert lifted["outer__shift"] == ["z"]


def test_lifted_names_never_collide_with_program_names() -> None:
    src = LOCAL + "fn outer__scale(a: int) -> int {\n    return a\n}\n"
    r = check_source(src)
    assert r.ok, [d.message for d in r.errors]
    assert "outer__scale2" in r.definitions and "outer__scale" in r.definitions


def test_a_function_reading_outer_names_is_a_closure_value() -> None:
    src = ("fn apply(f: fn(Tensor) -> Tensor, x: Tensor) -> Tensor {\n"
           "    return f(x)\n"
           "}\n"
           "fn g(x: Tensor, k: float) -> Tensor {\n"
           "    fn pure(z: Tensor) -> Tensor { return z * 2.0 }\n"
           "    fn reads(z: Tensor) -> Tensor { return z * k }\n"
           "    let a = apply(pure, x)\n"
           "    let b = apply(fn(z: Tensor) -> Tensor { return z + 1.0 }, x)\n"
           "    let c = apply(reads, x)\n"
           "    let d = apply(fn(z: Tensor) -> Tensor { return z + k }, x)\n"
           "    return a + b + c + d\n"
           "}\n")
    assert errors(src) == []   # closures (stmt2): the values read are bound where made


def test_an_anonymous_function_outside_a_body_is_e0965() -> None:
    src = ("fn f(g = fn(x: int) { return x }) -> int {\n    return 1\n}\n"
           "model M {\n    act: fn(x: Tensor) { return x }\n"
           "    forward(x: Tensor[b, 4]) -> Tensor { return x }\n}\n")
    assert errors(src) == [("E0965", 1), ("E0965", 5)]


def test_a_local_function_is_checked_at_its_calls() -> None:
    src = ("fn f(x: Tensor[2, 4]) -> Tensor {\n"
           "    fn first(z: Tensor[2, 4]) -> Tensor { return z[0] }\n"
           "    let ok = first(x)\n"
           "    let bad = first(\"text\")\n"
           "    return first(x, x)\n"
           "}\n")
    assert [line for _, line in errors(src)] == [4, 5]


def test_local_functions_in_forward_read_layers_and_constants() -> None:
    src = ("model Net {\n"
           "    hidden: 8\n"
           "    layer fc: TernaryLinear { in_features: 4, out_features: hidden }\n"
           "    forward(x: Tensor[batch, 4]) -> Tensor[batch, hidden] {\n"
           "        fn act(z: Tensor) -> Tensor { return relu(fc(z)) * hidden }\n"
           "        return act(x)\n"
           "    }\n"
           "}\n")
    assert errors(src) == []


def test_a_layer_function_may_hold_a_local_function() -> None:
    src = ("layer L(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>)"
           " -> Tensor<float32, [?, 2]> {\n"
           "    fn mm(a: Tensor) -> Tensor { return a @ w }\n"
           "    let y = mm(x)\n"
           "    return y\n"
           "}\n")
    assert errors(src) == []


# ----------------------------------------------------------------------------- with

def test_with_no_grad_shares_the_scope_and_other_contexts_are_e0964() -> None:
    src = ("fn f(x: Tensor) -> Tensor {\n"
           "    with no_grad() {\n"
           "        let y = x * 2.0\n"
           "    }\n"
           "    with torch.no_grad() { y = y + 1.0 }\n"
           "    with open(\"f\") { y = y }\n"
           "    with enable_grad() { y = y }\n"
           "    return y + undefined_name\n"
           "}\n")
    assert errors(src) == [("E0964", 6), ("E0964", 7), ("E0304", 8)]


# ----------------------------------------------------------------------------- constants

def test_typed_body_constants_are_checked_against_their_values() -> None:
    src = ("model M {\n"
           "    c: 4\n"
           "    e: 2\n"
           "    hidden: int = c * e\n"
           "    ratio: float = 0.5\n"
           "    wrong: int = \"eight\"\n"
           "    also: bool = c\n"
           "    layer fc: TernaryLinear { in_features: c, out_features: hidden }\n"
           "    forward(x: Tensor[b, c]) -> Tensor[b, 8] { return fc(x) * ratio }\n"
           "}\n")
    assert [c for c, line in errors(src)] == ["E0401", "E0401"]
    assert [line for _, line in errors(src)] == [6, 7]


# ----------------------------------------------------------------------------- unions

def test_an_optional_parameter_is_used_after_a_none_test() -> None:
    src = ("fn add_bias(x: Tensor, b: Tensor | None) -> Tensor {\n"
           "    if b != None { return x + b }\n"
           "    if b is None { return x }\n"
           "    return x\n"
           "}\n"
           "main {\n"
           "    print(add_bias(ones([2]), None), add_bias(ones([2]), ones([2])))\n"
           "    print(add_bias(ones([2]), \"text\"))\n"
           "}\n")
    assert errors(src) == [("E0401", 8)]


def test_an_optional_local_assigned_on_one_path_is_tested_for_none() -> None:
    src = ("fn f(x: Tensor, c: bool) -> Tensor {\n"
           "    let b: Tensor | None = None\n"
           "    if c { b = ones([2]) }\n"
           "    if b != None { return x + b }\n"
           "    return x\n"
           "}\n")
    assert errors(src) == []


def test_a_local_function_of_a_generic_function_takes_its_type_parameters() -> None:
    src = ("fn twice<T: Numeric>(x: T) -> T {\n"
           "    fn add(a: T) -> T {\n"
           "        return a + x\n"
           "    }\n"
           "    return add(x)\n"
           "}\n"
           "main {\n"
           "    print(twice(3), twice(1.5), twice(ones([2])))\n"
           "}\n")
    r = check_source(src)
    assert r.ok, [d.message for d in r.errors]
    assert [t.name for t in r.definitions["twice__add"].node.type_params] == ["T"]


def test_alias_cycles_name_their_members_and_deep_chains_are_bounded() -> None:
    src = ("type A = list[B]\ntype B = tuple[A, int]\ntype C = C\n"
           "type D = list[E]\ntype E = int\n"
           "fn f(d: D) -> int {\n    return d[0]\n}\n")
    assert errors(src) == [("E0962", 1), ("E0962", 2), ("E0962", 3)]
    chain = "".join(f"type A{i} = list[A{i + 1}]\n" for i in range(2000)) + "type A2000 = int\n"
    r = check_source(chain)   # resolved in linear time; nests past the bound are E0962
    assert r.errors and {d.code for d in r.errors} == {"E0962"}
