"""The .tri formatter: one canonical layout and no options, in the manner of gofmt and black.

    format_source(text)              -> the canonical text (DiagnosticError on a syntax error)
    format_program(program, comments) -> the same, from an AST and the lexer's comments

The layout:

* 4-space indentation; exactly one blank line between top-level items; inside bodies a single
  blank line is kept wherever the source had at least one.
* Canonical spellings: `fn name(…)` for every function and method (the bare `forward(…)` of
  models is the same AST), `name: value` named arguments, `a if c else b` conditionals,
  `Tensor[dims]` for a shape alone and `Tensor<dtype, [dims]>` when a dtype is present, `[…]`
  for tuples, `true`/`false`.
* A `{ … }` group (a layer config, a section, `params { … }`, a dictionary that is the value
  of a config entry) stays on one line, `{ a: 1, b: 2 }`, when that line fits in 100
  columns and no comment sits inside it; otherwise it has one entry per line.
* A function or layer signature longer than 100 columns gets one parameter per line.
  Expressions are never broken across lines.
* Expressions get the fewest parentheses the parser's precedence needs.
* Strings are re-escaped, floats printed with `repr` (so they round-trip and stay floats).
* A statement whose last token would make the lexer continue the line (`x = ?`, or a `param`
  whose type ends in `>`) is ended with `;`.
* Every comment survives: an own-line comment stays before the item, statement or entry that
  follows it, a trailing comment stays at the end of the line of the node it follows, and a
  comment after an opening `{` stays there.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field

from . import ast as A
from .diagnostics import DiagnosticError
from .formatter_stmt2 import format_forms2_statement, format_more_expr, format_table
from .lexer import KEYWORDS, Comment
from .parser import DTYPES, parse
from .parser import recursion_headroom as _recursion_headroom

INDENT = "    "
MAX_WIDTH = 100

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")
_COMPARE = frozenset({"==", "!=", "<", "<=", ">", ">="})
# an expression statement that starts with one of these words would parse as that statement
_SOFT_START = re.compile(r"(?:while|break|continue|pass|assert)(?![A-Za-z_0-9])")
_BINARY_PREC = {
    "or": 2, "and": 3,
    "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5, "is": 5, "is not": 5, "in": 5,
    "not in": 5,
    "+": 6, "-": 6,
    "*": 7, "/": 7, "%": 7, "@": 7, "//": 7,   # `//`: only inside a list (lexer, W1001)
}
# Precedence levels of the printed forms (higher binds tighter).
_COND = 0
_RANGE = 1
_NOT = 4
_UNARY = 8
_POW = 9
_POSTFIX = 10
_ATOM = 11
# Printed statements that end in one of these would swallow the following newline (the
# lexer continues a line after them), so the formatter ends such a statement with `;`.
_CONTINUING_ENDS = ("?", ">")


def format_source(text: str, file: str = "<input>") -> str:
    """The canonical form of `text`. Raises DiagnosticError when it has syntax errors."""
    program, diagnostics, comments = parse(text, file)
    errors = [d for d in diagnostics if d.is_error]
    if errors:
        raise DiagnosticError(errors)
    return format_program(program, comments)


def format_program(program: A.Program, comments: list[Comment]) -> str:
    """The canonical text of a parsed program with its comments."""
    with _recursion_headroom():
        attached = _Attachments()
        attached.attach_root(program, comments)
        lines = _Printer(attached).program(program)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""




# ----------------------------------------------------------------------------- literals

def quote_string(value: str) -> str:
    """A double-quoted .tri string literal whose decoded value is `value`."""
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\0":
            out.append("\\0")
        elif not ch.isprintable():
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_number(node: A.Num) -> str:
    value = node.value
    if node.is_float or isinstance(value, float):
        f = float(value)
        if math.isinf(f):
            # A literal too large for a float (`1e999`) reads back as infinity.
            return "-1e999" if f < 0 else "1e999"
        if math.isnan(f):
            raise ValueError("a NaN literal cannot be written in .tri")
        return repr(f)
    return str(int(value))


def _key(key: str) -> str:
    if _IDENT_RE.match(key) and key not in KEYWORDS:
        return key
    return quote_string(key)


# ----------------------------------------------------------------------------- comments

def _pos(span) -> tuple[int, int]:
    return (span.line, span.col)


def _end(span) -> tuple[int, int]:
    return (span.end_line, span.end_col)


def _comment_end(c: Comment) -> tuple[int, int]:
    if "\n" in c.text:
        return (c.end_line, len(c.text) - c.text.rfind("\n"))
    return (c.line, c.col + len(c.text))


def _comment_lines(c: Comment) -> list[str]:
    text = c.text
    if text.startswith("/*"):
        return text.split("\n")
    return [text.rstrip()]


def _top_statement(node) -> bool:
    return isinstance(node, A.Stmt) and not isinstance(node, A.Import)


def _children(node) -> list | None:
    """The nodes that carry comments inside `node`, in source order; None for a leaf."""
    if isinstance(node, A.Program | A.ModelDef | A.BlockDef | A.LayerDef):
        return node.items if isinstance(node, A.Program) else node.body
    if isinstance(node, A.FnDef | A.For | A.MainBlock | A.While | A.With):
        return node.body
    if isinstance(node, A.If):
        return node.then + (node.other or [])
    if isinstance(node, A.LayerDecl):
        if node.cond is None and len(node.kinds) == 1 and not node.kinds[0].row:
            return node.kinds[0].config
        return node.kinds + [k for b in node.orelse for k in b.kinds]
    if isinstance(node, A.LayerKind):
        return None if node.row else node.config   # a table's row is a leaf
    if isinstance(node, A.Section):
        return node.entries
    if isinstance(node, A.ParamsSection):
        return node.params
    if isinstance(node, A.ConfigEntry) and isinstance(node.value, A.DictLit):
        return node.value.entries
    return None


@dataclass
class _Attachments:
    """Comments attached to nodes (keyed by id; the AST outlives this object)."""
    leading: dict[int, list[Comment]] = field(default_factory=dict)
    trailing: dict[int, list[Comment]] = field(default_factory=dict)
    header: dict[int, list[Comment]] = field(default_factory=dict)
    dangling: dict[int, list[Comment]] = field(default_factory=dict)

    @staticmethod
    def _add(table: dict[int, list[Comment]], node, c: Comment) -> None:
        table.setdefault(id(node), []).append(c)

    def attach_root(self, program: A.Program, comments: list[Comment]) -> None:
        ordered = sorted(comments, key=lambda c: (c.line, c.col))
        self._attach(program, ordered, root=True)
        self._normalize(program)

    def _attach(self, container, comments: list[Comment], root: bool = False) -> None:
        kids = _children(container) or []
        starts = [_pos(k.span) for k in kids]
        inside: dict[int, list[Comment]] = {}
        for c in comments:
            cpos = (c.line, c.col)
            idx = bisect.bisect_right(starts, cpos)
            prev = kids[idx - 1] if idx > 0 else None
            nxt = kids[idx] if idx < len(kids) else None
            if prev is not None and cpos < _end(prev.span):
                inside.setdefault(idx - 1, []).append(c)
            elif c.own_line or (root and prev is None):
                if nxt is not None:
                    self._add(self.leading, nxt, c)
                else:
                    self._add(self.dangling, container, c)
            elif prev is not None:
                self._add(self.trailing, prev, c)
            else:
                self._add(self.header, container, c)
        for i, cs in inside.items():
            kid = kids[i]
            if _children(kid) is None:
                for c in cs:  # sorted out by _normalize, which keeps their order
                    self._add(self.trailing, kid, c)
            else:
                self._attach(kid, cs)

    def _normalize(self, node) -> None:
        """At most one comment stays at a line's end: for trailing comments the last one (the
        earlier ones move before a leaf node or to the end of a braced one), after a `{` the
        first one (the later ones move to the start of the body). The order is kept."""
        kids = _children(node)
        if kids is None:
            return
        header = self.header.get(id(node), [])
        if header:
            table = self.leading if kids else self.dangling
            target = kids[0] if kids else node
            after = table.get(id(target), [])
            # One comment stays after the `{`, unless an own-line one (from a multi-line
            # header) came before it: then all of them go on their own lines, in order.
            keep = 1 if not after or (header[0].line, header[0].col) < (after[0].line,
                                                                        after[0].col) else 0
            self.header[id(node)], moved = header[:keep], header[keep:]
            if moved:
                table[id(target)] = sorted(moved + after, key=lambda c: (c.line, c.col))
        for kid in kids:
            for table in (self.leading, self.trailing):
                if id(kid) in table:
                    table[id(kid)].sort(key=lambda c: (c.line, c.col))
            trailing = self.trailing.get(id(kid), [])
            keep = 1 if trailing and not trailing[-1].own_line else 0
            if len(trailing) > keep:
                moved = trailing[:len(trailing) - keep]
                # Before a leaf; at the end inside a braced node, after its inner comments.
                table = self.leading if _children(kid) is None else self.dangling
                table[id(kid)] = table.get(id(kid), []) + moved
                self.trailing[id(kid)] = trailing[len(trailing) - keep:]
            self._normalize(kid)

    def has_comments(self, container) -> bool:
        """Whether any comment is attached inside `container` (so it cannot be one line)."""
        if self.header.get(id(container)) or self.dangling.get(id(container)):
            return True
        for kid in _children(container) or []:
            if self.leading.get(id(kid)) or self.trailing.get(id(kid)):
                return True
            if _children(kid) is not None and self.has_comments(kid):
                return True
        return False

    def start_line(self, node) -> int:
        lead = self.leading.get(id(node))
        line = node.span.line
        return min(line, lead[0].line) if lead else line

    def end_line(self, node) -> int:
        trail = self.trailing.get(id(node))
        line = node.span.end_line
        return max(line, trail[-1].end_line) if trail else line


# ----------------------------------------------------------------------------- printer

class _Printer:
    def __init__(self, attached: _Attachments):
        self.c = attached

    # ------------------------------------------------------------------ layout helpers
    def _with_trailing(self, node, lines: list[str]) -> list[str]:
        trail = self.c.trailing.get(id(node))
        if trail:
            text = _comment_lines(trail[-1])
            lines[-1] = f"{lines[-1]}  {text[0]}"
            lines.extend(text[1:])
        return lines

    def _leading(self, node, indent: str) -> list[str]:
        out: list[str] = []
        lead = self.c.leading.get(id(node), [])
        for j, c in enumerate(lead):
            text = _comment_lines(c)
            out.append(indent + text[0])
            out.extend(text[1:])
            nxt = lead[j + 1].line if j + 1 < len(lead) else node.span.line
            nxt = min(nxt, node.span.line)
            if nxt - c.end_line > 1:
                out.append("")
        return out

    def _children_lines(self, container, kids: list, indent: str, render, top: bool = False
                        ) -> list[str]:
        out: list[str] = []
        prev_end: int | None = None
        for i, kid in enumerate(kids):
            # top-level items are set apart by a blank line, but consecutive top-level
            # statements (a script) keep the source's grouping, like statements in a body
            stmts = top and _top_statement(kid) and _top_statement(kids[i - 1])
            if i > 0 and ((top and not stmts) or (prev_end is not None
                                                  and self.c.start_line(kid) - prev_end > 1)):
                out.append("")
            out.extend(self._leading(kid, indent))
            out.extend(self._with_trailing(kid, render(kid, indent)))
            prev_end = self.c.end_line(kid)
        dangling = self.c.dangling.get(id(container), [])
        for j, c in enumerate(dangling):
            if prev_end is not None and (c.line - prev_end > 1 or (top and j == 0 and kids)):
                out.append("")
            text = _comment_lines(c)
            out.append(indent + text[0])
            out.extend(text[1:])
            prev_end = c.end_line
        return out

    def _header_comment(self, node) -> str:
        header = self.c.header.get(id(node))
        if not header:
            return ""
        return "  " + _comment_lines(header[0])[0]

    def _header_rest(self, node) -> list[str]:
        header = self.c.header.get(id(node))
        return _comment_lines(header[0])[1:] if header else []

    def _braced(self, head: str, node, kids: list, indent: str, render) -> list[str]:
        """`head {` + one kid per line + `}`; `head {}` when empty and without comments."""
        inner = self._children_lines(node, kids, indent + INDENT, render)
        if not inner and not self.c.header.get(id(node)):
            return [f"{indent}{head}{{}}"]
        return [f"{indent}{head}{{{self._header_comment(node)}", *self._header_rest(node),
                *inner, f"{indent}}}"]

    def _group(self, head: str, node, kids: list, indent: str, inline, render) -> list[str]:
        """A `{ … }` group: on one line when it fits and holds no comment."""
        if not self.c.has_comments(node):
            if not kids:
                return [f"{indent}{head}{{}}"]
            one = f"{indent}{head}{{ {', '.join(inline(k) for k in kids)} }}"
            if len(one) <= MAX_WIDTH:
                return [one]
        return self._braced(head, node, kids, indent, render)

    # ------------------------------------------------------------------ program and items
    def program(self, program: A.Program) -> list[str]:
        return self._children_lines(program, program.items, "", self.item, top=True)

    def item(self, node, indent: str) -> list[str]:
        if isinstance(node, A.Import):
            return [f"{indent}import {quote_string(node.path)}"]
        if isinstance(node, A.ModelDef | A.BlockDef):
            kw = "model" if isinstance(node, A.ModelDef) else "block"
            return self._braced(f"{kw} {node.name} ", node, node.body, indent,
                                self.model_body_item)
        if isinstance(node, A.LayerDef):
            return self._signature(f"layer {node.name}{self.type_params(node.type_params)}",
                                   node.params, node.ret, node, node.body, indent,
                                   self.body_item)
        if isinstance(node, A.FnDef):
            return self.fn(node, indent)
        if isinstance(node, A.MainBlock):
            return self.block("main ", node, node.body, indent)
        return self.body_item(node, indent)

    def fn(self, node: A.FnDef, indent: str, keyword: bool = True) -> list[str]:
        head = f"fn {node.name}" if keyword else node.name
        head += self.type_params(node.type_params)
        return self._signature(head, node.params, node.ret, node, node.body, indent,
                               self.statement)

    @staticmethod
    def type_params(tps: list[A.TypeParam] | None) -> str:
        """`<T, U: Numeric + Tensor>` (a `where` clause is written inline)."""
        if tps is None:
            return ""
        return "<" + ", ".join(p.name + (": " + " + ".join(p.bounds) if p.bounds else "")
                               for p in tps) + ">"

    def model_body_item(self, node, indent: str) -> list[str]:
        """Inside a model or block, `forward` is written without `fn` (as in DESIGN.md)."""
        if isinstance(node, A.FnDef) and node.name == "forward" and node.type_params is None:
            return self.fn(node, indent, keyword=False)
        return self.body_item(node, indent)

    def _signature(self, name: str, params: list[A.ParamSpec] | None, ret: A.TypeExpr | None,
                   node, body: list, indent: str, render) -> list[str]:
        """`name(params) -> ret {` + body; the parameters go one per line (with a trailing
        comma) when the first line would be longer than 100 columns."""
        tail = f" -> {self.type(ret)} " if ret is not None else " "
        if getattr(node, "where", None):   # shape relations (W0980): written back as given
            tail += f"where {', '.join(self.expr(e) for e in node.where)} "
        if params is None:
            return self._braced(name + tail, node, body, indent, render)
        one = f"{name}({self.param_specs(params)}){tail}"
        if not params or len(indent) + len(one) + 1 <= MAX_WIDTH:
            return self._braced(one, node, body, indent, render)
        lines = [f"{indent}{name}("]
        lines.extend(f"{indent}{INDENT}{self.param_spec(s)}," for s in params)
        last = self._braced(f"){tail}", node, body, indent, render)
        return lines + last

    def param_specs(self, specs: list[A.ParamSpec]) -> str:
        return ", ".join(self.param_spec(s) for s in specs)

    def param_spec(self, s: A.ParamSpec) -> str:
        text = s.name
        if s.type is not None:
            text += f": {self.type(s.type)}"
        if s.default is not None:
            text += f" = {self.expr(s.default)}"
        return text

    # ------------------------------------------------------------------ body items
    def body_item(self, node, indent: str) -> list[str]:
        if isinstance(node, A.ConfigEntry):
            return _end_statement(self.entry_lines(node, indent))
        if isinstance(node, A.LayerDecl):   # a table `Kind[] { rows }`: formatter_forms2
            return format_table(self, node, indent, _key) or self.layer_decl(node, indent)
        if isinstance(node, A.ParamDecl):
            cond = f"if ({self.expr(node.cond)}) " if node.cond is not None else ""
            text = f"param {node.name}: {cond}{self.type(node.type)}"
            if node.init is not None:
                text += f" = {self.expr(node.init)}"
            if node.spec:
                text += " { " + ", ".join(self.entry_inline(e) for e in node.spec) + " }"
            elif node.spec is not None:
                text += " {}"
            return _end_statement([indent + text])
        if isinstance(node, A.StateDecl):
            text = f"state {node.name}: {self.type(node.type)}"
            if node.init is not None:
                text += f" = {self.expr(node.init)}"
            return _end_statement([indent + text])
        if isinstance(node, A.FnDef):
            return self.fn(node, indent)
        if isinstance(node, A.Section):
            return self._group(f"{node.name} ", node, node.entries, indent, self.entry_inline,
                               self.entry_lines)
        if isinstance(node, A.ParamsSection):
            return self._group("params ", node, node.params, indent, self.param_spec,
                               lambda s, ind: [ind + self.param_spec(s)])
        return self.statement(node, indent)

    def entry_inline(self, e: A.ConfigEntry) -> str:   # a typed body constant: `k: T = v`
        return f"{_key(e.key)}: {'' if e.type is None else self.type(e.type) + ' = '}{self.expr(e.value)}"

    def entry_lines(self, e: A.ConfigEntry, indent: str) -> list[str]:
        if isinstance(e.value, A.DictLit):
            return self._group(f"{_key(e.key)}: ", e, e.value.entries, indent,
                               self.entry_inline, self.entry_lines)
        return [f"{indent}{self.entry_inline(e)}"]

    def layer_kind_head(self, k: A.LayerKind) -> str:
        text = k.kind
        if k.repeat is not None:
            text += f"[{self.expr(k.repeat)}]"
        if k.args is not None:
            text += f"({self.args(k.args)})"
        return text

    def layer_kind(self, k: A.LayerKind, indent: str, holder, prefix: str = "") -> list[str]:
        """A kind with its config; `holder` is the node the config's comments hang on."""
        head = prefix + self.layer_kind_head(k)
        if not k.config and not self.c.has_comments(holder):
            return [indent + head]
        return self._group(head + " ", holder, k.config, indent, self.entry_inline,
                           self.entry_lines)

    def layer_decl(self, node: A.LayerDecl, indent: str) -> list[str]:
        if node.cond is None and len(node.kinds) == 1:
            return self.layer_kind(node.kinds[0], indent, node, f"layer {node.name}: ")
        head = f"layer {node.name}: if {self.expr(node.cond)} " if node.cond is not None \
            else f"layer {node.name}: Sequential "
        lines = self._braced(head, node, node.kinds, indent,
                             lambda k, ind: self.layer_kind(k, ind, k))
        for b in node.orelse:
            # `} else if c {` / `} else {`: a `switch` prints as this chain of its cases
            head = f"else if {self.expr(b.cond)} " if b.cond is not None else "else "
            more = self._braced(head, b, b.kinds, indent,
                                lambda k, ind: self.layer_kind(k, ind, k))
            lines[-1] += " " + more[0].lstrip()
            lines.extend(more[1:])
        return lines

    # ------------------------------------------------------------------ statements
    def block(self, head: str, owner, stmts: list, indent: str) -> list[str]:
        return self._braced(head, owner, stmts, indent, self.statement)

    def statement(self, node, indent: str) -> list[str]:
        if isinstance(node, A.Let):
            text = f"let {node.name}"
            if node.type is not None:
                text += f": {self.type(node.type)}"
            if node.value is None:
                return _end_statement([f"{indent}{text}"])
            return _end_statement([f"{indent}{text} = {self.expr(node.value)}"])
        if isinstance(node, A.Assign):
            return _end_statement(
                [f"{indent}{self.expr(node.target, _POSTFIX)} {node.op} {self.expr(node.value)}"])
        if isinstance(node, A.Return):
            if node.value is None:
                return [f"{indent}return"]
            return _end_statement([f"{indent}return {self.expr(node.value)}"])
        if isinstance(node, A.ExprStmt):
            text = self.expr(node.value)
            if _SOFT_START.match(text):
                # `(pass)`, `(while) + 1`: a name, not the statement of that word
                head = _SOFT_START.match(text).group(0)
                text = f"({head}){text[len(head):]}"
            elif text.startswith("fn("):   # else it reads as a function definition
                text = f"({text})"
            return _end_statement([indent + text])
        if isinstance(node, A.If):
            return self.if_stmt(node, indent)
        if isinstance(node, A.For):
            var = node.var if node.vars is None else f"({', '.join(node.vars)})"
            return self._braced(f"for {var} in {self.expr(node.iter)} ", node, node.body,
                                indent, self.statement)
        if isinstance(node, A.Unpack):
            names = f"({', '.join(node.targets)})"
            return _end_statement([f"{indent}{'let ' if node.declare else ''}{names} = "
                                   f"{self.expr(node.value)}"])
        if isinstance(node, A.While):
            return self._braced(f"while {self.expr(node.cond)} ", node, node.body, indent,
                                self.statement)
        if isinstance(node, A.Break | A.Continue | A.Pass):
            return [indent + type(node).__name__.lower()]
        if isinstance(node, A.Assert):
            msg = "" if node.msg is None else f", {self.expr(node.msg)}"
            return _end_statement([f"{indent}assert {self.expr(node.cond)}{msg}"])
        if isinstance(node, A.Import):
            return [f"{indent}import {quote_string(node.path)}"]
        if isinstance(node, A.LayerDecl | A.ParamDecl | A.StateDecl | A.ConfigEntry
                      | A.Section | A.ParamsSection | A.FnDef):
            return self.body_item(node, indent)
        return format_forms2_statement(self, node, indent)   # type, with (formatter_forms2)

    def if_stmt(self, node: A.If, indent: str) -> list[str]:
        """`if c { … } else if d { … } else { … }`; the comments of the whole statement hang on
        the `If` node whose children are the `then` and `else` statements together."""
        inner = indent + INDENT
        then_lines = self._children_lines_subset(node, node.then, inner, final=node.other is None)
        head = f"{indent}if {self.expr(node.cond)} {{{self._header_comment(node)}"
        lines = [head, *self._header_rest(node), *then_lines]
        if node.other is None:
            if not then_lines and not self.c.header.get(id(node)):
                return [f"{indent}if {self.expr(node.cond)} {{}}"]
            return [*lines, f"{indent}}}"]
        other = node.other
        if len(other) == 1 and isinstance(other[0], A.If) and not self.c.leading.get(id(other[0])) \
                and not self.c.trailing.get(id(other[0])) and not self.c.dangling.get(id(node)):
            nested = self.if_stmt(other[0], indent)
            return [*lines, f"{indent}}} else {nested[0][len(indent):]}", *nested[1:]]
        else_lines = self._children_lines_subset(node, other, inner, final=True)
        if not then_lines and not else_lines and not self.c.header.get(id(node)):
            return [f"{indent}if {self.expr(node.cond)} {{}} else {{}}"]
        return [*lines, f"{indent}}} else {{", *else_lines, f"{indent}}}"]

    def _children_lines_subset(self, owner: A.If, kids: list, indent: str, final: bool
                               ) -> list[str]:
        """The statements of one branch of `owner`; the last branch also gets the comments
        left at the end of the statement."""
        out: list[str] = []
        prev_end: int | None = None
        for i, kid in enumerate(kids):
            if i > 0 and prev_end is not None and self.c.start_line(kid) - prev_end > 1:
                out.append("")
            out.extend(self._leading(kid, indent))
            out.extend(self._with_trailing(kid, self.statement(kid, indent)))
            prev_end = self.c.end_line(kid)
        if final:
            for c in self.c.dangling.get(id(owner), []):
                if out and prev_end is not None and c.line - prev_end > 1:
                    out.append("")
                text = _comment_lines(c)
                out.append(indent + text[0])
                out.extend(text[1:])
                prev_end = c.end_line
        return out

    # ------------------------------------------------------------------ types
    def type(self, t: A.TypeExpr) -> str:
        if t.args is not None or t.ret is not None:
            return self.composite_type(t)
        if t.shape_var is not None:   # `Tensor<T, S>`
            return f"{t.name}<{t.dtype}, {t.shape_var}>"
        if t.name == "None" and t.dtype is None and t.shape is None:
            return "None"
        if t.dtype is None and t.shape is None:
            return t.name
        dims = None if t.shape is None else f"[{', '.join(self.dim(d) for d in t.shape)}]"
        if t.dtype is None:
            first = t.shape[0].value if t.shape else None
            if t.name[:1].isupper() and not (isinstance(first, str) and first in DTYPES):
                return f"{t.name}{dims}"
            return f"{t.name}<{dims}>"
        if dims is None:
            return f"{t.name}<{t.dtype}>"
        return f"{t.name}<{t.dtype}, {dims}>"

    def composite_type(self, t: A.TypeExpr) -> str:
        """`list[T]`, `tuple[A, B]`, `A | B`, `dict[K, V]`, `fn(A) -> R` (see A.TypeExpr)."""
        args = t.args or []
        if t.name == "Union":
            # a function type inside a union is parenthesized: `(fn(A) -> B) | None`
            return " | ".join(f"({self.type(a)})" if a.name == "fn" and a.args is not None
                              else self.type(a) for a in args)
        if t.name == "fn":
            ret = "" if t.ret is None else f" -> {self._type_operand(t.ret)}"
            return f"fn({', '.join(self.type(a) for a in args)}){ret}"
        return f"{t.name}[{', '.join(self.type(a) for a in args)}]"

    def _type_operand(self, t: A.TypeExpr) -> str:
        text = self.type(t)
        return f"({text})" if t.name in ("Union", "fn") and t.args is not None else text

    def dim(self, d: A.Dim) -> str:
        v = d.value
        if v is None:
            return "?"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return v
        return self.expr(v)

    # ------------------------------------------------------------------ expressions
    def args(self, args: list[A.Arg]) -> str:
        return ", ".join(f"{a.name}: {self.expr(a.value)}" if a.name else self.expr(a.value)
                         for a in args)

    def expr(self, e: A.Expr, need: int = _COND) -> str:
        text, level = self._expr(e)
        return f"({text})" if level < need else text

    def _expr(self, e: A.Expr) -> tuple[str, int]:
        if isinstance(e, A.Name):
            return e.id, _ATOM
        if isinstance(e, A.Num):
            text = format_number(e)
            return text, (_UNARY if text.startswith("-") else _ATOM)
        if isinstance(e, A.TritLit):
            return f"{e.value}t", (_UNARY if e.value < 0 else _ATOM)
        if isinstance(e, A.Str):
            return quote_string(e.value), _ATOM
        if isinstance(e, A.FString):
            return self.fstring(e), _ATOM
        if isinstance(e, A.Bool):
            return ("true" if e.value else "false"), _ATOM
        if isinstance(e, A.NoneLit):
            return "None", _ATOM
        if isinstance(e, A.Unknown):
            return "?", _ATOM
        if isinstance(e, A.ListLit):
            return f"[{', '.join(self.expr(i) for i in e.items)}]", _ATOM
        if isinstance(e, A.DictLit):
            if not e.entries:
                return "{}", _ATOM
            return f"{{ {', '.join(self.entry_inline(x) for x in e.entries)} }}", _ATOM
        if isinstance(e, A.Unary):
            if e.op == "not":
                return f"not {self.expr(e.operand, _NOT)}", _NOT
            return f"{e.op}{self.expr(e.operand, _UNARY)}", _UNARY
        if isinstance(e, A.Binary):
            if e.op == "**":
                return f"{self.expr(e.left, _POSTFIX)} ** {self.expr(e.right, _UNARY)}", _POW
            return self._binary_chain(e), _BINARY_PREC[e.op]
        if isinstance(e, A.CondExpr):
            return (f"{self.expr(e.then, _RANGE)} if {self.expr(e.cond, _RANGE)} "
                    f"else {self.expr(e.other, _COND)}"), _COND
        if isinstance(e, A.Range):
            dots = "..=" if e.inclusive else ".."
            text = f"{self.expr(e.start, _RANGE + 1)}{dots}{self.expr(e.stop, _RANGE + 1)}"
            if e.step is not None:
                text += f" step {self.expr(e.step, _RANGE + 1)}"
            return text, _RANGE
        if isinstance(e, A.Call | A.Index | A.Attr):
            return self._postfix_chain(e), _POSTFIX
        if isinstance(e, A.BlockExpr):
            return self.block_expr(e), _ATOM
        if isinstance(e, A.ListComp):
            var = e.var if e.vars is None else f"({', '.join(e.vars)})"
            text = f"[{self.expr(e.elt)} for {var} in {self.expr(e.iter, _RANGE)}"
            if e.cond is not None:
                text += f" if {self.expr(e.cond, _RANGE)}"
            return text + "]", _ATOM
        if isinstance(e, A.IfExpr):
            text = f"if {self.expr(e.cond)} {self.block_expr(e.then)} else "
            return text + self._expr(e.other)[0], _ATOM
        if isinstance(e, A.Slice):
            return self.subscript(e), _COND
        return format_more_expr(self, e)   # with_gradient_from, fn(…) { … } (formatter_stmt2)

    def fstring(self, e: A.FString) -> str:
        """`f"…{expr!conv:spec}…"`: literal text escaped as in strings with braces doubled; a
        field's expression parenthesized when it holds `:` or `!` (they would end it)."""
        out = ['f"']
        for part in e.parts:
            if isinstance(part, A.FField):
                text = self.expr(part.value)
                if ":" in text or "!" in text or text.startswith("{"):
                    text = f"({text})"
                conv = f"!{part.conv}" if part.conv else ""
                spec = f":{part.spec}" if part.spec else ""
                out.append(f"{{{text}{conv}{spec}}}")
            else:
                out.extend(ch * 2 if ch in "{}" else quote_string(ch)[1:-1] for ch in part)
        out.append('"')
        return "".join(out)

    def _binary_chain(self, e: A.Binary) -> str:
        """`a + b - c …`: the left spine of operators of one precedence, printed without
        recursion (a chain of 10,000 terms is fine)."""
        prec = _BINARY_PREC[e.op]
        rights: list[tuple[str, A.Expr]] = []
        node: A.Expr = e
        while isinstance(node, A.Binary) and node.op != "**" and _BINARY_PREC[node.op] == prec:
            if rights and rights[-1][0] in _COMPARE and node.op in _COMPARE:
                break  # `(a < b) == c`: comparisons do not chain
            rights.append((node.op, node.right))
            node = node.left
        left, level = self._expr(node)
        if level < prec or (rights[-1][0] in _COMPARE and isinstance(node, A.Binary)
                            and node.op in _COMPARE):
            left = f"({left})"
        parts = [left]
        for op, right in reversed(rights):
            parts.append(f" {op} {self.expr(right, prec + 1)}")
        return "".join(parts)

    def _postfix_chain(self, e: A.Expr) -> str:
        """`x.a[0](y).b …` printed without recursion along the chain."""
        chain: list[A.Expr] = []
        node = e
        while isinstance(node, A.Call | A.Index | A.Attr):
            chain.append(node)
            node = node.func if isinstance(node, A.Call) else node.value
        parts = [self.expr(node, _POSTFIX)]
        for link in reversed(chain):
            if isinstance(link, A.Call):
                parts.append(f"({self.args(link.args)})")
            elif isinstance(link, A.Index):
                parts.append(f"[{', '.join(self.subscript(i) for i in link.indices)}]")
            else:
                parts.append(f".{link.attr}")
        return "".join(parts)

    def block_expr(self, e: A.BlockExpr) -> str:
        """`{ s1; s2; value }` on one line (a statement's own lines are joined by `; ` where
        the line did not end at a brace)."""
        parts: list[str] = []
        for s in e.body:
            lines = [ln.strip() for ln in self.statement(s, "")]
            text = ""
            for ln in lines:
                if text and not text.endswith("{") and not ln.startswith("}"):
                    text += ";"
                text += (" " if text else "") + ln
            parts.append(text.rstrip(";"))
        parts.append(self.expr(e.value))
        return "{ " + "; ".join(parts) + " }"

    def subscript(self, e: A.Expr) -> str:
        if not isinstance(e, A.Slice):
            return self.expr(e)
        parts = ["" if p is None else self.expr(p) for p in (e.start, e.stop, e.step)]
        if e.step is None:
            return f"{parts[0]}:{parts[1]}"
        return f"{parts[0]}:{parts[1]}:{parts[2]}"


def _end_statement(lines: list[str]) -> list[str]:
    """Add `;` to a statement whose last token would make the lexer continue the line."""
    if lines[-1].endswith(_CONTINUING_ENDS):
        lines[-1] += ";"
    return lines
