"""Mapping .tri identifiers to Python identifiers that cannot collide or inject.

A program's names reach generated Python only through `py_local` (local variables,
functions, classes, keyword arguments) and `py_attr` (attributes of a generated
`nn.Module`). Both accept only plain names (`is_name`: ASCII `[A-Za-z_][A-Za-z0-9_]*`, not
starting with `__`, not `_` alone; the checker reports E0311 for anything else) and raise `BadName` on
anything else, so no text from a program can become code.

The mapping is injective by construction: a name that is *reserved* in its namespace, or
that ends with `_`, gets one more trailing `_`; every other name is kept. Kept names never
end with `_` and escaped names always do, and appending `_` is injective, so two different
names never meet (`training` and `training_` become `training_` and `training__`). Reserved
are: Python keywords and soft keywords, builtins, the generated code's imports, `self`, and
names starting with `_` (for locals); keywords, the attributes of `torch.nn.Module`, the
`tritium_` attributes the code generator writes itself, and names starting with `_` (for
attributes). No escaped name is itself reserved (tests/unit/frontend/test_names.py checks
this against torch), and names that the code generator invents for itself are taken from a
namespace no program name maps into: `internal(...)` names start with one `_` and do not
end with `_`, while a program name starting with `_` always maps to one ending with `_`.
The IR lowering and the driver use the same functions, so state_dict keys agree.
"""

from __future__ import annotations

import builtins
import keyword
import re

IMPORTS = frozenset({"torch", "nn", "F", "trt", "math", "annotations"})

# Public and private attributes of torch.nn.Module (torch 2.x) that an attribute must not
# shadow; kept here so that code generation never needs to import torch. A test compares it
# with the installed torch.
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

# Attributes the code generator itself writes on a generated module (read by the runtime).
GENERATED_ATTR_PREFIX = "tritium_"

_BUILTINS = frozenset(dir(builtins))
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_name(name: object) -> bool:
    """A name a program may use for anything that reaches generated code."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None \
        and not name.startswith("__") and name != "_"


class BadName(ValueError):
    """A name that cannot reach generated code (the checker reports it as E0311)."""


def _check(name: object) -> str:
    if not is_name(name):
        raise BadName(f"not a plain name: {name!r}")
    return name  # type: ignore[return-value]


def local_reserved(name: str) -> bool:
    return keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in _BUILTINS \
        or name in IMPORTS or name == "self" or name.startswith("_")


def attr_reserved(name: str) -> bool:
    return keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in MODULE_ATTRS \
        or name in IMPORTS or name.startswith(("_", GENERATED_ATTR_PREFIX))


def py_local(name: str) -> str:
    """A local variable, function, class or keyword-argument name."""
    _check(name)
    return name + "_" if local_reserved(name) or name.endswith("_") else name


def class_name(name: str) -> str | None:
    """The generated Python name of definition `name` for looking it up in a loaded module
    (an entry named on the command line or in a checkpoint), None when no definition can
    have that name."""
    return py_local(name) if is_name(name) else None


def py_attr(name: str) -> str:
    """An attribute of a generated nn.Module (a layer, hyperparameter or parameter)."""
    _check(name)
    return name + "_" if attr_reserved(name) or name.endswith("_") else name


INTERNAL_BASES = ("c", "i", "q", "f")   # "f": a layer function called by name


def internal(base: str, name: str = "") -> str:
    """A name the code generator needs for itself: `_i` (a loop variable), `_c` (a lambda
    parameter), `_W_q` (the quantized view of parameter `W`). It starts with one `_` and does
    not end with `_`, which no program name maps to, and it is injective: `_X_q` for a name
    without a leading `_`, `_X_qu` for `_X`: the last letters differ."""
    if base not in INTERNAL_BASES:
        raise BadName(f"unknown internal name base {base!r}")
    if not name:
        return f"_{base}"
    _check(name)
    if not name.startswith("_"):
        return f"_{name}_{base}"
    return f"_{name[1:]}_{base}u"
