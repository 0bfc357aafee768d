"""Recursive-descent parser with Pratt expressions, bounded nesting and error recovery.

Nesting (parentheses, brackets, blocks) is bounded by MAX_DEPTH: deeper input gets a clear
E0203 instead of a RecursionError. After a syntax error the parser skips to the next item of
the enclosing body (or the next top-level item), so one run reports every independent error.
"""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager

from .. import vocab
from . import ast as A
from .diagnostics import Diagnostic, Span, did_you_mean
from .lexer import FieldText, T, Token, tokenize
from .parser_expr import ExpressionsMixin, ParseError

MAX_DEPTH = 200

DTYPES = frozenset(vocab.DTYPES)
TENSOR_TYPES = frozenset({"Tensor", "TernaryTensor"})

_ASSIGN_OPS = {"=", "+=", "-=", "*=", "/=", "@=", "**="}
_SOFT_STATEMENTS = frozenset({"while", "break", "continue", "pass", "assert"})
_ENTRY_END = frozenset({"}", ",", ";"})
_TOP_KEYWORDS = {"model", "block", "layer", "fn", "def", "import"}
# keywords that start a statement at the top level (the others start items or are errors)
_TOP_STATEMENT_KEYWORDS = frozenset({"let", "return", "if", "for", "not", "None", "true",
                                     "false", "True", "False"})
# Spellings of composite types (see A.TypeExpr): the name before `[` -> the canonical kind
_GENERIC_TYPES = {"list": "list", "List": "list", "tuple": "tuple", "Tuple": "tuple",
                  "Optional": "Optional", "Union": "Union", "dict": "dict", "Dict": "dict"}
_TYPE_SPELLINGS = {"tensor": "Tensor", "ternary_tensor": "TernaryTensor"}


def _union(members: list[A.TypeExpr], span: Span) -> A.TypeExpr:
    """`A | B | …` with nested unions flattened and repeated members dropped."""
    flat: list[A.TypeExpr] = []
    for m in members:
        for x in (m.args or []) if m.name == "Union" else [m]:
            if x not in flat:
                flat.append(x)
    if len(flat) == 1:
        return flat[0]
    return A.TypeExpr("Union", span=span, args=flat)


_SECTION_NAMES = {"training", "performance", "quantization", "repeat", "inference", "export"}

# Forms of general-purpose languages with no meaning for a tensor compiler: each is reported
# once (E0900) with what to write instead, and skipped (its braces too) so checking goes on.
_FOREIGN_DECLS = {
    "struct": "group tensors as the `param`s of a `layer`, or pass them as arguments",
    "class": "define a `layer` (with `params { }` and `forward`) or a `model`",
    "trait": "write a `block` or a `layer` definition; layers share behaviour by composition",
    "interface": "write a `block` or a `layer` definition; layers share behaviour by composition",
    "impl": "write the methods inside the `layer` or `model` body, e.g. "
            "`forward(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 2]> { … }`",
    "enum": "use string constants (`mode: \"int8\"`) and a `switch` or `if` on them",
}
_EFFECTS = {"throws", "raises"}


@contextmanager
def recursion_headroom(limit: int = 20000):
    """Raise the interpreter's recursion limit for a bounded-depth recursive walk (the
    parser accepts MAX_DEPTH levels, and each level takes a few Python frames)."""
    old = sys.getrecursionlimit()
    if old < limit:
        sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class _Nesting:
    __slots__ = ("parser",)

    def __init__(self, parser: Parser) -> None:
        self.parser = parser

    def __enter__(self) -> None:
        p = self.parser
        p.depth += 1
        if p.depth > MAX_DEPTH:
            p.depth -= 1
            raise p.error(f"nesting is too deep (more than {MAX_DEPTH} levels)", code="E0203",
                          help="split the expression into several `let` statements")

    def __exit__(self, *exc) -> None:
        self.parser.depth -= 1


