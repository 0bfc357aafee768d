"""Signatures of the parser: functions (parameters, type parameters, bounds, `where`),
foreign forms of general-purpose languages (reported and skipped), and type expressions."""

from __future__ import annotations

from .. import vocab
from . import ast as A
from .diagnostics import Diagnostic, Severity, Span
from .lexer import T, Token
from .parser_decl import _TOP_KEYWORDS
from .parser_expr import ParseError

DTYPES = frozenset(vocab.DTYPES)
TENSOR_TYPES = frozenset({"Tensor", "TernaryTensor"})

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
    "optimizer": "choose the optimizer in a model's `training { optimizer: \"adam\", "
                 "learning_rate: 0.001 }` (or `tritium train --optimizer`)",
}
_EFFECTS = {"throws", "raises", "mutates"}


class SignaturesMixin:
    """Parses functions, foreign forms and types; mixed into `Parser`
    (tritium.frontend.parser), whose token methods it uses."""

    # ------------------------------------------------------------------ functions
    def parse_param_specs(self) -> list[A.ParamSpec]:
        self.expect_op("(")
        return self.comma_list(")", self.parse_param_spec, "the parameter list")

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
        tparams, where = self.parse_where(tparams)
        if not self.at("{"):
            return A.FnDef(name.text, params, ret, self.parse_block(), self.span_from(t), tparams,
                           where=where)
        open_at = self.pos
        try:
            body = self.parse_block()
        except ParseError as e:
            # The signature stands (calls still resolve to it); the body is reported once
            # and marked broken so that the checker reports nothing else about it.
            self.diags.append(e.diag)
            self.skip_braces(open_at)
            node = A.FnDef(name.text, params, ret, [], self.span_from(t), tparams, where=where)
            node.broken = True
            return node
        if ret is not None and ret.name not in ("None", "void"):
            tail_value_returns(body)
        return A.FnDef(name.text, params, ret, body, self.span_from(t), tparams, where=where)

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
            if self.at("<"):   # `Container<F<_>>`: a type constructor as a parameter
                raise ParseError(Diagnostic(
                    "E0900", f"higher-kinded type parameters (`{n.text}<…>`) have no meaning "
                             f"in .tri", n.span.to(self.tok.span), label="not supported",
                    help=f"a type parameter stands for one type: write `<{n.text}>`"))
            self.list_separator(">", "the type parameters",
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

    def parse_where(self, tparams: list[A.TypeParam] | None
                    ) -> tuple[list[A.TypeParam] | None, list[A.Expr]]:
        """`where T: Numeric, U: Float` before the body: bounds on declared type parameters
        (merged into them, so `where` and `<T: Numeric>` are the same AST), and the shape
        relations of the clause (`S1[1] == S2[0]`, see `where_constraint`)."""
        relations: list[A.Expr] = []
        if not (self.tok.kind is T.IDENT and self.tok.text == "where"):
            return tparams, relations
        w = self.advance()
        out = [A.TypeParam(p.name, list(p.bounds), p.span) for p in tparams or []]
        self.skip_newlines()
        while True:
            if not (self.tok.kind is T.IDENT and self.peek().is_op(":")):
                relations.append(self.where_constraint())
                if not self.at(","):
                    break
                self.advance()
                self.skip_newlines()
                continue
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
        return out, relations

    def where_constraint(self) -> A.Expr:
        """A relation of shapes in a `where` clause (`S1[1] == S2[0]`, `S.dims == 2`): parsed
        and reported (W0980), not checked: shape variables stand for any shape here."""
        start = self.toks[self.pos]
        relation = self.parse_expr()
        self.diags.append(Diagnostic(
            "W0980", "this `where` constraint on shapes is not checked", self.span_from(start),
            severity=Severity.WARNING, label="parsed, then ignored",
            help="the checker relates shapes through named dims: write `Tensor<T, [M, K]>` "
                 "and `Tensor<T, [K, N]>` to require equal sizes"))
        return relation

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
        if not hasattr(self, "rejected"):
            self.rejected = set()
        self.rejected.add(name.text)
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
        if self.at_spread() and self.at_elision():
            raise ParseError(Diagnostic(
                "E0900", "`...` stands for code the example leaves out: it is not a value",
                t.span.to(self.peek().span), label="a placeholder",
                help="write the value itself here (e.g. `randn([10, 20])`, or a parameter of "
                     "the function)"))
        if self.at_spread():
            raise ParseError(Diagnostic(
                "E0900", "spread (`...xs`) has no meaning in .tri", t.span.to(self.peek().span),
                label="not supported",
                help="pass the elements one by one (`f(xs[0], xs[1])`), or pass the list "
                     "itself; to join lists write `a + b`"))
        if self.at_fn_expr():   # `fn(y: Tensor) { … }` as a value (parser_forms2)
            return self.parse_fn_expr()
        if t.kind is T.IDENT and t.text in TENSOR_TYPES and self.peek().is_op("<"):
            # `Tensor<int32, [10, 10]>()`: a tensor type where a value stands (ast.TypeValue);
            # `a < b` with any other name stays a comparison
            ty = self.parse_type_atom()
            return A.TypeValue(ty, ty.span)
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
        return self.comma_list(close, self.parse_type, "a list of types")

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
        if t.kind is T.IDENT and t.text in _GENERIC_TYPES and (
                self.peek().is_op("[") or self.peek().is_op("<")):
            self.advance()   # `Tuple[A, B]`, or the seed's `Tuple<A, B>`, `List<T>`
            close = "]" if self.advance().op == "[" else ">"
            items = self.parse_type_list(close)
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
        if t.kind is T.IDENT and t.text == "Result" and (
                self.peek().is_op("<") or self.peek().is_op("[")):
            # the seed's `Result<T, E>`: a T, or a stop with an error (`Err(msg)`); E is any
            # type name (`Error`, `str`), recorded and not checked
            self.advance()
            close = "]" if self.advance().op == "[" else ">"
            items = self.parse_type_list(close)
            if not 1 <= len(items) <= 2:
                raise self.error(f"`Result` takes a value type and an error type, got "
                                 f"{len(items)}", tok=t, code="E0202",
                                 help="write `Result<Tensor<float32, [?]>, Error>`")
            return A.TypeExpr("Result", span=self.span_from(t), args=items)
        if t.kind is T.IDENT and t.text == "void":
            self.advance()
            return A.TypeExpr("None", span=t.span)
        name = self.expect_ident("a type")
        tname = _TYPE_SPELLINGS.get(name.text, name.text)
        dtype = None
        shape = None
        shape_var = None
        if self.at("<"):
            self.advance()
            if self.at("["):
                shape = self.parse_dims()
            else:
                d = self.expect_ident("an element type")
                dtype = d.text
                if self.at(","):
                    self.advance()
                    shape_var = self.parse_shape_var()
                    if shape_var is None:
                        shape = self.parse_dims()
            self.expect_op(">", "to close the type arguments")
        elif self.at("[") and tname[:1].isupper():
            shape = self.parse_dims()
            if shape and isinstance(shape[0].value, str) and shape[0].value in DTYPES:
                dtype = shape.pop(0).value
                if not shape:
                    shape = None
        return A.TypeExpr(tname, dtype, shape, name.span.to(self.prev_span()),
                          shape_var=shape_var)

    def parse_shape_var(self) -> str | None:
        """`S` in `Tensor<T, S>` (a shape variable, e.g. a generic parameter) or `?` (the
        whole shape unknown); None when a `[dims]` list follows."""
        t = self.toks[self.pos]
        if t.kind is T.IDENT and self.peek().is_op(">"):
            self.advance()
            return t.text
        if t.is_op("?") and self.peek().is_op(">"):
            self.advance()
            return "?"
        return None

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
            self.list_separator("]", "a shape")
        self.advance()
        return dims


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

