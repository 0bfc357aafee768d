"""Hypothesis strategies that generate well-formed .tri source text.

The text is built bottom-up from small pieces, each of which remembers the precedence level
of its outermost operator, so the generator only adds the parentheses that validity needs
(plus a few redundant ones at random). Layout varies on purpose: spacing, newlines inside
brackets and after binary operators, `;` and `,` separators, both spellings of types,
conditionals and named arguments, and comments of every kind in many positions.
"""

from __future__ import annotations

import builtins
import keyword
from dataclasses import dataclass, field

from hypothesis import strategies as st

from tritium.check.builtins import FUNCTIONS
from tritium.check.library import LAYERS
from tritium.frontend.lexer import KEYWORDS
from tritium.frontend.names import MODULE_ATTRS, is_name
from tritium.frontend.parser import DTYPES as PARSER_DTYPES

NAMES = ["x", "y", "h", "w", "n", "c", "alpha", "beta", "c_in", "c_out", "stride", "hidden",
         "N", "B", "in_features", "out_features", "_tmp", "x2", "params", "forward", "shape"]
KINDS = ["TernaryLinear", "TernaryConv2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "Down",
         "Residual", "MyBlock"]
KEYS = ["in_features", "out_features", "kernel_size", "stride", "padding", "bias", "quantizer",
        "threshold", "num_features", "type", "milestones", "lr", "k1"]
KEYWORD_KEYS = ["if", "in", "model", "for"]
DTYPES = ["trit", "bool", "int", "int8", "int32", "float", "float16", "bfloat16", "float32",
          "str"]
SECTIONS = ["training", "performance", "quantization", "repeat", "inference"]
FUNCS = ["relu", "flatten", "ternary_matmul", "ones", "zeros", "random_ternary", "softmax",
         "range", "len", "f"]

# (operator, precedence) as in the parser; comparisons cannot be chained.
BINARY = [("or", 2), ("and", 3), ("==", 5), ("!=", 5), ("<", 5), ("<=", 5), (">", 5),
          (">=", 5), ("is", 5), ("is not", 5), ("in", 5), ("not in", 5), ("+", 6), ("-", 6),
          ("*", 7), ("/", 7), ("%", 7), ("@", 7)]
COMPARE = {"==", "!=", "<", "<=", ">", ">="}
# Operators after which a line break continues the expression.
CONTINUES = {"+", "-", "*", "/", "%", "@", "**", "==", "!=", "<", "<=", ">", ">=", "and",
             "or"}

ATOM, POSTFIX, POW, UNARY, NOT, RANGE, COND = 11, 10, 9, 8, 4, 1, 0


@dataclass(frozen=True)
class E:
    """A generated expression: its text and the precedence level of its outer form."""
    text: str
    level: int
    compare: bool = False   # outermost operator is a (non-chainable) comparison


# ----------------------------------------------------------------------------- leaves

comment_text = st.text(
    alphabet=st.sampled_from(list("abcxyz XYZ019_-*/#:;{}()[]\"'\\éπ∑→")), max_size=20)


@st.composite
def line_comment(draw) -> str:
    marker = draw(st.sampled_from(["//", "#", "// ", "# "]))
    return marker + draw(comment_text).rstrip()


@st.composite
def block_comment(draw) -> str:
    body = draw(st.lists(comment_text, min_size=1, max_size=3)).copy()
    text = "\n".join(body).replace("*/", "* /")
    if text.endswith("*"):
        text += " "
    return f"/*{text}*/"


