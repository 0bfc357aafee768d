"""Parser rules for forms of the earlier DSL written as statements and values (a mixin of
`Parser`): `type Name = T` aliases, `with no_grad() { … }`, a `fn` defined inside a body,
anonymous functions `fn(y: Tensor) -> Tensor { … }` used as values, and typed body
constants `hidden: int = c * e` in a model or block.

`type` and `with` stay ordinary names wherever they do not begin one of these statements
(`type = "mlp"`, `with(x)`)."""

from __future__ import annotations

from . import ast as A
from .diagnostics import Diagnostic
from .lexer import T
from .parser_expr import ParseError
from .parser_fn import tail_value_returns


class Forms2Mixin:
    # ------------------------------------------------------------------ statements
    def at_forms2_statement(self) -> bool:
        """`type Name =`, `with CONTEXT`, or `fn name(` (`def`, `function`) inside a body."""
        t = self.toks[self.pos]
        nxt = self.peek()
        if t.kind is T.IDENT and t.text == "type":
            return nxt.kind is T.IDENT and (self.peek(2).is_op("=") or self.peek(2).is_op("<"))
        if t.kind is T.IDENT and t.text == "with":
            return nxt.kind is T.IDENT or nxt.is_op("(") and self._with_block_ahead()
        return (t.is_kw("fn") or t.is_kw("def")) and nxt.kind is T.IDENT \
            or self._at_function_word()

    def _with_block_ahead(self) -> bool:
        """`with (ctx) {`: the parenthesized context is followed by a block, not an
        operator (then `with(…)` is a call of a function named `with`)."""
        depth = 0
        i = self.pos + 1
        toks = self.toks
        while i < len(toks) and toks[i].kind is not T.EOF:
            t = toks[i]
            if t.kind is T.OP and t.text in "([{":
                depth += 1
            elif t.kind is T.OP and t.text in ")]}":
                depth -= 1
                if depth == 0:
                    return i + 1 < len(toks) and toks[i + 1].is_op("{")
            i += 1
        return False

    def parse_forms2_statement(self):
        t = self.toks[self.pos]
        if t.text == "type":
            self.advance()
            name = self.expect_ident("an alias name")
            # `type Matrix<T> = Tensor<T, [?, ?]>`: parameters (their bounds, such as the
            # `int32` of a size `n`, say what they stand for; the use decides)
            tps = self.parse_type_params() if self.at("<") else None
            self.expect_op("=", f"after `type {name.text}`")
            if self.tok.kind is T.IDENT and self.tok.text in ("exists", "forall") \
                    and self.peek().kind is T.IDENT:
                q = self.tok
                self.unparsed = getattr(self, "unparsed", set()) | {name.text}
                raise ParseError(Diagnostic(
                    "E0900", f"quantified types (`{q.text} {self.peek().text}. …`) have no "
                             f"meaning in .tri", q.span.to(self.peek().span),
                    label="not supported", help="write the type itself (`Tensor<float32, "
                    "[?, ?]>`, `?` for a dim not known), or use a type parameter `<S>`"))
            ty = self.parse_type()
            self.lifts = True
            node = A.TypeAlias(name.text, ty, self.span_from(t),
                               [p.name for p in tps] if tps else None)
            self.end_of_statement()
            return node
        if t.text == "with":
            self.advance()
            ctx = self.parse_expr()
            body = self.parse_block()
            node = A.With(ctx, body, self.span_from(t))
            self.end_of_statement()
            return node
        self.lifts = True
        node = self.parse_fn()   # a local function: lifted by frontend.lift
        self.end_of_statement()
        return node

    # ------------------------------------------------------------------ values
    def at_fn_expr(self) -> bool:
        t = self.toks[self.pos]
        return t.is_kw("fn") and self.peek().is_op("(")

    def parse_fn_expr(self) -> A.FnExpr:
        """`fn(params) [-> T] { body }` used as a value."""
        t = self.advance()
        params = self.parse_param_specs()
        ret = None
        if self.at("->"):
            self.advance()
            ret = self.parse_type()
        body = self.parse_block()
        if ret is not None and ret.name not in ("None", "void"):
            tail_value_returns(body)
        self.lifts = True
        return A.FnExpr(params, ret, body, self.span_from(t))

    # ------------------------------------------------------------------ body constants
    def at_typed_constant(self) -> bool:
        """`name: T = value` in a model or block body: what follows the `:` parses as a type
        and a `=` comes right after it (an untyped constant `name: value` never holds one
        there). Decided by parsing the type ahead and rewinding, so a value that only looks
        like the start of a type (`x: ?`, `k: a < b`) stays an untyped constant."""
        t = self.toks[self.pos]
        if t.kind is not T.IDENT or not self.peek().is_op(":"):
            return False
        save, n_diags = self.pos, len(self.diags)
        self.pos += 2
        try:
            self.parse_type()
            return self.at("=")
        except ParseError:
            return False
        finally:
            self.pos = save
            del self.diags[n_diags:]

    def parse_typed_constant(self) -> A.ConfigEntry:
        t = self.advance()
        self.expect_op(":")
        ty = self.parse_type()
        self.expect_op("=", f"after the type of `{t.text}`")
        value = self.parse_expr()
        node = A.ConfigEntry(t.text, value, self.span_from(t), ty)
        self.end_of_statement()
        return node
