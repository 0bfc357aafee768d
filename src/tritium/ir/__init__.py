"""Tritium IR: a small typed SSA IR with a textual form, a verifier and a numpy interpreter.

    from tritium.ir import parse_module, print_module, verify, interpret, infer_type, Builder
"""

from .builder import Builder, new_function, tensor
from .core import (
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
    clone_module,
    count_ops,
    load_time_ops,
    structurally_equal,
)
from .interpreter import Interpreter, InterpretError, eval_op, interpret
from .ops import OPS, InferError, OpDef, infer_type
from .parser import ParseError, parse_module, parse_type
from .printer import print_function, print_module, print_op
from .types import DTYPES, Dim, ScalarType, TensorType, Type
from .verifier import VerifyError, verify

__all__ = [
    "DTYPES", "OPS", "Block", "Builder", "Dense", "Dim", "Function", "InferError",
    "InterpretError", "Interpreter", "LayerDef", "Module", "Op", "OpDef", "ParamDef",
    "ParseError", "QuantSpec", "ScalarType", "SubLayer", "TensorType", "Type", "Value",
    "VerifyError", "clone_module", "count_ops", "eval_op", "infer_type", "interpret",
    "load_time_ops", "new_function", "parse_module", "parse_type", "print_function",
    "print_module", "print_op", "structurally_equal", "tensor", "verify",
]
