"""Parsing the type forms of the seed language's type-system page: a shape variable
`Tensor<T, S>` (or `?` for any shape), generic type aliases `type Grid<E> = …`, `where`
clauses over several lines with relations of shapes (parsed, warned W0980), and the
formatter printing them back to the same AST."""

from __future__ import annotations

from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse


def _parse(src: str):
    prog, diags, _comments = parse(src, "t.tri")
    return prog, diags


def _fn(prog, name: str) -> A.FnDef:
    return next(i for i in prog.items if isinstance(i, A.FnDef) and i.name == name)


def test_shape_variables() -> None:
    prog, diags = _parse("fn keep<R>(v: Tensor<float16, R>) -> Tensor<float16, R> {\n"
                         "    return v\n}\n"
                         "fn any_shape(v: Tensor<int8, ?>) -> Tensor<int8, ?> {\n"
                         "    return v\n}\n")
    assert not diags
    keep = _fn(prog, "keep")
    t = keep.params[0].type
    assert (t.name, t.dtype, t.shape, t.shape_var) == ("Tensor", "float16", None, "R")
    assert keep.ret.shape_var == "R"
    assert _fn(prog, "any_shape").params[0].type.shape_var == "?"


def test_where_clause_over_lines_with_shape_relations() -> None:
    src = ("fn mm<E, P, Q>(a: Tensor<E, P>, b: Tensor<E, Q>) -> Tensor<E, ?>\n"
           "where\n    E: Float + Differentiable,\n    P.dims == 2,\n    P[1] == Q[0]\n{\n"
           "    return a @ b\n}\n")
    prog, diags = _parse(src)
    assert [d.code for d in diags] == ["W0980", "W0980"]
    f = _fn(prog, "mm")
    assert f.type_params[0].bounds == ["Float", "Differentiable"]
    assert len(f.where) == 2


def test_the_formatter_keeps_shape_relations() -> None:
    """`tritium fmt` writes the relations back (it once dropped them: lost source text)."""
    for src in ("fn mm<E, P, Q>(a: Tensor<E, P>, b: Tensor<E, Q>) -> Tensor<E, ?>\n"
                "where\n    E: Float,\n    P.dims == 2,\n    P[1] == Q[0]\n{\n"
                "    return a @ b\n}\n",
                "layer L<S: Shape>(x: Tensor<float32, S>) -> Tensor\n    where S[0] == 4 {\n"
                "    return x\n}\n"):
        out = format_source(src)
        assert "P[1] == Q[0]" in out or "S[0] == 4" in out
        assert _parse(out)[0] == _parse(src)[0]
        assert format_source(out) == out


def test_generic_alias_statement() -> None:
    prog, diags = _parse("type Grid<E> = Tensor<E, [?, ?]>\ntype Row<k: int32> = "
                         "Tensor<float32, [k]>\n")
    assert not diags
    aliases = [i for i in prog.items if isinstance(i, A.TypeAlias)]
    assert [(a.name, a.params) for a in aliases] == [("Grid", ["E"]), ("Row", ["k"])]


def test_formatter_prints_the_new_forms_back() -> None:
    src = ("type Grid<E> = Tensor<E, [?, ?]>\n"
           "fn keep<R>(v: Tensor<float16, R>) -> Tensor<float16, ?> {\n    return v\n}\n")
    out = format_source(src, "t.tri")
    assert "type Grid<E> = Tensor<E, [?, ?]>" in out
    assert "Tensor<float16, R>" in out and "Tensor<float16, ?>" in out
    assert _parse(out)[0] == _parse(src)[0]
