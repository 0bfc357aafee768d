"""The lexer: one master regular expression, tokens with line:col spans, comments kept aside.

Newlines are tokens (statements and config entries end at a newline) except inside `(` and
`[`, and after a token that cannot end a line (a binary operator, `,`, `(`…): there a line
break just continues the expression, so `a +\\n b` is one expression. `-` is always an
operator: `x-1` is subtraction and `-1` is negation of a literal, folded by the checker.
`//` always starts a comment (integer division is the builtin `floordiv(a, b)`). Where it
reads like the seed language's floor division (`in_channels // groups`: after an operand on
the same line, followed by a name used in the program or a number) the lexer warns (W0900),
and where such a comment hides the closer of an open bracket it says so where the bracket
opened (W0901). Inside a list `[ … ]` opened on its line, whose `]` the comment
would hide, `//` between two operands is the floor division operator (W1001 says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .diagnostics import Diagnostic, Label, Severity, Span


class T(StrEnum):
    IDENT = "identifier"
    INT = "integer"
    FLOAT = "float"
    TRIT = "trit literal"
    STRING = "string"
    FSTRING = "f-string"
    OP = "operator"
    KEYWORD = "keyword"
    NEWLINE = "newline"
    EOF = "end of file"


KEYWORDS = frozenset({
    "model", "block", "layer", "fn", "def", "param", "let", "return", "if", "else", "for",
    "in", "import", "and", "or", "not", "is", "None", "true", "false", "True", "False",
})

# Keywords that are names wherever an item cannot start (see _contextual_names); the other
# keywords stay reserved everywhere.
CONTEXTUAL = frozenset({"model", "block", "layer", "param"})

# Longest operators first so that `**` wins over `*`, `..` over `.`, `->` over `-`.
OPERATORS = [
    "**=", "**", "->", "..=", "..", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "@=",
    "&&", "||",
    "+", "-", "*", "/", "%", "@", "<", ">", "=", ".", ",", ":", ";", "(", ")", "[", "]", "{", "}",
    "?", "|", "!",
]

def _ends_elision(tokens: list, last: Token) -> bool:
    """`let w = ...` at the end of a line: the docs' `...` (elided code) ends the statement,
    where a lone `.` would continue the line."""
    prev = tokens[-2] if len(tokens) >= 2 and tokens[-1] is last else None
    return last.text == "." and prev is not None and prev.kind is T.OP and prev.text == ".." \
        and prev.line == last.line and prev.end_col == last.col


# After these tokens a newline does not end the statement.
_CONTINUES = frozenset({
    "+", "-", "*", "/", "%", "@", "**", "==", "!=", "<", "<=", ">", ">=", "=", "+=", "-=",
    "*=", "/=", "@=", "**=", ",", "(", "[", "{", ".", "..", "->", ":", "?", "and", "or", "not",
    "|", "&&", "||", "!", "..=",
})

_OPEN = frozenset("([{")
_CLOSE = frozenset(")]}")

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}

_MASTER = re.compile(
    r"""
    [ \t\f\r]*
    (?:
    (?P<nl>\n)
  | (?P<lcomment>(?://|\#)[^\n]*)
  | (?P<bcomment>/\*)
  | (?P<number>(?:\d[\d_]*)(?:\.\d[\d_]*)?(?:[eE][+-]?[\d_]*)?[A-Za-z_0-9]*
              |\.\d[\d_]*(?:[eE][+-]?[\d_]*)?)
  | (?P<fstring>[fF](?=["']))
  | (?P<ident>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<string>["'])
  | (?P<op>"""
    + "|".join(re.escape(o) for o in OPERATORS)
    + r""")
    | (?P<ws>[ \t\f\r]*\Z)
    )
    """,
    re.VERBOSE,
)

_INT_RE = re.compile(r"\d[\d_]*")
# what follows `//` when it was meant as floor division: one operand, then an operator, a
# closer, a comma or the end of the line (`// groups`, `// 2 + 1`, `// stride)`)
# an operand after `//` then the end of the line, an operator or a closer (not `%`: in a
# comment `// 96% on the test set` is prose)
_FLOORDIV_RHS = re.compile(r"//\s*([A-Za-z_][A-Za-z_0-9]*|\d[\d_]*(?:\.\d+)?)\s*(?:$|[-+*/)\],}]|\()")
_CLOSER = {"(": ")", "[": "]", "{": "}"}
_OPERAND_AFTER = re.compile(r"//[ \t]*(?:[A-Za-z_(]|\d)")   # `// groups`, `// 2`, `// (a + b)`
_MAGNITUDE_RE = re.compile(r"(\d[\d_]*(?:\.\d+)?)([KMBGT])")
_MAGNITUDES = {"K": 10 ** 3, "M": 10 ** 6, "B": 10 ** 9, "G": 10 ** 9, "T": 10 ** 12}
# `0xFF`, `0b1010`, `0o17`; an underscore may separate digits (`0xFF_FF`, `0x_FF`)
_RADIX_RE = re.compile(r"0(?:[xX](?:_?[0-9a-fA-F])+|[bB](?:_?[01])+|[oO](?:_?[0-7])+)")
_FLOAT_RE = re.compile(r"(?:\d[\d_]*(?:\.\d[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?")


@dataclass(slots=True)
class Token:
    kind: T
    text: str          # the source text (for STRING: the decoded value)
    value: object      # int, float, str or None
    line: int
    col: int
    end_line: int
    end_col: int
    file: str
    # a line break followed this token but did not end the statement (the token is one
    # that continues a line, such as `>` or `?`); the parser uses it where such a token
    # can also end a statement (`param w: Tensor<f32, [2]>` at the end of a line)
    nl_after: bool = False
    op: str | None = None   # the text of an operator token (fast comparisons), else None

    @property
    def span(self) -> Span:
        return Span(self.file, self.line, self.col, self.end_line, self.end_col)

    def is_op(self, text: str) -> bool:
        return self.op == text

    def is_kw(self, text: str) -> bool:
        return self.kind is T.KEYWORD and self.text == text

    def describe(self) -> str:
        if self.kind is T.EOF:
            return "end of file"
        if self.kind is T.NEWLINE:
            return "end of line"
        if self.kind is T.STRING:
            return "a string"
        if self.kind is T.FSTRING:
            return "an f-string"
        return f"`{self.text}`"


@dataclass(slots=True)
class Comment:
    text: str       # including the `//`, `#` or `/* */` markers
    line: int
    col: int
    end_line: int
    own_line: bool  # nothing but whitespace before it on its line


@dataclass(slots=True)
class LexResult:
    tokens: list[Token]
    comments: list[Comment]
    diagnostics: list[Diagnostic]


def _decode_string(body: str, span_of) -> tuple[str, list[Diagnostic]]:
    out: list[str] = []
    diags: list[Diagnostic] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            diags.append(Diagnostic("E0104", "a string cannot end with a lone `\\`", span_of(i, i + 1),
                                    help="write `\\\\` for a backslash"))
            break
        esc = body[i + 1]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc == "u":
            m = re.match(r"u\{([0-9a-fA-F]{1,6})\}|u([0-9a-fA-F]{4})", body[i + 1:])
            cp = int(m.group(1) or m.group(2), 16) if m else -1
            if m is None or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                diags.append(Diagnostic("E0104", "invalid unicode escape", span_of(i, i + 2),
                                        help="write `\\u{1F600}` or `\\u00e9`"))
                i += 2
            else:
                out.append(chr(cp))
                i += 1 + m.end()
        else:
            diags.append(Diagnostic("E0104", f"unknown escape sequence `\\{esc}`", span_of(i, i + 2),
                                    help="valid escapes: \\n \\t \\r \\0 \\\\ \\\" \\' \\u{…}"))
            i += 2
    return "".join(out), diags


@dataclass(slots=True)
class FieldText:
    """The raw text of one `{…}` field of an f-string, where it starts, and its conversion
    and format spec (the parser parses `text` as an expression)."""
    text: str
    line: int
    col: int          # column of the first character of `text`
    conv: str
    spec: str


# What a format spec may hold: [[fill]align][sign][z][#][0][width][grouping][.precision][type],
# the fill restricted to characters that are harmless inside a Python string literal.
FORMAT_SPEC_RE = re.compile(
    r"(?:[A-Za-z0-9 *_.#=+\-]?[<>=^])?[+\- ]?z?#?0?\d{0,4}[,_]?(?:\.\d{1,4})?[bcdeEfFgGnosxX%]?")
_CONVERSIONS = frozenset("rsa")
_BRACED_ESCAPE = re.compile(r"\\u\{[0-9a-fA-F]{0,6}\}")


def _scan_fstring(text: str, q: int, line: int, line_start: int, file: str):
    """Scan the f-string whose opening quote is at `q`: returns (index of the closing quote
    or None when unterminated, parts: decoded literal text (str) and FieldText, diagnostics).
    Literal text takes the escapes of strings and `{{`/`}}` for braces."""
    quote = text[q]
    n = len(text)
    parts: list = []
    diags: list[Diagnostic] = []
    lit: list[str] = []
    lit_start = q + 1

    def span(a: int, b: int) -> Span:
        return Span(file, line, a - line_start + 1, line, b - line_start + 1)

    def flush(upto: int) -> None:
        if lit:
            raw = "".join(lit)
            base = lit_start
            value, sd = _decode_string(raw, lambda a, b: span(base + a, base + b))
            diags.extend(sd)
            if value:
                parts.append(value)
            lit.clear()

    i = q + 1
    while i < n:
        c = text[i]
        if c == "\\":
            m = _BRACED_ESCAPE.match(text, i)   # `\u{1F600}`: its braces open no field
            step = m.end() - i if m else 2
            lit.append(text[i:i + step])
            i += step
            continue
        if c == quote or c == "\n":
            flush(i)
            return (i if c == quote else None), parts, diags
        if c == "}":
            if text[i + 1:i + 2] == "}":
                lit.append("}")
                i += 2
                continue
            diags.append(Diagnostic("E0800", "single `}` in an f-string", span(i, i + 1),
                                    label="not closing a field", help="write `}}` for a brace"))
            i += 1
            continue
        if c != "{":
            lit.append(c)
            i += 1
            continue
        if text[i + 1:i + 2] == "{":
            lit.append("{")
            i += 2
            continue
        flush(i)
        open_at = i
        j = i + 1
        depth = 0
        inner_quote = None
        conv_at = spec_at = -1
        while j < n:
            d = text[j]
            if d == "\n":
                break   # a field's expression may hold strings, either quote, on one line
            if inner_quote is not None:
                if d == "\\":
                    j += 2
                    continue
                if d == inner_quote:
                    inner_quote = None
            elif d in "\"'":
                inner_quote = d
            elif d in "([{":
                depth += 1
            elif d in ")]}":
                if depth == 0 and d == "}":
                    break
                depth = max(depth - 1, 0)
            elif depth == 0 and d == "!" and text[j + 1:j + 2] != "=" and conv_at < 0:
                conv_at = j
            elif depth == 0 and d == ":":
                spec_at = j
                k = j + 1
                while k < n and text[k] not in "}\n" and text[k] != quote:
                    k += 1
                j = k
                break
            j += 1
        if j >= n or text[j] != "}":
            diags.append(Diagnostic("E0800", "unclosed `{` in an f-string", span(open_at, open_at + 1),
                                    label="this field is never closed",
                                    help="close the field with `}`, or write `{{` for a brace"))
            i = j
            lit_start = i
            continue
        expr_end = conv_at if conv_at >= 0 else spec_at if spec_at >= 0 else j
        expr_text = text[open_at + 1:expr_end]
        conv = ""
        if conv_at >= 0:
            conv = text[conv_at + 1:spec_at if spec_at >= 0 else j]
            if conv not in _CONVERSIONS:
                diags.append(Diagnostic("E0803", f"unknown conversion `!{_shorten(conv)}` in an "
                                                 f"f-string", span(conv_at, conv_at + 1 + len(conv)),
                                        help="write `!r`, `!s` or `!a`, or leave it out"))
                conv = ""
        spec = text[spec_at + 1:j] if spec_at >= 0 else ""
        if spec and FORMAT_SPEC_RE.fullmatch(spec) is None:
            diags.append(Diagnostic("E0802", f"invalid format spec `{_shorten(spec)}`",
                                    span(spec_at + 1, j), label="not a format spec",
                                    help="a format spec looks like `.3f`, `>8`, `05d`, `,` or "
                                         "`.1%`"))
            spec = ""
        if not expr_text.strip():
            diags.append(Diagnostic("E0801", "empty expression in an f-string",
                                    span(open_at, j + 1), label="nothing to format",
                                    help="put an expression inside the braces, or write `{{}}` "
                                         "for braces"))
        else:
            parts.append(FieldText(expr_text, line, open_at + 1 - line_start + 1, conv, spec))
        i = j + 1
        lit_start = i
    flush(i)
    return None, parts, diags


INT_MAX = 2 ** 63 - 1


def _int_value(digits: str) -> int | None:
    """The value of an integer literal, or None when it does not fit in int64 (checked on
    the digit count first: Python refuses to convert more than 4,300 digits)."""
    plain = digits.replace("_", "").lstrip("0") or "0"
    if len(plain) > 19:
        return None
    v = int(plain)
    return v if v <= INT_MAX else None


def _radix_value(text: str) -> int | None:
    """The value of a hexadecimal, binary or octal literal, or None above int64."""
    digits = text[2:].replace("_", "").lstrip("0") or "0"
    if len(digits) > 64:
        return None
    v = int(digits, {"x": 16, "b": 2, "o": 8}[text[1].lower()])
    return v if v <= INT_MAX else None


def _shorten(s: str) -> str:
    return s if len(s) <= 30 else f"{s[:12]}…{s[-6:]} ({len(s)} characters)"


def tokenize(text: str, file: str = "<input>") -> LexResult:
    tokens: list[Token] = []
    comments: list[Comment] = []
    diags: list[Diagnostic] = []
    depth: list[str] = []          # open brackets
    opened: list[tuple[int, int]] = []   # where each open bracket is (line, col)
    floordivs: list[tuple[str, Diagnostic]] = []   # W0900 candidates, kept when the name is used
    pos = 0
    line = 1
    line_start = 0
    n = len(text)
    match = _MASTER.match
    last_sig: Token | None = None  # last token that is not a NEWLINE

    def add(kind: T, tok_text: str, value, start: int, end: int, l0: int, c0: int) -> None:
        nonlocal last_sig
        tok = Token(kind, tok_text, value, l0, c0, line, end - line_start + 1, file)
        tokens.append(tok)
        last_sig = tok

    while pos < n:
        m = match(text, pos)
        if m is None:
            while text[pos] in " \t\f\r":
                pos += 1
            col = pos - line_start + 1
            ch = text[pos]
            hint = None
            if ch in "`$":
                hint = "this character has no meaning in .tri"
            elif ch == "&":
                hint = "use `and` (or `&&`) for logical conjunction"
            elif ord(ch) > 127:
                hint = "identifiers and operators are ASCII; non-ASCII text belongs in strings or comments"
            diags.append(Diagnostic("E0101", f"unexpected character `{ch}`" if ch.isprintable()
                                    else f"unexpected character U+{ord(ch):04X}",
                                    Span(file, line, col, line, col + 1), help=hint))
            pos += 1
            continue
        kind = m.lastgroup
        end = m.end()
        pos = m.start(kind)
        col = pos - line_start + 1
        if kind == "ident":
            s = m.group(kind)
            last_sig = Token(T.KEYWORD if s in KEYWORDS else T.IDENT, s, s, line, col, line,
                             end - line_start + 1, file)
            tokens.append(last_sig)
            pos = end
            continue
        if kind == "op":
            s = m.group(kind)
            if s in _OPEN:
                depth.append(s)
                opened.append((line, col))
            elif s in _CLOSE:
                if depth:
                    depth.pop()
                    opened.pop()
            last_sig = Token(T.OP, s, s, line, col, line, end - line_start + 1, file, False, s)
            tokens.append(last_sig)
            pos = end
            continue
        if kind == "ws":
            pos = end
            continue
        if kind == "nl":
            if (not depth or depth[-1] == "{") and last_sig is not None:
                if last_sig.kind in (T.OP, T.KEYWORD) and last_sig.text in _CONTINUES \
                        and not _ends_elision(tokens, last_sig):
                    last_sig.nl_after = True
                elif not tokens or tokens[-1].kind is not T.NEWLINE:
                    tokens.append(Token(T.NEWLINE, "\n", None, line, col, line, col + 1, file))
            pos = end
            line += 1
            line_start = pos
            continue
        if kind == "lcomment" and _reads_as_floordiv(m.group(kind), last_sig, depth, opened,
                                                     line, text[line_start:pos]):
            # `[out, in_channels // groups, k, k]`: as a comment, `//` would leave the bracket
            # opened on this line open; the seed's floor division is the only reading
            last_sig = Token(T.OP, "//", "//", line, col, line, col + 2, file, False, "//")
            tokens.append(last_sig)
            diags.append(Diagnostic(
                "W1001", f"`//` is read as floor division here: as a comment it would hide "
                         f"the `{_CLOSER[depth[-1]]}` of the `{depth[-1]}` opened on this line",
                Span(file, line, col, line, col + 2), severity=Severity.WARNING,
                label="floor division",
                help="write `floordiv(a, b)` to say so; elsewhere `//` starts a comment"))
            pos += 2
            continue
        if kind == "lcomment":
            own = text[line_start:pos].strip() == ""
            comments.append(Comment(m.group(kind), line, col, line, own))
            if not own and m.group(kind).startswith("//"):
                _floordiv_comment(m.group(kind), last_sig, depth, opened, line, col, file,
                                  diags, floordivs, _left_operand(tokens, text, line_start))
            pos = end
            continue
        if kind == "bcomment":
            close = text.find("*/", pos + 2)
            own = text[line_start:pos].strip() == ""
            if close < 0:
                diags.append(Diagnostic("E0103", "unterminated block comment",
                                        Span(file, line, col, line, col + 2),
                                        label="comment starts here",
                                        help="close it with `*/`"))
                break
            body = text[pos:close + 2]
            l0 = line
            nls = body.count("\n")
            if nls:
                line += nls
                line_start = pos + body.rfind("\n") + 1
            comments.append(Comment(body, l0, col, line, own))
            pos = close + 2
            continue
        if kind == "number":
            s = m.group(kind)
            digits = s[:-1] if s.endswith("t") else s
            if _RADIX_RE.fullmatch(s):
                value = _radix_value(s)
                if value is None:
                    diags.append(Diagnostic("E0106", f"the integer `{_shorten(s)}` does not fit "
                                                     f"in 64 bits", Span(file, line, col, line,
                                                                         end - line_start + 1),
                                            label="too large",
                                            help=f"integers are at most {INT_MAX}"))
                add(T.INT, s, value or 0, pos, end, line, col)
            elif _INT_RE.fullmatch(digits) and _int_value(digits) is None:
                diags.append(Diagnostic("E0106", f"the integer `{_shorten(s)}` does not fit in "
                                                 f"64 bits", Span(file, line, col, line,
                                                                  end - line_start + 1),
                                        label="too large",
                                        help=f"integers are at most {INT_MAX}"))
                add(T.INT, s, 0, pos, end, line, col)
            elif s.endswith("t") and _INT_RE.fullmatch(s[:-1]):
                add(T.TRIT, s, int(s[:-1].replace("_", "")), pos, end, line, col)
            elif _INT_RE.fullmatch(s):
                add(T.INT, s, int(s.replace("_", "")), pos, end, line, col)
            elif (mag := _MAGNITUDE_RE.fullmatch(s)) is not None \
                    and len(mag.group(1)) <= 19:
                # `300M`, `16.8B`: a count with a magnitude suffix (performance figures)
                v = float(mag.group(1).replace("_", "")) * _MAGNITUDES[mag.group(2)]
                add(T.INT, s, round(v) if v <= INT_MAX else 0, pos, end, line, col)
                if v > INT_MAX:
                    diags.append(Diagnostic("E0106", f"`{s}` does not fit in 64 bits",
                                            Span(file, line, col, line, end - line_start + 1)))
            elif _FLOAT_RE.fullmatch(s) and not s.endswith("_"):
                add(T.FLOAT, s, float(s.replace("_", "")), pos, end, line, col)
            else:
                diags.append(Diagnostic("E0105", f"malformed number `{s}`",
                                        Span(file, line, col, line, end - line_start + 1),
                                        help="numbers look like `42`, `0.5`, `1e-3`, `2.5E+4`, `0xFF`, `0b1010`, "
                                             "`0o17`; a trit literal like `1t`"))
                add(T.INT, s, 0, pos, end, line, col)
            pos = end
            continue
        if kind == "fstring":
            q = pos + 1
            close, parts, fd = _scan_fstring(text, q, line, line_start, file)
            diags.extend(fd)
            if close is None:
                stop = text.find("\n", q)
                stop = n if stop < 0 else stop
                diags.append(Diagnostic("E0102", "unterminated string literal",
                                        Span(file, line, col, line, stop - line_start + 1),
                                        label="string starts here",
                                        help=f"close it with {text[q]} on the same line"))
                add(T.FSTRING, text[pos:stop], [], pos, stop, line, col)
                pos = stop
                continue
            add(T.FSTRING, text[pos:close + 1], parts, pos, close + 1, line, col)
            pos = close + 1
            continue
        if kind == "string" and text.startswith(m.group(kind) * 3, pos):
            # a triple-quoted string (a docstring), which may span lines; its text as written
            quote3 = m.group(kind) * 3
            close = text.find(quote3, pos + 3)
            if close < 0:
                diags.append(Diagnostic("E0102", "unterminated string literal",
                                        Span(file, line, col, line, col + 3),
                                        label="string starts here",
                                        help=f"close it with {quote3}"))
                break
            l0, c0 = line, col
            body = text[pos:close + 3]
            if "\n" in body:
                line += body.count("\n")
                line_start = pos + body.rfind("\n") + 1
            add(T.STRING, body, body[3:-3], pos, close + 3, l0, c0)
            pos = close + 3
            continue
        if kind == "string":
            quote = m.group(kind)
            i = pos + 1
            while i < n:
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if c == quote or c == "\n":
                    break
                i += 1
            if i >= n or text[i] != quote:
                diags.append(Diagnostic("E0102", "unterminated string literal",
                                        Span(file, line, col, line, min(i, n) - line_start + 1),
                                        label="string starts here",
                                        help=f"close it with {quote} on the same line"))
                pos = min(i, n)
                add(T.STRING, "", "", pos, pos, line, col)
                continue
            raw = text[pos + 1:i]
            base_col = col + 1
            value, sd = _decode_string(
                raw, lambda a, b, bc=base_col, ln=line: Span(file, ln, bc + a, ln, bc + b))
            diags.extend(sd)
            add(T.STRING, text[pos:i + 1], value, pos, i + 1, line, col)
            pos = i + 1
            continue
        raise AssertionError(f"lexer: unhandled token kind {kind}")
    if floordivs:
        # names the program uses as operands (a name only ever called, such as a builtin
        # function named in a prose comment, is no divisor)
        names = {t.text for t, nxt in zip(tokens, [*tokens[1:], None])
                 if t.kind is T.IDENT and not (nxt is not None and nxt.op == "(")}
        diags.extend(d for word, d in floordivs if word in names or word[:1].isdigit())
    col = pos - line_start + 1
    if tokens and tokens[-1].kind is not T.NEWLINE:
        tokens.append(Token(T.NEWLINE, "\n", None, line, col, line, col, file))
    tokens.append(Token(T.EOF, "", None, line, col, line, col, file))
    _contextual_names(tokens)
    return LexResult(tokens, comments, diags)


def _reads_as_floordiv(comment: str, last: Token | None, depth: list[str],
                       opened: list[tuple[int, int]], line: int, before: str) -> bool:
    """`//` after an operand, inside a list `[` opened on this line, followed by an operand,
    with the list's `]` later on the line: floor division, since as a comment it would leave
    the list open (`shape: [out, in_channels // groups, k, k]`). In `( … )` it stays a
    comment (W0900/W0901 say so)."""
    if not comment.startswith("//") or before.strip() == "" or last is None \
            or last.line != line or not depth or depth[-1] != "[" or opened[-1][0] != line:
        return False
    if not (last.kind in (T.IDENT, T.INT, T.FLOAT) or last.op in (")", "]")):
        return False
    if _OPERAND_AFTER.match(comment) is None:
        return False
    rest = comment[2:]
    opener, closer = depth[-1], _CLOSER[depth[-1]]
    level = 0
    for ch in rest:
        if ch == opener:
            level += 1
        elif ch == closer:
            if level == 0:
                return True
            level -= 1
    return False


def _floordiv_comment(comment: str, last: Token | None, depth: list[str],
                      opened: list[tuple[int, int]], line: int, col: int, file: str,
                      diags: list[Diagnostic], floordivs: list, left: str) -> None:
    """A `//` comment after an operand (`left`, its source) on its line: the seed language's
    floor division?"""
    if last is None or last.line != line or not (
            last.kind in (T.IDENT, T.INT, T.FLOAT) or last.op in (")", "]")):
        return
    span = Span(file, line, col, line, col + 2)
    m = _FLOORDIV_RHS.match(comment)
    if m is not None:
        floordivs.append((m.group(1), Diagnostic(
            "W0900", "`//` starts a comment here, not a floor division", span,
            severity=Severity.WARNING, label="the rest of the line is a comment",
            help=f"for integer division write `floordiv({left}, {m.group(1)})`; "
                 f"`//` always starts a comment in .tri")))
    if depth and _CLOSER[depth[-1]] in comment:   # the bracket may open on an earlier line
        ol, oc = opened[-1]
        diags.append(Diagnostic(
            "W0901", f"this `{depth[-1]}` is left open: the `//` on line {line} starts a "
                     f"comment, which hides the `{_CLOSER[depth[-1]]}` after it",
            Span(file, ol, oc, ol, oc + 1), severity=Severity.WARNING,
            label="opened here", secondary=[Label(span, "the comment starts here")],
            help="write integer division as `floordiv(a, b)`; `//` always starts a comment"))


def _left_operand(tokens: list[Token], text: str, line_start: int) -> str:
    """The source of the operand that ends with the last token: a name or number, or a
    bracketed operand with the name it calls or indexes (`x.shape[0]`, `f(a, b)`; a
    parenthesized one without them: `H + 2*p - k`) when it begins on the same line; else
    `…`."""
    if not tokens:
        return "…"
    last = tokens[-1]
    if last.op not in (")", "]"):
        return last.text
    level, i = 0, len(tokens) - 1
    while i >= 0:
        t = tokens[i]
        if t.op in (")", "]"):
            level += 1
        elif t.op in ("(", "["):
            level -= 1
            if level == 0:
                break
        i -= 1
    if i < 0 or tokens[i].line != last.line:
        return "…"
    while i > 0 and tokens[i - 1].line == last.line and (
            tokens[i - 1].kind is T.IDENT or tokens[i - 1].op == ".") \
            and tokens[i - 1].end_col == tokens[i].col:
        i -= 1
    if tokens[i].op == "(":   # `(H + 2*p - k)`: the parentheses are floordiv's own
        return text[line_start + tokens[i].end_col - 1:line_start + last.col - 1].strip()
    return text[line_start + tokens[i].col - 1:line_start + last.end_col - 1]


def _contextual_names(tokens: list[Token]) -> None:
    """A contextual keyword (CONTEXTUAL) starts an item only when a name follows it
    (`model M {`, `layer fc: …`, `param w: …`); anywhere else it is an ordinary name: a
    parameter `model`, a variable `layer`, `block.forward(x)`. Scanned from the end, so in
    `layer layer: K` the second one is the name."""
    for i in range(len(tokens) - 2, -1, -1):
        t = tokens[i]
        if t.kind is T.KEYWORD and t.text in CONTEXTUAL and tokens[i + 1].kind is not T.IDENT:
            t.kind = T.IDENT
