"""PyTorch code generation: one readable `nn.Module` class per model, block and layer.

Builtin layer kinds become `torch.nn` modules or `tritium.runtime` layers (which carry the
quantizer, the straight-through estimator in training and, after `freeze()`, packed weights
and native kernels). Block and layer hyperparameters become keyword-only constructor
arguments, so one class serves every configuration; conditional layers and repetitions are
built in `__init__` (a repetition with a known count written out instance by instance).
Each class's docstring names the `.tri` file and line it came from; `annotate=True` adds a
comment echoing the `.tri` line above every statement. The generated source imports only
the parts of `torch` and `tritium.runtime` it uses, and passes the project's ruff config.

Names from the program pass through `tritium.frontend.names` (an injective mapping: no
keyword, builtin, import, internal name or `nn.Module` attribute can be shadowed, and two
names never meet), strings are emitted with `repr`, file names and source lines in comments
and docstrings through `text.escape`, and infinities as `float('inf')`, so nothing in a
`.tri` file or its file name can leave a string literal or an identifier. The finished
source is checked by `validate` (the shape this generator writes) before it is returned.
"""

from __future__ import annotations

import ast as pyast
from dataclasses import dataclass, field

from ...check import CheckResult
from ...check import library as L
from ...check.checker import Checker, Definition, Scope
from ...check.folds import fold_pairs
from ...check.repetition import instance_configs, repeat_clause
from ...check.types import Value
from ...frontend import ast as A
from ...frontend.names import BadName, internal, py_attr, py_local
from ...frontend.parser import DTYPES, TENSOR_TYPES
from .text import MAX_LINE, CodegenError, header, scan, wrap
from .text import escape as _text
from .text import literal as _q
from .text import py_float as _float
from .validate import UnsafeSourceError, validate

_TORCH_DTYPES = {
    "bool": "torch.bool", "int": "torch.int64", "int8": "torch.int8", "int16": "torch.int16",
    "int32": "torch.int32", "int64": "torch.int64", "uint8": "torch.uint8",
    "float": "torch.float32", "float16": "torch.float16", "bfloat16": "torch.bfloat16",
    "float32": "torch.float32", "float64": "torch.float64", "trit": "torch.int8",
}

# kind -> (constructor, positional config keys, keyword config keys)
_CTORS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "TernaryLinear": ("trt.TernaryLinear", ("in_features", "out_features"),
                      ("bias", "quantizer", "per_channel", "threshold", "act_quant", "ste")),
    "BitLinear": ("trt.BitLinear", ("in_features", "out_features"), ("bias", "eps")),
    "Linear": ("nn.Linear", ("in_features", "out_features"), ("bias",)),
    "Int8Linear": ("trt.Int8Linear", ("in_features", "out_features"), ("bias",)),
    "Int4Linear": ("trt.Int4Linear", ("in_features", "out_features"), ("bias",)),
    "TernaryConv2d": ("trt.TernaryConv2d", ("in_channels", "out_channels", "kernel_size"),
                      ("stride", "padding", "dilation", "groups", "bias", "quantizer",
                       "per_channel", "threshold", "act_quant", "ste")),
    "Conv2d": ("nn.Conv2d", ("in_channels", "out_channels", "kernel_size"),
               ("stride", "padding", "dilation", "groups", "bias")),
    "BatchNorm1d": ("nn.BatchNorm1d", ("num_features",), ("eps", "momentum", "affine")),
    "BatchNorm2d": ("nn.BatchNorm2d", ("num_features",), ("eps", "momentum", "affine")),
    "LayerNorm": ("nn.LayerNorm", ("normalized_shape",), ("eps", "elementwise_affine")),
    "RMSNorm": ("nn.RMSNorm", ("normalized_shape",), ("eps",)),
    "ReLU": ("nn.ReLU", (), ()), "ReLU6": ("nn.ReLU6", (), ()), "GELU": ("nn.GELU", (), ()),
    "SiLU": ("nn.SiLU", (), ()), "Sigmoid": ("nn.Sigmoid", (), ()), "Tanh": ("nn.Tanh", (), ()),
    "Identity": ("nn.Identity", (), ()),
    "Softmax": ("nn.Softmax", (), ("dim",)),
    "Dropout": ("nn.Dropout", (), ("p",)),
    "Flatten": ("nn.Flatten", (), ("start_dim", "end_dim")),
    "MaxPool2d": ("nn.MaxPool2d", ("kernel_size",), ("stride", "padding", "dilation", "ceil_mode")),
    "AvgPool2d": ("nn.AvgPool2d", ("kernel_size",), ("stride", "padding", "ceil_mode")),
    "AdaptiveAvgPool2d": ("nn.AdaptiveAvgPool2d", ("output_size",), ()),
    "Embedding": ("nn.Embedding", ("num_embeddings", "embedding_dim"), ()),
    "MultiheadAttention": ("trt.SelfAttention", ("embed_dim", "num_heads"),
                           ("bias", "causal", "dropout")),
    "TernaryAttention": ("trt.SelfAttention", ("embed_dim", "num_heads"),
                         ("bias", "causal", "dropout", "quantizer", "per_channel", "threshold",
                          "act_quant", "ste")),
    "TernaryActivation": ("trt.TernaryActivation", (), ("threshold",)),
}

