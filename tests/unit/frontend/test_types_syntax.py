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