@st.composite
def gap(draw) -> str:
    """Whitespace between two tokens on one line, sometimes holding a block comment."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return f" {draw(block_comment())} "
    return " " if choice < 8 else "  "


@st.composite
def ident(draw) -> str:
    if draw(st.integers(0, 7)) == 0:
        return draw(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
            lambda s: s not in {"model", "block", "layer", "fn", "def", "param", "let",
                                "return", "if", "else", "for", "in", "import", "and", "or",
                                "not", "is", "true", "false"}))
    return draw(st.sampled_from(NAMES))


def escape_char(ch: str, quote: str, style: int) -> str:
    if ch == "\\":
        return "\\\\"
    if ch == quote:
        return "\\" + quote
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    if ch == "\0":
        return "\\0"
    if not ch.isprintable() or (style == 1 and ord(ch) > 127):
        return f"\\u{{{ord(ch):x}}}" if ord(ch) > 0xFFFF or style else f"\\u{ord(ch):04x}"
    return ch


@st.composite
def string_lit(draw) -> str:
    value = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12))
    quote = draw(st.sampled_from(['"', "'"]))
    style = draw(st.integers(0, 1))
    body = "".join(escape_char(ch, quote, style) for ch in value)
    if quote == "'" and draw(st.booleans()):
        body = body.replace('"', '\\"')
    return quote + body + quote


@st.composite
def number(draw) -> E:
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        text = str(draw(st.integers(0, 10**6)))
    elif kind == 4:
        text = draw(st.sampled_from(["1_000", "0", "007", "12_3"]))
    elif kind == 5:
        text = f"{draw(st.integers(-1, 1)) % 3}t" if draw(st.booleans()) else "1t"
    elif kind == 6:
        text = draw(st.sampled_from(["1e-3", "2.5E+4", ".5", "1.0", "3e10", "1e999", "0.0",
                                     "1_0.5", "6.02e23"]))
    else:
        f = draw(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
        text = repr(f)
    if draw(st.integers(0, 5)) == 0:
        return E("-" + text, UNARY)
    return E(text, ATOM)


# ----------------------------------------------------------------------------- expressions

def wrap(draw, e: E, need: int) -> str:
    if e.level < need or draw(st.integers(0, 15)) == 0:
        return f"({e.text})"
    return e.text


def op_text(draw, op: str) -> str:
    """A binary operator with its spacing: spaces, tight (symbols only) or a line break."""
    choice = draw(st.integers(0, 12))
    if op in CONTINUES and choice == 0:
        return f" {op}\n        "
    if choice == 1 and op not in {"and", "or", "is", "is not", "in", "not in", "/", "//"}:
        return op
    return f"{draw(gap())}{op}{draw(gap())}"


@st.composite
def atom(draw) -> E:
    choice = draw(st.integers(0, 9))
    if choice <= 3:
        return E(draw(ident()), ATOM)
    if choice <= 5:
        return draw(number())
    if choice == 6:
        return E(draw(string_lit()), ATOM)
    if choice == 7:
        return E(draw(st.sampled_from(["true", "false", "True", "False", "None"])), ATOM)
    if choice == 8:
        return E("?", ATOM)
    return E(draw(ident()), ATOM)


def sep_list(draw, items: list[str]) -> str:
    """Items of a bracketed list, separated by `,` with spaces or line breaks."""
    out = []
    for i, item in enumerate(items):
        out.append(item)
        if i + 1 < len(items):
            out.append(",\n    " if draw(st.integers(0, 6)) == 0 else ", ")
    if items and draw(st.integers(0, 6)) == 0:
        out.append(",")
    return "".join(out)


@st.composite
def expr(draw, depth: int = 3) -> E:
    if depth <= 0:
        return draw(atom())
    sub = expr(depth - 1)
    choice = draw(st.integers(0, 19))
    if choice <= 2:
        return draw(atom())
    if choice <= 6:
        op, prec = draw(st.sampled_from(BINARY))
        left, right = draw(sub), draw(sub)
        lt = f"({left.text})" if op in COMPARE and left.compare else wrap(draw, left, prec)
        rt = wrap(draw, right, prec + 1)
        if op in {"/", "//"} and rt.startswith(("*", "/")):
            rt = f"({rt})"
        return E(f"{lt}{op_text(draw, op)}{rt}", prec, op in COMPARE)
    if choice == 7:
        base, exp = draw(sub), draw(sub)
        return E(f"{wrap(draw, base, POSTFIX)}{op_text(draw, '**')}{wrap(draw, exp, UNARY)}",
                 POW)
    if choice == 8:
        operand = draw(sub)
        op = draw(st.sampled_from(["-", "+", "not "]))
        if op == "not ":
            return E(op + wrap(draw, operand, NOT), NOT)
        return E(op + wrap(draw, operand, UNARY), UNARY)
    if choice == 9:
        a, c, b = draw(sub), draw(sub), draw(sub)
        if draw(st.booleans()):
            return E(f"{wrap(draw, a, RANGE)} if {wrap(draw, c, RANGE)} else {b.text}", COND)
        return E(f"{wrap(draw, c, RANGE)} ? {a.text} : {b.text}", COND)
    if choice == 10:
        fn = draw(st.sampled_from(FUNCS))
        positional = [draw(sub).text for _ in range(draw(st.integers(0, 3)))]
        named = [f"{draw(ident())}{draw(st.sampled_from([': ', '=', ' = ']))}{draw(sub).text}"
                 for _ in range(draw(st.integers(0, 2)))]
        return E(f"{fn}({sep_list(draw, positional + named)})", POSTFIX)
    if choice == 11:
        target = draw(sub)
        indices = []
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.integers(0, 4))
            if kind == 0:
                parts = [draw(sub).text if draw(st.booleans()) else "" for _ in range(2)]
                indices.append(":".join(parts))
            elif kind == 1:
                indices.append(f"{draw(sub).text}::{draw(sub).text}")
            else:
                indices.append(draw(sub).text)
        return E(f"{wrap(draw, target, POSTFIX)}[{', '.join(indices)}]", POSTFIX)
    if choice == 12:
        target = draw(sub)
        return E(f"{wrap(draw, target, POSTFIX)}.{draw(st.sampled_from(['shape', 'T', 'in']))}",
                 POSTFIX)
    if choice == 13:
        items = [draw(sub).text for _ in range(draw(st.integers(0, 4)))]
        if draw(st.integers(0, 4)) == 0 and len(items) != 1:
            return E(f"({sep_list(draw, items)})", ATOM)
        return E(f"[{sep_list(draw, items)}]", ATOM)
    if choice == 14:
        return E(draw(dict_lit(depth - 1)), ATOM)
    if choice == 15:
        start, stop = draw(sub), draw(sub)
        stop_text = wrap(draw, stop, RANGE + 1)
        if stop_text.startswith("."):
            stop_text = f"({stop_text})"  # `...` is one token
        return E(f"{wrap(draw, start, RANGE + 1)}..{stop_text}", RANGE)
    if choice == 16:
        vals = ", ".join(draw(st.sampled_from(["1", "0", "-1"])) for _ in range(4))
        return E(f"TernaryTensor[2, 2]({vals})", POSTFIX)
    if choice == 17:
        return E(f"{draw(ident())}.shape[{draw(st.integers(0, 3))}]", POSTFIX)
    return E(f"({draw(sub).text})", ATOM)


@st.composite
def key(draw, allow_keyword: bool = False) -> str:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(string_lit())
    if choice == 1 and allow_keyword:
        return draw(st.sampled_from(KEYWORD_KEYS))
    return draw(st.sampled_from(KEYS))


@st.composite
def entries(draw, depth: int, min_size: int = 0, max_size: int = 5) -> str:
    """The inside of a `{ … }` config group, entries split by commas, `;` or new lines."""
    n = draw(st.integers(min_size, max_size))
    out = []
    for i in range(n):
        sep = draw(st.sampled_from([", ", ", ", "\n", ",\n", "; ", " "]))
        keyword_ok = sep in (", ", ",\n") or i == 0
        k = draw(key(allow_keyword=keyword_ok))
        if draw(st.integers(0, 6)) == 0 and depth > 0:
            value = draw(dict_lit(depth - 1))
        else:
            value = draw(expr(min(depth, 2))).text
        comment = ""
        if draw(st.integers(0, 8)) == 0:
            comment = f" {draw(block_comment())}"
        if i > 0:
            out.append(sep)
        if "\n" in sep and draw(st.integers(0, 4)) == 0:
            out.append(f"{draw(line_comment())}\n")
        out.append(f"{k}: {value}{comment}")
        if draw(st.integers(0, 8)) == 0 and i + 1 < n:
            out.append(f", {draw(line_comment())}\n")
    return "".join(out)


@st.composite
def dict_lit(draw, depth: int = 1) -> str:
    body = draw(entries(depth, 0, 3))
    if not body:
        return "{}"
    return "{ " + body + " }" if draw(st.booleans()) else "{\n" + body + "\n}"


# ----------------------------------------------------------------------------- types

@st.composite
def dims(draw) -> list[str]:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 5))
        if kind <= 1:
            out.append(str(draw(st.integers(1, 512))))
        elif kind <= 3:
            out.append(draw(st.sampled_from(["batch", "N", "c_in", "h", "w", "n_out"])))
        elif kind == 4:
            out.append("?")
        else:
            out.append(draw(st.sampled_from(["2 * c", "c + 1", "h / 2", "-1"])))
    return out


@st.composite
def type_expr(draw, angle_ok: bool = True) -> str:
    """A type. `angle_ok=False` avoids ending with `>` (a `param` without init: see the
    formatter's notes on `;`)."""
    choice = draw(st.integers(0, 9))
    if choice <= 2:
        return draw(st.sampled_from(DTYPES))
    name = draw(st.sampled_from(["Tensor", "TernaryTensor"]))
    dtype = draw(st.sampled_from(DTYPES))
    ds = draw(dims())
    shape = f"[{', '.join(ds)}]"
    if choice == 3:
        return name
    if choice <= 5 and not (ds and ds[0] in DTYPES):
        return f"{name}{shape}"
    if choice == 6:
        return f"{name}[{', '.join([dtype, *ds])}]"
    if not angle_ok:
        return f"{name}{shape}"
    if choice == 7:
        return f"{name}<{dtype}>"
    if choice == 8:
        return f"{name}<[{', '.join(ds)}]>"
    return f"{name}<{dtype}, {shape}>"


@st.composite
def param_spec(draw, allow_default: bool = True) -> str:
    text = draw(ident())
    if draw(st.integers(0, 4)) > 0:
        text += f": {draw(type_expr())}"
    if allow_default and draw(st.integers(0, 3)) == 0:
        text += f" = {draw(expr(1)).text}"
    return text


# ----------------------------------------------------------------------------- statements

def indent_lines(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


@st.composite
def value_expr(draw, depth: int = 3) -> E:
    """An expression that can end a statement: a trailing `?` would continue the line."""
    value = draw(expr(depth))
    if value.text.endswith("?"):
        return E(f"({value.text})", ATOM)
    return value


@st.composite
def simple_statement(draw) -> str:
    choice = draw(st.integers(0, 5))
    value = draw(value_expr(3))
    if choice == 0:
        ty = f": {draw(type_expr())}" if draw(st.booleans()) else ""
        return f"let {draw(ident())}{ty} = {value.text}"
    if choice == 1:
        op = draw(st.sampled_from(["=", "+=", "-=", "*=", "/=", "@=", "**="]))
        target = draw(st.sampled_from(["x", "out", "y[0]", "self.w", "x.shape[1]", "h"]))
        return f"{target} {op} {value.text}"
    if choice == 2:
        return "return" if draw(st.integers(0, 3)) == 0 else f"return {value.text}"
    if choice == 3:
        return f"{draw(st.sampled_from(FUNCS))}({value.text})"
    return f"{draw(ident())} = {value.text}"


@st.composite
def statement(draw, depth: int) -> str:
    choice = draw(st.integers(0, 9))
    if depth > 0 and choice == 0:
        cond = draw(expr(2)).text
        then = draw(statements(depth - 1))
        text = f"if {cond} {{\n{indent_lines(then)}\n}}"
        kind = draw(st.integers(0, 3))
        if kind == 1:
            text += f" else {{\n{indent_lines(draw(statements(depth - 1)))}\n}}"
        elif kind == 2:
            text += f"\nelse if {draw(expr(1)).text} {{ {draw(simple_statement())} }}"
        return text
    if depth > 0 and choice == 1:
        it = draw(st.sampled_from(["0..n", "0..4", "range(n)", "1..x.shape[0]", "xs"]))
        body = draw(statements(depth - 1))
        return f"for {draw(ident())} in {it} {{\n{indent_lines(body)}\n}}"
    return draw(simple_statement())


@st.composite
def with_comments(draw, lines: list[str], semicolons: bool = True) -> str:
    """Join statements/items with newlines (or `;`), adding comments and blank lines."""
    out: list[str] = []
    for i, line in enumerate(lines):
        roll = draw(st.integers(0, 9))
        if roll == 0:
            out.append(draw(line_comment()))
        elif roll == 1:
            out.append(draw(block_comment()))
        elif roll == 2 and i > 0:
            out.append("")
        roll = draw(st.integers(0, 9))
        if roll == 0:
            line += f"  {draw(line_comment())}"
        elif roll == 1:
            line += f" {draw(block_comment())}"
        elif roll == 2 and semicolons and "\n" not in line:
            line += ";"
        out.append(line)
    return "\n".join(out)


@st.composite
def statements(draw, depth: int = 2) -> str:
    items = [draw(statement(depth)) for _ in range(draw(st.integers(1, 4)))]
    return draw(with_comments(items))


# ----------------------------------------------------------------------------- declarations

@st.composite
def layer_kind(draw) -> str:
    text = draw(st.sampled_from(KINDS))
    if draw(st.integers(0, 4)) == 0:
        text += f"[{draw(st.sampled_from(['2', 'n', '3']))}]"
    if draw(st.integers(0, 5)) == 0:
        text += f"({', '.join(draw(expr(1)).text for _ in range(draw(st.integers(0, 2))))})"
    body = draw(entries(2))
    if body or draw(st.booleans()):
        if "\n" in body or draw(st.integers(0, 3)) == 0:
            text += " {\n" + indent_lines(body) + "\n}"
        else:
            text += " { " + body + " }"
    return text


@st.composite
def layer_decl(draw) -> str:
    name = draw(ident())
    if draw(st.integers(0, 4)) == 0:
        cond = draw(expr(2)).text
        if draw(st.booleans()):
            cond = f"({cond})"
        kinds = [draw(layer_kind()) for _ in range(draw(st.integers(1, 3)))]
        return f"layer {name}: if {cond} {{\n{indent_lines(chr(10).join(kinds))}\n}}"
    return f"layer {name}: {draw(layer_kind())}"


@st.composite
def method(draw, bare_ok: bool) -> str:
    name = draw(st.sampled_from(["forward", "helper", "f"]))
    params = ", ".join(draw(param_spec()) for _ in range(draw(st.integers(0, 3))))
    ret = f" -> {draw(type_expr())}" if draw(st.booleans()) else ""
    keyword = "" if bare_ok and draw(st.booleans()) else draw(st.sampled_from(["fn ", "def "]))
    body = draw(statements(2))
    if bare_ok and not keyword and not ret:
        ret = f" -> {draw(type_expr())}" if draw(st.booleans()) else ""
    return f"{keyword}{name}({params}){ret} {{\n{indent_lines(body)}\n}}"


@st.composite
def section(draw) -> str:
    name = draw(st.sampled_from(SECTIONS))
    body = draw(entries(2, 0, 6))
    if "\n" in body:
        return f"{name} {{\n{indent_lines(body)}\n}}"
    return f"{name} {{ {body} }}"


@st.composite
def params_section(draw) -> str:
    specs = [draw(param_spec()) for _ in range(draw(st.integers(0, 4)))]
    if draw(st.booleans()):
        return "params {\n" + indent_lines(draw(with_comments(specs))) + "\n}"
    return "params { " + ", ".join(specs) + " }"


@st.composite
def param_decl(draw) -> str:
    if draw(st.booleans()):
        return f"param {draw(ident())}: {draw(type_expr())} = {draw(value_expr(2)).text}"
    return f"param {draw(ident())}: {draw(type_expr(angle_ok=False))}"


@st.composite
def body_item(draw, kind: str) -> str:
    choice = draw(st.integers(0, 9))
    if choice <= 1:
        k = draw(string_lit()) if draw(st.integers(0, 5)) == 0 else draw(ident())
        return f"{k}: {draw(expr(2)).text}"
    if choice <= 3:
        return draw(layer_decl())
    if choice == 4:
        return draw(method(bare_ok=True))
    if choice == 5:
        return draw(section())
    if choice == 6:
        return draw(param_decl())
    if choice == 7:
        return f"let {draw(ident())} = {draw(value_expr(2)).text}"
    if choice == 8 and kind == "block":
        return draw(params_section())
    return draw(simple_statement())


@st.composite
def body(draw, kind: str) -> str:
    items = [draw(body_item(kind)) for _ in range(draw(st.integers(0, 5)))]
    return draw(with_comments(items))


@st.composite
def item(draw) -> str:
    choice = draw(st.integers(0, 6))
    name = draw(st.sampled_from(["Net", "Tiny", "Down", "Residual", "Proj", "Head", "M2"]))
    header_comment = f"  {draw(line_comment())}" if draw(st.integers(0, 5)) == 0 else ""
    if choice <= 1:
        kw = "model" if choice == 0 else "block"
        return f"{kw} {name} {{{header_comment}\n{indent_lines(draw(body(kw)))}\n}}"
    if choice == 2:
        specs = [draw(param_spec(allow_default=False)) for _ in range(draw(st.integers(0, 4)))]
        layout = draw(st.integers(0, 5))
        if layout == 0:
            joined = ",\n    ".join(specs)
        elif layout == 1:
            joined = "".join(f"\n    {draw(line_comment())}\n    {spec}, {draw(line_comment())}"
                             for spec in specs) + "\n"
        else:
            joined = ", ".join(specs)
        ret = f" -> {draw(type_expr())}" if draw(st.booleans()) else ""
        return (f"layer {name}({joined}){ret} {{{header_comment}\n"
                f"{indent_lines(draw(body('layer')))}\n}}")
    if choice == 3:
        return f"layer {name} {{{header_comment}\n{indent_lines(draw(body('layer')))}\n}}"
    if choice == 4:
        return draw(method(bare_ok=False))
    if choice == 5:
        return f"import {draw(string_lit())}"
    return f"layer {name}(x: Tensor) -> Tensor {{\n    return relu(x)\n}}"


@st.composite
def programs(draw) -> str:
    """A whole well-formed program as source text."""
    items = [draw(item()) for _ in range(draw(st.integers(1, 4)))]
    text = draw(with_comments(items, semicolons=False))
    if draw(st.integers(0, 3)) == 0:
        text = f"{draw(line_comment())}\n\n{text}"
    if draw(st.integers(0, 3)) == 0:
        text += f"\n{draw(block_comment())}"
    return text + "\n"


# ----------------------------------------------------------------------------- hostile programs
#
# Strategies for hostile programs: valid models whose names, config keys, strings, float
# constants and imported file names are chosen to break generated Python (issue 11).
#
# `clean_models()` draws a program that must check clean: a chain of builtin layers and
# instances of an imported block with consistent shapes, every name drawn from a pool of
# Python keywords, builtins, `nn.Module` attributes, the generated code's own imports and
# internal names, and names that differ only by underscores (`training`, `training_`,
# `training__`); config constants under quoted keys; training-section strings and keys
# carrying payloads that set `builtins.TRITIUM_PWNED` or create a file `PWNED`; non-finite
# float constants (`inf`, `nan` and `1e309` as names and values); and an import of a file
# whose name holds newlines, backslashes, quotes, braces, line separators and non-ASCII text.

SENTINEL = "TRITIUM_PWNED"

# Python code that, if it ever ran, leaves a trace the tests look for.
PAYLOADS = [
    f"__import__('builtins').{SENTINEL} = 1",
    "open('PWNED', 'w').write('x')",
    f"'); __import__('builtins').{SENTINEL} = 1; ('",
    f'"); __import__("builtins").{SENTINEL} = 1; ("',
    f'"""\n__import__("builtins").{SENTINEL} = 1\n"""',
    f"\\\n__import__('builtins').{SENTINEL} = 1 #",
    f"\n__import__('builtins').{SENTINEL} = 1\n",
    f"\u2028__import__('builtins').{SENTINEL} = 1",
    f"\r__import__('builtins').{SENTINEL} = 1",
    "{x}{{}}{0}%s%(a)s",
]

_RESERVED = sorted(
    (set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | MODULE_ATTRS
     | {"self", "torch", "nn", "F", "trt", "math", "annotations", "inf", "nan",
        "tritium_folds", "tritium_training", "tritium_performance", "super", "x_q", "_W_q",
        "_i", "_c", "_c_", "_i_", "i", "c", "q", "W_q", "_x_qu", "__all__"})
    - set(KEYWORDS) - set(LAYERS) - set(FUNCTIONS))
POOL = sorted({w for w in _RESERVED if is_name(w)}
              | {w + "_" * k for w in ("training", "self", "x", "forward", "eval", "inf", "_x",
                                       "lambda", "torch", "i", "_c") for k in (1, 2, 3)
                 if is_name(w + "_" * k)})

hostile_names = st.one_of(st.sampled_from(POOL),
                          st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)).filter(
    lambda s: is_name(s) and s not in KEYWORDS and s not in LAYERS and s not in FUNCTIONS)

_SPECIAL = list("\n\r\t\\\"'{}[]()%#;:$`\u2028\u2029\x85\x0b\x0c\x1b\x7fé𝔘∑ ") + ["\"\"\"",
                                                                                "'''"]
hostile_text = st.one_of(
    st.sampled_from(PAYLOADS),
    st.lists(st.one_of(st.sampled_from(_SPECIAL), st.sampled_from(PAYLOADS),
                       st.text(st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="\x00"), max_size=6)),
             max_size=6).map("".join),
)


