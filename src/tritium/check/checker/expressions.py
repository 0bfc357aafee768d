"""Expressions: names, constants, operators on scalars and tensors (broadcasting, matmul),
indexing and attributes."""

from __future__ import annotations

import operator

from ...frontend import ast as A
from ...frontend.diagnostics import Label, Span, did_you_mean
from ...frontend.parser import TENSOR_TYPES
from .. import bounds
from .. import library as L
from ..builtins import FUNCTIONS
from ..list_methods import forget_passed_lists
from ..types import (
    ANY,
    BOOL,
    FLOAT,
    FLOAT_TYPES,
    INT,
    INT_TYPES,
    STR,
    AnyT,
    ClosureT,
    DictT,
    Dim,
    FnT,
    LayerT,
    ListT,
    ModuleT,
    NoneT,
    RangeT,
    ScalarT,
    Shape,
    SymInt,
    TensorT,
    Value,
    dim_str,
    dims_conflict,
    join_types,
    shape_str,
)
from .calls_forms import dtype_constant
from .decl_forms import type_value
from .decl_lists import repeat_by_unknown, repeat_count
from .dict_items import dict_item
from .gradient_forms import with_gradient_value
from .hints import channel_bias_help, defined_in_other_body
from .int_division import int_division, is_int_division
from .layer_values import is_layer_value, layer_attr
from .model import (
    GENERATE_CODES,
    Scope,
    _is_int,
    _num,
    _paren,
    check_fstring,
)
from .powers import negative_power_of_int_tensor, power_is_float
from .promotion import bool_tensor_refused, elementwise_dtype
from .select_forms import elementwise_if, tensor_condition
from .sublayer_methods import layer_member


def _exits(s) -> bool:
    if isinstance(s, A.Return | A.Break | A.Continue):
        return True
    if isinstance(s, A.If):
        return any(_exits(x) for x in s.then + (s.other or []))
    if isinstance(s, A.With):
        return any(_exits(x) for x in s.body)
    return False

#: CheckResult.call_forms: a `@` with an integer or trit operand, generated as
#: trt.float_matmul. Trits computed in the program (`trit(x)`, `ternary_tensor(…)`,
#: `random_ternary`) are int8, whose product torch wraps, in a layer's methods as elsewhere;
#: a layer's ternary weight is float storage, which trt.float_matmul takes as it is
FLOAT_MATMUL = "float_matmul"
_MATMUL_ON_FLOATS = frozenset({"int8", "int16", "int32", "int64", "uint8", "bool", "trit"})


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

