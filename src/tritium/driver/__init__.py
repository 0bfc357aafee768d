"""Pipeline orchestration: compile a .tri program through the stages of `driver.stages`,
with a cache; the GPU stages (Triton source, AOT builds) are driven from here too."""

from .compile import CompileError, CompileResult, build_aot, compile_program, load_module
from .stages import STAGES, TARGETS

__all__ = ["STAGES", "TARGETS", "CompileError", "CompileResult", "build_aot", "compile_program",
           "load_module"]
