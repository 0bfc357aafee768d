"""Lexer and parser: spans, dialects, recovery, depth limits."""

from __future__ import annotations

from tritium.frontend import ast as A
from tritium.frontend.lexer import T, tokenize
from tritium.frontend.parser import parse


def test_minus_is_subtraction_and_numbers_with_exponents():
    toks = [t for t in tokenize("x-1 + 1e-3 * 2.5E+4 .5 0..n").tokens if t.kind is not T.NEWLINE]
    assert [t.text for t in toks[:-1]] == ["x", "-", "1", "+", "1e-3", "*", "2.5E+4", ".5", "0",
                                           "..", "n"]
    prog, diags, _ = parse("fn f(x: int) -> int { return x-1 }")
    assert diags == []
    ret = prog.items[0].body[0]
    assert isinstance(ret.value, A.Binary) and ret.value.op == "-"


def test_string_escapes_and_errors():
    prog, diags, _ = parse('fn f() -> str { return "a\\tb\\u{e9}\\"" }')
    assert diags == [] and prog.items[0].body[0].value.value == 'a\tb\u00e9"'
    _, diags, _ = parse('fn f() -> str { return "bad \\q" }')
    assert [d.code for d in diags] == ["E0104"]
    _, diags, _ = parse('fn f() -> str { return "open }\n')
    assert "E0102" in [d.code for d in diags]
    _, diags, _ = parse("/* never closed")
    assert [d.code for d in diags] == ["E0103"]
    _, diags, _ = parse("fn f() -> int { return 1e }")
    assert [d.code for d in diags] == ["E0105"]


def test_spans_are_exact():
    prog, _, _ = parse("model M {\n    layer fc: Linear { in_features: 4, out_features: 2 }\n}",
                       "m.tri")
    decl = prog.items[0].body[0]
    assert (decl.span.file, decl.span.line, decl.span.col) == ("m.tri", 2, 5)
    entry = decl.kinds[0].config[1]
    assert (entry.span.line, entry.span.col, entry.span.end_col) == (2, 40, 55)


def test_precedence():
    prog, _, _ = parse("fn f(a: int, b: int) -> int { return -a ** 2 + b * 3 < 4 and not b == 1 }")
    e = prog.items[0].body[0].value
    assert e.op == "and"
    lt = e.left
    assert lt.op == "<" and lt.left.op == "+"
    assert isinstance(lt.left.left, A.Unary) and lt.left.left.operand.op == "**"
    assert isinstance(e.right, A.Unary) and e.right.op == "not"


def test_both_type_spellings_and_conditional_expressions_agree():
    p1, _, _ = parse("fn f(x: Tensor<float32, [?, n]>) -> int { return 1 if true else 2 }")
    p2, _, _ = parse("fn f(x: Tensor[float32, ?, n]) -> int { return true ? 1 : 2 }")
    assert p1 == p2


def test_named_argument_spellings_agree():
    p1, _, _ = parse("fn f(x: Tensor) -> Tensor { return flatten(x, start_dim: 1) }")
    p2, _, _ = parse("fn f(x: Tensor) -> Tensor { return flatten(x, start_dim=1) }")
    assert p1 == p2


def test_config_entries_by_newline_comma_or_space():
    src = 'model M {\n training { optimizer: "sgd"  learning_rate: 0.1\n epochs: 3, batch_size: 8 } }'
    prog, diags, _ = parse(src)
    assert diags == []
    assert [e.key for e in prog.items[0].body[0].entries] == ["optimizer", "learning_rate",
                                                              "epochs", "batch_size"]


def test_deep_nesting_gives_a_diagnostic_not_recursion_error():
    src = "fn f(x: int) -> int { return " + "(" * 1000 + "x" + ")" * 1000 + " }"
    _, diags, _ = parse(src)
    assert [d.code for d in diags] == ["E0203"]
    src = "fn f(x: int) -> int { " + "if true { " * 1000 + "}" * 1000 + " }"
    _, diags, _ = parse(src)
    assert "E0203" in [d.code for d in diags]
    ok = "fn f(x: int) -> int { return " + "(" * 100 + "x" + ")" * 100 + " }"
    assert parse(ok)[1] == []


def test_a_long_postfix_chain_counts_as_nesting():
    # 200 chained `.float()` built an AST 400 levels deep: `--emit ast` hit RecursionError
    # and the generated Python had too many nested parentheses (E0021 at run)
    src = "let x = ones([2])" + ".float()" * 200 + "\nprint(x)\n"
    assert [d.code for d in parse(src)[1]] == ["E0203"]
    assert [d.code for d in parse("let x = xs" + "[0]" * 300 + "\n")[1]] == ["E0203"]
    ok = "let x = ones([2])" + ".float()" * 50 + "\nprint(x)\n"
    assert parse(ok)[1] == []


def test_recovery_reports_every_top_level_item_error():
    src = """model A {
  layer fc1: TernaryLinear { in_features: 64 out_features: }
  forward(x: Tensor) -> Tensor {
     x = fc1(x
     return x
  }
}
block B {
  forward(x) { return (((x) }
}
model C { forward(x) { return x + } }
"""
    prog, diags, _ = parse(src)
    assert [d.span.line for d in diags] == [2, 5, 9, 11]
    assert [i.name for i in prog.items] == ["A", "B", "C"]


def test_comments_are_kept_aside():
    _, _, comments = parse("# one\nfn f() -> int { return 1 } // two\n/* three */")
    assert [c.text for c in comments] == ["# one", "// two", "/* three */"]


def test_regressions_found_by_the_formatter_author():
    # a type ending in `>` or a `?` at the end of a line ends the statement
    src = "layer H {\n    param w: Tensor<float32, [2]>\n    param b: Tensor[2]\n}"
    prog, diags, _ = parse(src)
    assert diags == [] and len(prog.items[0].body) == 2
    prog, diags, _ = parse("fn f() {\n x = ?\n y = 1\n}")
    assert diags == [] and len(prog.items[0].body) == 2
    # `not` cannot silently swallow the rest of a tighter expression
    _, diags, _ = parse("fn f(a: int, b: bool, c: int) -> int { return a * not b + c }")
    assert [d.code for d in diags] == ["E0201"]
    _, diags, _ = parse("fn f(a: bool, b: bool) -> bool { return not a and not b }")
    assert diags == []
    # `0...5` is `0 .. .5`, not an unknown `...` operator
    toks = [t.text for t in tokenize("0...5").tokens if t.kind is not T.NEWLINE][:-1]
    assert toks == ["0", "..", ".5"]


def test_device_files_are_not_read(tmp_path):
    from tritium.check import check_file
    res = check_file("/dev/zero")
    assert [d.code for d in res.diagnostics] == ["E0003"]
