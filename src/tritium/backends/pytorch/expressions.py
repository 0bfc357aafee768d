"""Method bodies of generated modules: statements and expressions.

`BodyGen` is the part of the code generator (`codegen.PyTorchCodegen`) that turns checked
`.tri` statements and expressions into Python: names through `tritium.frontend.names` (a
method's locals, `self.` attributes, module functions), operators with minimal parentheses
(`PY_PREC`), calls of layers, functions and builtins (`builtin`, in codegen.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ... import vocab
from ...check.builtins import FUNCTIONS
from ...check.checker.calls_forms import dtype_constant
from ...check.checker.model import callable_layer
from ...check.checker.sublayer_methods import SUBLAYER_METHOD
from ...check.list_methods import LIST_METHODS
from ...frontend import ast as A
from ...frontend.lexer import FORMAT_SPEC_RE
from ...frontend.names import internal, py_attr, py_local
from ...frontend.parser import DTYPES, TENSOR_TYPES
from .construction import construct_source
from .decl import zeros_source
from .layer_values import (
    LAYER_ATTR_FORMS,
    MODULE_CALL,
    SEQUENTIAL,
    SET_WEIGHTS,
    layer_attr_source,
    module_call_source,
    set_weights_source,
)
from .text import CodegenError, escape
from .text import literal as _q
from .text import py_float as _float

# the torch spelling of every dtype the language names (one home: tritium.vocab)
_TORCH_DTYPES = {n: f"torch.{d.torch}" for n, d in vocab.DTYPES.items() if d.torch}


_CONV_FN = {"r": "repr", "s": "str", "a": "ascii"}


def fstring_literal(text: str) -> str:
    """Literal text for inside `f"…"`: braces doubled; a backslash, a double quote and every
    non-printable character escaped, so the text can neither end the string nor open a
    field."""
    return escape(text).replace("{", "{{").replace("}", "}}")


# Python operator precedence (higher binds tighter), for minimal parentheses.
PY_PREC = {
    "or": 2, "and": 3, "==": 6, "!=": 6, "<": 6, "<=": 6, ">": 6, ">=": 6, "is": 6,
    "is not": 6, "in": 6, "not in": 6, "+": 10, "-": 10, "*": 11, "/": 11, "//": 11, "%": 11,
    "@": 11, "**": 13,
}

# what binds tighter than any operator: the base of `.attr`, `[i]` and `(args)`, which an
# operator expression must be parenthesized to be (`(a + b)[0]`, not `a + b[0]`)
_POSTFIX = 20


@dataclass
class Ctx:
    """Name resolution inside one method: locals, attributes of self, module functions."""
    locals: set[str] = field(default_factory=set)
    self_attrs: set[str] = field(default_factory=set)   # layers, hyperparameters, constants
    ternary: dict[str, str] = field(default_factory=dict)  # param name -> local holding its quantized view
    subst: dict[str, str] = field(default_factory=dict)   # name -> the expression it stands for
    state: set[str] = field(default_factory=set)   # `state` buffers: assigned only in training


class BodyGen:
    """Statements and expressions (mixed into `codegen.PyTorchCodegen`)."""

    def gen_dim_bindings(self, params: list[A.ParamSpec], body: list, ctx: Ctx,
                         indent: int) -> None:
        used = self.names_used(body)
        for p in params:
            if p.type is None or not p.type.shape:
                continue
            for i, d in enumerate(p.type.shape):
                if isinstance(d.value, str) and d.value in used and d.value not in ctx.locals \
                        and d.value not in ctx.self_attrs:
                    self.emit(indent, f"{py_local(d.value)} = {py_local(p.name)}.shape[{i}]")
                    ctx.locals.add(d.value)

    def names_used(self, body: list) -> set[str]:
        out: set[str] = set()
        stack = list(body)
        while stack:
            x = stack.pop()
            if isinstance(x, A.Name):
                out.add(x.id)
            if hasattr(x, "__slots__") and not isinstance(x, str):
                for s in x.__slots__:
                    v = getattr(x, s, None)
                    if isinstance(v, list):
                        stack.extend(v)
                    elif hasattr(v, "__slots__") and not isinstance(v, str):
                        stack.append(v)
        return out

    def block(self, stmts: list, ctx: Ctx, indent: int) -> None:
        if not stmts:
            self.emit(indent, "pass")
        for s in stmts:
            self.stmt(s, ctx, indent)

    def stmt(self, s, ctx: Ctx, indent: int) -> None:
        if isinstance(s, A.Let | A.Assign | A.Return | A.ExprStmt | A.Unpack) \
                and A.block_has_statements(s.value):
            self.hoisted(s, s.value, ctx, indent)
            return
        if not isinstance(s, A.If):
            self.origin(indent, s)
        if isinstance(s, A.Let):
            ctx.locals.add(s.name)
            # `let x: T` without a value: the checker has seen x assigned before any use
            value = "None" if s.value is None else self.expr(s.value, ctx)
            self.emit(indent, f"{py_local(s.name)} = {value}")
        elif isinstance(s, A.Assign) and self.result.call_forms.get(
                getattr(s.target, "span", None)) == SET_WEIGHTS:
            self.emit(indent, set_weights_source(self, s, ctx))   # `layer.weights = t`
        elif isinstance(s, A.Assign) and isinstance(s.target, A.Name) \
                and s.target.id in ctx.state and s.target.id not in ctx.locals:
            self.gen_state_update(s, ctx, indent)   # classes.py
        elif isinstance(s, A.Assign):
            value = self.expr(s.value, ctx)
            if isinstance(s.target, A.Name):
                ctx.locals.add(s.target.id)
                target = py_local(s.target.id)
            else:
                target = self.expr(s.target, ctx)
            if s.op == "=":
                self.emit(indent, f"{target} = {value}")
            else:
                op = s.op[:-1]
                value = self.sub(s.value, ctx, PY_PREC[op] + 1)
                self.emit(indent, f"{target} = {target} {op} {value}")
        elif isinstance(s, A.Return):
            self.emit(indent, "return" + (f" {self.expr(s.value, ctx)}" if s.value else ""))
        elif isinstance(s, A.ExprStmt):
            self.emit(indent, self.expr(s.value, ctx))
        elif isinstance(s, A.If):
            self.origin(indent, s)
            self.emit(indent, f"if {self.expr(s.cond, ctx)}:")
            self.block(s.then, ctx, indent + 1)
            other = s.other
            while other is not None:
                if len(other) == 1 and isinstance(other[0], A.If):
                    nested = other[0]
                    self.emit(indent, f"elif {self.expr(nested.cond, ctx)}:")
                    self.block(nested.then, ctx, indent + 1)
                    other = nested.other
                else:
                    self.emit(indent, "else:")
                    self.block(other, ctx, indent + 1)
                    other = None
        elif isinstance(s, A.For):
            names = s.vars or [s.var]
            ctx.locals.update(names)
            src = self.expr(s.iter, ctx)
            self.emit(indent, f"for {', '.join(py_local(n) for n in names)} in {src}:")
            self.block(s.body, ctx, indent + 1)
        elif isinstance(s, A.Unpack):
            value = self.expr(s.value, ctx)
            ctx.locals.update(s.targets)
            self.emit(indent, f"{', '.join(py_local(n) for n in s.targets)} = {value}")
        elif isinstance(s, A.While):
            self.emit(indent, f"while {self.expr(s.cond, ctx)}:")
            self.block(s.body, ctx, indent + 1)
        elif isinstance(s, A.With):   # the checker allows only `no_grad()` (check.contexts)
            self.emit(indent, "with torch.no_grad():")
            self.block(s.body, ctx, indent + 1)
        elif isinstance(s, A.Break | A.Continue | A.Pass):
            self.emit(indent, type(s).__name__.lower())
        elif isinstance(s, A.Assert):
            msg = "" if s.msg is None else f", {self.expr(s.msg, ctx)}"
            self.emit(indent, f"assert {self.expr(s.cond, ctx)}{msg}")
        else:
            raise CodegenError(f"cannot generate code for {type(s).__name__}")

    def hoisted(self, s, value: A.Expr, ctx: Ctx, indent: int) -> None:
        """A statement whose whole value is a block or `if` with statements: the statements
        first (under a Python `if` for an `if` value), then the statement with the value."""
        if isinstance(value, A.BlockExpr):
            for inner in value.body:
                self.stmt(inner, ctx, indent)
            self.hoisted(s, value.value, ctx, indent)
        elif isinstance(value, A.IfExpr) and A.block_has_statements(value):
            self.emit(indent, f"if {self.expr(value.cond, ctx)}:")
            self.hoisted(s, value.then, ctx, indent + 1)
            self.emit(indent, "else:")
            self.hoisted(s, value.other, ctx, indent + 1)
        else:
            self.stmt(replace(s, value=value), ctx, indent)

    def name(self, n: str, ctx: Ctx) -> str:
        if n in ctx.subst:
            return ctx.subst[n]
        if n in ctx.ternary:
            return ctx.ternary[n]
        if n in ctx.locals:
            return py_local(n)
        if n in ctx.self_attrs:
            return f"self.{py_attr(n)}"
        if n in self.defs:
            return self.class_names[n]
        if n in DTYPES:   # a dtype written as a name, e.g. `tensor(xs, dtype=float32)`
            return repr(n)
        raise CodegenError(f"unresolved name `{n}`")

    def expr(self, e: A.Expr, ctx: Ctx) -> str:
        t = type(e)
        if t is A.Num:
            text = _float(e.value) if isinstance(e.value, float) else repr(e.value)
            return text if not text.startswith("-") else f"({text})"
        if t is A.TritLit:
            return str(e.value) if e.value >= 0 else f"({e.value})"
        if t is A.Str:
            return repr(e.value)
        if t is A.FString:
            return self.fstring(e, ctx)
        if t is A.Bool:
            return "True" if e.value else "False"
        if t is A.NoneLit:
            return "None"
        if t is A.Unknown:
            return "-1"
        if t is A.Name:
            return self.name(e.id, ctx)
        if t is A.ListLit:
            return "[" + ", ".join(self.expr(x, ctx) for x in e.items) + "]"
        if t is A.DictLit:
            return "{" + ", ".join(f"{_q(en.key)}: {self.expr(en.value, ctx)}"
                                   for en in e.entries) + "}"
        if t is A.Unary:
            op = "not " if e.op == "not" else e.op
            prec = 4 if e.op == "not" else 12
            return f"{op}{self.sub(e.operand, ctx, prec + 1)}"
        if t is A.Binary:
            prec = PY_PREC[e.op]
            power = self.result.call_forms.get(e.span) if e.op == "**" else None
            if power == "float_pow":
                # `d ** k` of ints typed float (checker.powers): a float for any k's sign
                return f"float({self.expr(e.left, ctx)}) ** {self.sub(e.right, ctx, prec)}"
            if power == "int_pow":   # `n: int = 2 ** k`: an int for any k's sign
                return (f"int({self.sub(e.left, ctx, prec + 1)} ** "
                        f"{self.sub(e.right, ctx, prec)})")
            if e.op == "**":   # right-associative
                return (f"{self.sub(e.left, ctx, prec + 1)} ** "
                        f"{self.sub(e.right, ctx, prec)}")
            op = e.op
            if op == "@" and self.result.call_forms.get(e.span) == "float_matmul":
                return f"trt.float_matmul({self.expr(e.left, ctx)}, {self.expr(e.right, ctx)})"
            if op == "*" and self.result.call_forms.get(e.span) == "repeat_floor":
                return f"trt.repeat_list({self.expr(e.left, ctx)}, {self.expr(e.right, ctx)})"
            if op == "/" and self.result.call_forms.get(e.span) == "int_div":
                op = "//"   # `n: int = a / b`: the seed's integer division (checker.int_division)
            # Python chains comparisons (`a < b == c` is `a < b and b == c`); the parser has
            # already unfolded a `.tri` chain into `and`s, so a comparison whose operand is a
            # comparison was written with parentheses, and keeps them
            left_prec = prec + 1 if prec == PY_PREC["=="] else prec
            return (f"{self.sub(e.left, ctx, left_prec)} {op} "
                    f"{self.sub(e.right, ctx, prec + 1)}")
        if t is A.CondExpr:
            return (f"{self.sub(e.then, ctx, 2)} if {self.sub(e.cond, ctx, 2)} "
                    f"else {self.sub(e.other, ctx, 1)}")
        if t is A.Range:
            return self.range_expr(e, ctx)
        if t is A.ListComp:
            src = self.expr(e.iter, ctx)
            names = e.vars or [e.var]
            added = [n for n in names if n not in ctx.locals]
            ctx.locals.update(names)
            try:
                var = ", ".join(py_local(n) for n in names)
                cond = "" if e.cond is None else f" if {self.sub(e.cond, ctx, 2)}"
                return f"[{self.sub(e.elt, ctx, 2)} for {var} in {src}{cond}]"
            finally:
                ctx.locals.difference_update(added)
        if t is A.BlockExpr:   # no statements here (they are hoisted): just the value
            return f"({self.expr(e.value, ctx)})"
        if t is A.Closure:   # a function reading outer names, as a value: trt.closure
            vals = "".join(f", {self.expr(c, ctx)}" for c in e.captured)
            d = self.defs.get(e.fn)
            own = d.node.params[:len(d.node.params) - len(e.captured)] \
                if d is not None and d.kind == "fn" else []
            defaults = [p.default for p in own if p.default is not None]
            if defaults:    # the lifted def has none before the values appended (frontend.lift):
                #             a call through the value that leaves some out gets them here
                items = [self.expr(x, ctx) for x in defaults]
                vals += (f", own={len(own)}, defaults=({', '.join(items)}"
                         f"{',' if len(items) == 1 else ''})")
            return f"trt.closure({self.class_names[e.fn]}{vals})"
        if t is A.WithGradient:   # the straight-through estimator: a's value, b's gradient
            return (f"trt.with_gradient_from({self.expr(e.value, ctx)}, "
                    f"{self.expr(e.source, ctx)})")
        if t is A.IfExpr and self.result.call_forms.get(e.span) in ("where", "where_trit"):
            # a tensor condition: elementwise selection (checker.select_forms)
            out = (f"torch.where({self.expr(e.cond, ctx)}, {self.expr(e.then, ctx)}, "
                   f"{self.expr(e.other, ctx)})")
            return out + ".to(torch.int8)" if self.result.call_forms[e.span] == "where_trit" \
                else out
        if t is A.IfExpr:
            return (f"({self.sub(e.then, ctx, 2)} if {self.sub(e.cond, ctx, 2)} "
                    f"else {self.sub(e.other, ctx, 1)})")
        if t is A.Attr and isinstance(e.value, A.Name) and e.value.id == "self" \
                and "self" not in ctx.locals and "self" not in ctx.subst:
            return "self.training" if e.attr == "training" else self.name(e.attr, ctx)
        if t is A.Attr and dtype_constant(e) is not None and e.value.id not in ctx.locals:
            return f"float({e.attr!r})"   # `float32.inf`, `float32.nan`
        if t is A.Attr and self.result.call_forms.get(e.span) in LAYER_ATTR_FORMS:
            return layer_attr_source(self, e, ctx)   # `layer.weights`, `model.layers`
        if t is A.Attr:
            base = self.sub(e.value, ctx, _POSTFIX)
            if e.attr == "shape":
                return f"list({base}.shape)"
            if e.attr in ("ndim", "T", "dtype"):
                return f"{base}.{e.attr}"
            raise CodegenError(f"unsupported attribute `.{e.attr}`")
        if t is A.Index:
            return self.index(e, ctx)
        if t is A.Call:
            return self.call(e, ctx)
        raise CodegenError(f"cannot generate code for {t.__name__}")

    def fstring(self, e: A.FString, ctx: Ctx) -> str:
        """An f-string: literal parts escaped (`fstring_literal`), each field's expression
        generated here and parenthesized, its conversion one of `rsa` and its spec checked
        against the lexer's safe charset. A field whose generated source holds a quote or a
        backslash (which an f-string field cannot hold before Python 3.12) makes the whole
        string a concatenation of `str(...)` / `format(...)` calls instead."""
        fields = []
        for part in e.parts:
            if isinstance(part, A.FField):
                if part.conv and part.conv not in "rsa" or len(part.conv) > 1 or (
                        part.spec and FORMAT_SPEC_RE.fullmatch(part.spec) is None):
                    raise CodegenError("invalid f-string field")   # the lexer refuses these
                fields.append((self.expr(part.value, ctx), part))
        if all(not any(c in src for c in "\"\\#\n") for src, _ in fields):
            out = []
            it = iter(fields)
            for part in e.parts:
                if isinstance(part, A.FField):
                    src, _ = next(it)
                    conv = f"!{part.conv}" if part.conv else ""
                    spec = f":{part.spec}" if part.spec else ""
                    out.append(f"{{({src}){conv}{spec}}}")
                else:
                    out.append(fstring_literal(part))
            return 'f"' + "".join(out) + '"'
        pieces = []
        it = iter(fields)
        for part in e.parts:
            if isinstance(part, A.FField):
                src, _ = next(it)
                if part.conv:
                    src = f"{_CONV_FN[part.conv]}({src})"
                pieces.append(f"format({src}, {part.spec!r})" if part.spec else f"str({src})")
            else:
                pieces.append(repr(part))
        return "(" + " + ".join(pieces or ["''"]) + ")"

    def range_expr(self, e: A.Range, ctx: Ctx) -> str:
        """`a..b` is `range(a, b)`; for `a..=b` the stop moves one past `b`, in the
        direction of the step."""
        lo, hi = self.expr(e.start, ctx), self.expr(e.stop, ctx)
        if e.step is None:
            return f"range({lo}, {self.sub(e.stop, ctx, 10)} + 1)" if e.inclusive \
                else f"range({lo}, {hi})"
        step = self.expr(e.step, ctx)
        if e.inclusive:
            hi = f"{self.sub(e.stop, ctx, 10)} + (1 if {self.sub(e.step, ctx, 6)} > 0 else -1)"
        return f"range({lo}, {hi}, {step})"

    def sub(self, e: A.Expr, ctx: Ctx, min_prec: int) -> str:
        """`e` parenthesized when its precedence is below `min_prec`."""
        text = self.expr(e, ctx)
        if isinstance(e, A.Binary):
            p = PY_PREC[e.op]
        elif isinstance(e, A.Unary):
            p = 4 if e.op == "not" else 12
        elif isinstance(e, A.CondExpr):
            p = 1
        else:
            return text
        return f"({text})" if p < min_prec else text

    def index(self, e: A.Index, ctx: Ctx) -> str:
        parts = []
        for i in e.indices:
            if isinstance(i, A.Slice):
                s = ":".join("" if p is None else self.expr(p, ctx)
                             for p in (i.start, i.stop, i.step))
                parts.append(s[:-1] if i.step is None else s)   # `::` -> `:` (never empty)
            else:
                parts.append(self.expr(i, ctx))
        return f"{self.sub(e.value, ctx, _POSTFIX)}[{', '.join(parts)}]"

    @staticmethod
    def as_tensor(src: str, wrap: bool) -> str:
        return f"torch.as_tensor({src})" if wrap else src

    def call(self, e: A.Call, ctx: Ctx) -> str:
        f = e.func
        if isinstance(f, A.Index) and isinstance(f.value, A.Name) and f.value.id in TENSOR_TYPES:
            # trits are float tensors in generated modules (as the quantized views of ternary
            # weights are), so they mix with float inputs in matmuls; an explicit dtype wins
            dtype = "torch.float32"
            dims = []
            for i in f.indices:
                if isinstance(i, A.Name) and i.id in DTYPES:
                    dtype = _TORCH_DTYPES[i.id]
                else:
                    dims.append(self.expr(i, ctx))
            vals = ", ".join(self.expr(a.value, ctx) for a in e.args)
            return f"torch.tensor([{vals}], dtype={dtype}).reshape({', '.join(dims)})"
        args = [self.expr(a.value, ctx) for a in e.args]
        # a number the checker bound to a tensor parameter of a builtin becomes a 0-d tensor
        coerce = self.result.scalar_tensor_args
        kw = {a.name: self.as_tensor(self.expr(a.value, ctx), a.span in coerce)
              for a in e.args if a.name is not None}
        pos = [self.as_tensor(self.expr(a.value, ctx), a.span in coerce)
               for a in e.args if a.name is None]
        if isinstance(f, A.Attr) and self.result.call_forms.get(e.span) == SUBLAYER_METHOD:
            named = [f"{py_local(k)}={v}" for k, v in kw.items()]   # a sub-layer's method
            return f"{self.sub(f.value, ctx, _POSTFIX)}.{py_attr(f.attr)}({', '.join([*pos, *named])})"
        if isinstance(f, A.Attr):
            base = self.as_tensor(self.sub(f.value, ctx, _POSTFIX), f.span in coerce)
            if self.result.call_forms.get(f.span) == "list_tensor":   # `xs.reshape(s)`
                base = f"trt.tensor({base})"
            if f.attr == "size":
                return f"{base}.size({', '.join(args)})"
            if f.attr == "register_hook":   # a gradient hook (check.checker.hooks)
                return f"trt.register_hook({base}, {args[0]})"
            if f.attr in LIST_METHODS and f.attr not in FUNCTIONS:   # xs.append(v): Python's
                return f"{self.sub(f.value, ctx, _POSTFIX)}.{f.attr}({', '.join(args)})"
            return self.builtin(f.attr, [base] + pos, kw, e.span)
        if isinstance(f, A.Call) and self.result.call_forms.get(f.span) == "construct":
            return f"{self.expr(f, ctx)}({', '.join(args)})"   # `MyLayer()(x)`
        if isinstance(f, A.TypeValue):   # `Tensor<int32, [2, 2]>()`: zeros (decl.py)
            return zeros_source(self, self.result.call_forms.get(e.span), ctx)
        if self.result.call_forms.get(e.span) in (MODULE_CALL, SEQUENTIAL):
            return module_call_source(self, e, args, ctx)   # `layers[0](x)`, `Model(xs)`
        if not isinstance(f, A.Name):
            # a value the checker let through as callable: a function held in a list or a
            # dict (`fs[0](x)`), or one that stops the program (`panic("…")()`): Python
            # calls what the expression evaluates to
            named = [f"{py_local(k)}={v}" for k, v in kw.items()]
            return f"{self.sub(f, ctx, _POSTFIX)}({', '.join([*pos, *named])})"
        n = f.id
        if n in ctx.self_attrs:
            return f"self.{py_attr(n)}({', '.join(args)})"
        if n in ctx.locals:   # named inputs of a constructed layer: by keyword (its forward's)
            named = [f"{py_local(k)}={v}" for k, v in kw.items()]
            return f"{py_local(n)}({', '.join([*pos, *named])})"
        if n in self.defs and self.defs[n].kind == "fn":
            fn = self.defs[n].node
            names = [p.name for p in fn.params]
            out = list(pos) + [f"{py_local(k)}={v}" for k, v in kw.items() if k in names]
            return f"{self.class_names[n]}({', '.join(out)})"
        if n in self.defs and self.result.call_forms.get(e.span) == "construct":
            return construct_source(self, self.defs[n], e, ctx)   # `let m = MyLayer()`
        if n in self.defs and callable_layer(self.defs[n].node):
            return f"{internal('f', n)}({', '.join(args)})"   # `FC(w1, x)`: classes.py
        if n in FUNCTIONS:
            return self.builtin(n, pos, kw, e.span)
        raise CodegenError(f"unresolved function `{n}`")
