"""Validation of generated PyTorch source before it is executed.

The code generator only writes program names through `tritium.frontend.names` and program
strings through `repr`, so a program cannot inject code. This module is the second line:
`validate(source)` parses the source with `ast` and accepts only the shape of module the
code generator writes. Everything outside that shape raises `UnsafeSourceError`:

* the module holds a docstring, the header's imports (those of `HEADER_IMPORTS` the code
  uses, in that order, the `__future__` one always), classes deriving from `nn.Module`,
  plain functions, and `__all__` (a list of strings);
* no other import, `global`, `nonlocal`, `del`, decorators, `async`, `yield`, `await`,
  `try`, `raise`, `lambda`, class keywords, star-imports, walrus assignments, and no
  `with` other than exactly `with torch.no_grad():` (`with no_grad() { … }`);
* an f-string field has a plain conversion (`!r`, `!s`, `!a`) and a format spec of the
  lexer's safe charset (`FORMAT_SPEC_RE`), never a nested field;
* no name or attribute that starts with `__` (except `super().__init__()` and `__all__`);
* a builtin is only one of the few the generator uses (`super`, `range`, `list`, `tuple`,
  `len`, `print`, `float`, `format`, `repr`, …): never `open`, `eval`, `exec`, `getattr`,
  `__import__`, …;
* an attribute of `torch`, `torch.nn.functional`, `nn` or `trt` is one the generator emits
  (never `torch.save`, `torch.load`, `trt.checkpoint`, …); an attribute of `self` or of a
  value is never an `nn.Module` method other than the ones the generator calls.

It needs no torch and is used by the code generator (on its own output) and by the driver
(on every module it executes, cached or not).
"""

from __future__ import annotations

import ast
import builtins
import warnings

from ...frontend.lexer import FORMAT_SPEC_RE
from ...frontend.names import MODULE_ATTRS


class UnsafeSourceError(Exception):
    """Generated source that does not have the shape the code generator writes."""


HEADER_IMPORTS = (
    "from __future__ import annotations",
    "import torch",
    "import torch.nn.functional as F",
    "from torch import nn",
    "from tritium import runtime as trt",
)
REQUIRED_IMPORTS = ("from __future__ import annotations",)

ALLOWED_BUILTINS = frozenset({"super", "range", "list", "tuple", "len", "print", "float", "int",
                              "max", "min", "bool", "str", "format", "repr", "ascii", "enumerate", "zip",
                              "True", "False", "None"})

TORCH_ATTRS = frozenset({
    "abs", "amax", "amin", "as_tensor", "bfloat16", "bool", "cat", "clamp", "empty", "exp",
    "flatten", "float16", "float32", "float64", "full", "int16", "int32", "int64", "int8",
    "log", "log_softmax", "matmul", "maximum", "mean", "minimum", "neg", "ones", "rand",
    "randn", "relu", "reshape", "sigmoid", "sign", "softmax", "sqrt", "squeeze", "stack",
    "sum", "tanh", "tensor", "transpose", "uint8", "unsqueeze", "where", "zeros",
})
F_ATTRS = frozenset({
    "adaptive_avg_pool2d", "avg_pool2d", "dropout", "gelu", "layer_norm", "linear",
    "max_pool2d", "relu6", "rms_norm", "scaled_dot_product_attention", "silu",
})
NN_ATTRS = frozenset({
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout",
    "Embedding", "Flatten", "GELU", "Identity", "LayerNorm", "Linear", "MaxPool2d", "Module",
    "Parameter", "RMSNorm", "ReLU", "ReLU6", "Sequential", "SiLU", "Sigmoid", "Softmax", "Tanh",
})
TRT_ATTRS = frozenset({
    "BitLinear", "Int4Linear", "Int8Linear", "SelfAttention", "TernaryActivation",
    "TernaryConv2d", "TernaryLinear", "cast", "init_weight", "random_ternary",
    "same_padding", "ternary_weight", "with_format",
})
# attributes of values (tensors, `self`) the generator uses; `self.<name>` of a program
# name is never an nn.Module attribute (names.py), and these are the module ones it reads
VALUE_ATTRS = frozenset({"shape", "ndim", "T", "dtype", "size", "permute", "dim", "to",
                         "reshape", "training"})
# the seed language's builtin functions (tritium.check.builtins records)
TORCH_ATTRS |= {"sin", "cos", "tan", "floor", "ceil", "round", "log10", "dot", "outer",
                "linspace", "eye", "no_grad"}
F_ATTRS |= {"conv2d"}
TRT_ATTRS |= {"tensor", "with_dtype", "random_tensor", "arange", "std", "split", "layer_norm", "batch_norm",
              "mse_loss", "cross_entropy", "threshold_quantize", "adaptive_threshold_quantize",
              "stochastic_quantize", "learned_quantize", "soft_quantize",
              "gumbel_softmax_quantize", "xnor_quantize", "xnor_quantize_pair", "ste_quantize",
              "with_gradient_from", "construct_layer", "register_hook", "closure", "clipped_ste_quantize",
              "dequantize", "ternary_weights", "quantized_linear", "quantized_conv2d",
              "quantized_matmul", "float_matmul", "rope", "attention"}
