"""Mapping .tri identifiers to Python identifiers that cannot collide or inject.

The lexer already restricts identifiers to `[A-Za-z_][A-Za-z0-9_]*`. A name that is a Python
keyword, a builtin, one of the generated code's imports, `self`, a dunder, or (for module
attributes) an attribute of `torch.nn.Module` gets a trailing `_`, so `layer training: …`
becomes `self.training_` and never shadows `nn.Module.training`. The same function names
parameters in the IR lowering, so state_dict keys agree between backends.
"""

from __future__ import annotations

import builtins
import keyword

IMPORTS = frozenset({"torch", "nn", "F", "trt", "math", "annotations"})

# Public and private attributes of torch.nn.Module (torch 2.x) that an attribute must not
# shadow; kept here so that code generation never needs to import torch.
MODULE_ATTRS = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init",
    "children", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr",
    "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule",
    "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers", "named_children",
    "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule",
    "share_memory", "state_dict", "to", "to_empty", "train", "training", "type", "xpu",
    "zero_grad", "freeze", "freeze_skeleton", "frozen",
})

_BUILTINS = frozenset(dir(builtins))


def py_local(name: str) -> str:
    """A local variable, function or class name."""
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in _BUILTINS \
            or name in IMPORTS or name == "self" or name.startswith("__"):
        return name + "_"
    return name


def py_attr(name: str) -> str:
    """An attribute of a generated nn.Module (a layer, hyperparameter or parameter)."""
    if keyword.iskeyword(name) or name in MODULE_ATTRS or name.startswith("_") \
            or name in IMPORTS:
        return name + "_"
    return name