class ExpressionsMixin:
    # ------------------------------------------------------------------ expressions
    def undefined(self, name: str, span: Span, scope: Scope) -> Value:
        if name in getattr(self, "unparsed", ()):   # its `let` had a syntax error (reported)
            return Value(ANY)
        help = None
        if not self.quiet:   # inside an instance only the first problem is kept: skip difflib
            cands = list(scope.vars) + [n for n, d in self.defs.items()] + list(FUNCTIONS)
            help = defined_in_other_body(self, name) or did_you_mean(name, cands)
        self.report("E0304", f"undefined name `{name}`", span, label="not defined", help=help)
        return Value(ANY)

    def eval_const(self, e: A.Expr, scope: Scope) -> Value:
        return self.eval_expr(e, scope)

    def eval_expr(self, e: A.Expr, scope: Scope) -> Value:
        t = type(e)
        if t is A.Num:
            return Value(FLOAT if e.is_float else INT, e.value, True)
        if t is A.Name:
            v = scope.vars.get(e.id)
            if v is not None:
                scope.used.add(e.id)
                if isinstance(v.ty, LayerT):
                    self.used_layers.add(e.id)
                return v
            if e.id in self.defs:
                d = self.defs[e.id]
                return Value(FnT(e.id)) if d.kind == "fn" else Value(ANY)
            if e.id in FUNCTIONS:
                self.report("E0310", f"`{e.id}` is a builtin function: call it, e.g. "
                                     f"`{e.id}(x)`", e.span, label="not called",
                            help="a builtin function is not a value")
                return Value(FnT(e.id))
            if e.id in L.LAYERS or e.id in L.LAYER_ALIASES or e.id in TENSOR_TYPES:
                what = "a type" if e.id in TENSOR_TYPES else "a layer kind"
                self.report("E0310", f"`{e.id}` is {what}, not a value", e.span,
                            label="not a value", help="declare a layer with "
                            f"`layer name: {e.id} {{ … }}` and call it by that name"
                            if what != "a type" else "write a tensor literal like "
                            f"`{e.id}[2](1, 0)`, or a function such as `zeros([2])`")
                return Value(ANY)
            return self.undefined(e.id, e.span, scope)
        if t is A.Str:
            return Value(STR, e.value, True)
        if t is A.FString:
            return check_fstring(self, e, scope)   # model.py
        if t is A.Bool:
            return Value(BOOL, e.value, True)
        if t is A.NoneLit:
            return Value(NoneT(), None, True)
        if t is A.TritLit:
            if e.value not in (-1, 0, 1):
                self.report("E0403", f"`{e.value}t` is not a trit", e.span,
                            label="outside {-1, 0, 1}", help="a trit literal is -1t, 0t or 1t")
                return Value(ScalarT("trit"))
            return Value(ScalarT("trit"), e.value, True)
        if t is A.Unknown:
            return Value(ANY, None, True)
        if t is A.ListLit:
            vals = [self.eval_expr(x, scope) for x in e.items]
            if all(v.known or isinstance(v.const, SymInt) for v in vals):
                return Value(ListT(), [v.const for v in vals], True)
            return Value(ListT(), [v for v in vals], False)
        if t is A.DictLit:
            out = {}
            for entry in e.entries:
                v = self.eval_expr(entry.value, scope)
                out[entry.key] = v.const
            return Value(DictT(), out, True)
        if t is A.Unary:
            v = self.eval_expr(e.operand, scope)
            if e.op == "not":
                if v.known and not isinstance(v.const, SymInt):
                    return Value(BOOL, not v.const, True)
                return Value(BOOL)
            if e.op == "-":
                if v.known and _num(v.const):
                    if _is_int(v.const) and v.const == bounds.INT_MIN:
                        self.report("E0312", "the negation does not fit in 64 bits", e.span)
                        return Value(v.ty)
                    return Value(v.ty, -v.const, True)
                if isinstance(v.const, SymInt):
                    return Value(INT, SymInt(f"-{v.const}"))
                if isinstance(v.ty, TensorT) and v.ty.dtype == "bool":
                    self.report("E0405", "cannot negate a bool tensor (PyTorch refuses it)",
                                e.span, label="a bool tensor (a mask)",
                                help="`-int32(m)` negates its numbers, `1 - int32(m)` inverts it")
                    return Value(v.ty)
                if isinstance(v.ty, ScalarT | TensorT | AnyT):
                    return Value(v.ty)
                self.report("E0405", f"cannot negate {v.ty}", e.span)
                return Value(ANY)
            return v
        if t is A.Binary:
            return self.eval_binary(e, scope)
        if t is A.CondExpr:
            c = self.eval_expr(e.cond, scope)
            if c.known and not isinstance(c.const, SymInt):
                return self.eval_expr(e.then if c.const else e.other, scope)
            a, b = self.eval_expr(e.then, scope), self.eval_expr(e.other, scope)
            return Value(join_types(a.ty, b.ty))
        if t is A.Call:
            return self.eval_call(e, scope)
        if t is A.Index:
            return self.eval_index(e, scope)
        if t is A.Attr:
            return self.eval_attr(e, scope)
        if t is A.Range:
            seq = self.range_values(e, scope)
            return (Value(RangeT(), bounds.range_len(seq), True) if seq is not None
                    else Value(RangeT()))
        if t is A.Slice:
            self.report("E0201", "a slice is only allowed inside `[…]`", e.span)
            return Value(ANY)
        if t is A.ListComp:
            return self.eval_list_comp(e, scope)
        if t is A.BlockExpr or t is A.IfExpr:
            whole = e is getattr(self, "_whole_value", None)
            self._whole_value = None
            if not whole and A.block_has_statements(e):
                self.report("E0865", "a block with statements can be used as a value only as "
                                     "the whole value of `let`, `=` or `return`", e.span,
                            help="assign it first: `let v = if c { … } else { … }`")
            return self.eval_block_value(e, scope)
        if t is A.WithGradient:   # `a with_gradient_from b` (checker.gradient_forms)
            return with_gradient_value(self, e, scope)
        if t is A.TypeValue:   # `Tensor<float32, [10]>` where a value stands (decl_forms)
            return type_value(self, e, scope)
        if t is A.Closure:   # a function that reads outer names, as a value (frontend.lift)
            value = Value(ClosureT(e.fn, tuple(self.eval_expr(c, scope) for c in e.captured)))
            d = self.defs.get(e.fn)
            if d is not None and d.kind == "fn":   # it may run later: the lists it changes
                forget_passed_lists(self, d.node, A.Call(A.Name(e.fn, e.span), [
                    A.Arg(c, None, c.span) for c in e.captured], e.span), scope)
            return value
        return Value(ANY)

    def eval_list_comp(self, e: A.ListComp, scope: Scope) -> Value:
        """`[elt for v in xs if c]`: each item in turn when the items are known (at most
        MAX_UNROLL), else the element checked once with an unknown item."""
        it = self.eval_expr(e.iter, scope)
        items = None
        if isinstance(it.ty, ListT):
            items = self.elements(it)
        elif isinstance(it.ty, RangeT):
            seq = self.loop_values(e.iter, scope)
            items = None if seq is None or bounds.range_len(seq) > bounds.MAX_UNROLL else [
                Value.of(i) for i in seq]
        elif not isinstance(it.ty, AnyT | TensorT):
            self.report("E0404", f"cannot iterate over {it.ty}", e.iter.span,
                        help="write `[f(x) for x in xs]` over a list or a range")
            return Value(ListT())
        loop = A.For(e.var, e.iter, [], e.span, e.vars)
        inner = Scope(dict(scope.vars), scope.defined_at, scope.used)
        if items is None or len(items) > bounds.MAX_UNROLL:
            self.bind_loop_vars(loop, Value(INT if isinstance(it.ty, RangeT) else ANY), inner)
            if e.cond is not None:
                self.check_cond(self.eval_expr(e.cond, inner), e.cond.span)
            self.eval_expr(e.elt, inner)
            return Value(ListT())
        out: list[Value] = []
        exact = True
        for item in items:
            self.bind_loop_vars(loop, item, inner)
            if e.cond is not None:
                c = self.eval_expr(e.cond, inner)
                self.check_cond(c, e.cond.span)
                if c.known and not isinstance(c.const, SymInt):
                    if not c.const:
                        continue
                else:
                    exact = False
            out.append(self.eval_expr(e.elt, inner))
        if not exact:
            return Value(ListT())
        if all(v.known or isinstance(v.const, SymInt) for v in out):
            return Value(ListT(), [v.const for v in out], True)
        return Value(ListT(), out, False)

    def eval_block_value(self, e: A.Expr, scope: Scope) -> Value:
        """The value of `{ … v }` or `if c { … a } else { … b }`: the statements run in the
        enclosing scope (a `let` in them is visible after, as in the generated Python)."""
        if isinstance(e, A.BlockExpr):
            for s in e.body:
                if _exits(s):
                    self.report("E0865", "a block used as a value cannot `return`, `break` or "
                                         "`continue`", s.span)
                    return Value(ANY)
            self.exec_block(e.body, scope)
            return self.eval_block_value(e.value, scope)
        if isinstance(e, A.IfExpr):
            c = self.eval_expr(e.cond, scope)
            if tensor_condition(c):   # elementwise selection (checker.select_forms)
                return elementwise_if(self, e, c, scope)
            self.check_cond(c, e.cond.span)
            if c.known and not isinstance(c.const, SymInt):
                return self.eval_block_value(e.then if c.const else e.other, scope)
            then_scope = Scope(dict(scope.vars), scope.defined_at, scope.used)
            a = self.eval_block_value(e.then, then_scope)
            else_scope = Scope(dict(scope.vars), scope.defined_at, scope.used)
            b = self.eval_block_value(e.other, else_scope)
            for name in set(then_scope.vars) | set(else_scope.vars):
                x, y = then_scope.vars.get(name), else_scope.vars.get(name)
                if x is not None and y is not None:
                    scope.vars[name] = x if x is y else Value(join_types(x.ty, y.ty))
                else:
                    scope.vars[name] = x or y
            return Value(join_types(a.ty, b.ty))
        return self.eval_expr(e, scope)

    def range_values(self, e: A.Range, scope: Scope) -> range | None:
        """The integers of `a..b`, `a..=b` or `a..b step k` when all are known, else None."""
        parts = [(self.eval_expr(x, scope), x) for x in (e.start, e.stop, e.step) if x is not None]
        for v, x in parts:
            if not isinstance(v.ty, AnyT) and not (isinstance(v.ty, ScalarT)
                                                   and v.ty.name in INT_TYPES):
                what = "step" if x is e.step else "bound"
                self.report("E0404", f"a range {what} must be an int, got {v.ty}", x.span)
                return None
        if not all(v.known and _is_int(v.const) for v, _ in parts):
            return None
        return self.make_range(*(v.const for v, _ in parts[:2]), e.inclusive,
                               parts[2][0].const if len(parts) > 2 else 1, e.span)

    def make_range(self, lo: int, hi: int, inclusive: bool, step: int, span: Span
                   ) -> range | None:
        if step == 0:
            self.report("E0860", "a range step cannot be zero", span, label="step 0",
                        help="use a positive step to count up or a negative one to count down")
            return None
        if inclusive:
            hi = hi + (1 if step > 0 else -1)
        return range(lo, hi, step)

    def eval_binary(self, e: A.Binary, scope: Scope) -> Value:
        # Left-deep chains (`a + b + c + …`, `p and q and …`) are walked iteratively, so a
        # 10,000-term sum does not recurse 10,000 levels.
        chain: list[A.Binary] = []
        cur: A.Expr = e
        while isinstance(cur, A.Binary):
            chain.append(cur)
            cur = cur.left
        if len(chain) > bounds.MAX_CHAIN:
            self.report("E0203", f"an expression of {len(chain) + 1} operands is too long to "
                                 f"compile (at most {bounds.MAX_CHAIN + 1})", e.span,
                        label="too long", help="split it with `let` statements")
            return Value(ANY)
        a = self.eval_expr(cur, scope)
        for node in reversed(chain):
            a = self.binary_step(node, a, scope)
        return a

    def binary_step(self, e: A.Binary, a: Value, scope: Scope) -> Value:
        op = e.op
        if op in ("and", "or"):
            if a.known and not isinstance(a.const, SymInt):
                if (op == "and" and not a.const) or (op == "or" and a.const):
                    self.names_resolve(e.right, scope)
                    return Value(BOOL, bool(a.const), True)
                b = self.eval_expr(e.right, scope)
                if b.known and not isinstance(b.const, SymInt):
                    return Value(BOOL, bool(b.const), True)
                return Value(BOOL)
            self.eval_expr(e.right, scope)
            return Value(BOOL)
        b = self.eval_expr(e.right, scope)
        if op in ("is", "is not"):
            lit = next((x for x in (e.left, e.right) if isinstance(x, A.Num | A.Str | A.TritLit)),
                       None)
            if lit is not None:   # Python refuses it (SyntaxWarning: "is" with a literal)
                self.report("E0405", f"`{op}` with a literal compares identity, not value",
                            lit.span, label="a literal",
                            help="compare values with `==` or `!=` (a literal is never `None`)")
                return Value(BOOL)
        return self.binary(op, a, b, e)

    def names_resolve(self, e: A.Expr, scope: Scope) -> None:
        """The operand a short-circuit skips is never evaluated, but the generated code holds
        it, so what it names and calls must still be there: evaluate it and keep only the
        diagnostics the code generator depends on (`GENERATE_CODES`); a skipped `1 / 0` or a
        type error in it is no error."""
        out = self.inner if self.quiet else self.diags
        start = len(out)
        self.eval_expr(e, scope)
        kept = [d for d in out[start:] if d.code in GENERATE_CODES]
        del out[start:]
        out.extend(kept)

    def list_repeat(self, lst: Value, n: Value, e=None) -> Value:
        """`[x] * n`: the list repeated n times (n an int; at most MAX_SEQUENCE items)."""
        span = e.span if e is not None else None
        n = repeat_count(self, n, e) or n   # a float count: floor(n) times (decl_lists)
        if not (isinstance(n.ty, ScalarT) and n.ty.name in INT_TYPES):
            self.report("E0405", f"a list can only be repeated by an int, got {n.ty}", span)
            return Value(ListT())
        if not (n.known and _is_int(n.const) and isinstance(lst.const, list)):
            return Value(ListT())
        count = max(n.const, 0)
        if len(lst.const) * count > bounds.MAX_SEQUENCE:
            self.report("E0312", f"a list longer than {bounds.MAX_SEQUENCE} elements at "
                                 f"compile time", span, label="too long")
            return Value(ListT())
        return Value(ListT(), list(lst.const) * count, lst.known)

    def binary(self, op: str, a: Value, b: Value, e) -> Value:
        if op in ("is", "is not"):
            if a.known and b.known and not isinstance(a.const, SymInt) and not isinstance(
                    b.const, SymInt):
                res = a.const is b.const or (a.const is None and b.const is None)
                return Value(BOOL, res if op == "is" else not res, True)
            for x, y in ((a, b), (b, a)):
                if isinstance(x.ty, LayerT) and isinstance(y.ty, NoneT):
                    present = x.ty.inst.present
                    if present is not None:
                        res = not present
                        return Value(BOOL, res if op == "is" else not res, True)
                    return Value(BOOL)
            return Value(BOOL)
        if op in ("in", "not in"):
            return Value(BOOL)
        ta, tb = a.ty, b.ty
        if op == "*" and repeat_by_unknown(self, ta, tb, e):   # `[x] * n` (decl_lists)
            return Value(ListT())
        if isinstance(ta, AnyT) or isinstance(tb, AnyT):
            if isinstance(ta, TensorT) or isinstance(tb, TensorT):
                return Value(TensorT("float32", None))
            return Value(BOOL if op in ("==", "!=", "<", "<=", ">", ">=") else ANY)
        if isinstance(ta, ScalarT) and isinstance(tb, ScalarT):
            return self.scalar_binary(op, a, b, e)
        if isinstance(ta, TensorT | ScalarT) and isinstance(tb, TensorT | ScalarT):
            if op == "**":
                negative_power_of_int_tensor(self, a, b, e)   # torch refuses it (powers.py)
            bool_tensor_refused(self, op, ta, tb, e)   # `m - 1` of a mask (promotion.py)
            return self.tensor_binary(op, ta, tb, e)
        if op == "*" and (isinstance(ta, ListT) and isinstance(tb, ScalarT)
                          or isinstance(tb, ListT) and isinstance(ta, ScalarT)):
            return self.list_repeat(a, b, e) if isinstance(ta, ListT) else self.list_repeat(b, a, e)
        if op == "+" and isinstance(ta, ListT) and isinstance(tb, ListT):
            if a.known and b.known:
                if len(a.const) + len(b.const) > bounds.MAX_SEQUENCE:
                    self.report("E0312", f"a list longer than {bounds.MAX_SEQUENCE} elements "
                                         f"at compile time", e.span, label="too long")
                    return Value(ListT())
                return Value(ListT(), list(a.const) + list(b.const), True)
            return Value(ListT())
        if op in ("==", "!="):
            return Value(BOOL)
        self.report("E0405", f"`{op}` is not defined for {ta} and {tb}", e.span,
                    label=f"{ta} {op} {tb}")
        return Value(ANY)

    def str_repeat(self, s: Value, n: Value, e) -> Value:
        """`"=" * 50`: the string repeated n times, as in Python (n <= 0: empty)."""
        if not (s.known and n.known and _is_int(n.const)):
            return Value(STR)
        if len(s.const) * max(n.const, 0) > bounds.MAX_SEQUENCE:
            self.report("E0312", f"a string longer than {bounds.MAX_SEQUENCE} characters at "
                                 f"compile time", e.span, label="too long")
            return Value(STR)
        return Value(STR, s.const * max(n.const, 0), True)

    def scalar_binary(self, op: str, a: Value, b: Value, e) -> Value:
        ta, tb = a.ty.name, b.ty.name
        if "str" in (ta, tb):
            if op == "+" and ta == tb == "str":
                if a.known and b.known and len(a.const) + len(b.const) > bounds.MAX_SEQUENCE:
                    self.report("E0312", f"a string longer than {bounds.MAX_SEQUENCE} "
                                         f"characters at compile time", e.span, label="too long")
                    return Value(STR)
                return Value(STR, a.const + b.const, True) if a.known and b.known else Value(STR)
            if op in ("==", "!="):
                if a.known and b.known:
                    return Value(BOOL, (a.const == b.const) == (op == "=="), True)
                return Value(BOOL)
            if op in _ORDER and ta == tb == "str":   # strings order as in Python (Comparable)
                if a.known and b.known:
                    return Value(BOOL, _ORDER[op](a.const, b.const), True)
                return Value(BOOL)
            if op == "*" and {ta, tb} & INT_TYPES and "str" in (ta, tb) and ta != tb:
                return self.str_repeat(*((a, b) if ta == "str" else (b, a)), e)
            self.report("E0405", f"`{op}` is not defined for {ta} and {tb}", e.span)
            return Value(ANY)
        if is_int_division(self, op, a, b, e):   # `n: int = a / b` (checker.int_division)
            return int_division(self, a, b, e)
        is_float = ta in FLOAT_TYPES or tb in FLOAT_TYPES or op == "/"
        cmp = op in ("==", "!=", "<", "<=", ">", ">=")
        rt = BOOL if cmp else FLOAT if is_float else INT
        if op == "**" and not is_float and power_is_float(self, a, b, e):
            rt = FLOAT   # `n ** -1`, `d ** k` of a k not known: a float, as in Python (powers)
        if op == "@":
            self.report("E0405", "`@` needs tensors, not scalars", e.span, help="use `*`")
            return Value(ANY)
        ca, cb = a.const, b.const
        if isinstance(ca, SymInt) or isinstance(cb, SymInt):
            if cmp:
                if op in ("==", "!=") and isinstance(ca, SymInt) and ca == cb:
                    return Value(BOOL, op == "==", True)
                return Value(BOOL)
            if (a.known or isinstance(ca, SymInt)) and (b.known or isinstance(cb, SymInt)) \
                    and not is_float and op in ("+", "-", "*", "//", "%"):
                text = f"{_paren(ca)}{op}{_paren(cb)}"
                return Value(INT, SymInt(text) if len(text) <= bounds.MAX_SYMBOLIC else None)
            return Value(rt)
        if not (a.known and b.known) or not _num(ca) and not isinstance(ca, bool) \
                or not _num(cb) and not isinstance(cb, bool):
            return Value(rt)
        try:
            res = bounds.binary(op, ca, cb)
        except ZeroDivisionError:
            self.report("E0309", "division by zero", e.span)
            return Value(rt)
        except bounds.TooLarge as exc:
            self.report("E0312", f"cannot compute `{op}` at compile time: {exc}", e.span,
                        label="too large", help="integers are 64-bit and floats 64-bit IEEE")
            return Value(rt)
        except (KeyError, TypeError, ValueError):
            return Value(rt)
        if op == "**" and isinstance(res, float) and not is_float:
            rt = FLOAT
        if op == "**" and rt is FLOAT and isinstance(res, int) and not isinstance(res, bool):
            res = float(res)   # a power typed float (FLOAT_POW in another check): 2 ** 3 is 8.0
        return Value(rt, res, True)

    def tensor_binary(self, op: str, ta, tb, e) -> Value:
        if op == "@":
            if not isinstance(ta, TensorT) or not isinstance(tb, TensorT):
                self.report("E0405", "`@` needs two tensors", e.span, help="use `*` to scale")
                return Value(ANY)
            if ta.dtype in _MATMUL_ON_FLOATS or tb.dtype in _MATMUL_ON_FLOATS:
                # integers or trits on a side: the product is float32 (what `matmul` types),
                # computed on floats (torch's `@` refuses mixed dtypes, and wraps int8)
                self.call_forms[e.span] = FLOAT_MATMUL
            return Value(self.matmul(ta, tb, e.span, e.left.span, e.right.span))
        sa = ta.shape if isinstance(ta, TensorT) else ()
        sb = tb.shape if isinstance(tb, TensorT) else ()
        shape = self.broadcast(sa, sb, e.span)
        # as torch computes it (checker.promotion): `sum(x) + int32(x)` and `int8(x) +
        # int32(x)` are int32, `trit(x) + trit(x)` int8, `(x > 0) * 2` int64
        dtype = elementwise_dtype(op, ta, tb)
        return Value(TensorT(dtype, shape, dtype == "trit"))

    def broadcast(self, a: Shape | None, b: Shape | None, span: Span) -> Shape | None:
        if a is None or b is None:
            return None
        out: list[Dim] = []
        for i in range(1, max(len(a), len(b)) + 1):
            x = a[-i] if i <= len(a) else 1
            y = b[-i] if i <= len(b) else 1
            if x == 1:
                out.append(y)
            elif y == 1 or x == y:
                out.append(x)
            elif dims_conflict(x, y):
                self.report("E0505", f"shapes {shape_str(a)} and {shape_str(b)} cannot be "
                                     f"broadcast: dim {dim_str(x)} vs {dim_str(y)}", span,
                            help=channel_bias_help(a, b) or "make the sizes equal, or one of "
                                                            "them 1")
                return None
            else:
                out.append(x if isinstance(x, int) else y if isinstance(y, int) else x)
        hint = channel_bias_help(a, b, symbolic=True)
        if hint is not None:   # `[?, C, h, w] + [C]`: broadcasts against w, not the channels
            self.warn("W1041", f"a {shape_str(a if len(a) == 1 else b)} tensor added to "
                               f"{shape_str(b if len(a) == 1 else a)} lines up with the last "
                               f"dim, not the channels (dim 1)", span, help=hint)
        return tuple(reversed(out))

    def matmul(self, ta: TensorT, tb: TensorT, span: Span, ls: Span, rs: Span,
               transpose_b: bool = False) -> TensorT:
        # the float operands' dtype (float64 @ float64 is float64; an integer or trit operand
        # is cast to the other's float dtype, two of them multiply as float32); two different
        # float dtypes PyTorch refuses ('expected m1 and m2 to have the same dtype')
        floats = {t.dtype for t in (ta, tb) if t.dtype in FLOAT_TYPES}
        if len(floats) > 1:
            self.report("E0405", f"a matrix product of {ta.dtype} and {tb.dtype}: PyTorch "
                                 "multiplies only tensors of one float dtype", span,
                        secondary=[Label(ls, f"{ta.dtype}"), Label(rs, f"{tb.dtype}")],
                        help=f"cast the {tb.dtype} operand: `cast(…, \"{ta.dtype}\")`")
            return TensorT("float32", None)
        dtype = floats.pop() if floats else "float32"
        if ta.shape is None or tb.shape is None:
            return TensorT(dtype, None)
        sa, sb = ta.shape, tb.shape
        if transpose_b and len(sb) >= 2:
            sb = sb[:-2] + (sb[-1], sb[-2])
        if not sa or not sb:
            self.report("E0507", "matmul needs tensors of rank at least 1", span)
            return TensorT(dtype, None)
        k1 = sa[-1]
        k2 = sb[-2] if len(sb) >= 2 else sb[0]
        if dims_conflict(k1, k2):
            self.report("E0502", f"matmul inner dimensions differ: {shape_str(ta.shape)} @ "
                                 f"{shape_str(sb)} ({k1} vs {k2})", span,
                        label="inner dimensions must match",
                        secondary=[Label(ls, f"has {k1} columns"), Label(rs, f"has {k2} rows")],
                        help="transpose one operand or fix the declared shapes")
            return TensorT(dtype, None)
        if len(sa) == 1 and len(sb) == 1:
            return TensorT(dtype, ())
        if len(sb) == 1:
            return TensorT(dtype, sa[:-1])
        if len(sa) == 1:
            return TensorT(dtype, sb[:-2] + (sb[-1],))
        batch = self.broadcast(sa[:-2], sb[:-2], span) or ()
        return TensorT(dtype, tuple(batch) + (sa[-2], sb[-1]))

    # ------------------------------------------------------------------ indexing / attributes
    def eval_index(self, e: A.Index, scope: Scope) -> Value:
        base = self.eval_expr(e.value, scope)
        if not e.indices:   # `x[]`: parsed (and formatted), but it selects nothing
            self.report("E0508", "an index needs at least one subscript: `x[i]`, `x[a:b]`, "
                                 "`x[:, j]`", e.span)
            return Value(ANY)
        idx = []
        for i in e.indices:
            if isinstance(i, A.Slice):
                parts = [self.eval_expr(p, scope) if p is not None else None
                         for p in (i.start, i.stop, i.step)]
                idx.append(("slice", parts, i.span))
            elif isinstance(i, A.NoneLit):   # `x[:, None]`: a new dim of size 1 there
                idx.append(("new", None, i.span))
            else:
                idx.append(("index", self.eval_expr(i, scope), i.span))
        t = base.ty
        if isinstance(t, ListT):
            if len(idx) > 1:   # Python lists take one index or slice: x[i, j] is a TypeError
                self.report("E0508", f"a list takes one index or slice, got {len(idx)}",
                            idx[1][2], help="index twice for a list of lists: `xs[i][j]`")
                return Value(ANY)
            if len(idx) == 1 and idx[0][0] == "index":
                iv = idx[0][1]
                if base.known and iv.known and _is_int(iv.const) and isinstance(base.const, list):
                    lst = base.const
                    if not -len(lst) <= iv.const < len(lst):
                        self.report("E0508", f"index {iv.const} is out of range for a list of "
                                             f"{len(lst)}", idx[0][2])
                        return Value(ANY)
                    c = lst[iv.const]
                    if isinstance(c, Value):
                        return c
                    if isinstance(c, SymInt):
                        return Value(INT, c)
                    return Value.of(c) if not isinstance(c, str) or c is None else Value(STR, c, True)
                if isinstance(t.elem, ModuleT):   # `model.layers[0]`: a layer value
                    return Value(t.elem)
            return Value(ANY)
        if isinstance(t, TensorT):
            if t.shape is None:
                return Value(TensorT(t.dtype, None, t.ternary))
            shape = list(t.shape)
            out: list[Dim] = []
            pos = 0
            for kind, v, span in idx:
                if kind == "new":
                    out.append(1)
                    continue
                if pos >= len(shape):
                    self.report("E0508", f"too many indices for a tensor of rank {len(shape)}",
                                span)
                    return Value(ANY)
                d = shape[pos]
                if kind == "index":
                    if v.known and _is_int(v.const) and isinstance(d, int) and not -d <= v.const < d:
                        self.report("E0508", f"index {v.const} is out of range for dim {pos} of "
                                             f"size {d}", span)
                    elif isinstance(v.ty, TensorT):
                        out.append(None)
                else:
                    start, stop, step = (p.const if p is not None and p.known else None
                                         for p in v)
                    if step == 0:
                        self.report("E0508", "slice step cannot be zero", span)
                    elif _is_int(step) and step < 0:   # PyTorch has no negative strides
                        self.report("E0508", f"a tensor slice cannot step backwards (step "
                                             f"{step})", span, label="negative step",
                                    help="PyTorch tensors take positive slice steps only")
                        return Value(ANY)
                    if isinstance(d, int) and all(x is None or _is_int(x) for x in (start, stop, step)) \
                            and all(p is None or p.known for p in v):
                        out.append(len(range(*slice(start, stop, step).indices(d))))
                    elif all(p is None for p in v):
                        out.append(d)
                    else:
                        out.append(None)
                pos += 1
            out.extend(shape[pos:])
            return Value(TensorT(t.dtype, tuple(out), t.ternary))
        if isinstance(t, AnyT):
            return Value(ANY)
        if isinstance(t, DictT):   # `d["k"]` (checker.dict_items)
            return dict_item(self, base, e, scope)
        if isinstance(t, LayerT):   # `stage[0]`: a member of a stack (checker.sublayer_methods)
            member = layer_member(self, base, e, scope)
            if member is not None:
                return member
        self.report("E0405", f"cannot index {t}", e.span)
        return Value(ANY)

    def eval_attr(self, e: A.Attr, scope: Scope) -> Value:
        special = dtype_constant(e)
        if special is not None and e.value.id not in scope.vars:
            return Value(FLOAT, special, True)
        if isinstance(e.value, A.Name) and e.value.id == "self" and "self" not in scope.vars \
                and getattr(self, "_in_method", False):
            # `self.training` (train or eval mode: known only at run time); `self.fc` is `fc`
            if e.attr == "training":
                return Value(BOOL)
            return self.eval_expr(A.Name(e.attr, e.span), scope)
        base = self.eval_expr(e.value, scope)
        t = base.ty
        if is_layer_value(t, e.attr):   # `model.layers`, `layer.weights` (checker.layer_values)
            return layer_attr(self, base, e)
        if isinstance(t, TensorT):
            if e.attr == "shape":
                if t.shape is None:
                    return Value(ListT())
                dims = [d if _is_int(d) else SymInt(d) if isinstance(d, str) else None
                        for d in t.shape]
                if all(d is not None for d in dims):
                    return Value(ListT(), dims, True)
                return Value(ListT(), [Value(INT, d, _is_int(d)) for d in dims], False)
            if e.attr == "ndim":
                return Value(INT, len(t.shape), True) if t.shape is not None else Value(INT)
            if e.attr == "T":
                if t.shape is not None and len(t.shape) >= 2:
                    return Value(TensorT(t.dtype, t.shape[:-2] + (t.shape[-1], t.shape[-2]),
                                         t.ternary))
                return Value(t)
            if e.attr == "dtype":
                return Value(STR, t.dtype, t.dtype is not None)
            if e.attr in FUNCTIONS:   # `x.sum` not called: no value the generated code has
                self.report("E0304", f"`{e.attr}` is a method of a tensor, not a value: call it",
                            e.span, label="a method, not called",
                            help=f"write `.{e.attr}(…)`, or the function `{e.attr}(x, …)`")
                return Value(ANY)
            self.report("E0304", f"a tensor has no attribute `{e.attr}`", e.span,
                        help=did_you_mean(e.attr, ["shape", "ndim", "T", "dtype",
                                                   *FUNCTIONS]))
            return Value(ANY)
        if isinstance(t, DictT) and base.known and isinstance(base.const, dict):
            if e.attr in base.const:
                return Value.of(base.const[e.attr])
        if isinstance(t, ScalarT | ListT | NoneT | RangeT):   # no attributes at all
            self.report("E0304", f"{t} has no attribute `{e.attr}`", e.span,
                        label="no such attribute")
        return Value(ANY)
