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

The generator is split by job: `classes` (one class or function per definition),
`expressions` (method bodies), `text` (header, literals, escaping, wrapping); this module
holds the driver and the templates of the builtin layer kinds and functions.
"""

from __future__ import annotations

import ast as pyast

from ...check import CheckResult
from ...check import library as L
from ...check.checker import Checker, Definition, Scope
from ...frontend import ast as A
from ...frontend.names import BadName, py_local
from .classes import DefinitionGen
from .expressions import BodyGen
from .text import MAX_LINE, CodegenError, header, wrap
from .text import escape as _text
from .text import literal as _q
from .validate import UnsafeSourceError, validate

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

# Config keys whose library default differs from the constructor's own default, so they are
# always written out; every other key is written only when the program gives it.
_ALWAYS = {("Softmax", "dim"), ("RMSNorm", "eps")}

_QUANT_ALIASES = {"deterministic": "threshold", "fixed": "threshold", "bitnet": "absmean",
                  "b1.58": "absmean"}


class PyTorchCodegen(DefinitionGen, BodyGen):
    """The code generator: one instance per checked program (`generate`)."""

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
        # isort's blank lines after the imports: two before a definition, else one
        gap = "\n" if body.startswith("__all__") else "\n\n"
        source = header(__version__, files, used) + gap + body
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

    def canonical_quantizer(self, name: str) -> str:
        """The runtime's name of a quantizer (`deterministic` -> `threshold`, ...)."""
        return _QUANT_ALIASES.get(name, name)

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