# the seed's forms of its primitives (runtime.seed_ops) and what the corpus builtins use
TRT_ATTRS |= {"quantile_threshold_quantize", "tempered_stochastic_quantize", "hard_soft_quantize",
              "learned_threshold_quantize", "sparse_random_ternary", "depthwise_conv2d"}
TORCH_ATTRS |= {"log2", "all", "any", "diagonal"}
# layers and models as values (runtime.layer_values)
TRT_ATTRS |= {"layer_weights", "set_layer_weights", "model_layers", "sequential_model"}
NN_ATTRS |= {"ModuleList"}
VALUE_ATTRS |= {"detach", "t", "requires_grad_"}
# a tensor's element count (the builtin numel)
VALUE_ATTRS |= {"numel"}
# masked_fill (x.masked_fill(mask != 0, value)) and Python's sum of a list (check.builtins.masking)
VALUE_ATTRS |= {"masked_fill"}
ALLOWED_BUILTINS |= {"sum"}
TORCH_ATTRS |= {"unbind"}
# the list methods of the language (tritium.check.list_methods), called on list values
VALUE_ATTRS |= {"append", "extend", "insert", "pop", "remove", "clear", "reverse", "sort",
                "index", "count", "copy"}
# the model2 builtins (tritium.check.builtins.model2)
TORCH_ATTRS |= {"argmax", "argmin", "zeros_like", "ones_like", "full_like"}
F_ATTRS |= {"one_hot", "gumbel_softmax"}
VALUE_ATTRS |= {"long", "float", "repeat"}
# the decl forms of issue 13 (tritium.runtime.decl_ops): shuffle, a float repeat count, stops
TRT_ATTRS |= {"shuffle", "repeat_list", "panic"}
_MODULE_ROOTS = {"torch": TORCH_ATTRS, "F": F_ATTRS, "nn": NN_ATTRS, "trt": TRT_ATTRS}

_FORBIDDEN_NODES = (
    ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.Delete, ast.AsyncFunctionDef,
    ast.AsyncFor, ast.AsyncWith, ast.Await, ast.Yield, ast.YieldFrom, ast.Try,
    ast.Raise, ast.NamedExpr, ast.ClassDef,
    ast.FunctionDef, ast.Lambda,
)
_CONVERSIONS = frozenset({-1, ord("r"), ord("s"), ord("a")})
_BUILTIN_NAMES = frozenset(dir(builtins))


def _fail(node: ast.AST, why: str) -> UnsafeSourceError:
    line = getattr(node, "lineno", "?")
    return UnsafeSourceError(f"generated source line {line}: {why}")


