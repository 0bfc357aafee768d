"""Statements of the parser: blocks, `let`, assignments and unpacking, `return`,
`if`/`for`/`while` and the other soft statements."""

from __future__ import annotations

from . import ast as A
from .diagnostics import Diagnostic
from .lexer import T
from .parser_expr import ParseError

_ASSIGN_OPS = {"=", "+=", "-=", "*=", "/=", "@=", "**="}
_SOFT_STATEMENTS = frozenset({"while", "break", "continue", "pass", "assert"})


class StatementsMixin:
    """Parses statements; mixed into `Parser` (tritium.frontend.parser), whose token
    methods it uses."""

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
        if self.at_forms2_statement():   # type aliases, `with`, local `fn` (parser_forms2)
            return self.parse_forms2_statement()
        if self.at_foreign():
            n = len(self.diags)
            self.skip_foreign()
            raise ParseError(self.diags.pop(n))
        if t.is_kw("let") and (self.peek().is_op("(") or self.peek().is_op("[")
                               or self.peek(2).is_op(",") or self.peek().op == ".."):
            self.advance()
            names = self.parse_let_pattern()
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
            if ty is None and self.at(",") and self.peek().kind is T.IDENT \
                    and self.peek(2).is_op("="):
                return self.parse_let_bindings(t, name, value)
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
            if isinstance(expr, A.Name) and expr.id == "_" and op.text == "=":
                node = A.ExprStmt(value, self.span_from(t))   # `_ = f(x)`: run, result dropped
            else:
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

    def parse_let_bindings(self, t, name, value: A.Expr) -> A.Unpack:
        """The seed's `let a = 1, b = 2`: several bindings in one `let`, the same as
        `let a, b = 1, 2` (every value is computed before the names are bound)."""
        names, values = [name.text], [value]
        while self.at(","):
            self.advance()
            n = self.expect_ident("a variable name")
            if n.text in names:
                raise self.error(f"`{n.text}` is bound twice in one `let`", tok=n,
                                 code="E0206")
            self.expect_op("=", f"after `{n.text}`")
            names.append(n.text)
            values.append(self.parse_expr())
        node = A.Unpack(names, A.ListLit(values, self.span_from(t)), True, self.span_from(t))
        self.end_of_statement()
        return node

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

    def parse_let_pattern(self) -> list[str]:
        """The names of `let (a, b) = …`, `let a, b = …` or the seed's `let [a, b] = …`. A
        rest pattern `...rest` is E0900 (the statement is skipped, checking goes on)."""
        close = {"(": ")", "[": "]"}.get(self.tok.text) if self.tok.kind is T.OP else None
        if close is not None:
            self.advance()
        names: list[str] = []
        while True:
            if close is not None and self.at(close) and names:
                break   # a trailing `,`
            if self.at_spread():
                t = self.tok
                raise ParseError(Diagnostic(
                    "E0900", "a rest pattern (`...rest`) has no meaning in .tri",
                    t.span.to(self.peek().span), label="not supported",
                    help="take the items by index: `let first = xs[0]` and "
                         "`let rest = xs[1:]`"))
            names.append(self.expect_ident("a variable name").text)
            if not self.at(","):
                break
            self.advance()
        if close is not None:
            self.expect_op(close, "to close the names")
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

