"""Signatures and type expressions of the earlier DSL (issue 13, forms 4, 5, 6, 7, 9): they
parse, and the formatter prints them back to the same AST."""

from __future__ import annotations

import sys
from pathlib import Path

from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "property"))
from test_formatter_props import check_round_trip  # noqa: E402


def ok(src: str) -> A.Program:
    prog, diags, _ = parse(src)
    assert diags == [], [d.message for d in diags]
    check_round_trip(src)
    return prog


# ----------------------------------------------------------------- form 5: split signatures
def test_return_type_on_the_next_line():
    prog = ok("fn f(x: Tensor<float32, [?, ?]>)\n-> Tensor<float32, [?, ?]> {\n return x\n}\n")
    fn = prog.items[0]
    assert fn.ret.name == "Tensor" and [d.value for d in fn.ret.shape] == [None, None]


def test_brace_on_its_own_line_and_layer_signatures():
    prog = ok("layer L(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>)\n"
              "    -> Tensor<float32, [?, 2]>\n{\n    return x @ w\n}\n"
              "fn g(x: int)\n{\n return x\n}\n")
    assert prog.items[0].ret.shape[1].value == 2
    assert prog.items[1].ret is None and len(prog.items[1].body) == 1


def test_method_signature_split_over_lines():
    prog = ok("model M {\n layer fc: TernaryLinear { in_features: 4, out_features: 2 }\n"
              " forward(x: Tensor[b, 4])\n     -> Tensor[b, 2] {\n  return fc(x)\n }\n}\n")
    fwd = prog.items[0].body[1]
    assert isinstance(fwd, A.FnDef) and fwd.ret.shape[1].value == 2


def test_a_newline_still_ends_a_call_statement():
    prog, diags, _ = parse("fn f(x: int) -> int {\n g(x)\n return x\n}\n")
    assert diags == [] and len(prog.items[0].body) == 2


def test_formatter_joins_the_signature():
    out = format_source("fn f(x: int)\n  -> int\n{\n  return x\n}\n")
    assert out.splitlines()[0] == "fn f(x: int) -> int {"


# ----------------------------------------------------------------- form 6: composite types
def _param_types(src: str) -> dict[str, A.TypeExpr]:
    prog = ok(src)
    return {p.name: p.type for p in prog.items[0].params}


def T(name: str, *args: A.TypeExpr, ret: A.TypeExpr | None = None) -> A.TypeExpr:
    return A.TypeExpr(name, args=list(args) if args or name in ("fn",) else None, ret=ret)


INT, FLOAT, NONE = T("int"), T("float"), T("None")


def test_list_tuple_optional_union_and_function_types():
    ts = _param_types(
        "fn f(a: [int, int], b: list[int], c: [Layer], d: Tuple[int, float], e: Optional[int],\n"
        "     g: int?, h: int | str | None, j: fn(int, float) -> int, k: (int, int),\n"
        "     m: List[Tuple[int, int]]?, n: fn() -> int | None, o: dict[str, int]) -> void {\n"
        "    return\n}\n")
    assert ts["a"] == T("tuple", INT, INT) == ts["k"]
    assert ts["b"] == T("list", INT) and ts["c"] == T("list", T("Layer"))
    assert ts["d"] == T("tuple", INT, FLOAT)
    assert ts["e"] == ts["g"] == T("Union", INT, NONE)
    assert ts["h"] == T("Union", INT, T("str"), NONE)
    assert ts["j"] == T("fn", INT, FLOAT, ret=INT)
    assert ts["m"] == T("Union", T("list", T("tuple", INT, INT)), NONE)
    assert ts["n"] == T("Union", T("fn", ret=INT), NONE)
    assert ts["o"] == T("dict", T("str"), INT)


def test_spellings_that_mean_the_same_type():
    a = _param_types("fn f(x: Optional[Union[int, str]], y: tensor<trit, [2, 2]>) -> None { }")
    b = _param_types("fn f(x: int | str?, y: Tensor<trit, [2, 2]>) -> void { }")
    assert a == b
    prog = ok("fn f() -> void { }")
    assert prog.items[0].ret == NONE