_UNARY = {
    "relu": "torch.relu", "relu6": "F.relu6", "gelu": "F.gelu", "silu": "F.silu",
    "sigmoid": "torch.sigmoid", "tanh": "torch.tanh", "exp": "torch.exp", "log": "torch.log",
    "sqrt": "torch.sqrt", "abs": "torch.abs", "neg": "torch.neg", "sign": "torch.sign",
}

# Python operator precedence (higher binds tighter), for minimal parentheses.
_PY_PREC = {
    "or": 2, "and": 3, "==": 6, "!=": 6, "<": 6, "<=": 6, ">": 6, ">=": 6, "is": 6,
    "is not": 6, "in": 6, "not in": 6, "+": 10, "-": 10, "*": 11, "/": 11, "//": 11, "%": 11,
    "@": 11, "**": 13,
}

# Config keys whose library default differs from the constructor's own default, so they are
# always written out; every other key is written only when the program gives it.
_ALWAYS = {("Softmax", "dim"), ("RMSNorm", "eps")}

_QUANT_ALIASES = {"deterministic": "threshold", "fixed": "threshold", "bitnet": "absmean",
                  "b1.58": "absmean"}


@dataclass
class _Ctx:
    """Name resolution inside one method: locals, attributes of self, module functions."""
    locals: set[str] = field(default_factory=set)
    self_attrs: set[str] = field(default_factory=set)   # layers, hyperparameters, constants
    ternary: dict[str, str] = field(default_factory=dict)  # param name -> local holding its quantized view
    subst: dict[str, str] = field(default_factory=dict)   # name -> the expression it stands for
    in_init: bool = False


# a static repetition of at most this many instances is written out one by one
UNROLL = 16


def _atomic(expr: str) -> str:
    """`expr`, parenthesized unless it is a name, a number, a literal or ends in one
    bracket group that spans the rest (a call, a subscript, a list)."""
    head = expr.lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
    if not head:
        return expr
    if head[0] in "([{" and expr[-1] in ")]}":
        closes = [i for i, c, depth in scan(head) if c in ")]}" and depth == 0]
        if closes == [len(head) - 1]:
            return expr
    try:
        if type(pyast.literal_eval(expr)) is str:
            return expr
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    return f"({expr})"


