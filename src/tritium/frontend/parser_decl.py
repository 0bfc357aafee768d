"""Declarations of the parser: the bodies of models, blocks and layers, their `params`
sections, config entries and layer declarations (kinds, sequences, `switch`)."""

from __future__ import annotations

from . import ast as A
from .diagnostics import Diagnostic, Span
from .lexer import KEYWORDS, T, Token
from .parser_expr import ParseError
from .state_spec import state_from_spec

# keywords that start a top-level item (a body or a skipped form ends before one)
_TOP_KEYWORDS = {"model", "block", "layer", "fn", "def", "import"}
_ENTRY_END = frozenset({"}", ",", ";"})


class DeclarationsMixin:
    """Parses bodies and layer declarations; mixed into `Parser`
    (tritium.frontend.parser), whose token methods it uses."""

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
                    name = self.bound_name(start)
                    if name is not None:
                        self.unparsed = getattr(self, "unparsed", set()) | {name}
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
            if self.at("{"):   # `state m: Tensor { shape: [n], init: "zeros" }` (state_spec)
                spec = self.parse_entries(f"the spec of state `{name.text}`")
                ty, init = state_from_spec(self.diags, name.text, ty, init, spec,
                                           self.span_from(t))
            node = A.StateDecl(name.text, ty, init, self.span_from(t))
            self.end_of_statement()
            return node
        if t.is_kw("fn") or t.is_kw("def") or self._at_function_word():
            self.lifts = True   # a function in a body: frontend.lift
            return self.parse_fn()
        if self._is_method_def():
            return self.parse_fn(keyword=False)
        if t.kind is T.IDENT and t.text == "method" and self.peek().kind is T.IDENT \
                and self.peek(2).is_op("("):
            self.advance()   # the seed's `method name(…) { … }`: a method like `forward`
            self.lifts = True
            return self.parse_fn(keyword=False)
        if t.kind is T.IDENT and self.peek().is_op("{"):
            if t.text == "params":
                return self.parse_params_section()
            self.advance()
            entries = self.parse_entries(f"`{t.text}`")
            return A.Section(t.text, entries, self.span_from(t))
        if self.at_typed_constant():   # `hidden: int = c * e` (parser_forms2)
            return self.parse_typed_constant()
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
            branches = [(cond, self.parse_kind_alternatives(t, "conditional layer"),
                         self.span_from(t))]
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
                branches.append((bcond, self.parse_kind_alternatives(e, "`else` branch"),
                                 self.span_from(e)))
                if bcond is None:
                    break
            node = self.layer_chain(name.text, t, branches)
        elif self.tok.kind is T.IDENT and self.tok.text == "switch":
            node = self.parse_layer_switch(t, name)
        elif self.at_sequential():   # `Sequential { A {…} switch (p) { … } }` too
            seq = self.advance()
            node = self.layer_chain(name.text, t, [(None, self.parse_kind_alternatives(
                seq, "`Sequential`"), self.span_from(seq))])
        else:
            kinds = self.parse_kinds_or_sequence()
            node = A.LayerDecl(name.text, kinds, None, self.span_from(t))
        self.end_of_statement()
        return node

    def parse_kind_list(self, t: Token, what: str) -> list[A.LayerKind]:
        """`{ Kind {…} Kind {…} }`: the kinds of one branch, applied in sequence."""
        start = self.tok
        alts = self.parse_kind_alternatives(t, what)
        if len(alts) > 1 or alts[0][0] is not None:
            raise self.error(f"a `switch` cannot stand among the kinds of a {what} here",
                             tok=start, code="E0202",
                             help="write the `switch` in the branch of a conditional layer "
                                  "or among the kinds of `layer x: Sequential { … }`")
        return alts[0][1]

    def layer_chain(self, name: str, t: Token,
                    branches: list[tuple[A.Expr | None,
                                         list[tuple[A.Expr | None, list[A.LayerKind]]], Span]]
                    ) -> A.LayerDecl:
        """A conditional layer from its branches (head condition, alternatives, span): each
        alternative is a branch of the `if` chain under `head and its condition`. A head
        whose alternatives do not cover every case (a `switch` without a default) keeps the
        later branches from its cases: they are guarded by `not head`."""
        flat: list[tuple[A.Expr | None, list[A.LayerKind], Span]] = []
        guard: A.Expr | None = None
        for head, alts, span in branches:
            for cond, kinds in alts:
                flat.append((_both(guard, _both(head, cond)), kinds, span))
            if head is not None and all(c is not None for c, _ in alts):
                g = A.Unary("not", head, head.span)
                guard = _both(guard, g)
        (c0, k0, _), rest = flat[0], flat[1:]
        return A.LayerDecl(name, k0, c0, self.span_from(t),
                           [A.LayerBranch(c, k, sp) for c, k, sp in rest])

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
        header: list[str] | None = None
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
                    if header is None:
                        header = self.table_header(k.line, row.line, len(lit.items))
                    names = header if header and len(header) == len(lit.items) else None
                    args = [A.Arg(v, names[i] if names else None, v.span)
                            for i, v in enumerate(lit.items)]
                else:
                    raise self.error(f"a row of `{k.text}[]` is a list `[…]`", tok=row,
                                     code="E0202")
                kinds.append(A.LayerKind(k.text, [], args, None, k.span.to(self.prev_span()),
                                         row=True))
                self.skip_separators()
            self.advance()
        if not kinds:
            raise self.error(f"`{k.text}[]` needs at least one row", tok=k, code="E0202")
        return kinds

    def table_header(self, kind_line: int, row_line: int, width: int) -> list[str]:
        """The column names of a table `Kind[] { … }`, from a comment that lists them
        (`[1, 16, 1, 1],  // t, c, n, s`): the nearest comment from the first row's line
        back to two lines above `Kind[]` whose text is `width` names separated by commas.
        [] when there is none: the columns are then the kind's parameters in order."""
        found: list[tuple[int, list[str]]] = []
        for c in getattr(self, "comments", ()):
            if not (kind_line - 2 <= c.line <= row_line) or c.end_line != c.line:
                continue
            text = c.text.lstrip("/#").strip()
            parts = [p.strip() for p in text.split(",")]
            if len(parts) == width and all(p.isidentifier() and p.isascii() and len(p) <= 64
                                           and p not in KEYWORDS for p in parts):
                found.append((abs(row_line - c.line), parts))
        return min(found, key=lambda f: f[0])[1] if found else []

    def parse_layer_switch(self, t: Token, name: Token) -> A.LayerDecl:
        """`switch (p) { "int8" -> Kind {…} … default -> Kind {…} }`: the `if` chain
        `if p == "int8" { … } else if … else { … }`; without a default and no case
        matching, the layer is `None`."""
        cases = self.parse_switch_cases()
        first = cases[0]
        orelse = [A.LayerBranch(c, k, s) for c, k, s in cases[1:]]
        return A.LayerDecl(name.text, first[1], first[0], self.span_from(t), orelse)

    def at_kind_switch(self) -> bool:
        return self.tok.kind is T.IDENT and self.tok.text == "switch" \
            and not self.peek().is_op("{") and not self.peek().is_op(":")

    def parse_switch_cases(self) -> list[tuple[A.Expr | None, list[A.LayerKind], Span]]:
        """The cases of `switch (p) { … }` as (condition, kinds, span), the default (None)
        last."""
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
        return cases

    def parse_kind_alternatives(self, t: Token, what: str) \
            -> list[tuple[A.Expr | None, list[A.LayerKind]]]:
        """`{ Kind {…} switch (p) { "a" -> K1 {…} … } Kind {…} }`: the kinds of a branch,
        where a `switch` among them stands for the kinds of its case. One alternative
        (condition, kinds) per combination of cases, in order; the condition is None when
        every switch took its default. Without a switch: one alternative, condition None."""
        self.expect_op("{", f"to open the {what}")
        alts: list[tuple[A.Expr | None, list[A.LayerKind]]] = [(None, [])]
        with self.nested():
            self.skip_separators()
            while not self.at("}"):
                if self.tok.kind is T.EOF:
                    raise self.error(f"unclosed {what}", tok=t, code="E0202")
                if self.at_kind_switch():
                    cases = self.parse_switch_cases()
                    alts = [(_both(c0, c1), k0 + k1) for c0, k0 in alts for c1, k1, _ in cases]
                else:
                    kinds = self.parse_kinds_or_sequence()
                    alts = [(c, k + kinds) for c, k in alts]
                self.skip_separators()
            self.advance()
        if not all(k for _, k in alts):
            raise self.error(f"a {what} needs at least one layer kind", tok=t, code="E0202")
        return alts

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


def _both(a: A.Expr | None, b: A.Expr | None) -> A.Expr | None:
    """`a and b`, None standing for true."""
    if a is None or b is None:
        return b if a is None else a
    return A.Binary("and", a, b, a.span.to(b.span))