def validate(source: str) -> ast.Module:
    """Parse `source` and check it is a module the code generator could have written."""
    try:
        tree = ast.parse(source, "<generated>")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeSourceError(f"generated source is not valid Python: {exc}") from None
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    n = 0
    while n < len(body) and isinstance(body[n], ast.Import | ast.ImportFrom):
        n += 1
    imports = [ast.unparse(node) for node in body[:n]]
    if not _is_header(imports):
        raise _fail(tree, "the imports are not the generated header's")
    for node in body[n:]:
        if isinstance(node, ast.ClassDef):
            _check_class(node)
        elif isinstance(node, ast.FunctionDef):
            _check_function(node, in_class=False)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "__all__" \
                and isinstance(node.value, ast.List) \
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                        for e in node.value.elts):
            continue
        else:
            raise _fail(node, f"unexpected top-level {type(node).__name__}")
    try:   # what only the compiler sees (duplicate arguments, misplaced names); runs nothing
        with warnings.catch_warnings():
            # a SyntaxWarning is code that fails when it runs ("list indices must be
            # integers", "'str' object is not callable"): the checker should have refused it
            warnings.simplefilter("error", SyntaxWarning)
            compile(tree, "<generated>", "exec", dont_inherit=True)
    except (SyntaxError, SyntaxWarning, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeSourceError(f"generated source does not compile: {exc}") from None
    return tree


def _is_header(imports: list[str]) -> bool:
    """Whether `imports` are some of `HEADER_IMPORTS`, in order, with the required ones."""
    it = iter(HEADER_IMPORTS)
    return all(line in it for line in imports) \
        and all(line in imports for line in REQUIRED_IMPORTS)


def _check_class(node: ast.ClassDef) -> None:
    if node.decorator_list or node.keywords or len(node.bases) != 1 \
            or ast.unparse(node.bases[0]) != "nn.Module":
        raise _fail(node, f"class {node.name} is not a plain nn.Module")
    _check_name(node, node.name)
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    for item in body:
        if not isinstance(item, ast.FunctionDef):
            raise _fail(item, f"unexpected {type(item).__name__} in class {node.name}")
        _check_function(item, in_class=True)


def _check_function(node: ast.FunctionDef, in_class: bool) -> None:
    if node.decorator_list or node.returns is not None and not in_class:
        raise _fail(node, f"function {node.name} has decorators or annotations")
    if not (in_class and node.name == "__init__"):
        _check_name(node, node.name)
    for stmt in node.body:
        _check_tree(stmt)
    for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
        _check_name(arg, arg.arg)
        if arg.annotation is not None:
            _check_tree(arg.annotation)
    for d in [*node.args.defaults, *node.args.kw_defaults]:
        if d is not None:
            _check_tree(d)
    if node.args.vararg or node.args.kwarg:
        raise _fail(node, f"function {node.name} takes *args or **kwargs")
    if node.returns is not None:
        _check_tree(node.returns)


def _check_name(node: ast.AST, name: str) -> None:
    if name.startswith("__"):
        raise _fail(node, f"name {name!r} starts with '__'")


def _check_tree(root: ast.AST) -> None:
    for node in ast.walk(root):
        if isinstance(node, _FORBIDDEN_NODES):
            raise _fail(node, f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.With) and not _is_no_grad(node):
            raise _fail(node, "a `with` other than `with torch.no_grad():` is not allowed")
        if isinstance(node, ast.Name):
            _check_name(node, node.id)
            if node.id in _BUILTIN_NAMES and node.id not in ALLOWED_BUILTINS:
                raise _fail(node, f"the builtin {node.id!r} is not allowed")
        elif isinstance(node, ast.keyword):
            if node.arg is None:
                raise _fail(node, "a ** argument is not allowed")
            _check_name(node, node.arg)
        elif isinstance(node, ast.Attribute):
            _check_attribute(node)
        elif isinstance(node, ast.FormattedValue):
            _check_field(node)


def _is_no_grad(node: ast.With) -> bool:
    """Exactly `with torch.no_grad():`: one context, called without arguments, bound to no
    name."""
    if len(node.items) != 1 or node.type_comment is not None:
        return False
    item = node.items[0]
    c = item.context_expr
    return item.optional_vars is None and isinstance(c, ast.Call) and not c.args \
        and not c.keywords and isinstance(c.func, ast.Attribute) and c.func.attr == "no_grad" \
        and isinstance(c.func.value, ast.Name) and c.func.value.id == "torch"


def _check_field(node: ast.FormattedValue) -> None:
    """An f-string field as the generator writes it: a plain conversion and a format spec
    of the lexer's safe charset, with no nested field."""
    if node.conversion not in _CONVERSIONS:
        raise _fail(node, "an f-string conversion is not allowed")
    spec = node.format_spec
    if spec is None:
        return
    if not (isinstance(spec, ast.JoinedStr) and len(spec.values) == 1
            and isinstance(spec.values[0], ast.Constant)
            and isinstance(spec.values[0].value, str)
            and FORMAT_SPEC_RE.fullmatch(spec.values[0].value)):
        raise _fail(node, "an f-string format spec is not allowed")


def _check_attribute(node: ast.Attribute) -> None:
    attr = node.attr
    base = node.value
    if attr == "__init__" and isinstance(base, ast.Call) and isinstance(base.func, ast.Name) \
            and base.func.id == "super" and not base.args and not base.keywords:
        return
    _check_name(node, attr)
    if isinstance(base, ast.Name) and base.id in _MODULE_ROOTS:
        if attr not in _MODULE_ROOTS[base.id]:
            raise _fail(node, f"{base.id}.{attr} is not allowed")
        return
    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) \
            and base.value.id in _MODULE_ROOTS:
        raise _fail(node, f"{ast.unparse(node)} is not allowed")
    if isinstance(base, ast.Name) and base.id == "self":
        if attr in MODULE_ATTRS and attr not in VALUE_ATTRS and attr != "register_buffer":
            raise _fail(node, f"self.{attr} is not allowed")
        return
    if _rooted_at_self(base):
        # a sub-module's method or attribute (`self.stage[0].report()`): program names
        # through names.py, as `self.<name>` is, and nothing of nn.Module's own
        if attr in MODULE_ATTRS and attr not in VALUE_ATTRS:
            raise _fail(node, f"{ast.unparse(node)} is not allowed")
        return
    if attr not in VALUE_ATTRS:
        raise _fail(node, f"the attribute .{attr} is not allowed")


def _int_constant(node: ast.AST) -> bool:
    """`0`, `-1`, `(-1)`: an int literal, maybe negated."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is int


def _rooted_at_self(node: ast.AST) -> bool:
    """`self.a`, `self.a.b`, `self.a[0]`: attributes and constant indexes from `self`."""
    if not isinstance(node, ast.Attribute | ast.Subscript):
        return False
    while isinstance(node, ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Subscript) and not _int_constant(node.slice):
            return False
        node = node.value
    return isinstance(node, ast.Name) and node.id == "self"
