"""Expressions of the parser: Pratt binary operators with precedences, unary and power
operators, postfix calls, indexing and attributes, ranges, primaries."""

from __future__ import annotations

from . import ast as A
from .diagnostics import Diagnostic
from .lexer import T

_COMPARE = {"==", "!=", "<", "<=", ">", ">="}
_BINARY_PREC = {
    "or": 2, "and": 3,
    "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5, "is": 5,
    "+": 6, "-": 6,
    "*": 7, "/": 7, "//": 7, "%": 7, "@": 7,
}
_UNARY_PREC = 8
_POW_PREC = 9
_TERMINATORS = frozenset({",", ")", "]", "}", ";", ":"})
# C spellings of the logical operators: the same nodes as `and`, `or` (and `!` as `not`)
_LOGICAL_OPS = {"&&": "and", "||": "or"}


class ParseError(Exception):
    """A syntax error (its Diagnostic); the parser recovers at the next item."""

    def __init__(self, diag: Diagnostic):
        self.diag = diag
        super().__init__(diag.message)


class ExpressionsMixin:
    """Parses expressions; mixed into `Parser` (tritium.frontend.parser), whose token
    methods it uses."""

    # ------------------------------------------------------------------ expressions
    def parse_expr(self) -> A.Expr:
        # Fast path: a lone literal or name followed by a terminator (`in_features: 64,`) is
        # most of what config-heavy programs contain; skip the precedence ladder for it.
        toks, pos = self.toks, self.pos
        if pos + 1 < len(toks):
            nxt = toks[pos + 1]
            if nxt.op in _TERMINATORS or nxt.kind is T.NEWLINE:
                t = toks[pos]
                k = t.kind
                if k is T.IDENT:
                    self.pos = pos + 1
                    return A.Name(t.text, t.span)
                if k is T.INT or k is T.FLOAT:
                    self.pos = pos + 1
                    return A.Num(t.value, k is T.FLOAT, t.span)
                if k is T.STRING:
                    self.pos = pos + 1
                    return A.Str(t.value, t.span)
        with self.nested():
            start = self.toks[self.pos]
            e = self.parse_range()
            while self.toks[self.pos].kind is T.IDENT \
                    and self.toks[self.pos].text == "with_gradient_from":
                self.advance()   # `a with_gradient_from b`: below `or`, above `if … else`
                e = A.WithGradient(e, self.parse_range(), self.span_from(start))
            if self.at_kw("if") and not self._if_starts_block():
                self.advance()
                cond = self.parse_range()
                if not self.at_kw("else"):
                    raise self.error("a conditional expression needs `else`", code="E0202",
                                     help="write `a if cond else b`")
                self.advance()
                other = self.parse_expr()
                return A.CondExpr(cond, e, other, self.span_from(start))
            if self.at("?"):
                self.advance()
                then = self.parse_expr()
                self.expect_op(":", "in the conditional expression `c ? a : b`")
                other = self.parse_expr()
                return A.CondExpr(e, then, other, self.span_from(start))
            return e

    def _if_starts_block(self) -> bool:
        return False

    def parse_range(self) -> A.Expr:
        start = self.toks[self.pos]
        e = self.parse_binary(0)
        if self.at("..") or self.at("..="):
            inclusive = self.advance().op == "..="
            stop = self.parse_binary(0)
            step = None
            t = self.toks[self.pos]
            if t.kind is T.IDENT and t.text == "step" and not self.line_ended():
                self.advance()   # `0..n step 2`: `step` is a word only right after a range
                step = self.parse_binary(0)
            elif t.op == ":" and not self.line_ended():
                step = self.range_colon_step()
            return A.Range(e, stop, self.span_from(start), inclusive, step)
        return e

    def range_colon_step(self) -> A.Expr | None:
        """The seed's `for i in 0..100:2 {`: a step after `:` when a block follows it (else
        the `:` is not the range's, and the cursor stays)."""
        at = self.pos
        try:
            self.advance()
            step = self.parse_binary(0)
        except ParseError:
            step = None
        if step is not None and self.at("{"):
            return step
        self.pos = at
        return None

    def _binary_op(self) -> tuple[str, int] | None:
        t = self.toks[self.pos]
        if t.kind is T.OP and t.text in _BINARY_PREC:
            return t.text, _BINARY_PREC[t.text]
        if t.op in _LOGICAL_OPS:
            op = _LOGICAL_OPS[t.op]
            return op, _BINARY_PREC[op]
        if t.kind is T.KEYWORD and t.text in ("and", "or", "is"):
            return t.text, _BINARY_PREC[t.text]
        if t.kind is T.KEYWORD and t.text == "not" and self.peek().is_kw("in"):
            return "not in", 5
        if t.kind is T.KEYWORD and t.text == "in":
            return "in", 5
        return None

    def parse_binary(self, min_prec: int) -> A.Expr:
        start = self.toks[self.pos]
        if self.at_kw("not"):
            if min_prec > 4:
                raise self.error("`not` binds more loosely than the operator before it",
                                 code="E0201", help="add parentheses: `… (not x)`")
            self.advance()
            with self.nested():
                operand = self.parse_binary(4)
            left: A.Expr = A.Unary("not", operand, self.span_from(start))
        else:
            left = self.parse_unary()
        while True:
            info = self._binary_op()
            if info is None:
                return left
            op, prec = info
            if prec < min_prec:
                return left
            self.advance()
            if op == "is" and self.at_kw("not"):
                self.advance()
                op = "is not"
            elif op == "not in":
                self.advance()
            right = self.parse_binary(prec + 1)
            left = A.Binary(op, left, right, self.span_from(start))
            if op in _COMPARE:
                left = self._comparison_chain(left, right, start)

    def _comparison_chain(self, first: A.Binary, right: A.Expr, start) -> A.Expr:
        """`a < b <= c` means `a < b and b <= c` (each comparison with its neighbour)."""
        left: A.Expr = first
        while (info := self._binary_op()) is not None and info[0] in _COMPARE:
            self.advance()
            nxt = self.parse_binary(info[1] + 1)
            cmp = A.Binary(info[0], right, nxt, right.span.to(nxt.span))
            left = A.Binary("and", left, cmp, self.span_from(start))
            right = nxt
        return left

    def parse_unary(self) -> A.Expr:
        t = self.toks[self.pos]
        if t.op == "!":
            # `!x` binds like a prefix `-`: `!a && b` is `(not a) and b`
            self.advance()
            with self.nested():
                operand = self.parse_unary()
            return A.Unary("not", operand, self.span_from(t))
        if t.kind is T.OP and t.text in ("-", "+"):
            self.advance()
            with self.nested():
                operand = self.parse_unary()
            span = self.span_from(t)
            if t.text == "-" and isinstance(operand, A.Num) and operand.value >= 0 \
                    and not isinstance(operand.value, bool):
                return A.Num(-operand.value, operand.is_float, span)
            if t.text == "-" and isinstance(operand, A.TritLit) and operand.value >= 0:
                return A.TritLit(-operand.value, span)
            return A.Unary(t.text, operand, span)
        return self.parse_power()

    def parse_power(self) -> A.Expr:
        start = self.toks[self.pos]
        base = self.parse_postfix()
        if self.at("**"):
            self.advance()
            with self.nested():
                exp = self.parse_unary()
            return A.Binary("**", base, exp, self.span_from(start))
        return base

    def parse_postfix(self) -> A.Expr:
        start = self.toks[self.pos]
        e = self.parse_primary()
        steps = 0   # each call, index or attribute nests the chain one level deeper
        try:
            while not self.line_ended():
                if not (self.at("(") or self.at("[") or self.at(".")):
                    return e
                self._nesting.__enter__()
                steps += 1
                e = self._postfix_step(e, start)
            return e
        finally:
            self.depth -= steps

    def _postfix_step(self, e: A.Expr, start) -> A.Expr:
        """One call, index or attribute applied to `e` (the caller counted its level)."""
        if self.at("("):
            args = self.parse_args()
            e = self._step_by(A.Call(e, args, self.span_from(start)))
        elif self.at("["):
            self.advance()
            idx = []
            with self.nested():
                while not self.at("]"):
                    idx.append(self.parse_subscript())
                    self.list_separator("]", "an index")
            self.advance()
            e = A.Index(e, idx, self.span_from(start))
        elif self.at("."):
            self.advance()
            name = self.toks[self.pos]
            if name.kind not in (T.IDENT, T.KEYWORD):
                raise self.error(f"expected an attribute name after `.`, found "
                                 f"{name.describe()}", code="E0202")
            self.advance()
            e = A.Attr(e, name.text, self.span_from(start))
        return e

    @staticmethod
    def _step_by(call: A.Call) -> A.Expr:
        """`(a..b).step_by(k)` is the range `a..b step k`."""
        f = call.func
        if isinstance(f, A.Attr) and f.attr == "step_by" and isinstance(f.value, A.Range) \
                and f.value.step is None and len(call.args) == 1 and call.args[0].name is None:
            r = f.value
            return A.Range(r.start, r.stop, call.span, r.inclusive, call.args[0].value)
        return call

    def parse_list_comp(self, elt: A.Expr, start) -> A.ListComp:
        """`[elt for v in xs if c]` (after `[elt`): one `for`, an optional `if`."""
        self.advance()   # 'for'
        names = None
        if self.at("(") or self.peek().is_op(","):
            names = self.parse_target_names("after `for`")
            var = names[0]
        else:
            var = self.expect_ident("a loop variable").text
        if not self.at_kw("in"):
            raise self.error(f"expected `in` after `for {var}`", code="E0202",
                             help="write `[f(x) for x in xs]`")
        self.advance()
        it = self.parse_range()
        cond = None
        if self.at_kw("if"):
            self.advance()
            cond = self.parse_range()
        self.expect_op("]", "to close the list comprehension")
        return A.ListComp(elt, var, it, cond, self.span_from(start), names)

    def _block_ahead(self) -> bool:
        """`{` starts a block used as a value, not a dictionary: it is not empty and does not
        start with `key:`."""
        i = self.pos + 1
        toks = self.toks
        while toks[i].kind is T.NEWLINE:
            i += 1
        t = toks[i]
        if t.is_op("}") or t.kind is T.EOF:
            return False
        return not (t.kind in (T.IDENT, T.STRING, T.KEYWORD) and toks[i + 1].is_op(":"))

    def parse_block_expr(self) -> A.BlockExpr:
        start = self.toks[self.pos]
        stmts = self.parse_block()
        if not stmts or not isinstance(stmts[-1], A.ExprStmt):
            raise ParseError(Diagnostic(
                "E0202", "a block used as a value must end with an expression (its value)",
                self.span_from(start), label="no value at the end",
                help="end the block with the value, e.g. `{ let t = x * 2\n t + 1 }`"))
        return A.BlockExpr(stmts[:-1], stmts[-1].value, self.span_from(start))

    def parse_if_expr(self) -> A.IfExpr:
        start = self.advance()   # 'if'
        with self.nested():
            cond = self.parse_expr()
            then = self.parse_block_expr()
            save = self.pos
            while self.tok.kind is T.NEWLINE:
                self.advance()
            if not self.at_kw("else"):
                self.pos = save
                raise self.error("an `if` used as a value needs an `else`", tok=start,
                                 code="E0202", help="write `if c { a } else { b }`")
            self.advance()
            other = self.parse_if_expr() if self.at_kw("if") else self.parse_block_expr()
        return A.IfExpr(cond, then, other, self.span_from(start))

    def parse_subscript(self) -> A.Expr:
        start = self.toks[self.pos]
        parts: list[A.Expr | None] = [None]
        if not self.at(":"):
            parts[0] = self.parse_expr()
            if not self.at(":"):
                return parts[0]
        while self.at(":") and len(parts) < 3:
            self.advance()
            if self.at_op(":", ",", "]"):
                parts.append(None)
            else:
                parts.append(self.parse_expr())
        while len(parts) < 3:
            parts.append(None)
        return A.Slice(parts[0], parts[1], parts[2], self.span_from(start))

    def parse_args(self) -> list[A.Arg]:
        self.expect_op("(")
        args: list[A.Arg] = []
        with self.nested():
            seen_named = False
            while not self.at(")"):
                t = self.toks[self.pos]
                if t.kind is T.IDENT and (self.peek().is_op(":") or self.peek().is_op("=")):
                    self.advance()
                    self.advance()
                    value = self.parse_expr()
                    args.append(A.Arg(value, t.text, self.span_from(t)))
                    seen_named = True
                else:
                    value = self.parse_expr()
                    if seen_named:
                        raise ParseError(Diagnostic(
                            "E0201", "a positional argument cannot follow a named one",
                            value.span, help="move the positional arguments first"))
                    args.append(A.Arg(value, None, value.span))
                self.list_separator(")", "the argument list", help="a `)` may be missing")
            self.advance()
        return args

    def at_spread(self) -> bool:
        """At `...` (the lexer's `..` and `.` side by side)."""
        t = self.toks[self.pos]
        return t.op == ".." and self.peek().is_op(".") and self.peek().col == t.end_col

    def at_elision(self) -> bool:
        """At a `...` that nothing follows (`= ...`, `[0, 1, ..., 9]`, `f(x, ...)`): the
        docs' placeholder for elided code, not a spread `...xs`."""
        after = self.peek(2)   # the lexer drops the newline after `.`: compare lines
        return after.kind in (T.NEWLINE, T.EOF) or after.line > self.peek().line \
            or after.is_op(",") or after.is_op(")") \
            or after.is_op("]") or after.is_op("}") or after.is_op(";")

    def parse_strings(self) -> A.Str | A.FString:
        """A string or f-string literal, and the ones right after it: adjacent literals are
        one string, as in Python (`f"in={a}, " f"out={b}"`, across lines inside brackets)."""
        out: A.Str | A.FString | None = None
        while self.tok.kind in (T.STRING, T.FSTRING):
            t = self.advance()
            part = A.Str(t.value, t.span) if t.kind is T.STRING else self.parse_fstring(t)
            if out is None:
                out = part
            elif isinstance(out, A.Str) and isinstance(part, A.Str):
                out = A.Str(out.value + part.value, out.span.to(part.span))
            else:
                parts: list = []
                for x in (out, part):
                    for p in ([x.value] if isinstance(x, A.Str) else x.parts):
                        if isinstance(p, str) and parts and isinstance(parts[-1], str):
                            parts[-1] += p
                        elif not (isinstance(p, str) and p == ""):
                            parts.append(p)
                out = A.FString(parts, out.span.to(part.span))
        assert out is not None
        return out

    def parse_primary(self) -> A.Expr:
        t = self.toks[self.pos]
        k = t.kind
        if k is T.INT:
            self.advance()
            return A.Num(t.value, False, t.span)
        if k is T.FLOAT:
            self.advance()
            return A.Num(t.value, True, t.span)
        if k is T.TRIT:
            self.advance()
            return A.TritLit(t.value, t.span)
        if k in (T.STRING, T.FSTRING):
            return self.parse_strings()
        if k is T.IDENT:
            self.advance()
            return A.Name(t.text, t.span)
        if k is T.KEYWORD:
            if t.text == "if":
                return self.parse_if_expr()
            if t.text in ("true", "True", "false", "False"):
                self.advance()
                return A.Bool(t.text in ("true", "True"), t.span)
            if t.text == "None":
                self.advance()
                return A.NoneLit(t.span)
        if k is T.OP:
            if t.text == "(":
                self.advance()
                self.skip_newlines()
                if self.at(")"):
                    self.advance()
                    return A.ListLit([], self.span_from(t))
                e = self.parse_expr()
                if self.at(","):
                    items = [e]
                    while self.at(","):
                        self.advance()
                        if self.at(")"):
                            break
                        items.append(self.parse_expr())
                    e = A.ListLit(items, t.span)
                self.expect_op(")", "to close the parenthesis")
                if isinstance(e, A.ListLit):
                    e.span = self.span_from(t)
                return e
            if t.text == "[":
                self.advance()
                items = []
                with self.nested():
                    while not self.at("]"):
                        items.append(self.parse_expr())
                        if len(items) == 1 and self.at_kw("for"):
                            return self.parse_list_comp(items[0], t)
                        self.list_separator("]", "a list")
                self.advance()
                return A.ListLit(items, self.span_from(t))
            if t.text == "{" and self._block_ahead():
                return self.parse_block_expr()
            if t.text == "{":
                entries = self.parse_entries("a dictionary")
                return A.DictLit(entries, self.span_from(t))
            if t.text == "?":
                self.advance()
                return A.Unknown(t.span)
        if k is T.NEWLINE:
            raise self.error("expected an expression, found the end of the line", code="E0201",
                             label="expression missing")
        raise self.error(f"expected an expression, found {t.describe()}", code="E0201",
                         label="expected an expression")