def tri_string(value: str) -> str:
    """A .tri string literal with the value `value`."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif not ch.isprintable():
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


file_names = st.one_of(
    st.sampled_from(["a\nimport os\nos.system('touch PWNED')\n#", "a\\xz", 'q"""x', "é{}",
                     "b\u2028c", "{x}", "a'b\"c", "x\r\ny", " ", "-", "%s", "\\", "𝔘" * 40,
                     "t" * 200]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
            min_size=1, max_size=40),
).filter(lambda s: s not in (".", "..") and len((s + ".tri").encode("utf-8")) <= 255)

finite_floats = st.one_of(st.sampled_from([0.5, 1.0, 2.0, 1e-3, 0.0, 1e30]),
                          st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
nonfinite = st.sampled_from(["1e309", "-1e309", "1e400", "1.8e308"])

BLOCK = """block {blk} {{
    params {{ {n}: int }}
    layer {fc}: Linear {{ in_features: {n}, out_features: {n} }}
    forward({x}: Tensor[{b}, {n}]) -> Tensor[{b}, {n}] {{
        return relu({fc}({x}))
    }}
}}
"""


@dataclass
class Program:
    text: str
    entry: str
    in_dim: int
    out_dim: int
    imports: dict[str, str] = field(default_factory=dict)   # file name -> text


@st.composite
def clean_models(draw) -> Program:
    names = draw(st.lists(hostile_names, min_size=24, max_size=24, unique=True))
    it = iter(names)
    model, blk, bn, bfc, bx, bb, xname, batch = (next(it) for _ in range(8))
    # `Tensor[int, 4]` spells a dtype: a dim named like a dtype would change the rank
    if batch in PARSER_DTYPES or bb in PARSER_DTYPES:
        batch = bb = "Bdim"   # no other drawn name looks like this
    imports: dict[str, str] = {}
    head: list[str] = []
    body: list[str] = []
    stmts: list[str] = []
    use_block = draw(st.booleans())
    if use_block:
        fname = draw(file_names) + ".tri"
        imports[fname] = BLOCK.format(blk=blk, n=bn, fc=bfc, x=bx, b=bb)
        head.append(f"import {tri_string(fname)}")
    # config constants: plain, quoted (valid) keys, non-finite floats
    consts = []
    for _ in range(draw(st.integers(0, 3))):
        c = next(it)
        v = draw(st.integers(1, 3))
        key = tri_string(c) if draw(st.booleans()) else c
        body.append(f"{key}: {v}")
        consts.append((c, v))
    big = None
    if draw(st.booleans()):
        big = next(it)
        body.append(f"{big}: {draw(nonfinite)}")
    cur = draw(st.integers(1, 6))
    in_dim = cur
    v = xname
    for _ in range(draw(st.integers(1, 5))):
        lname = next(it)
        choice = draw(st.integers(0, 7))
        if choice == 0 or choice == 1:
            out = draw(st.integers(1, 6))
            kind = "Linear" if choice == 0 else "TernaryLinear"
            body.append(f"layer {lname}: {kind} {{ in_features: {cur}, out_features: {out} }}")
            cur = out
        elif choice == 2:
            body.append(f"layer {lname}: ReLU")
        elif choice == 3:
            p = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
            body.append(f"layer {lname}: Dropout {{ p: {p} }}")
        elif choice == 4:
            body.append(f"layer {lname}: LayerNorm {{ normalized_shape: {cur} }}")
        elif choice == 5:
            body.append(f"layer {lname}: Softmax {{ dim: {draw(st.sampled_from([-1, 1, -2, 0]))} }}")
        elif choice == 6 and use_block:
            reps = draw(st.integers(1, 3))
            rep = f"[{reps}]" if draw(st.booleans()) else ""
            body.append(f"layer {lname}: {blk}{rep} {{ {bn}: {cur} }}")
        else:
            body.append(f"layer {lname}: Identity")
        w = next(it)
        stmts.append(f"let {w} = {lname}({v})")
        v = w
        if consts and draw(st.booleans()):
            c, _ = draw(st.sampled_from(consts))
            stmts.append(f"{v} = {v} * {c} + {draw(finite_floats)!r}")
    if big is not None and draw(st.booleans()):
        # a non-finite constant compared, not multiplied, so outputs stay finite
        stmts.append(f"{v} = {v} if {big} > 0 else {v}")
    stmts.append(f"return {v}")
    training = []
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.one_of(st.sampled_from(["optimizer", "loss", "dataset"]), hostile_text))
        training.append(f"{tri_string(k)}: {tri_string(draw(hostile_text))}")
    # pick the distinct training keys (a repeated key is reported as given twice)
    seen: set[str] = set()
    training = [t for t in training if not (t.split(":")[0] in seen or seen.add(t.split(":")[0]))]
    lines = [*head, f"model {model} {{"]
    lines += [f"    {b}" for b in body]
    lines.append(f"    forward({xname}: Tensor[{batch}, {in_dim}]) -> Tensor[{batch}, {cur}] {{")
    lines += [f"        {s}" for s in stmts]
    lines.append("    }")
    if training:
        lines.append("    training { " + ", ".join(training) + " }")
    lines.append("}")
    return Program("\n".join(lines) + "\n", model, in_dim, cur, imports)