class Parser(ExpressionsMixin):
    def __init__(self, tokens: list[Token], file: str):
        self.toks = tokens
        self.pos = 0
        self.file = file
        self.diags: list[Diagnostic] = []
        self.depth = 0
        self._nesting = _Nesting(self)

    # ------------------------------------------------------------------ token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.pos]

    def span_from(self, start: Token) -> Span:
        """From the start of `start` to the end of the last consumed token."""
        end = self.toks[self.pos - 1] if self.pos else start
        return Span(self.file, start.line, start.col, end.end_line, end.end_col)

    def peek(self, k: int = 1) -> Token:
        i = min(self.pos + k, len(self.toks) - 1)
        return self.toks[i]

    def advance(self) -> Token:
        t = self.toks[self.pos]
        if t.kind is not T.EOF:
            self.pos += 1
        return t

    def prev_span(self) -> Span:
        return self.toks[max(self.pos - 1, 0)].span

    def at_op(self, *ops: str) -> bool:
        return self.toks[self.pos].op in ops

    def at(self, op: str) -> bool:
        return self.toks[self.pos].op == op

    def at_kw(self, *kws: str) -> bool:
        t = self.toks[self.pos]
        return t.kind is T.KEYWORD and t.text in kws

    def error(self, message: str, tok: Token | None = None, code: str = "E0201",
              label: str = "", help: str | None = None) -> ParseError:
        t = tok or self.tok
        return ParseError(Diagnostic(code, message, t.span, label=label, help=help))

    def expect_op(self, op: str, context: str = "") -> Token:
        if self.at_op(op):
            return self.advance()
        where = f" {context}" if context else ""
        help = None
        if op in ")]}" and self.tok.kind in (T.NEWLINE, T.EOF):
            help = f"a `{op}` is missing"
        raise self.error(f"expected `{op}`{where}, found {self.tok.describe()}", code="E0202",
                         label=f"expected `{op}`", help=help)

    def expect_ident(self, what: str = "a name") -> Token:
        t = self.toks[self.pos]
        if t.kind is T.IDENT:
            return self.advance()
        if t.kind is T.KEYWORD:
            raise self.error(f"expected {what}, found keyword `{t.text}`", code="E0202",
                             help=f"`{t.text}` is reserved; choose another name")
        raise self.error(f"expected {what}, found {t.describe()}", code="E0202")

    def skip_newlines(self) -> None:
        toks = self.toks
        t = toks[self.pos]
        while t.kind is T.NEWLINE or t.op == ";":
            self.pos += 1
            t = toks[self.pos]

    def skip_separators(self) -> None:
        toks = self.toks
        t = toks[self.pos]
        while t.kind is T.NEWLINE or t.op == ";" or t.op == ",":
            self.pos += 1
            t = toks[self.pos]

    def line_ended(self) -> bool:
        """The previous token (`>` closing a type, `?`) was followed by a line break that the
        lexer kept as a continuation: here it ends the statement."""
        prev = self.toks[self.pos - 1] if self.pos else None
        return prev is not None and prev.nl_after and prev.text in (">", "?")

    def end_of_statement(self) -> None:
        t = self.toks[self.pos]
        if t.kind is T.NEWLINE or t.is_op(";"):
            self.advance()
            return
        if t.is_op("}") or t.kind is T.EOF or self.line_ended():
            return
        raise self.error(f"expected end of statement, found {t.describe()}",
                         label="unexpected here",
                         help="put each statement on its own line or separate them with `;`")

    def nested(self) -> _Nesting:
        """`with self.nested():` counts one level of nesting (a class-based context manager:
        this runs for every expression, and generator-based ones cost several times more)."""
        return self._nesting

    # ------------------------------------------------------------------ recovery
    def sync_top(self) -> None:
        """Skip to the next top-level item after a syntax error."""
        depth = 0
        while self.tok.kind is not T.EOF:
            t = self.toks[self.pos]
            if t.kind is T.OP:
                if t.text == "{":
                    depth += 1
                elif t.text == "}":
                    depth -= 1
            if t.kind is T.KEYWORD and t.text in _TOP_KEYWORDS and t.col == 1 and (
                    depth <= 0 or self.toks[self.pos - 1].kind is T.NEWLINE):
                return
            self.advance()

    def sync_body(self, start: int) -> None:
        """Skip to the end of the body item that began at token `start`: the first newline or
        `}` where every bracket opened since `start` is closed again."""
        depth = 0
        for t in self.toks[start:self.pos]:
            if t.kind is T.OP and t.text in "{([":
                depth += 1
            elif t.kind is T.OP and t.text in "})]":
                depth = max(depth - 1, 0)
        while self.tok.kind is not T.EOF:
            t = self.toks[self.pos]
            if t.kind is T.OP and t.text in "{([":
                depth += 1
            elif t.kind is T.OP and t.text in "})]":
                if depth == 0 and t.text == "}":
                    return
                depth = max(depth - 1, 0)
            elif t.kind is T.NEWLINE and depth == 0:
                self.advance()
                return
            elif t.kind is T.KEYWORD and t.text in _TOP_KEYWORDS and t.col == 1:
                return
            self.advance()

    # ------------------------------------------------------------------ program
    def parse_program(self) -> A.Program:
        items = []
        self.skip_separators()
        start = self.tok.span
        while self.tok.kind is not T.EOF:
            try:
                item = self.parse_item()
                if item is not None:      # None: a top-level statement with a syntax error
                    items.append(item)
            except ParseError as e:
                self.diags.append(e.diag)
                t = self.toks[self.pos]
                if t.kind is not T.EOF and not (t.kind is T.KEYWORD and t.text in _TOP_KEYWORDS
                                                and t.col == 1):
                    self.advance()
                self.sync_top()
            self.skip_separators()
        return A.Program(items, self.file, start.to(self.tok.span))

    def _at_main_block(self) -> bool:
        t = self.toks[self.pos]
        return t.kind is T.IDENT and t.text == "main" and self.peek().is_op("{")

    def parse_main_block(self) -> A.MainBlock:
        """`main { statements }`: the program's entry (like top-level statements)."""
        t = self.advance()
        body = self.parse_block()
        node = A.MainBlock(body, self.span_from(t))
        self.end_of_statement()
        return node

    def parse_top_statement(self):
        """A statement at the top level (`let x = 1`, `print(x)`, `y = f(x)`, `return`, `if`,
        `for`): part of the program's entry, run in source order. After a syntax error the
        rest of that statement is skipped and None returned (the error is recorded), so the
        next statements are still parsed."""
        t = self.toks[self.pos]
        if t.kind is T.IDENT and self.peek().kind is T.IDENT:
            # `modle M { … }`: two names in a row start no statement; a misspelled item
            raise self.error(f"expected `model`, `block`, `layer`, `fn`, `import` or a "
                             f"statement, found `{t.text}`", code="E0204",
                             label="not a top-level item",
                             help=did_you_mean(t.text, sorted(_TOP_KEYWORDS)))
        start = self.pos
        try:
            return self.parse_statement()
        except ParseError as e:
            self.diags.append(e.diag)
            self.sync_body(start)
            if self.at("}") and self.pos == start:
                self.advance()
            return None

    def parse_fstring(self, t: Token) -> A.FString:
        """The parts of an f-string token: literal text and `{expr!conv:spec}` fields whose
        expressions are parsed here (the lexer validated conversions and specs)."""
        parts: list = []
        for part in t.value:
            if isinstance(part, FieldText):
                parts.append(A.FField(self._field_expr(part), part.conv, part.spec,
                                      Span(self.file, part.line, part.col, part.line,
                                           part.col + len(part.text))))
            else:
                parts.append(part)
        return A.FString(parts, t.span)

    def _field_expr(self, part: FieldText) -> A.Expr:
        lexed = tokenize(part.text, self.file)
        dl, dc = part.line - 1, part.col - 1
        if lexed.comments:   # `{a // b}`: the comment would swallow the rest of the field
            c = lexed.comments[0]
            raise ParseError(Diagnostic(
                "E0807", "a comment cannot stand in an f-string field",
                Span(self.file, part.line, c.col + dc, part.line, c.col + dc + 2),
                label="starts a comment", help="`//` and `#` start comments; for integer "
                "division write `floordiv(a, b)`"))
        for tok in lexed.tokens:   # one line: shift to where the field stands in the file
            tok.line += dl
            tok.end_line += dl
            tok.col += dc
            tok.end_col += dc
        for d in lexed.diagnostics:
            if d.span is not None:
                d.span = Span(d.span.file, d.span.line + dl, d.span.col + dc,
                              d.span.end_line + dl, d.span.end_col + dc)
            self.diags.append(d)
        sub = Parser(lexed.tokens, self.file)
        sub.depth = self.depth
        e = sub.parse_expr()
        self.diags.extend(sub.diags)
        if sub.tok.kind not in (T.NEWLINE, T.EOF):
            raise sub.error(f"unexpected {sub.tok.describe()} in an f-string field",
                            code="E0201", label="the field's expression ends before this",
                            help="a field holds one expression, e.g. `{x:.3f}`")
        return e

    def parse_item(self):
        t = self.toks[self.pos]
        if self.at_foreign():
            self.skip_foreign()
            return None
        if t.is_kw("import"):
            self.advance()
            if self.tok.kind is not T.STRING:
                raise self.error("expected a file name string after `import`", code="E0202",
                                 help='write `import "layers.tri"`')
            path = self.advance()
            node = A.Import(path.value, t.span.to(path.span))
            self.end_of_statement()
            return node
        if t.is_kw("model") or t.is_kw("block"):
            self.advance()
            name = self.expect_ident(f"a {t.text} name")
            self.skip_extends(name)
            body = self.parse_body(f"{t.text} `{name.text}`")
            cls = A.ModelDef if t.text == "model" else A.BlockDef
            return cls(name.text, body, self.span_from(t))
        if t.is_kw("layer"):
            self.advance()
            name = self.expect_ident("a layer name")
            tparams = self.parse_type_params()
            params = None
            if self.at("("):
                params = self.parse_param_specs()
            self.skip_signature_newlines()
            ret = None
            if self.at("->"):
                self.advance()
                ret = self.parse_type()
                self.skip_signature_newlines()
            tparams = self.parse_where(tparams)
            self.skip_extends(name)
            if self.at(":"):
                raise self.error("`layer name: Kind { … }` declares a layer instance and belongs "
                                 "inside a `model` or `block`", tok=t, code="E0204",
                                 help="define a new layer type with `layer Name(args) { … }`")
            body = self.parse_body(f"layer `{name.text}`")
            return A.LayerDef(name.text, params, ret, body, self.span_from(t), tparams)
        if t.is_kw("fn") or t.is_kw("def") or self._at_function_word():
            return self.parse_fn()
        if t.kind is T.IDENT and self.peek().is_op(":"):
            raise self.error(f"a constant like `{t.text}: …` must be inside a `model` or `block`",
                             code="E0204", help=f"at the top level write `let {t.text} = …`")
        if self._at_main_block():
            return self.parse_main_block()
        if t.kind is not T.KEYWORD or t.text in _TOP_STATEMENT_KEYWORDS:
            return self.parse_top_statement()
        raise self.error(f"expected `model`, `block`, `layer`, `fn`, `import` or a statement, "
                         f"found {t.describe()}", code="E0204", label="not a top-level item")

    # ------------------------------------------------------------------ bodies
    def parse_body(self, what: str) -> list:
        open_tok = self.toks[self.pos]
        self.expect_op("{", f"to open the body of {what}")
        items: list = []
        errors_before = len(self.diags)
        with self.nested():
            self.skip_separators()
            while not self.at("}"):
                if len(self.diags) > errors_before and (
                        self.tok.kind is T.EOF or (self.tok.kind is T.KEYWORD and
                                                   self.tok.text in _TOP_KEYWORDS and
                                                   self.tok.col == 1)):
                    return items  # an error inside this body already explains the rest
                if self.tok.kind is T.EOF:
                    raise ParseError(Diagnostic(
                        "E0202", f"unclosed `{{` of {what}", open_tok.span,
                        label="this `{` is never closed", help="add a `}` at the end of the body"))
                if self.tok.kind is T.KEYWORD and self.tok.text in ("model", "block") \
                        and self.tok.col == 1:
                    raise ParseError(Diagnostic(
                        "E0202", f"unclosed `{{` of {what}", open_tok.span,
                        label="this `{` is never closed",
                        help="add a `}` before the next top-level item"))
                start = self.pos
                try:
                    item = self.parse_body_item()
                    if item is not None:
                        items.append(item)
                except ParseError as e:
                    self.diags.append(e.diag)
                    self.sync_body(start)
                self.skip_separators()
            self.advance()
        return items

    def _is_method_def(self) -> bool:
        """IDENT `(` … `)` followed by `->` or `{`: a method such as `forward(x: T) -> T { }`."""
        if not (self.tok.kind is T.IDENT and self.peek().is_op("(")):
            return False
        depth = 0
        i = self.pos + 1
        toks = self.toks
        while i < len(toks):
            t = toks[i]
            if t.kind is T.OP and t.text in "([{":
                depth += 1
            elif t.kind is T.OP and t.text in ")]}":
                depth -= 1
                if depth == 0:
                    j = i + 1
                    while j < len(toks) - 1 and toks[j].kind is T.NEWLINE:
                        j += 1   # `forward(x: T)` / `-> T {`: a signature split over lines
                    nxt = toks[j] if j < len(toks) else t
                    return nxt.is_op("->") or nxt.is_op("{")
            elif t.kind in (T.EOF,):
                return False
            i += 1
        return False

    def parse_body_item(self):
        t = self.toks[self.pos]
        if self.at_foreign():
            self.skip_foreign()
            return None
        if t.is_kw("layer"):
            return self.parse_layer_decl()
        if t.is_kw("param"):
            return self.parse_param_decl()
        if t.kind is T.IDENT and t.text == "state" and self.peek().kind is T.IDENT \
                and self.peek(2).is_op(":"):
            self.advance()
            name = self.expect_ident("a state name")
            self.expect_op(":", "before the state's type")
            ty = self.parse_type()
            init = None
            if self.at("="):
                self.advance()
                init = self.parse_expr()
            node = A.StateDecl(name.text, ty, init, self.span_from(t))
            self.end_of_statement()
            return node
        if t.is_kw("fn") or t.is_kw("def") or self._at_function_word():
            return self.parse_fn()
        if self._is_method_def():
            return self.parse_fn(keyword=False)
        if t.kind is T.IDENT and self.peek().is_op("{"):
            if t.text == "params":
                return self.parse_params_section()
            self.advance()
            entries = self.parse_entries(f"`{t.text}`")
            return A.Section(t.text, entries, self.span_from(t))
        if t.kind in (T.IDENT, T.STRING) and self.peek().is_op(":"):
            self.advance()
            self.advance()
            value = self.parse_expr()
            return A.ConfigEntry(t.value if t.kind is T.STRING else t.text, value,
                                 self.span_from(t))
        return self.parse_statement()

    def parse_param_decl(self) -> A.ParamDecl:
        """`param NAME: [if COND] TYPE [= init] [{ key: value, … }]`: the entries are the
        init spec (`init: "normal", std: 0.02`) and, for a type without one, `shape:`."""
        t = self.advance()   # 'param'
        name = self.expect_ident("a parameter name")
        self.expect_op(":", "before the parameter's type")
        cond = None
        if self.at_kw("if"):
            self.advance()
            cond = self.parse_expr()
        ty = self.parse_type()
        init = None
        if self.at("="):
            self.advance()
            init = self.parse_expr()
        spec = None
        if self.at("{"):
            spec = self.parse_entries(f"the spec of parameter `{name.text}`")
        node = A.ParamDecl(name.text, ty, init, self.span_from(t), cond, spec)
        self.end_of_statement()
        return node

    def parse_params_section(self) -> A.ParamsSection:
        t = self.advance()
        self.expect_op("{")
        specs = []
        with self.nested():
            self.skip_separators()
            while not self.at("}"):
                if self.tok.kind is T.EOF:
                    raise self.error("unclosed `params {`", tok=t, code="E0202")
                specs.append(self.parse_param_spec())
                self.skip_separators()
            self.advance()
        return A.ParamsSection(specs, self.span_from(t))

    def parse_entries(self, what: str) -> list[A.ConfigEntry]:
        """`{ key: value, key: value \\n key: value }` (entries split by commas or newlines)."""
        open_tok = self.expect_op("{", "to open " + what)
        entries: list[A.ConfigEntry] = []
        toks = self.toks
        file = self.file
        with self.nested():
            self.skip_separators()
            while True:
                k = toks[self.pos]
                if k.op == "}":
                    break
                kind = k.kind
                if kind is T.EOF:
                    raise self.error(f"unclosed `{{` of {what}", tok=open_tok, code="E0202",
                                     label="this `{` is never closed")
                if kind is not T.IDENT and kind is not T.STRING and kind is not T.KEYWORD:
                    raise self.error(f"expected a key in {what}, found {k.describe()}",
                                     code="E0202", help="entries look like `key: value`")
                self.pos += 1
                if toks[self.pos].op != ":":
                    if self.at("="):
                        raise self.error("config entries use `:`, not `=`", code="E0202",
                                         help=f"write `{k.text}: …`")
                    self.expect_op(":", f"after the key `{k.text}`")
                self.pos += 1
                value = self.parse_expr()
                end = toks[self.pos - 1]
                entries.append(A.ConfigEntry(k.value if kind is T.STRING else k.text, value,
                                             Span(file, k.line, k.col, end.end_line,
                                                  end.end_col)))
                t = toks[self.pos]
                if not (t.op in _ENTRY_END or t.kind is T.NEWLINE or self.line_ended()
                        or (t.kind in (T.IDENT, T.STRING) and self.peek().is_op(":"))):
                    raise self.error(f"expected `,`, a new line or `}}` after the value of "
                                     f"`{k.text}`, found {t.describe()}", code="E0202",
                                     help="separate entries with commas or new lines")
                t = toks[self.pos]
                while t.kind is T.NEWLINE or t.op == "," or t.op == ";":
                    self.pos += 1
                    t = toks[self.pos]
            self.pos += 1
        return entries

    def parse_layer_decl(self) -> A.LayerDecl:
        t = self.advance()  # 'layer'
        name = self.expect_ident("a layer name")
        if self.at("(") or self.at("{"):
            raise self.error("a layer type cannot be defined inside a model or block",
                             tok=t, code="E0204",
                             help=f"declare an instance with `layer {name.text}: Kind {{ … }}`, "
                                  f"or move the definition to the top level")
        self.expect_op(":", f"after the layer name `{name.text}`")
        if self.at_kw("if"):
            self.advance()
            cond = self.parse_expr()
            kinds = self.parse_kind_list(t, "conditional layer")
            orelse: list[A.LayerBranch] = []
            while True:
                save = self.pos
                while self.tok.kind is T.NEWLINE:
                    self.advance()
                if not self.at_kw("else"):
                    self.pos = save
                    break
                e = self.advance()
                bcond = None
                if self.at_kw("if"):
                    self.advance()
                    bcond = self.parse_expr()
                orelse.append(A.LayerBranch(bcond, self.parse_kind_list(e, "`else` branch"),
                                            self.span_from(e)))
                if bcond is None:
                    break
            node = A.LayerDecl(name.text, kinds, cond, self.span_from(t), orelse)
        elif self.tok.kind is T.IDENT and self.tok.text == "switch":
            node = self.parse_layer_switch(t, name)
        else:
            kinds = self.parse_kinds_or_sequence()
            node = A.LayerDecl(name.text, kinds, None, self.span_from(t))
        self.end_of_statement()
        return node

    def parse_kind_list(self, t: Token, what: str) -> list[A.LayerKind]:
        """`{ Kind {…} Kind {…} }`: the kinds of one branch, applied in sequence."""
        self.expect_op("{", f"to open the {what}")
        kinds: list[A.LayerKind] = []
        with self.nested():
            self.skip_separators()
            while not self.at("}"):
                if self.tok.kind is T.EOF:
                    raise self.error(f"unclosed {what}", tok=t, code="E0202")
                kinds.extend(self.parse_kinds_or_sequence())
                self.skip_separators()
            self.advance()
        if not kinds:
            raise self.error(f"a {what} needs at least one layer kind", tok=t, code="E0202")
        return kinds

    def at_sequential(self) -> bool:
        """`Sequential { Kind {…} … }` (a list of kinds, not `Sequential { key: value }`)."""
        t = self.tok
        if not (t.kind is T.IDENT and t.text == "Sequential" and self.peek().is_op("{")):
            return False
        i = self.pos + 2
        while self.toks[i].kind is T.NEWLINE:
            i += 1
        first = self.toks[i]
        return first.is_op("}") or (first.kind is T.IDENT and not self.toks[i + 1].is_op(":"))

    def parse_kinds_or_sequence(self) -> list[A.LayerKind]:
        if self.at_sequential():
            t = self.advance()
            return self.parse_kind_list(t, "`Sequential`")
        return self.parse_layer_kinds()

    def parse_layer_kinds(self) -> list[A.LayerKind]:
        """One kind, or the rows of a table-driven repetition `Kind[] { [a, b], [c, d] }`:
        one instance per row, the row giving the kind's parameters by position."""
        k = self.tok
        if not (k.kind is T.IDENT and self.peek().is_op("[") and self.peek(2).is_op("]")):
            return [self.parse_layer_kind()]
        self.advance()
        self.advance()
        self.advance()
        open_tok = self.expect_op("{", f"to open the rows of `{k.text}[]`")
        kinds: list[A.LayerKind] = []
        with self.nested():
            self.skip_separators()
            while not self.at("}"):
                if self.tok.kind is T.EOF:
                    raise self.error(f"unclosed rows of `{k.text}[]`", tok=open_tok,
                                     code="E0202")
                row = self.tok
                if not (row.is_op("[") or row.is_op("{")):
                    raise self.error(f"expected a row `[…]` of `{k.text}[]`, found "
                                     f"{row.describe()}", code="E0202",
                                     help=f"write `{k.text}[] {{ [1, 16, 1, 1], [6, 24, 2, 2] }}`")
                lit = self.parse_expr()
                if isinstance(lit, A.DictLit):     # `{ c: 16, n: 1 }`: the row by name
                    args = [A.Arg(e.value, e.key, e.span) for e in lit.entries]
                elif isinstance(lit, A.ListLit):
                    args = [A.Arg(v, None, v.span) for v in lit.items]
                else:
                    raise self.error(f"a row of `{k.text}[]` is a list `[…]`", tok=row,
                                     code="E0202")
                kinds.append(A.LayerKind(k.text, [], args, None, k.span.to(self.prev_span())))
                self.skip_separators()
            self.advance()
        if not kinds:
            raise self.error(f"`{k.text}[]` needs at least one row", tok=k, code="E0202")
        return kinds

    def parse_layer_switch(self, t: Token, name: Token) -> A.LayerDecl:
        """`switch (p) { "int8" -> Kind {…} … default -> Kind {…} }`: the `if` chain
        `if p == "int8" { … } else if … else { … }`; without a default and no case
        matching, the layer is `None`."""
        sw = self.advance()
        subject = self.parse_expr()
        self.expect_op("{", "to open the cases of `switch`")
        cases: list[tuple[A.Expr | None, list[A.LayerKind], Span]] = []
        values: list[A.Expr] = []
        with self.nested():
            self.skip_separators()
            while not self.at("}"):
                if self.tok.kind is T.EOF:
                    raise self.error("unclosed `switch`", tok=sw, code="E0202")
                c0 = self.tok
                if c0.kind is T.IDENT and c0.text in ("default", "_") and self.peek().is_op("->"):
                    self.advance()
                    value = None
                else:
                    value = self.parse_expr()
                    while self.at("|") or self.at(","):   # `"a" | "b" ->`: either value
                        if self.at(",") and self.peek().kind not in (T.STRING, T.INT,
                                                                     T.FLOAT, T.IDENT):
                            break
                        self.advance()
                        other = self.parse_expr()
                        values.append(other)
                self.expect_op("->", "after the case of `switch`")
                if self.at("{"):
                    kinds = self.parse_kind_list(c0, "case")
                else:
                    kinds = self.parse_kinds_or_sequence()
                cond = None
                for v in ([] if value is None else [value, *values]):
                    test = A.Binary("==", subject, v, v.span)
                    cond = test if cond is None else A.Binary("or", cond, test, v.span)
                values.clear()
                cases.append((cond, kinds, c0.span.to(self.prev_span())))
                self.skip_separators()
            self.advance()
        if not cases or cases[0][0] is None:
            raise self.error("a `switch` layer needs a case before its default", tok=sw,
                             code="E0202", help='write `"int8" -> TernaryLinear { … }`')
        for cond, _, span in cases[1:-1]:
            if cond is None:
                raise ParseError(Diagnostic("E0202", "the default case of `switch` comes last",
                                            span))
        first = cases[0]
        orelse = [A.LayerBranch(c, k, s) for c, k, s in cases[1:]]
        return A.LayerDecl(name.text, first[1], first[0], self.span_from(t), orelse)

    def parse_layer_kind(self) -> A.LayerKind:
        k = self.expect_ident("a layer kind such as `TernaryLinear`")
        repeat = None
        if self.at("["):
            self.advance()
            repeat = self.parse_expr()
            self.expect_op("]", "after the repetition count")
        args = None
        config: list[A.ConfigEntry] = []
        if self.at("("):
            args = self.parse_args()
        if self.at("{"):
            config = self.parse_entries(f"the config of `{k.text}`")
        return A.LayerKind(k.text, config, args, repeat, k.span.to(self.prev_span()))

    # ------------------------------------------------------------------ functions
    def parse_param_specs(self) -> list[A.ParamSpec]:
        self.expect_op("(")
        specs = []
        while not self.at(")"):
            specs.append(self.parse_param_spec())
            if self.at(","):
                self.advance()
            elif not self.at(")"):
                raise self.error(f"expected `,` or `)` in the parameter list, found "
                                 f"{self.tok.describe()}", code="E0202")
        self.advance()
        return specs

    def parse_param_spec(self) -> A.ParamSpec:
        name = self.expect_ident("a parameter name")
        ty = None
        if self.at(":"):
            self.advance()
            ty = self.parse_type()
        default = None
        if self.at("="):
            self.advance()
            default = self.parse_expr()
        return A.ParamSpec(name.text, ty, default, name.span.to(self.prev_span()))

    def parse_fn(self, keyword: bool = True) -> A.FnDef:
        t = self.toks[self.pos]
        if keyword:
            self.advance()
        name = self.expect_ident("a function name")
        tparams = self.parse_type_params()
        params = self.parse_param_specs()
        self.skip_signature_newlines()
        ret = None
        self.skip_effects()
        if self.at("->"):
            self.advance()
            ret = self.parse_type()
            self.skip_signature_newlines()
        self.skip_effects()
        tparams = self.parse_where(tparams)
        if not self.at("{"):
            return A.FnDef(name.text, params, ret, self.parse_block(), self.span_from(t), tparams)
        open_at = self.pos
        try:
            body = self.parse_block()
        except ParseError as e:
            # The signature stands (calls still resolve to it); the body is reported once
            # and marked broken so that the checker reports nothing else about it.
            self.diags.append(e.diag)
            self.skip_braces(open_at)
            node = A.FnDef(name.text, params, ret, [], self.span_from(t), tparams)
            node.broken = True
            return node
        if ret is not None and ret.name not in ("None", "void"):
            tail_value_returns(body)
        return A.FnDef(name.text, params, ret, body, self.span_from(t), tparams)

    def parse_type_params(self) -> list[A.TypeParam] | None:
        """`<T, U: Numeric, V: Float + Tensor>` after a function or layer name."""
        if not self.at("<"):
            return None
        self.advance()
        out: list[A.TypeParam] = []
        while not self.at(">"):
            n = self.expect_ident("a type parameter name")
            bounds = self.parse_bounds() if self.at(":") else []
            if any(p.name == n.text for p in out):
                raise self.error(f"the type parameter `{n.text}` is declared twice", tok=n,
                                 code="E0202")
            out.append(A.TypeParam(n.text, bounds, n.span.to(self.prev_span())))
            if self.at(","):
                self.advance()
            elif not self.at(">"):
                raise self.error(f"expected `,` or `>` in the type parameters, found "
                                 f"{self.tok.describe()}", code="E0202",
                                 help="write `<T>` or `<T: Numeric, U>`")
        self.advance()
        return out

    def parse_bounds(self) -> list[str]:
        self.expect_op(":")
        bounds = [self.expect_ident("a bound such as `Numeric`").text]
        while self.at("+"):
            self.advance()
            bounds.append(self.expect_ident("a bound such as `Numeric`").text)
        return bounds

    def parse_where(self, tparams: list[A.TypeParam] | None) -> list[A.TypeParam] | None:
        """`where T: Numeric, U: Float` before the body: bounds on declared type parameters
        (merged into them, so `where` and `<T: Numeric>` are the same AST)."""
        if not (self.tok.kind is T.IDENT and self.tok.text == "where"):
            return tparams
        w = self.advance()
        out = [A.TypeParam(p.name, list(p.bounds), p.span) for p in tparams or []]
        while True:
            n = self.expect_ident("a type parameter name")
            bounds = self.parse_bounds()
            found = [p for p in out if p.name == n.text]
            if not found:
                raise self.error(f"`where` names `{n.text}`, which is not a type parameter here",
                                 tok=n, code="E0202",
                                 help=f"declare it after the name: `<{n.text}>`")
            for b in bounds:
                if b not in found[0].bounds:
                    found[0].bounds.append(b)
            if not self.at(","):
                break
            self.advance()
            self.skip_newlines()
        if not out:
            raise self.error("a `where` clause needs type parameters", tok=w, code="E0202")
        self.skip_signature_newlines()
        return out

    def skip_signature_newlines(self) -> None:
        """Inside a signature, new lines before `->`, `where` or the body's `{` continue it:
        `fn f(x: T)` / `-> T {` is one signature."""
        i = self.pos
        toks = self.toks
        while toks[i].kind is T.NEWLINE:
            i += 1
        if i != self.pos and (toks[i].is_op("->") or toks[i].is_op("{")
                              or (toks[i].kind is T.IDENT and toks[i].text == "where")):
            self.pos = i

    # ------------------------------------------------------------------ foreign forms
    def at_foreign(self) -> bool:
        """At a form of a general-purpose language (`struct S {`, `impl T for S {`,
        `global x = 1`): a reserved-looking word followed by a name, so that a variable
        called `global` or `impl` is not caught."""
        t = self.toks[self.pos]
        if t.kind is not T.IDENT or (t.text not in _FOREIGN_DECLS and t.text != "global"):
            return False
        nxt = self.peek()
        return nxt.kind in (T.IDENT, T.KEYWORD) and nxt.line == t.line or (
            t.text == "impl" and nxt.is_op("<"))

    def skip_foreign(self) -> None:
        """Report the form at the cursor (E0900) and skip it: to the end of its line, and
        over the `{ … }` that opens on that line."""
        t = self.advance()
        name = self.tok.text
        if t.text == "global":
            self.diags.append(Diagnostic(
                "E0900", "`global` variables have no meaning in a .tri program", t.span,
                label="not supported",
                help=f"declare `{name}` as a constant in the model (`{name}: value`), or pass "
                     f"it as an argument; a function cannot change state outside itself"))
        else:
            self.diags.append(Diagnostic(
                "E0900", f"`{t.text}` declarations have no meaning for a tensor compiler",
                t.span, label=f"`{t.text} {name}` is not supported",
                help=_FOREIGN_DECLS[t.text]))
        while self.tok.kind is not T.EOF and self.tok.kind is not T.NEWLINE:
            if self.at("{"):
                self.skip_braces(self.pos)
                return
            if self.tok.op in ("(", "["):
                self.skip_braces(self.pos)
                continue
            self.advance()

    def skip_braces(self, open_at: int) -> None:
        """Move past the bracket that opens at token `open_at` and its matching closer (or
        to the next top-level item, or the end, when it is never closed)."""
        self.pos = open_at
        depth = 0
        while self.tok.kind is not T.EOF:
            t = self.tok
            if t.kind is T.OP and t.text in "{([":
                depth += 1
            elif t.kind is T.OP and t.text in "})]":
                depth -= 1
                if depth <= 0:
                    self.advance()
                    return
            elif (self.pos > open_at and t.kind is T.KEYWORD and t.text in _TOP_KEYWORDS
                  and t.col == 1):
                return
            self.advance()

    def skip_extends(self, name: Token) -> None:
        """`model M extends Base {`: reported once (E0900); the body is still read."""
        t = self.tok
        if not (t.kind is T.IDENT and t.text in ("extends", "implements")):
            return
        self.advance()
        bases = []
        while self.tok.kind is T.IDENT or self.at_op(",", "."):
            bases.append(self.advance().text)
        base = "".join(bases) or "Base"
        self.diags.append(Diagnostic(
            "E0900", f"`{t.text}` (inheritance) has no meaning in .tri", t.span,
            label="not supported",
            help=f"compose instead: declare `layer base: {base} {{ … }}` inside "
                 f"`{name.text}` and call it from `forward`"))

    def skip_effects(self) -> None:
        """`fn f() throws IO -> T {`: effect annotations are reported once (E0900) and
        skipped; the function is still checked."""
        t = self.tok
        if not (t.kind is T.IDENT and t.text in _EFFECTS):
            return
        self.advance()
        while self.tok.kind is T.IDENT or self.at_op(",", "|", "."):
            self.advance()
        self.diags.append(Diagnostic(
            "E0900", f"effect annotations (`{t.text} …`) have no meaning in .tri",
            t.span.to(self.prev_span()), label="not supported",
            help=f"remove `{t.text} …`: bad input is reported by `tritium check`, and a "
                 f"failure at run time raises a Python exception"))

    def parse_primary(self) -> A.Expr:
        t = self.toks[self.pos]
        if t.op == ".." and self.peek().is_op(".") and self.peek().col == t.end_col:
            raise ParseError(Diagnostic(
                "E0900", "spread (`...xs`) has no meaning in .tri", t.span.to(self.peek().span),
                label="not supported",
                help="pass the elements one by one (`f(xs[0], xs[1])`), or pass the list "
                     "itself; to join lists write `a + b`"))
        return super().parse_primary()

    # ------------------------------------------------------------------ types
    def parse_type(self) -> A.TypeExpr:
        """A type, with unions `A | B` and the optional suffix `T?` (see A.TypeExpr)."""
        start = self.toks[self.pos]
        first = self.parse_type_atom()
        members = [first]
        while self.at("|"):
            self.advance()
            self.skip_newlines()
            members.append(self.parse_type_atom())
        if len(members) == 1:
            return first
        return _union(members, start.span.to(self.prev_span()))

    def parse_type_atom(self) -> A.TypeExpr:
        start = self.toks[self.pos]
        with self.nested():
            ty = self.parse_type_primary()
        while self.at("?"):
            self.advance()
            ty = _union([ty, A.TypeExpr("None", span=self.prev_span())],
                        start.span.to(self.prev_span()))
        return ty

    def parse_type_list(self, close: str) -> list[A.TypeExpr]:
        """Types separated by commas up to `close` (consumed)."""
        items: list[A.TypeExpr] = []
        while not self.at(close):
            items.append(self.parse_type())
            if self.at(","):
                self.advance()
            elif not self.at(close):
                raise self.error(f"expected `,` or `{close}` in a list of types, found "
                                 f"{self.tok.describe()}", code="E0202")
        self.advance()
        return items

    def parse_type_primary(self) -> A.TypeExpr:
        t = self.toks[self.pos]
        if t.kind is T.KEYWORD and t.text == "None":
            self.advance()
            return A.TypeExpr("None", span=t.span)
        if t.is_op("["):
            # `[T]` is a list of T; `[A, B]` a fixed-length list (the same as `tuple[A, B]`)
            self.advance()
            items = self.parse_type_list("]")
            span = self.span_from(t)
            if not items:
                raise self.error("an empty list type `[]` names no element type", tok=t,
                                 code="E0202", help="write `[int]` or `list[int]`")
            if len(items) == 1:
                return A.TypeExpr("list", span=span, args=items)
            return A.TypeExpr("tuple", span=span, args=items)
        if t.is_op("("):
            self.advance()
            items = self.parse_type_list(")")
            if len(items) == 1 and not self.toks[self.pos - 2].is_op(","):
                return items[0]   # `(T)`: grouping
            return A.TypeExpr("tuple", span=self.span_from(t), args=items)
        if t.kind is T.KEYWORD and t.text in ("fn", "def"):
            self.advance()
            self.expect_op("(", "after `fn` in a function type")
            params = self.parse_type_list(")")
            ret = None
            if self.at("->"):
                self.advance()
                ret = self.parse_type_atom()
            return A.TypeExpr("fn", span=self.span_from(t), args=params, ret=ret)
        if t.kind is T.IDENT and t.text in _GENERIC_TYPES and self.peek().is_op("["):
            self.advance()
            self.advance()
            items = self.parse_type_list("]")
            span = self.span_from(t)
            kind = _GENERIC_TYPES[t.text]
            if kind == "Optional":
                if len(items) != 1:
                    raise self.error(f"`{t.text}` takes one type, got {len(items)}", tok=t,
                                     code="E0202", help=f"write `{t.text}[T]` or `T?`")
                return _union([items[0], A.TypeExpr("None", span=span)], span)
            if kind == "Union":
                if not items:
                    raise self.error("`Union` needs at least one type", tok=t, code="E0202")
                return _union(items, span) if len(items) > 1 else items[0]
            if kind == "list" and len(items) != 1:
                raise self.error(f"`{t.text}` takes one element type, got {len(items)}", tok=t,
                                 code="E0202",
                                 help="write `list[int]`, or `tuple[A, B]` for fixed positions")
            if kind == "dict" and len(items) != 2:
                raise self.error(f"`{t.text}` takes a key and a value type, got {len(items)}",
                                 tok=t, code="E0202", help="write `dict[str, int]`")
            return A.TypeExpr(kind, span=span, args=items)
        if t.kind is T.IDENT and t.text == "void":
            self.advance()
            return A.TypeExpr("None", span=t.span)
        name = self.expect_ident("a type")
        tname = _TYPE_SPELLINGS.get(name.text, name.text)
        dtype = None
        shape = None
        if self.at("<"):
            self.advance()
            if self.at("["):
                shape = self.parse_dims()
            else:
                d = self.expect_ident("an element type")
                dtype = d.text
                if self.at(","):
                    self.advance()
                    shape = self.parse_dims()
            self.expect_op(">", "to close the type arguments")
        elif self.at("[") and tname[:1].isupper():
            shape = self.parse_dims()
            if shape and isinstance(shape[0].value, str) and shape[0].value in DTYPES:
                dtype = shape.pop(0).value
                if not shape:
                    shape = None
        return A.TypeExpr(tname, dtype, shape, name.span.to(self.prev_span()))

    def parse_dims(self) -> list[A.Dim]:
        self.expect_op("[")
        dims: list[A.Dim] = []
        while not self.at("]"):
            t = self.toks[self.pos]
            e = self.parse_expr()
            if isinstance(e, A.Num) and not e.is_float:
                dims.append(A.Dim(e.value, e.span))
            elif isinstance(e, A.Name):
                dims.append(A.Dim(e.id, e.span))
            elif isinstance(e, A.Unknown):
                dims.append(A.Dim(None, e.span))
            else:
                dims.append(A.Dim(e, self.span_from(t)))
            if self.at(","):
                self.advance()
            elif not self.at("]"):
                raise self.error(f"expected `,` or `]` in a shape, found {self.tok.describe()}",
                                 code="E0202")
        self.advance()
        return dims

    # ------------------------------------------------------------------ statements
    def parse_block(self) -> list:
        open_tok = self.expect_op("{", "to open a block")
        stmts: list = []
        with self.nested():
            self.skip_newlines()
            while not self.at("}"):
                if self.tok.kind is T.EOF or (self.tok.kind is T.KEYWORD and self.tok.text in
                                              ("model", "block") and self.tok.col == 1):
                    raise ParseError(Diagnostic(
                        "E0202", "unclosed `{`", open_tok.span, label="this `{` is never closed",
                        help="add the missing `}`"))
                stmts.append(self.parse_statement())
                self.skip_newlines()
            self.advance()
        return stmts

    def parse_statement(self):
        t = self.toks[self.pos]
        if self.at_foreign():
            n = len(self.diags)
            self.skip_foreign()
            raise ParseError(self.diags.pop(n))
        if t.is_kw("let") and (self.peek().is_op("(") or self.peek(2).is_op(",")):
            self.advance()
            names = self.parse_target_names("after `let`")
            self.expect_op("=", "after the names")
            node = A.Unpack(names, self.parse_expr_list(), True, self.span_from(t))
            self.end_of_statement()
            return node
        if (t.kind is T.IDENT or t.is_op("(")) and self._at_unpack():
            names = self.parse_target_names("")
            self.advance()   # '='
            node = A.Unpack(names, self.parse_expr_list(), False, self.span_from(t))
            self.end_of_statement()
            return node
        if t.is_kw("let"):
            self.advance()
            name = self.expect_ident("a variable name")
            ty = None
            if self.at(":"):
                self.advance()
                ty = self.parse_type()
            value = None
            if ty is None or self.at("="):
                # `let x: T` alone declares x, to be assigned before it is used
                self.expect_op("=", f"after `let {name.text}`")
                value = self.parse_expr()
            node = A.Let(name.text, ty, value, self.span_from(t))
            self.end_of_statement()
            return node
        if t.is_kw("return"):
            self.advance()
            value = None
            if not (self.tok.kind is T.NEWLINE or self.at("}") or self.at(";")):
                value = self.parse_expr_list()   # `return a, b` returns the pair
            node = A.Return(value, self.span_from(t))
            self.end_of_statement()
            return node
        if t.is_kw("if"):
            node = self.parse_if()
            self.end_of_statement()
            return node
        if t.is_kw("for"):
            self.advance()
            names = None
            if self.at("(") or self.peek().is_op(","):
                names = self.parse_target_names("after `for`")
                var_text = names[0]
            else:
                var_text = self.expect_ident("a loop variable").text
            if not self.at_kw("in"):
                raise self.error(f"expected `in` after `for {var_text}`", code="E0202",
                                 help=f"write `for {var_text} in 0..n {{ … }}`")
            self.advance()
            it = self.parse_expr()
            body = self.parse_block()
            node = A.For(var_text, it, body, self.span_from(t), names)
            self.end_of_statement()
            return node
        if t.kind is T.KEYWORD and t.text in ("model", "block", "import"):
            raise self.error(f"`{t.text}` is only allowed at the top level", code="E0204")
        if t.kind is T.IDENT and t.text in _SOFT_STATEMENTS:
            node = self.parse_soft_statement(t)
            if node is not None:
                return node
        expr = self.parse_expr()
        if self.tok.kind is T.OP and self.tok.text in _ASSIGN_OPS:
            op = self.advance()
            if not isinstance(expr, A.Name | A.Index | A.Attr):
                raise ParseError(Diagnostic("E0205", "cannot assign to this expression",
                                            expr.span, label="not a variable",
                                            help="assign to a name, e.g. `x = …`"))
            value = self.parse_expr()
            node = A.Assign(expr, op.text, value, self.span_from(t))
        else:
            node = A.ExprStmt(expr, self.span_from(t))
        self.end_of_statement()
        return node

    def _at_function_word(self) -> bool:
        """`function name(` (or `function name<T>(`): the same as `fn name(`; `function`
        stays an ordinary name elsewhere."""
        t = self.toks[self.pos]
        return t.kind is T.IDENT and t.text == "function" and self.peek().kind is T.IDENT \
            and (self.peek(2).is_op("(") or self.peek(2).is_op("<"))

    def _at_unpack(self) -> bool:
        """`a, b =` or `(a, b) =` ahead: two or more names, then `=`."""
        toks, i = self.toks, self.pos
        paren = toks[i].is_op("(")
        i += 1 if paren else 0
        n = 0
        while toks[i].kind is T.IDENT:
            n += 1
            i += 1
            if not toks[i].is_op(","):
                break
            i += 1
        if paren:
            if not toks[i].is_op(")"):
                return False
            i += 1
        elif toks[i - 1].kind is not T.IDENT:
            return False
        return n >= 2 and toks[i].is_op("=")

    def parse_expr_list(self) -> A.Expr:
        """`e` or `e1, e2, …` (a tuple without parentheses: a list)."""
        start = self.toks[self.pos]
        e = self.parse_expr()
        if not self.at(","):
            return e
        items = [e]
        while self.at(","):
            self.advance()
            items.append(self.parse_expr())
        return A.ListLit(items, self.span_from(start))

    def parse_target_names(self, context: str) -> list[str]:
        """`(a, b)` or `a, b`: two or more names, a trailing `,` allowed in parentheses."""
        paren = self.at("(")
        if paren:
            self.advance()
        names = [self.expect_ident("a variable name").text]
        while self.at(","):
            self.advance()
            if paren and self.at(")"):
                break
            names.append(self.expect_ident("a variable name").text)
        if paren:
            self.expect_op(")", "to close the names")
        if len(set(names)) != len(names):
            raise self.error("a name appears twice in the same destructuring", code="E0205")
        return names

    def parse_soft_statement(self, t):
        """`while`, `break`, `continue`, `pass` and `assert` are statements where they begin
        one, and ordinary names elsewhere (`pass = 1`, `f(break)`)."""
        nxt = self.peek()
        alone = nxt.kind in (T.NEWLINE, T.EOF) or nxt.is_op(";") or nxt.is_op("}")
        if t.text in ("break", "continue", "pass"):
            if not alone:
                return None
            self.advance()
            node = {"break": A.Break, "continue": A.Continue, "pass": A.Pass}[t.text](t.span)
            self.end_of_statement()
            return node
        if alone or (nxt.kind is T.OP and nxt.text in _ASSIGN_OPS | {".", "[", ",", ")", ":"}):
            return None
        self.advance()
        if t.text == "while":
            cond = self.parse_expr()
            body = self.parse_block()
            node = A.While(cond, body, self.span_from(t))
            self.end_of_statement()
            return node
        # assert cond [, msg]; `assert(cond, msg)` is the same statement
        cond = self.parse_expr()
        msg = None
        if self.at(","):
            self.advance()
            msg = self.parse_expr()
        elif nxt.is_op("(") and isinstance(cond, A.ListLit) and len(cond.items) == 2 \
                and self.toks[self.pos - 1].is_op(")"):
            cond, msg = cond.items
        node = A.Assert(cond, msg, self.span_from(t))
        self.end_of_statement()
        return node

    def parse_if(self) -> A.If:
        t = self.advance()  # 'if'
        cond = self.parse_expr()
        then = self.parse_block()
        other = None
        save = self.pos
        while self.tok.kind is T.NEWLINE:
            self.advance()
        if self.at_kw("else"):
            self.advance()
            if self.at_kw("if"):
                with self.nested():
                    other = [self.parse_if()]
            else:
                other = self.parse_block()
        else:
            self.pos = save
        return A.If(cond, then, other, self.span_from(t))


