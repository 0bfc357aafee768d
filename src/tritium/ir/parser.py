"""Parser of the textual IR (the grammar is in docs/ir.md). `//` starts a comment.

    module     ::= item*
    item       ::= func | ("layer" | "model" | "block") SYMBOL attr-dict "{" layer-item* "}"
    layer-item ::= "param" SYMBOL ":" type attr-dict? | "sublayer" SYMBOL ":" SYMBOL attr-dict? | func
    func       ::= "func" SYMBOL "(" (VALUE ":" type),* ")" "->" "(" type,* ")" "{" op* "}"
    op         ::= (VALUE,+ "=")? IDENT "(" VALUE,* ")" attr-dict? ":" "(" type,* ")" "->" results region*
    results    ::= type | "(" type,* ")"
    region     ::= "{" op* "}"
"""

from __future__ import annotations

import json
import re

from .core import (
    LAYER_KINDS,
    Attr,
    Block,
    Dense,
    Function,
    LayerDef,
    Module,
    Op,
    ParamDef,
    QuantSpec,
    SubLayer,
    Value,
)
from .types import Dim, ScalarType, TensorType, Type

#: How deep attribute values (lists, dicts, dense) and op regions may nest: the parser is
#: recursive, and hostile text 1000 levels deep must be an error, not a RecursionError.
MAX_NESTING = 100


class ParseError(ValueError):
    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(f"{line}:{col}: {message}")
        self.line, self.col, self.msg = line, col, message


_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<value>%[A-Za-z0-9_]+)
  | (?P<symbol>@[A-Za-z_][\w.]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:inf\b|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?))
  | (?P<ident>[A-Za-z_][\w]*)
  | (?P<punct>->|[(){}\[\]<>,:=?])