@st.composite
def bad_name_programs(draw) -> str:
    """Programs where a name that cannot be a Python name reaches a binding: a quoted
    config key that is no identifier, or a name starting with `__`. Each must get E0311."""
    bad = draw(st.one_of(
        hostile_text.filter(lambda s: not is_name(s) and s and "\x00" not in s),
        st.sampled_from(["__import__", "__class__", "__init__", "__x", "__builtins__"]),
    ))
    where = draw(st.integers(0, 2)) if is_name("x" + bad[2:]) and bad.startswith("__") else 0
    if where == 0:
        item = f"{tri_string(bad)}: 1"
        use = "x"
    elif where == 1:
        item = f"layer {bad}: ReLU"
        use = f"{bad}(x)"
    else:
        item = f"{bad}: 2"
        use = f"x * {bad}"
    return (f"model M {{\n    {item}\n    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{\n"
            f"        return {use}\n    }}\n}}\n")


_BIG = ["9 ** 9 ** 9", "2 ** 64", "10 ** 19", "(-2) ** 63 * 2", "9223372036854775807 + 1",
        "-9223372036854775807 - 2", "2.0 ** 99999", "1e308 * 10.0", "10 ** 400.0",
        "99999999999999999999", "9" * 5000, "1" + "0" * 4301, "1e309", "-(1e309)",
        "int(1e300)", "int(1e309)", "3 ** 40", "7 * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7"
        " * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7 * 7"]