def test_bad_composite_types_are_diagnostics():
    for src in ("fn f(x: list[int, int]) { }", "fn f(x: Optional[int, str]) { }",
                "fn f(x: []) { }", "fn f(x: dict[int]) { }", "fn f(x: [int,) { }",
                "fn f(x: fn(int -> int) { }"):
        _, diags, _ = parse(src)
        assert diags and all(d.code.startswith("E02") for d in diags), src


# ----------------------------------------------------------------- form 7
def test_let_without_a_value():
    prog = ok("fn f(x: int) -> int {\n    let y: int\n    y = x\n    return y\n}\n")
    let = prog.items[0].body[0]
    assert isinstance(let, A.Let) and let.value is None and let.type.name == "int"
    _, diags, _ = parse("fn f() -> int {\n let y\n return 1\n}")
    assert [d.code for d in diags] == ["E0201"] or diags  # an untyped `let` still needs `=`


# ----------------------------------------------------------------- form 4
def test_generic_parameters_and_where_clauses():
    prog = ok("fn identity<T>(x: T) -> T {\n    return x\n}\n"
              "fn f<T: Numeric, U>(a: T, b: U) -> T where U: Float + Tensor {\n    return a\n}\n"
              "layer L<T>(w: TernaryTensor<trit, [4, 2]>, x: Tensor<float32, [?, 4]>)\n"
              "    -> Tensor<float32, [?, 2]> {\n    return x @ w\n}\n")
    ident, f, layer = prog.items
    assert [(p.name, p.bounds) for p in ident.type_params] == [("T", [])]
    assert [(p.name, p.bounds) for p in f.type_params] == [("T", ["Numeric"]),
                                                          ("U", ["Float", "Tensor"])]
    assert layer.type_params[0].name == "T"
    a = ok("fn g<T>(x: T) -> T\nwhere T: Numeric\n{\n return x\n}\n").items[0]
    b = ok("fn g<T: Numeric>(x: T) -> T { return x }").items[0]
    assert a == b


def test_bad_type_parameters_are_diagnostics():
    for src in ("fn f<T, T>(x: T) { }", "fn f<T>(x: T) where U: Numeric { }",
                "fn f<T(x: T) { }", "fn f(x: int) where T: Numeric { }"):
        _, diags, _ = parse(src)
        assert diags and all(d.code == "E0202" for d in diags), src


# ----------------------------------------------------------------- form 9
def test_contextual_keywords_are_names_where_no_item_can_start():
    prog = ok("fn run(model: Tensor, layer: int, block: float, param: bool) -> Tensor {\n"
              "    let params = layer + 1\n    return model * block\n}\n"
              "model M {\n    layer layer: TernaryLinear { in_features: 4, out_features: 2 }\n"
              "    forward(x: Tensor[b, 4]) -> Tensor[b, 2] {\n"
              "        let model = layer(x)\n        return model\n    }\n}\n")
    run, m = prog.items
    assert [p.name for p in run.params] == ["model", "layer", "block", "param"]
    assert isinstance(m, A.ModelDef) and isinstance(m.body[0], A.LayerDecl)
    assert m.body[0].name == "layer"
    let = m.body[1].body[0]
    assert let.name == "model" and let.value.func == A.Name("layer")


def test_reserved_keywords_stay_reserved():
    for src in ("fn f(let: int) { }", "fn f(x: int) -> int {\n let return = 1\n return 1\n}",
                "fn f(fn: int) { }"):
        _, diags, _ = parse(src)
        assert diags, src


def test_seed_examples_format_back_to_the_same_ast():
    seed = Path(__file__).resolve().parents[3] / "examples" / "seed"
    files = sorted(seed.glob("types_*.tri"))
    assert len(files) >= 2
    for f in files:
        check_round_trip(f.read_text())