""", re.VERBOSE)


class Parser:
    def __init__(self, text: str) -> None:
        self.toks: list[tuple[str, str, int, int]] = []
        pos, line, line_start = 0, 1, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ParseError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
            kind = m.lastgroup or ""
            if kind != "ws":
                self.toks.append((kind, m.group(), line, pos - line_start + 1))
            nl = m.group().count("\n")
            if nl:
                line += nl
                line_start = pos + m.group().rindex("\n") + 1
            pos = m.end()
        self.toks.append(("eof", "", line, pos - line_start + 1))
        self.i = 0
        self.values: dict[str, Value] = {}
        self.depth = 0

    def enter(self, what: str) -> None:
        """One more level of nesting (at an opening bracket); ParseError past MAX_NESTING."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"{what} nested more than {MAX_NESTING} levels deep")

    # ------------------------------------------------------------------ token helpers
    def peek(self, k: int = 0) -> tuple[str, str, int, int]:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def error(self, msg: str) -> ParseError:
        _, text, line, col = self.peek()
        if len(text) > 60:      # a hostile token (a string, a number) of any length
            text = text[:40] + "…"
        return ParseError(f"{msg} (found {text!r})" if text else f"{msg} (found end of input)", line, col)

    def next(self) -> str:
        tok = self.peek()
        self.i += 1
        return tok[1]

    def at(self, text: str) -> bool:
        return self.peek()[1] == text and self.peek()[0] != "string"

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.error(f"expected {text!r}")

    def expect_kind(self, kind: str) -> str:
        if self.peek()[0] != kind:
            raise self.error(f"expected a {kind}")
        return self.next()

    def comma_list(self, close: str, item):  # type: ignore[no-untyped-def]
        out = []
        if not self.accept(close):
            out.append(item())
            while self.accept(","):
                out.append(item())
            self.expect(close)
        return out

    # ------------------------------------------------------------------ types and attributes
    def dim(self) -> Dim:
        kind, text, _, _ = self.peek()
        if self.accept("?"):
            return None
        if kind == "number" and re.fullmatch(r"\d+", text):
            if len(text) > 18:
                raise self.error("a dim has at most 18 digits")
            self.i += 1
            return int(text)
        if kind == "ident" or self.name_like(kind, text):
            self.i += 1
            return text
        raise self.error("expected a dim (integer, name or ?)")

    @staticmethod
    def name_like(kind: str, text: str) -> bool:
        """`inf` lexes as a number, but where only a name can stand (a dim, an attribute
        key) it is the name `inf`, which a program may use."""
        return kind == "number" and text == "inf"

    def type(self) -> Type:
        if self.accept("tensor"):
            self.expect("<")
            self.expect("[")
            shape = self.comma_list("]", self.dim)
            self.expect(",")
            at = self.i
            dtype = self.expect_kind("ident")
            self.expect(">")
            try:
                return TensorType(tuple(shape), dtype)
            except ValueError as e:
                self.i = at
                raise self.error(str(e)) from None
        kind, text, _, _ = self.peek()
        if kind == "ident":
            try:
                t = ScalarType(text)
            except ValueError:
                raise self.error("expected a type") from None
            self.i += 1
            return t
        raise self.error("expected a type")

    def attr(self) -> Attr:
        self.enter("attribute values")
        try:
            return self._attr()
        finally:
            self.depth -= 1

    def _attr(self) -> Attr:
        kind, text, _, _ = self.peek()
        if kind == "string":
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:   # `"\x1b"`: a JSON escape or nothing
                raise self.error(f"bad escape in a string: {exc.msg}") from None
            self.i += 1
            return value
        if kind == "number":
            is_float = any(c in text for c in ".eEn")
            if not is_float and len(text.lstrip("-")) > 100:
                raise self.error("an integer attribute has at most 100 digits")
            self.i += 1
            return float(text) if is_float else int(text)
        if self.accept("true"):
            return True
        if self.accept("false"):
            return False
        if self.accept("none"):
            return None
        if self.accept("nan"):
            return float("nan")
        if self.accept("inf"):
            return float("inf")
        if self.accept("["):
            return self.comma_list("]", self.attr)
        if self.at("{"):
            return self.attr_dict()
        if self.accept("dense"):
            self.expect("<")
            self.expect("[")
            data = self.comma_list("]", self.attr)
            self.expect(">")
            return Dense(tuple(data))
        raise self.error("expected an attribute value")

    def attr_dict(self) -> dict[str, Attr]:
        self.expect("{")
        out: dict[str, Attr] = {}

        def entry() -> None:
            kind, text, _, _ = self.peek()
            if self.name_like(kind, text):
                self.i += 1
                key = text
            else:
                key = self.expect_kind("ident")
            if key in out:
                self.i -= 1
                raise self.error(f"duplicate attribute name '{key}'")
            self.expect("=")
            out[key] = self.attr()

        self.comma_list("}", entry)
        return out

    # ------------------------------------------------------------------ ops and functions
    def use(self) -> Value:
        name = self.expect_kind("value")
        v = self.values.get(name)
        if v is None:
            self.i -= 1
            raise self.error(f"use of undefined value {name}")
        return v

    def op(self) -> Op:
        start = self.i
        results: list[str] = []
        if self.peek()[0] == "value":
            results.append(self.next())
            while self.accept(","):
                results.append(self.expect_kind("value"))
            self.expect("=")
        name = self.expect_kind("ident")
        self.expect("(")
        operands = self.comma_list(")", self.use)
        attrs = self.attr_dict() if self.at("{") else {}
        self.expect(":")
        self.expect("(")
        in_types = self.comma_list(")", self.type)
        self.expect("->")
        out_types = self.comma_list(")", self.type) if self.accept("(") else [self.type()]
        end = self.i
        self.i = start  # errors about the whole op point at its start
        if len(in_types) != len(operands):
            raise self.error(f"'{name}' has {len(operands)} operands but {len(in_types)} operand types")
        for v, t in zip(operands, in_types):
            if v.type != t:
                raise self.error(f"'{name}': operand type {t} does not match the value's type {v.type}")
        if len(out_types) != len(results):
            raise self.error(f"'{name}' defines {len(results)} values but has {len(out_types)} result types")
        for r in results:
            if r in self.values:
                raise self.error(f"value {r} is defined twice")
        self.i = end
        regions = []
        while self.at("{"):
            self.enter("regions")
            self.next()
            block = Block()
            while not self.accept("}"):
                block.append(self.op())
            regions.append(block)
            self.depth -= 1
        op = Op(name, operands, attrs, out_types, regions)
        for r, v in zip(results, op.results):
            self.values[r] = v
        return op

    def function(self) -> Function:
        self.expect("func")
        name = self.expect_kind("symbol")[1:]
        self.values = {}
        self.expect("(")

        def arg() -> tuple[str, Type]:
            n = self.expect_kind("value")
            if n[1:].isdigit():
                self.i -= 1
                raise self.error("function argument names must not be numbers")
            self.expect(":")
            return n, self.type()

        args = self.comma_list(")", arg)
        self.expect("->")
        self.expect("(")
        results = self.comma_list(")", self.type)
        body = Block([t for _, t in args], [n[1:] for n, _ in args])
        for (n, _), v in zip(args, body.args):
            if n in self.values:
                raise self.error(f"duplicate argument {n}")
            self.values[n] = v
        self.expect("{")
        while not self.accept("}"):
            body.append(self.op())
        return Function(name, body, results)

    def layer(self) -> LayerDef:
        kind = self.next()
        layer = LayerDef(kind, self.expect_kind("symbol")[1:], self.attr_dict())
        self.expect("{")
        while not self.accept("}"):
            if self.accept("param"):
                pname = self.expect_kind("symbol")[1:]
                self.expect(":")
                ptype = self.type()
                a = self.attr_dict() if self.at("{") else {}
                quant = None
                if "quantizer" in a:
                    quant = QuantSpec(a.pop("quantizer"), a.pop("per_channel", False), a.pop("format", "none"))
                init = a.pop("init", None)
                if a:
                    raise self.error(f"unknown param attributes {sorted(a)}")
                layer.params.append(ParamDef(pname, ptype, init, quant))
            elif self.accept("sublayer"):
                sname = self.expect_kind("symbol")[1:]
                self.expect(":")
                skind = self.expect_kind("symbol")[1:]
                layer.sublayers.append(SubLayer(sname, skind, self.attr_dict() if self.at("{") else {}))
            elif self.at("func"):
                layer.functions.append(self.function())
            else:
                raise self.error("expected 'param', 'sublayer' or 'func'")
        return layer

    def module(self) -> Module:
        m = Module()
        while self.peek()[0] != "eof":
            if self.at("func"):
                m.items.append(self.function())
            elif self.peek()[1] in LAYER_KINDS:
                m.items.append(self.layer())
            else:
                raise self.error("expected 'func', 'layer', 'model' or 'block'")
        return m


def parse_module(text: str) -> Module:
    return Parser(text).module()


def parse_type(text: str) -> Type:
    p = Parser(text)
    t = p.type()
    if p.peek()[0] != "eof":
        raise p.error("unexpected text after the type")
    return t