_REPEAT = ["1000000000", "1025", "1024", "2 ** 40", "0", "-1"]
_SHAPES = ["[100000000000, 100000000000]", "[2147483648]", "[65536, 65536, 8]", "[4, 4]"]


_LOOP_N = ["60", "64", "5000", "100000", "1000000000"]
_SEEDS = ["[1]", '"ab"', "[1, 2, 3]"]


def _expensive(kind: int, e: str = "1", r1: str = "1", r2: str = "1", shape: str = "[4, 4]",
               n: str = "1", seed: str = "[1]") -> str:
    if kind == 0:
        return f"model M {{\n    k: {e}\n    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{ return x * k }}\n}}\n"
    if kind == 1:
        return (f"model M {{\n    layer fc: Linear {{ in_features: 4, out_features: {e} }}\n"
                f"    forward(x: Tensor[b, 4]) -> Tensor {{ return fc(x) }}\n}}\n")
    if kind == 2:
        return (BLOCK.format(blk="B", n="n", fc="fc", x="x", b="b")
                + f"block C {{\n    params {{ n: int }}\n    layer r: B[{r1}] {{ n: n }}\n"
                  f"    forward(x: Tensor[b, n]) -> Tensor[b, n] {{ return r(x) }}\n}}\n"
                  f"model M {{\n    layer r: C[{r2}] {{ n: 4 }}\n"
                  f"    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{ return r(x) }}\n}}\n")
    if kind == 3:
        return (f"model M {{\n    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{\n"
                f"        for i in 0..{n} {{ for j in 0..{n} {{ x = x + 1 }} }}\n"
                f"        return x\n    }}\n}}\n")
    if kind == 4:
        return (f"model M {{\n    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{\n"
                f"        let a = {seed}\n        for i in 0..{n} {{ a = a + a }}\n"
                f"        return x\n    }}\n}}\n")
    if kind == 5:
        return (f"model M {{\n    param w: Tensor{shape}\n"
                f"    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{\n"
                f"        let z = zeros({shape})\n        return x\n    }}\n}}\n")
    return (f"model M {{\n    layer r: ReLU[{r1}]\n"
            f"    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {{ return r(x) * ({e}) }}\n}}\n")