class PyTorchCodegen:
    def __init__(self, result: CheckResult, annotate: bool = False):
        if not result.ok:
            raise CodegenError("the program has errors; run `tritium check`")
        self.result = result
        self.annotate = annotate
        self.defs = {n: d for n, d in result.definitions.items()}
        self.checker = Checker(result.definitions, [])
        self.out: list[str] = []
        self.class_names = {n: py_local(n) for n in self.defs}
        self.scope = Scope()   # the known constants of the definition being generated

    # ------------------------------------------------------------------ driver
    def generate(self) -> str:
        from ... import __version__
        files = _text(", ".join(sorted({d.file for d in self.defs.values()})))
        parts = []
        for d in self.ordered():
            self.out = []
            if d.kind == "fn":
                self.gen_function(d)
            else:
                self.gen_class(d)
            parts.append("\n".join(self.out))
        names = [self.class_names[d.name] for d in self.ordered() if d.kind != "fn"]
        parts.append("__all__ = [" + ", ".join(repr(n) for n in names) + "]")
        body = "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
        try:
            # the names the code uses decide the imports (program names never map to the
            # imported ones: frontend.names reserves them)
            used = {n.id for n in pyast.walk(pyast.parse(body)) if isinstance(n, pyast.Name)}
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise CodegenError(f"internal error: {exc}") from None
        source = header(__version__, files, used) + "\n\n" + body
        try:
            validate(source)
        except UnsafeSourceError as exc:   # a code generator bug, never a program's fault
            raise CodegenError(f"internal error: {exc}") from None
        return source

    def ordered(self) -> list[Definition]:
        """Definitions with every dependency before its users (a stable topological order)."""
        done: list[Definition] = []
        seen: set[str] = set()

        def deps(d: Definition) -> list[str]:
            out = []
            for item in getattr(d.node, "body", []):
                if isinstance(item, A.LayerDecl):
                    out.extend(k.kind for k in item.kinds if k.kind in self.defs)
            stack = list(getattr(d.node, "body", []))
            while stack:
                x = stack.pop()
                if isinstance(x, A.Call) and isinstance(x.func, A.Name) and x.func.id in self.defs:
                    out.append(x.func.id)
                if hasattr(x, "__slots__"):
                    for s in x.__slots__:
                        v = getattr(x, s, None)
                        if isinstance(v, list):
                            stack.extend(v)
                        elif hasattr(v, "__slots__") and not isinstance(v, str):
                            stack.append(v)
            return out

        def visit(d: Definition, depth: int = 0) -> None:
            if d.name in seen or depth > 200:
                return
            seen.add(d.name)
            for n in deps(d):
                visit(self.defs[n], depth + 1)
            done.append(d)

        for d in sorted(self.defs.values(), key=lambda d: (d.node.span.file, d.node.span.line)):
            visit(d)
        return done

    def emit(self, indent: int, line: str) -> None:
        if not line:
            self.out.append("")
            return
        self.out.extend(wrap("    " * indent + line))

    def origin(self, indent: int, node) -> None:
        """With `annotate`, a comment with the `.tri` line number and (shortened) source line
        that `node` came from; without, the one line per class or function, its docstring,
        names the file and line."""
        span = getattr(node, "span", None)
        if not self.annotate or span is None or span.line == 0:
            return
        text = self.result.sources.line(span.file, span.line)
        if text is None:
            return
        # the file is the one the class's (or function's) docstring names
        head = f"# line {span.line}: "
        text = _text(text.strip())
        room = MAX_LINE - 4 * indent - len(head)
        if len(text) > room:
            text = text[:max(room - 3, 0)].rstrip("\\") + "..."
        self.emit(indent, head + text)

    # ------------------------------------------------------------------ functions
    def gen_function(self, d: Definition) -> None:
        fn: A.FnDef = d.node
        ctx = _Ctx()
        params = []
        for p in fn.params:
            name = py_local(p.name)
            ctx.locals.add(p.name)
            params.append(name + (f"={self.expr(p.default, ctx)}" if p.default is not None else ""))
        self.origin(0, fn)
        self.emit(0, f"def {self.class_names[d.name]}({', '.join(params)}):")
        self.emit(1, f'"""`fn {fn.name}` from {_text(d.file)}:{fn.span.line}."""')
        self.gen_dim_bindings(fn.params, fn.body, ctx, 1)
        self.block(fn.body, ctx, 1)

    # ------------------------------------------------------------------ classes
    def gen_class(self, d: Definition) -> None:
        node = d.node
        cls = self.class_names[d.name]
        form_b = isinstance(node, A.LayerDef) and not Checker.has_forward(node)
        self.scope = Scope()
        self.origin(0, node)
        self.emit(0, f"class {cls}(nn.Module):")
        self.emit(1, f'"""`{d.kind} {d.name}` from {_text(d.file)}:{node.span.line}."""')
        self.emit(0, "")
        hparams = self.checker.user_params(node)
        ctx = _Ctx(in_init=True)
        sig = ["self"]
        if hparams:
            sig.append("*")
        for p in hparams:
            ann = self.annotation(p.type)
            default = f" = {self.expr(p.default, ctx)}" if p.default is not None else ""
            sig.append(f"{py_local(p.name)}{ann}{default}")
            ctx.locals.add(p.name)
        self.emit(1, f"def __init__({', '.join(sig)}) -> None:")
        self.emit(2, "super().__init__()")
        attrs: set[str] = set()
        for p in hparams:
            self.emit(2, f"self.{py_attr(p.name)} = {py_local(p.name)}")
            attrs.add(p.name)
        section_quant = self.quant_section(node)
        ternary_params: dict[str, dict] = {}
        for item in node.body:
            if isinstance(item, A.ConfigEntry):
                self.origin(2, item)
                v = self.checker.eval_expr(item.value, self.scope)
                if v.known:
                    self.scope.vars[item.key] = v
                self.emit(2, f"{py_local(item.key)} = {self.expr(item.value, ctx)}")
                self.emit(2, f"self.{py_attr(item.key)} = {py_local(item.key)}")
                ctx.locals.add(item.key)
                attrs.add(item.key)
            elif isinstance(item, A.LayerDecl):
                self.origin(2, item)
                self.gen_layer_decl(item, ctx, 2)
                attrs.add(item.name)
            elif isinstance(item, A.ParamDecl):
                self.origin(2, item)
                self.gen_param(item.name, item.type, item.init, ctx, 2)
                attrs.add(item.name)
                if item.type.name == "TernaryTensor":
                    ternary_params[item.name] = section_quant
            elif isinstance(item, A.Let) and isinstance(node, A.LayerDef):
                self.origin(2, item)
                if self.is_tensor_let(item):
                    self.gen_param(item.name, item.type, item.value, ctx, 2)
                    if item.type is not None and item.type.name == "TernaryTensor":
                        ternary_params[item.name] = section_quant
                else:
                    self.emit(2, f"{py_local(item.name)} = {self.expr(item.value, ctx)}")
                    self.emit(2, f"self.{py_attr(item.name)} = {py_local(item.name)}")
                    ctx.locals.add(item.name)
                attrs.add(item.name)
        if form_b:
            for p in node.params or []:
                if p.type is not None and p.type.name == "TernaryTensor":
                    self.origin(2, p)
                    self.gen_param(p.name, p.type, None, ctx, 2)
                    attrs.add(p.name)
                    ternary_params[p.name] = section_quant
        for sec in node.body:
            if isinstance(sec, A.Section) and sec.name in ("training", "performance", "quantization"):
                values = {e.key: self.const_value(e.value) for e in sec.entries}
                self.emit(2, f"self.tritium_{sec.name} = {_q(values)}")
        fns = [i for i in node.body if isinstance(i, A.FnDef)]
        if form_b:
            stmts = [i for i in node.body if isinstance(i, A.Stmt) and not isinstance(i, A.Let)]
            lets = [i for i in node.body if isinstance(i, A.Let)]
            inputs = [p for p in node.params or [] if p.type is not None and p.type.name == "Tensor"]
            fns = [A.FnDef("forward", inputs, node.ret, lets + stmts, node.span)]
        folds = [[py_attr(a), py_attr(b)] for a, b in fold_pairs(node.body, fns, self.kind_of)]
        if folds:
            self.emit(2, "# batch norms that freezing folds into the layer before them "
                         "(then nn.Identity)")
            self.emit(2, f"self.tritium_identity_folds = {_q(folds)}")
        for fn in fns:
            self.emit(0, "")
            self.gen_method(fn, attrs, ternary_params)

    def kind_of(self, lk: A.LayerKind) -> str | None:
        """The builtin kind `lk` names (aliases resolved), None for a user definition."""
        spec, _ = self.checker.resolve_kind(lk.kind, lk.span)
        return spec.name if spec is not None else None

    def quant_section(self, node) -> dict:
        q = {"quantizer": "twn", "per_channel": False, "threshold": None}
        for sec in node.body:
            if isinstance(sec, A.Section) and sec.name == "quantization":
                for e in sec.entries:
                    if e.key in ("quantizer", "weights", "per_channel", "threshold"):
                        key = "quantizer" if e.key == "weights" else e.key
                        q[key] = self.const_value(e.value)
        return q

    def is_tensor_let(self, item: A.Let) -> bool:
        if item.type is not None:
            return item.type.name in TENSOR_TYPES
        v = item.value
        return isinstance(v, A.Call) and isinstance(v.func, A.Name) and v.func.id in (
            "random_ternary", "zeros", "ones", "randn", "rand", "empty", "full")

    def const_value(self, e: A.Expr):
        v = self.checker.eval_expr(e, self.checker_scope())
        return v.const if v.known else None

    def checker_scope(self) -> Scope:
        return Scope()

    def static_int(self, e: A.Expr) -> int | None:
        """The value of `e` when the checker knows it from constants alone (a literal, a
        config constant of the definition), else None (e.g. a hyperparameter)."""
        v = self.checker.eval_expr(e, self.scope)
        return v.const if v.known and type(v.const) is int else None

    def annotation(self, te: A.TypeExpr | None) -> str:
        if te is None:
            return ""
        return {"int": ": int", "float": ": float", "bool": ": bool", "str": ": str"}.get(
            "int" if te.name.startswith("int") else "float" if te.name.startswith(
                ("float", "bfloat")) else te.name, "")

    def gen_param(self, name: str, te: A.TypeExpr | None, init: A.Expr | None, ctx: _Ctx,
                  indent: int) -> None:
        shape = None
        if te is not None and te.shape is not None:
            dims = []
            for d in te.shape:
                if isinstance(d.value, int):
                    dims.append(str(d.value))
                elif isinstance(d.value, str):
                    if d.value not in ctx.locals:
                        raise CodegenError(f"parameter `{name}` has the unbound dim `{d.value}`")
                    dims.append(py_local(d.value))
                elif d.value is None:
                    raise CodegenError(f"parameter `{name}` has an unknown dim `?`")
                else:
                    dims.append(self.expr(d.value, ctx))
            shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        if init is not None:
            value = self.expr(init, ctx)
            if isinstance(init, A.Call) and isinstance(init.func, A.Name) and \
                    init.func.id == "random_ternary":
                value = f"{value}.to(torch.float32)"
        elif shape is not None:
            value = f"trt.init_weight({shape})"
        else:
            raise CodegenError(f"parameter `{name}` needs a shape or an initializer")
        self.emit(indent, f"self.{py_attr(name)} = nn.Parameter(torch.as_tensor({value}, "
                          f"dtype=torch.float32))")

    def gen_layer_decl(self, decl: A.LayerDecl, ctx: _Ctx, indent: int) -> None:
        attr = py_attr(decl.name)
        pre: list[tuple[int, str]] = []   # statements that build a repetition first
        ctors = [self.kind_ctor(k, ctx, pre, f"{decl.name}_{i}") for i, k in enumerate(decl.kinds)]
        value = ctors[0] if len(ctors) == 1 else "nn.Sequential(" + ", ".join(ctors) + ")"
        if decl.cond is not None:
            self.emit(indent, f"if {self.expr(decl.cond, ctx)}:")
            indent += 1
        for i, line in pre:
            self.emit(indent + i, line)
        self.emit(indent, f"self.{attr} = {value}")
        if decl.cond is not None:
            self.emit(indent - 1, "else:")
            self.emit(indent, f"self.{attr} = None")

    def kind_ctor(self, lk: A.LayerKind, ctx: _Ctx, pre: list[tuple[int, str]],
                  tag: str) -> str:
        """The constructor expression of one layer kind; a repetition of a user definition
        whose count is only known at run time may first add statements to `pre`."""
        spec, user = self.checker.resolve_kind(lk.kind, lk.span)
        given: dict[str, str] = {}
        if spec is not None:
            order = spec.positional
        else:
            order = tuple(p.name for p in self.checker.user_params(user.node))
        for i, a in enumerate(lk.args or []):
            given[a.name if a.name is not None else order[i]] = self.expr(a.value, ctx)
        for e in lk.config:
            given[e.key] = self.expr(e.value, ctx)
        n = self.static_int(lk.repeat) if lk.repeat is not None else None
        if user is not None:
            if lk.repeat is None:
                return self.user_call(user, given)
            return self.repeat_user(lk, user, given, ctx, n, pre, tag)
        one = self.builtin_ctor(spec, given)
        if lk.repeat is None:
            return one
        if n is not None and n <= UNROLL:
            return "nn.Sequential(" + ", ".join([one] * n) + ")"
        i = internal("i")
        return f"nn.Sequential(*[{one} for {i} in range({self.expr(lk.repeat, ctx)})])"

    def user_call(self, user: Definition, cfg: dict[str, str]) -> str:
        args = ", ".join(f"{py_local(k)}={v}" for k, v in cfg.items())
        return f"{self.class_names[user.name]}({args})"

    def builtin_ctor(self, spec: L.LayerSpec, given: dict[str, str]) -> str:
        ctor, pos, kws = _CTORS[spec.name]
        if "quantization" in given:
            given.setdefault("quantizer", given.pop("quantization"))
        if "quantizer" in given:
            q = given["quantizer"]
            for alias, canon in _QUANT_ALIASES.items():
                if q == repr(alias):
                    given["quantizer"] = repr(canon)
        if spec.name == "TernaryConv2d" and given.get("padding") in ("'same'", "'valid'"):
            given["padding"] = self.static_padding(given)
        if spec.name == "RMSNorm" and "normalized_shape" not in given and "dim" in given:
            given["normalized_shape"] = given.pop("dim")
        args = [given[k] for k in pos if k in given]
        for k in kws:
            key = spec.keys.get(k)
            if k in given:
                args.append(f"{k}={given[k]}")
            elif (spec.name, k) in _ALWAYS and key is not None and key.default is not None:
                args.append(f"{k}={_q(key.default)}")
        if spec.name == "TernaryAttention":
            args.append("ternary=True")
        call = f"{ctor}({', '.join(args)})"
        if "format" in given and "format" in spec.keys:
            return f"trt.with_format({call}, {given['format']})"
        return call

    @staticmethod
    def static_padding(given: dict[str, str]) -> str:
        if given["padding"] == "'valid'":
            return "0"
        k = given.get("kernel_size", "1")
        d = given.get("dilation", "1")
        return f"trt.same_padding({k}, {d})"

    def repeat_user(self, lk: A.LayerKind, user: Definition, given: dict[str, str], ctx: _Ctx,
                    n: int | None, pre: list[tuple[int, str]], tag: str) -> str:
        """`Block[N] { … }`: the instances configured by the repetition rule
        (`check.repetition`), each written out when `N` is a known constant (up to
        `UNROLL`); with a count known only at run time, the first instance and a
        comprehension of the second when the rule changes nothing after it (chaining, a
        `stride` reset), else a loop over the hyperparameters in `pre`."""
        ups = self.checker.user_params(user.node)
        params = [p.name for p in ups]
        defaults = {p.name: p.default for p in ups if p.default is not None}
        clause = repeat_clause(user.node)

        def evaluate(e: A.Expr, cfg: dict[str, str]) -> str:
            return self.config_expr(e, cfg, defaults)

        if n is not None and n <= UNROLL:
            cfgs = instance_configs(params, clause, given, n, evaluate)
            return "nn.Sequential(" + ", ".join(self.user_call(user, c) for c in cfgs) + ")"
        count = self.sub(lk.repeat, ctx, None, _PY_PREC["-"])
        first, second, third = instance_configs(params, clause, given, 3, evaluate)
        i = internal("i")
        if second == third:
            return (f"nn.Sequential({self.user_call(user, first)}, "
                    f"*[{self.user_call(user, second)} for {i} in range({count} - 1)])")
        # a rule that keeps changing the config: a loop over one local per hyperparameter
        var = {k: internal("c", k) for k in second}
        init = {k: first.get(k) or (self.config_expr(defaults[k], first, defaults)
                                    if k in defaults else "None") for k in second}
        state = {k: var[k] for k in second}
        step = instance_configs(params, clause, state, 2, evaluate)[1]
        changed = [k for k in second if step[k] != var[k]]
        lst = internal("i", tag)
        pre.append((0, f"{', '.join(var[k] for k in second)} = "
                       f"{', '.join(init[k] for k in second)}"))
        pre.append((0, f"{lst} = [{self.user_call(user, {k: var[k] for k in first})}]"))
        pre.append((0, f"for {i} in range({count} - 1):"))
        if changed:
            pre.append((1, f"{', '.join(var[k] for k in changed)} = "
                           f"{', '.join(step[k] for k in changed)}"))
        pre.append((1, f"{lst} = {lst} + [{self.user_call(user, state)}]"))
        return f"nn.Sequential(*{lst})"

    def config_expr(self, e: A.Expr, cfg: dict[str, str], defaults: dict[str, A.Expr]) -> str:
        """A repetition rule's expression over the previous instance's config `cfg` (key ->
        Python expression), a hyperparameter it does not hold taking its default: a literal
        when the checker can compute it from literals, else the expression with the config's
        values substituted."""
        scope = Scope()
        subst: dict[str, str] = {}
        for k, d in defaults.items():
            if k not in cfg and isinstance(d, A.Num | A.Str | A.Bool):
                subst[k] = self.expr(d, _Ctx())
        subst.update(cfg)
        for k, v in subst.items():
            try:
                c = pyast.literal_eval(v)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if type(c) in (int, float, bool, str):
                scope.vars[k] = Value.of(c)
        v = self.checker.eval_expr(e, scope)
        if v.known and type(v.const) in (int, float, bool, str):
            return _q(v.const)
        return self.expr(e, _Ctx(subst={k: _atomic(x) for k, x in subst.items()}))

    # ------------------------------------------------------------------ methods
    def gen_method(self, fn: A.FnDef, attrs: set[str], ternary: dict[str, dict]) -> None:
        ctx = _Ctx(self_attrs=set(attrs))
        params = ["self"]
        for p in fn.params:
            ctx.locals.add(p.name)
            params.append(py_local(p.name) + (f"={self.expr(p.default, ctx)}"
                                               if p.default is not None else ""))
        self.origin(1, fn)
        self.emit(1, f"def {py_attr(fn.name) if fn.name != 'forward' else 'forward'}"
                     f"({', '.join(params)}):")
        used = self.names_used(fn.body)
        for name, q in ternary.items():
            if name in used:
                local = internal("q", name)
                thr = q.get("threshold")
                quant = _QUANT_ALIASES.get(q.get("quantizer") or "twn", q.get("quantizer") or "twn")
                self.emit(2, f"{local} = trt.ternary_weight(self.{py_attr(name)}, "
                             f"quantizer={_q(quant)}, per_channel={_q(bool(q.get('per_channel')))}"
                             f", threshold={_q(thr)}, training=self.training)")
                ctx.ternary[name] = local
        self.gen_dim_bindings(fn.params, fn.body, ctx, 2)
        if not fn.body:
            self.emit(2, "return None")
        self.block(fn.body, ctx, 2)

    def gen_dim_bindings(self, params: list[A.ParamSpec], body: list, ctx: _Ctx,
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

    def block(self, stmts: list, ctx: _Ctx, indent: int) -> None:
        if not stmts:
            self.emit(indent, "pass")
        for s in stmts:
            self.stmt(s, ctx, indent)

    def stmt(self, s, ctx: _Ctx, indent: int) -> None:
        if not isinstance(s, A.If):
            self.origin(indent, s)
        if isinstance(s, A.Let):
            ctx.locals.add(s.name)
            self.emit(indent, f"{py_local(s.name)} = {self.expr(s.value, ctx)}")
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
                value = self.sub(s.value, ctx, None, _PY_PREC[op] + 1)
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
            ctx.locals.add(s.var)
            it = s.iter
            if isinstance(it, A.Range):
                src = f"range({self.expr(it.start, ctx)}, {self.expr(it.stop, ctx)})"
            else:
                src = self.expr(it, ctx)
            self.emit(indent, f"for {py_local(s.var)} in {src}:")
            self.block(s.body, ctx, indent + 1)
        else:
            raise CodegenError(f"cannot generate code for {type(s).__name__}")

    # ------------------------------------------------------------------ expressions
    def name(self, n: str, ctx: _Ctx, prefix: str | None = None) -> str:
        if n in ctx.subst:
            return ctx.subst[n]
        if prefix is not None and n in ctx.locals:
            return f"{prefix}[{_q(py_local(n))}]"
        if n in ctx.ternary:
            return ctx.ternary[n]
        if n in ctx.locals:
            return py_local(n)
        if n in ctx.self_attrs:
            return f"self.{py_attr(n)}"
        if n in self.defs:
            return self.class_names[n]
        raise CodegenError(f"unresolved name `{n}`")

    def expr(self, e: A.Expr, ctx: _Ctx, prefix: str | None = None) -> str:
        t = type(e)
        if t is A.Num:
            text = _float(e.value) if isinstance(e.value, float) else repr(e.value)
            return text if not text.startswith("-") else f"({text})"
        if t is A.TritLit:
            return str(e.value) if e.value >= 0 else f"({e.value})"
        if t is A.Str:
            return repr(e.value)
        if t is A.Bool:
            return "True" if e.value else "False"
        if t is A.NoneLit:
            return "None"
        if t is A.Unknown:
            return "-1"
        if t is A.Name:
            return self.name(e.id, ctx, prefix)
        if t is A.ListLit:
            return "[" + ", ".join(self.expr(x, ctx, prefix) for x in e.items) + "]"
        if t is A.DictLit:
            return "{" + ", ".join(f"{_q(en.key)}: {self.expr(en.value, ctx, prefix)}"
                                   for en in e.entries) + "}"
        if t is A.Unary:
            op = "not " if e.op == "not" else e.op
            prec = 4 if e.op == "not" else 12
            return f"{op}{self.sub(e.operand, ctx, prefix, prec + 1)}"
        if t is A.Binary:
            prec = _PY_PREC[e.op]
            if e.op == "**":   # right-associative
                return (f"{self.sub(e.left, ctx, prefix, prec + 1)} ** "
                        f"{self.sub(e.right, ctx, prefix, prec)}")
            return (f"{self.sub(e.left, ctx, prefix, prec)} {e.op} "
                    f"{self.sub(e.right, ctx, prefix, prec + 1)}")
        if t is A.CondExpr:
            return (f"{self.sub(e.then, ctx, prefix, 2)} if {self.sub(e.cond, ctx, prefix, 2)} "
                    f"else {self.sub(e.other, ctx, prefix, 1)}")
        if t is A.Range:
            return f"range({self.expr(e.start, ctx, prefix)}, {self.expr(e.stop, ctx, prefix)})"
        if t is A.Attr:
            base = self.expr(e.value, ctx, prefix)
            if e.attr == "shape":
                return f"list({base}.shape)"
            if e.attr in ("ndim", "T", "dtype"):
                return f"{base}.{e.attr}"
            raise CodegenError(f"unsupported attribute `.{e.attr}`")
        if t is A.Index:
            return self.index(e, ctx, prefix)
        if t is A.Call:
            return self.call(e, ctx, prefix)
        raise CodegenError(f"cannot generate code for {t.__name__}")

    def sub(self, e: A.Expr, ctx: _Ctx, prefix, min_prec: int) -> str:
        """`e` parenthesized when its precedence is below `min_prec`."""
        text = self.expr(e, ctx, prefix)
        if isinstance(e, A.Binary):
            p = _PY_PREC[e.op]
        elif isinstance(e, A.Unary):
            p = 4 if e.op == "not" else 12
        elif isinstance(e, A.CondExpr):
            p = 1
        else:
            return text
        return f"({text})" if p < min_prec else text

    def index(self, e: A.Index, ctx: _Ctx, prefix) -> str:
        parts = []
        for i in e.indices:
            if isinstance(i, A.Slice):
                s = ":".join("" if p is None else self.expr(p, ctx, prefix)
                             for p in (i.start, i.stop, i.step))
                parts.append(s.rstrip(":") if i.step is None else s)
            else:
                parts.append(self.expr(i, ctx, prefix))
        return f"{self.expr(e.value, ctx, prefix)}[{', '.join(parts)}]"

    def call(self, e: A.Call, ctx: _Ctx, prefix) -> str:
        f = e.func
        if isinstance(f, A.Index) and isinstance(f.value, A.Name) and f.value.id in TENSOR_TYPES:
            dtype = "torch.int8" if f.value.id == "TernaryTensor" else "torch.float32"
            dims = []
            for i in f.indices:
                if isinstance(i, A.Name) and i.id in DTYPES:
                    dtype = _TORCH_DTYPES[i.id]
                else:
                    dims.append(self.expr(i, ctx, prefix))
            vals = ", ".join(self.expr(a.value, ctx, prefix) for a in e.args)
            return f"torch.tensor([{vals}], dtype={dtype}).reshape({', '.join(dims)})"
        args = [self.expr(a.value, ctx, prefix) for a in e.args]
        kw = {a.name: self.expr(a.value, ctx, prefix) for a in e.args if a.name is not None}
        pos = [self.expr(a.value, ctx, prefix) for a in e.args if a.name is None]
        if isinstance(f, A.Attr):
            base = self.expr(f.value, ctx, prefix)
            if f.attr == "size":
                return f"{base}.size({', '.join(args)})"
            return self.builtin(f.attr, [base] + pos, kw)
        if not isinstance(f, A.Name):
            raise CodegenError("only named functions and layers can be called")
        n = f.id
        if n in ctx.self_attrs:
            return f"self.{py_attr(n)}({', '.join(args)})"
        if n in ctx.locals:
            return f"{py_local(n)}({', '.join(args)})"
        if n in self.defs and self.defs[n].kind == "fn":
            fn = self.defs[n].node
            names = [p.name for p in fn.params]
            out = list(pos) + [f"{py_local(k)}={v}" for k, v in kw.items() if k in names]
            return f"{self.class_names[n]}({', '.join(out)})"
        if n in L.FUNCTIONS:
            return self.builtin(n, pos, kw)
        raise CodegenError(f"unresolved function `{n}`")

    def builtin(self, n: str, pos: list[str], kw: dict[str, str]) -> str:
        spec = L.FUNCTIONS[n]
        bound: dict[str, str] = {}
        for p, v in zip(spec.params, pos):
            bound[p.name] = v
        bound.update(kw)

        def arg(name: str, default: str | None = None) -> str:
            if name in bound:
                return bound[name]
            p = next(p for p in spec.params if p.name == name)
            return default if default is not None else _q(p.default)

        x = bound.get("x")
        if n in _UNARY:
            return f"{_UNARY[n]}(torch.as_tensor({x}))" if n in ("exp", "log", "sqrt") and \
                not x.startswith(("(", "self", "torch", "F.")) and x.replace(".", "").isdigit() \
                else f"{_UNARY[n]}({x})"
        if n in ("softmax", "log_softmax"):
            return f"torch.{n}({x}, dim={arg('dim')})"
        if n == "flatten":
            return f"torch.flatten({x}, {arg('start_dim')}, {arg('end_dim')})"
        if n in ("reshape", "view"):
            return f"torch.reshape({x}, {arg('shape')})"
        if n == "transpose":
            return f"torch.transpose({x}, {arg('dim0')}, {arg('dim1')})"
        if n == "permute":
            return f"{x}.permute({arg('dims')})"
        if n == "unsqueeze":
            return f"torch.unsqueeze({x}, {arg('dim')})"
        if n == "squeeze":
            return f"torch.squeeze({x}, {arg('dim')})" if "dim" in bound else f"torch.squeeze({x})"
        if n in ("concat", "cat"):
            return f"torch.cat({arg('tensors')}, dim={arg('dim')})"
        if n == "stack":
            return f"torch.stack({arg('tensors')}, dim={arg('dim')})"
        if n == "matmul":
            return f"torch.matmul({arg('a')}, {arg('b')})"
        if n == "ternary_matmul":
            return f"F.linear({x}, {arg('w')})"
        if n in ("sum", "mean", "amax", "amin", "max", "min"):
            if n in ("max", "min") and len(pos) == 2 and "dim" not in kw:
                return f"torch.{'maximum' if n == 'max' else 'minimum'}({pos[0]}, {pos[1]})"
            fn = {"max": "amax", "min": "amin"}.get(n, n)
            if "dim" not in bound:
                return f"torch.{fn}({x})" if arg("keepdim") == "False" else \
                    f"torch.{fn}({x}, dim=tuple(range({x}.dim())), keepdim=True)"
            return f"torch.{fn}({x}, dim={arg('dim')}, keepdim={arg('keepdim')})"
        if n == "floordiv":
            return f"({arg('a')} // {arg('b')})"
        if n in ("maximum", "minimum"):
            return f"torch.{n}({arg('a')}, {arg('b')})"
        if n == "clamp":
            return f"torch.clamp({x}, min={arg('min')}, max={arg('max')})"
        if n == "where":
            return f"torch.where({arg('cond')}, {arg('a')}, {arg('b')})"
        if n in ("zeros", "ones", "randn", "rand", "empty"):
            return f"torch.{n}({arg('shape')})"
        if n == "full":
            return f"torch.full({arg('shape')}, {arg('value')})"
        if n == "random_ternary":
            return f"trt.random_ternary({arg('shape')})"
        if n in ("attention", "scaled_dot_product_attention"):
            return (f"F.scaled_dot_product_attention({arg('q')}, {arg('k')}, {arg('v')}, "
                    f"attn_mask={arg('mask')}, is_causal={arg('causal')})")
        if n == "layer_norm":
            return f"F.layer_norm({x}, {x}.shape[-1:], eps={arg('eps')})"
        if n == "rms_norm":
            return f"F.rms_norm({x}, {x}.shape[-1:], eps={arg('eps')})"
        if n == "dropout":
            return f"F.dropout({x}, p={arg('p')}, training=self.training)"
        if n in ("max_pool2d", "avg_pool2d"):
            return (f"F.{n}({x}, {arg('kernel_size')}, stride={arg('stride')}, "
                    f"padding={arg('padding')})")
        if n == "adaptive_avg_pool2d":
            return f"F.adaptive_avg_pool2d({x}, {arg('output_size')})"
        if n == "quantize_ternary":
            return f"trt.ternary_weight({x}, quantizer={arg('quantizer')}, training=self.training)"
        if n == "cast":
            return f"trt.cast({x}, {arg('dtype')})"
        if n in ("int", "int8", "int32", "int64", "float", "float16", "bfloat16", "float32",
                 "bool", "trit"):
            return f"trt.cast({x}, {_q(n)})"
        if n in ("range", "len", "print"):
            return f"{n}({', '.join(pos)})"
        raise CodegenError(f"no PyTorch translation for `{n}`")


def generate(result: CheckResult, annotate: bool = False) -> str:
    """The PyTorch source for every model, block, layer and function of a checked program.
    Each class's and function's docstring names the `.tri` file and line it came from; with
    `annotate`, every statement also follows a comment echoing its `.tri` line."""
    try:
        return PyTorchCodegen(result, annotate).generate()
    except BadName as exc:      # the checker reports such names (E0311); never emitted
        raise CodegenError(str(exc)) from None
