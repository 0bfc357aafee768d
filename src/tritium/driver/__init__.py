"""Pipeline orchestration: compile a .tri program through every stage, with a cache."""

from .compile import CompileError, CompileResult, compile_program, load_module

__all__ = ["CompileError", "CompileResult", "compile_program", "load_module"]