def all_expensive_programs() -> list[str]:
    """Every program of the expensive family (a few hundred): each kind draws only the
    values it uses, so the whole space is enumerable and tested exhaustively, not sampled."""
    out = [_expensive(0, e=e) for e in _BIG] + [_expensive(1, e=e) for e in _BIG]
    out += [_expensive(2, r1=a, r2=b) for a in _REPEAT for b in _REPEAT]
    out += [_expensive(3, n=n) for n in _LOOP_N]
    out += [_expensive(4, n=n, seed=s) for n in _LOOP_N for s in _SEEDS]
    out += [_expensive(5, shape=s) for s in _SHAPES]
    out += [_expensive(6, r1=r, e=e) for r in _REPEAT for e in _BIG]
    return out


def expensive_programs() -> st.SearchStrategy[str]:
    """Programs that ask the compiler for huge compile-time work: big powers, literals,
    repetitions (nested), loop unrolling, list and string doubling, giant shapes. The space
    is finite (`all_expensive_programs`); hypothesis draws from it and stops once it has
    seen every program."""
    return st.sampled_from(all_expensive_programs())


# ----------------------------------------------------------------------------- layer configs
#
# One builtin layer with drawn config values (in and out of range) on an input of a drawn
# shape: whatever the checker accepts must build and run in PyTorch with the output shape
# the checker inferred.

