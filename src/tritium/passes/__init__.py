"""Passes over the Tritium IR, one module each, and the pass manager with -O0..-O3.

    from tritium.passes import run_opt, pipeline, PassManager
"""

from . import (  # noqa: F401  (importing a pass module registers it)
    bn_fold,
    canonicalize,
    constant_fold,
    cse,
    dce,
    fusion,
    quant_elim,
    shape_specialize,
    verify,
)
from .base import PASSES, Pass, apply_patterns, register
from .manager import (
    Fixpoint,
    PassError,
    PassManager,
    PassRecord,
    PassReport,
    parse_pass,
    parse_pipeline_spec,
    pipeline,
    pipeline_passes,
    run_opt,
)
from .shape_specialize import bindings_for

__all__ = [
    "PASSES", "Fixpoint", "Pass", "PassError", "PassManager", "PassRecord", "PassReport",
    "apply_patterns", "bindings_for", "parse_pass", "parse_pipeline_spec", "pipeline",
    "pipeline_passes", "register", "run_opt",
]