def tail_value_returns(body: list) -> None:
    """In a function that declares a return type, a body ending in an expression returns it
    (`fn double(x: int) -> int { x * 2 }`), also at the end of each branch of a final
    `if … else …`. Not a call to `print`, which has no value."""
    if not body:
        return
    last = body[-1]
    if isinstance(last, A.ExprStmt) and not (
            isinstance(last.value, A.Call) and isinstance(last.value.func, A.Name)
            and last.value.func.id == "print"):
        body[-1] = A.Return(last.value, last.span)
    elif isinstance(last, A.If) and last.other is not None:
        tail_value_returns(last.then)
        tail_value_returns(last.other)


def parse(text: str, file: str = "<input>") -> tuple[A.Program, list[Diagnostic], list]:
    """Parse a whole file. Returns the program, every lexing and parsing diagnostic, and the
    comments (for the formatter)."""
    # Lexing and parsing allocate many small objects that all stay alive: the cyclic garbage
    # collector would traverse them again and again (half the parse time) and find nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        lexed = tokenize(text, file)
        p = Parser(lexed.tokens, file)
        with recursion_headroom():
            prog = p.parse_program()
    finally:
        if gc_was_enabled:
            if gc.get_freeze_count() == 0:
                # Move the new, long-lived AST and tokens straight to the oldest generation
                # (freeze + unfreeze splices lists; nothing is traversed): otherwise the first
                # young-generation collection after parsing walks all of them for nothing.
                gc.freeze()
                gc.unfreeze()
            gc.enable()
    diags = lexed.diagnostics + p.diags
    diags.sort(key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))
    return prog, diags, lexed.comments
