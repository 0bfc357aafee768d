"""Programs that are a list of statements, `main { }` blocks and f-strings: parsing,
recovery, diagnostics and formatting (issue 13, forms 1, 8 and the `main` block of 13)."""

from __future__ import annotations

import pytest

from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse


def items(src: str) -> list:
    prog, diags, _ = parse(src)
    assert [d for d in diags if d.is_error] == [], diags
    return prog.items


def codes(src: str) -> list[str]:
    return [d.code for d in parse(src)[1]]


def test_top_level_statements_parse_between_items_in_order() -> None:
    src = ("let x: trit = 1\n"
           "let w: TernaryTensor = TernaryTensor[2, 2](1, 0, -1, 1)\n"
           "fn f(a: int) -> int { return a }\n"
           "y = f(2)\n"
           "y += 1\n"
           "print(x, y)\n"
           "if y > 1 { print(y) } else { print(0) }\n"
           "for i in 0..3 { print(i) }\n"
           "return\n")
    kinds = [type(i).__name__ for i in items(src)]
    assert kinds == ["Let", "Let", "FnDef", "Assign", "Assign", "ExprStmt", "If", "For",
                     "Return"]
    let = items(src)[1]
    assert let.type.name == "TernaryTensor"
    assert isinstance(let.value, A.Call) and isinstance(let.value.func, A.Index)


def test_main_block_is_an_item_holding_statements() -> None:
    (main,) = [i for i in items("fn g() { return }\nmain {\n  let a = 1\n  print(a)\n}\n")
               if isinstance(i, A.MainBlock)]
    assert [type(s).__name__ for s in main.body] == ["Let", "ExprStmt"]
    assert main.span.line == 2


def test_main_is_still_a_name_elsewhere() -> None:
    # `main` followed by anything but `{` is an ordinary name (a call, a variable)
    kinds = [type(i).__name__ for i in items("fn main() { print(1) }\nmain()\nmain = 3\n")]
    assert kinds == ["FnDef", "ExprStmt", "Assign"]


def test_each_bad_top_level_statement_is_reported_and_parsing_goes_on() -> None:
    prog, diags, _ = parse("let = 3\nprint(1 2)\nlet ok = 1\nfn f() { return }\n")
    assert [d.span.line for d in diags] == [1, 2]
    assert [type(i).__name__ for i in prog.items] == ["Let", "FnDef"]


def test_a_misspelled_item_keyword_is_still_e0204() -> None:
    prog, diags, _ = parse("modle M {\n  x: 1\n}\nfn f() { return }\n")
    assert [d.code for d in diags] == ["E0204"]
    assert "model" in (diags[0].help or "")
    assert [type(i).__name__ for i in prog.items] == ["FnDef"]


def test_a_constant_at_the_top_level_suggests_let() -> None:
    diags = parse("hidden: 4\n")[1]
    assert diags[0].code == "E0204" and "let hidden" in diags[0].help


# ----------------------------------------------------------------------------- f-strings

def fstring(src: str) -> A.FString:
    (stmt,) = items(f"print({src})\n")
    (arg,) = stmt.value.args
    assert isinstance(arg.value, A.FString)
    return arg.value


def test_fstring_parts_and_fields_are_parsed_expressions() -> None:
    f = fstring("f\"loss {x:.3f} at {i + 1} {{b}} {d['k']!r:>8}\\n\"")
    lit = [p for p in f.parts if isinstance(p, str)]
    fields = [p for p in f.parts if isinstance(p, A.FField)]
    assert lit == ["loss ", " at ", " {b} ", "\n"]
    assert [p.spec for p in fields] == [".3f", "", ">8"]
    assert [p.conv for p in fields] == ["", "", "r"]
    assert fields[0].value == A.Name("x")
    assert fields[1].value == A.Binary("+", A.Name("i"), A.Num(1))
    assert isinstance(fields[2].value, A.Index)


def test_fstring_fields_may_hold_strings_of_either_quote_and_brackets() -> None:
    f = fstring("f\"{d['}']} {g(\"a\", [1, {'k': 2}])} {a != b}\"")
    fields = [p for p in f.parts if isinstance(p, A.FField)]
    assert fields[0].value.indices == [A.Str("}")]
    assert isinstance(fields[1].value, A.Call)
    assert fields[2].value == A.Binary("!=", A.Name("a"), A.Name("b")) and not fields[2].conv


