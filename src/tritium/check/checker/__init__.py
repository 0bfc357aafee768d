"""The checker: names, config keys, types, the trit constraint and shapes, by abstract
interpretation of every `forward` over types with symbolic dims.

Each definition is checked once on its own, with its hyperparameters as symbolic values
(`channels` stays the dim `channels`). Each use of a block or layer with a concrete config is
then interpreted again with that config and the caller's input type; a problem found only
there is reported at the call site, pointing into the definition.
"""

from ..types import SymInt
from .core import Checker
from .model import (
    MAX_INSTANCE_DEPTH,
    MAX_UNROLL,
    Definition,
    KindInst,
    LayerInst,
    Scope,
    UserParam,
)

__all__ = ["MAX_INSTANCE_DEPTH", "MAX_UNROLL", "Checker", "Definition", "KindInst", "LayerInst",
           "Scope", "SymInt", "UserParam"]
