"""Recursive-descent parser with Pratt expressions, bounded nesting and error recovery.

Nesting (parentheses, brackets, blocks) is bounded by MAX_DEPTH: deeper input gets a clear
E0203 instead of a RecursionError. After a syntax error the parser skips to the next item of
the enclosing body (or the next top-level item), so one run reports every independent error.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

from . import ast as A
from .diagnostics import Diagnostic, Span, did_you_mean
from .lexer import FieldText, T, Token, tokenize
from .parser_decl import _TOP_KEYWORDS, DeclarationsMixin
from .parser_expr import ExpressionsMixin, ParseError
from .parser_fn import DTYPES, TENSOR_TYPES, SignaturesMixin
from .parser_forms2 import Forms2Mixin
from .parser_stmt import StatementsMixin

__all__ = ["DTYPES", "MAX_DEPTH", "TENSOR_TYPES", "ParseError", "Parser", "parse",
           "recursion_headroom"]

MAX_DEPTH = 200

# keywords that start a statement at the top level (the others start items or are errors)
_Item = TypeVar("_Item")
_TOP_STATEMENT_KEYWORDS = frozenset({"let", "return", "if", "for", "not", "None", "true",
                                     "false", "True", "False"})
_SECTION_NAMES = {"training", "performance", "quantization", "repeat", "inference", "export"}


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


class Parser(Forms2Mixin, DeclarationsMixin, SignaturesMixin, StatementsMixin,
             ExpressionsMixin):
    """The parser: token helpers, error recovery, the program and its top-level items here;
    bodies and layer declarations (parser_decl), functions, foreign forms and types
    (parser_fn), statements (parser_stmt) and expressions (parser_expr) in its mixins."""

    def __init__(self, tokens: list[Token], file: str):
        self.toks = tokens
        self.pos = 0
        self.file = file
        self.diags: list[Diagnostic] = []
        self.depth = 0
        self._nesting = _Nesting(self)
        self.comments: list = []

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

    def list_separator(self, close: str, what: str, help: str | None = None) -> None:
        """After an item of a comma-separated list that `close` ends: a `,` is consumed and
        `close` left to the caller; anything else is E0202, naming the list (`what`)."""
        if self.at(","):
            self.advance()
        elif not self.at(close):
            raise self.error(f"expected `,` or `{close}` in {what}, found "
                             f"{self.tok.describe()}", code="E0202", help=help)

    def comma_list(self, close: str, parse_item: Callable[[], _Item], what: str) -> list[_Item]:
        """Items separated by commas (a trailing one allowed) up to `close`, consumed."""
        items: list[_Item] = []
        while not self.at(close):
            items.append(parse_item())
            self.list_separator(close, what)
        self.advance()
        return items

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
        return A.Program(items, self.file, start.to(self.tok.span),
                         lifts=getattr(self, "lifts", False),
                         rejected=getattr(self, "rejected", set()),
                         unparsed=getattr(self, "unparsed", set()))

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
        if t.kind is T.IDENT and self.peek().kind is T.IDENT and not self.at_forms2_statement() \
                and t.text not in ("while", "assert"):   # `while n < 10 {`, `assert ok, "…"`
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
            name = self.bound_name(start)
            if name is not None:
                self.unparsed = getattr(self, "unparsed", set()) | {name}
            self.sync_body(start)
            if self.at("}") and self.pos == start:
                self.advance()
            return None

    def bound_name(self, start: int) -> str | None:
        """The name a statement or body item beginning at token `start` binds (`let x…`,
        `x = …`, `x: T = …`, `layer x: …`, `param x…`, `state x…`), else None."""
        t, n = self.toks[start], self.toks[min(start + 1, len(self.toks) - 1)]
        if t.kind is T.KEYWORD and t.text in ("let", "layer", "param", "state") \
                and n.kind is T.IDENT:
            return n.text
        if t.kind is T.IDENT and (n.is_op("=") or n.is_op(":")):
            return t.text
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
            tparams, where = self.parse_where(tparams)
            self.skip_extends(name)
            if self.at(":"):
                raise self.error("`layer name: Kind { … }` declares a layer instance and belongs "
                                 "inside a `model` or `block`", tok=t, code="E0204",
                                 help="define a new layer type with `layer Name(args) { … }`")
            body = self.parse_body(f"layer `{name.text}`")
            return A.LayerDef(name.text, params, ret, body, self.span_from(t), tparams, where)
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
        p.comments = lexed.comments   # the column names of a table `Kind[] { … }`
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