def test_fstring_field_spans_point_into_the_string() -> None:
    f = fstring('f"ab {value:>4}"')
    (field,) = [p for p in f.parts if isinstance(p, A.FField)]
    assert (field.value.span.line, field.value.span.col) == (1, 13)


@pytest.mark.parametrize("src, code", [
    ('f"a } b"', "E0800"),
    ('f"a { b"', "E0800"),
    ('f"{}"', "E0801"),
    ('f"{  }"', "E0801"),
    ('f"{x:{w}}"', "E0802"),
    ('f"{x:.3q}"', "E0802"),
    ('f"{x:\'}"', "E0802"),
    ('f"{x!q}"', "E0803"),
    ('f"{a // b}"', "E0807"),
    ('f"{a +}"', "E0201"),
    ('f"{a b}"', "E0201"),
    ('f"{x}', "E0102"),
    ('f"\\q {x}"', "E0104"),
])
def test_bad_fstrings_get_diagnostics(src: str, code: str) -> None:
    assert code in codes(f"print({src})\n")


def test_an_fstring_error_does_not_stop_the_next_statement() -> None:
    diags = parse('print(f"{}")\nprint(f"{1 +}")\nlet x = 1\n')[1]
    assert [d.span.line for d in diags] == [1, 2]


# ----------------------------------------------------------------------------- formatting

@pytest.mark.parametrize("src", [
    "let x: trit = 1\nlet y = x\nprint(y)\n",
    "fn f(a: int) -> int {\n    return a\n}\n\nz = f(1)\nprint(f\"z={z:>4} {{ok}}\")\n",
    'main {\n    print(f"{a!r} \\"q\\" \\n {(c ? a : b)} {x:.2%}")\n}\n',
    "let s = 1\n\nmain {\n    print(s)\n}\n",
])
def test_formatter_prints_statements_main_and_fstrings_canonically(src: str) -> None:
    out = format_source(src)
    assert parse(out)[0] == parse(src)[0]
    assert format_source(out) == out


def test_formatter_keeps_a_script_together_and_sets_items_apart() -> None:
    out = format_source("let a = 1\nlet b = 2\nfn f() { return }\nprint(a)\n")
    assert out == "let a = 1\nlet b = 2\n\nfn f() {\n    return\n}\n\nprint(a)\n"


def test_formatter_escapes_fstring_text_and_parenthesizes_colons() -> None:
    out = format_source('print(f"{{x}} \\u{1} {(c ? 1 : 2)}")\n')
    assert out == 'print(f"{{x}} \\u{1} {1 if c else 2}")\n'
    f = fstring('f"\\u{7b}{x}"')
    assert f.parts[0] == "{" and isinstance(f.parts[1], A.FField)


def test_adjacent_string_literals_are_one_string() -> None:
    # the seed's custom_conv `extra_repr`: `return (f"in={a}, " f"k={k}, " "…")`
    f = fstring('f"in={a}, "\n    "mid, " f"out={b}"')
    assert [p if isinstance(p, str) else p.value.id for p in f.parts] == [
        "in=", "a", ", mid, out=", "b"]
    (stmt,) = items('print("x" "y" \'z\')\n')
    assert stmt.value.args[0].value == A.Str("xyz")
    src = 'let s = (f"a={a}, "\n    f"b={b}")\n'
    out = format_source(src)
    assert out == 'let s = f"a={a}, b={b}"\n' and parse(out)[0] == parse(src)[0]


def test_assigning_to_underscore_drops_the_value() -> None:
    # the seed's attention_mechanism: `_ = model(image)`
    (fn,) = items("fn f(x: Tensor) -> Tensor {\n    _ = g(x)\n    return x\n}\n")
    assert isinstance(fn.body[0], A.ExprStmt) and isinstance(fn.body[0].value, A.Call)
    from tritium.check import check_source
    ok = check_source("fn f(x: Tensor) -> Tensor {\n    _ = relu(x)\n    return x\n}\n")
    assert ok.ok, [d.message for d in ok.errors]
    bad = check_source("fn f(x: int) -> int {\n    _ += 1\n    return x\n}\n")
    assert "E0311" in [d.code for d in bad.errors]   # only the plain `_ = …` drops a value