_SMALL = st.integers(-2, 5)


def _value(draw, key) -> str:
    t = key.type
    if key.choices and draw(st.integers(0, 4)):
        return tri_string(draw(st.sampled_from(key.choices)))
    if t == "int":
        return str(draw(st.one_of(_SMALL, st.integers(-1000, 1000))))
    if t == "float":
        return repr(draw(st.sampled_from([0.0, 0.1, 0.5, 1.0, 1.5, -0.5, 1e-5, 7.5])))
    if t == "bool":
        return draw(st.sampled_from(["true", "false"]))
    if t in ("pair", "ints", "padding"):
        if t == "padding" and draw(st.integers(0, 3)) == 0:
            return tri_string(draw(st.sampled_from(["same", "valid"])))
        small = st.one_of(st.integers(1, 2), st.integers(1, 2), _SMALL)
        if draw(st.booleans()):
            return str(draw(small))
        n = 2 if t != "ints" else draw(st.integers(1, 2))
        return "[" + ", ".join(str(draw(small)) for _ in range(n)) + "]"
    if t == "str":
        return tri_string(draw(st.sampled_from(["twn", "t2", "none", "x"])))
    return "1"


@st.composite
def layer_configs(draw):
    """(program text, input shape, input dtype) for one builtin layer."""
    from tritium.check.library import LAYERS as _LAYERS
    kind = draw(st.sampled_from(sorted(_LAYERS)))
    spec = _LAYERS[kind]
    rank = draw(st.integers(1, 4))
    if ("2d" in kind or kind == "BatchNorm2d") and draw(st.integers(0, 3)):
        rank = 4
    elif "Attention" in kind and draw(st.integers(0, 3)):
        rank = 3
    shape = [draw(st.integers(1, 6)) for _ in range(rank)]
    entries = []
    for key, k in spec.keys.items():
        if key in ("quantization", "format"):
            continue
        if k.required or draw(st.integers(0, 2)) == 0:
            # required sizes usually agree with the input, so that more programs check clean
            if key == "num_heads" and draw(st.integers(0, 3)):
                v = str(draw(st.sampled_from([h for h in range(1, shape[-1] + 1)
                                              if shape[-1] % h == 0])))
            elif k.required and k.type == "int" and draw(st.integers(0, 3)):
                v = str(shape[1] if rank > 1 and key in ("in_channels", "num_features")
                        else shape[-1] if key in ("in_features", "embed_dim", "num_features")
                        else draw(st.integers(1, 5)))
            elif key == "normalized_shape" and draw(st.integers(0, 2)):
                v = str(shape[-1])
            else:
                v = _value(draw, k)
            entries.append(f"{key}: {v}")
    dtype = "int64" if kind == "Embedding" and draw(st.integers(0, 3)) else "float32"
    dims = ", ".join(str(d) for d in shape)
    text = (f"model M {{\n    layer l: {kind} {{ {', '.join(entries)} }}\n"
            f"    forward(x: Tensor<{dtype}, [{dims}]>) -> Tensor {{ return l(x) }}\n}}\n")
    return text, tuple(shape), dtype
