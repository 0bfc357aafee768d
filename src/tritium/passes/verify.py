"""`verify`: run the verifier; changes nothing (the whole -O0 pipeline)."""

from __future__ import annotations

from ..ir.core import Module
from ..ir.verifier import verify
from .base import Pass, register


@register
class VerifyPass(Pass):
    name = "verify"

    def run(self, module: Module) -> bool:
        verify(module)
        return False
