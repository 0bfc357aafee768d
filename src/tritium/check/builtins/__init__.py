"""The builtin functions: one record per function, the single home of everything a stage
needs to know about it.

A `Builtin` holds
  * the signature (`params`, `variadic`) and the doc line docs/language.md is written from;
  * `rule`: the checker's result rule, `rule(checker, name, bound_args, call) -> Value`;
  * `torch`: the PyTorch template the code generator fills, `"torch.clamp({x}, min={min},
    max={max})"` (each `{param}` is the argument's source, or its default), or a function of
    (arguments, names given) -> source for the few whose form depends on what is given;
  * `ir`: the IR op it lowers to (`IR(op, operands, attrs)`) and `py`, its value on Python
    numbers (compile-time constants); with `ir=None`, `tritium.ir.lowering` has a lowering
    of that name (`@_builtin`) (for the builtins that build several ops or need checks);
  * `pair_op`: the elementwise op a two-tensor call means (`max(a, b)` is `maximum`).

The checker, the IR lowering and the PyTorch code generator read this table; adding a
builtin is a record here (and, for a new IR op, its definition in ir/ops.py and its kernel
in ir/interpreter.py): docs/architecture.md, "Adding a builtin function".

The package: `records` (the record, `FUNCTIONS`, `_p`/`_opt`/`_fn`/`_alias`, `bind`), `rules`
(the shared result rules and their helpers), and the tables by job, registered in this order
(the order of `FUNCTIONS`): `core` (math, shapes, reductions, creation, attention, norms,
pooling, casts, Python builtins), `seed` (the seed language's tensors from data, math,
statistics, products, conv2d, batch_norm, mse_loss), `quant` (its quantization primitives).
"""

from __future__ import annotations

# The tables register their records when imported: core, then seed, then quant whichever is
# imported first, since seed imports core and quant imports seed.
from . import (  # noqa: F401
    core,
    corpus,  # noqa: F401  (registered last)
    decl,  # noqa: F401  (the decl forms' shuffle)
    masking,  # noqa: F401  (masked_fill; Python's sum of a list)
    model2,  # noqa: F401  (the model2 forms' builtins)
    quant,
    seed,
)
from .quant import (
    dequantize_rule,
    quantized_linear_rule,
    quantized_matmul_rule,
    ternary_values_rule,
    ternary_weights_rule,
)
from .records import (
    ARG_ALIASES,
    FUNCTIONS,
    IR,
    PY_CALL,
    BindError,
    Builtin,
    FnParam,
    FnSpec,
    Rule,
    Template,
    bind,
    param_name,
    resolve,
)
from .rules import (
    adaptive_pool_rule,
    attention_rule,
    cast_rule,
    concat_rule,
    conversion_rule,
    creation_rule,
    elementwise2_rule,
    elementwise_rule,
    enumerate_rule,
    flatten_rule,
    floordiv_rule,
    layer_norm_rule,
    len_rule,
    matmul_rule,
    none_rule,
    permute_rule,
    pool_rule,
    range_rule,
    reduce_rule,
    reshape_rule,
    squeeze_rule,
    ternary_matmul_rule,
    transpose_rule,
    unsqueeze_rule,
    where_rule,
    zip_rule,
)
from .seed import (
    arange_rule,
    batch_norm_rule,
    conv2d_rule,
    dot_rule,
    eye_rule,
    linspace_rule,
    mse_loss_rule,
    outer_rule,
    pow_rule,
    split_rule,
    tensor_rule,
)

__all__ = [
    "ARG_ALIASES", "FUNCTIONS", "IR", "PY_CALL", "BindError", "Builtin", "FnParam", "FnSpec",
    "Rule", "Template", "bind", "param_name", "resolve",
    "adaptive_pool_rule", "arange_rule", "attention_rule", "batch_norm_rule", "cast_rule",
    "concat_rule", "conversion_rule", "conv2d_rule", "creation_rule", "dequantize_rule",
    "dot_rule", "elementwise2_rule", "elementwise_rule", "enumerate_rule", "eye_rule",
    "flatten_rule", "floordiv_rule", "layer_norm_rule", "len_rule", "linspace_rule",
    "matmul_rule", "mse_loss_rule", "none_rule", "outer_rule", "permute_rule", "pool_rule",
    "pow_rule", "quantized_linear_rule", "quantized_matmul_rule", "range_rule", "reduce_rule",
    "reshape_rule", "split_rule", "squeeze_rule", "tensor_rule", "ternary_matmul_rule",
    "ternary_values_rule", "ternary_weights_rule", "transpose_rule", "unsqueeze_rule",
    "where_rule", "zip_rule",
]
