"""`tritium run FILE.tri`: check, compile and execute a program's entry.

A program's entry is its top-level statements and `main { }` blocks (in source order); the
code generator writes them into one function of the generated module (`main`, or `_main`
when a definition is itself called `main`), which importing the module never runs. Without
such statements, a `fn main()` that takes no required arguments is the entry. `print` goes
to stdout.

The program is checked first (no torch imported: a program with errors costs no torch
import); torch is imported only to execute the generated module. A program that fails while
running gets one line naming the error and the `.tri` line it came from, never a Python
traceback.
"""

from __future__ import annotations

import sys
import traceback

from ..argcheck import path_arg
from ..frontend.diagnostics import Diagnostic
from .console import EXIT_FAIL, EXIT_OK, EXIT_USAGE, emit_diagnostics, exit_code

NO_ENTRY = "E0805"
RUNTIME_ERROR = "E0806"


def register(sub, formatter_class) -> None:
    """Add `run` to the `tritium` subcommands."""
    r = sub.add_parser("run", help="run a program's top-level statements (or `main { }`)",
                       formatter_class=formatter_class,
                       description="Check and compile a .tri program, then execute its "
                                   "top-level statements and `main { }` blocks in order "
                                   "(else a `fn main()` without arguments); `print` writes "
                                   "to stdout.",
                       epilog="examples:\n  tritium run hello.tri\n"
                              "  tritium run --no-cache script.tri")
    r.add_argument("file", metavar="FILE", type=path_arg("input-file"))
    r.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    r.add_argument("--error-format", choices=("human", "json"), default="human")
    r.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    return run_file(args.file, use_cache=not args.no_cache, error_format=args.error_format)


def find_entry(result) -> tuple[str | None, Diagnostic | None]:
    """The name of the generated function to call for the checked program `result`, or a
    diagnostic saying why there is none."""
    from ..backends.pytorch.codegen import entry_name
    from ..check.checker.model import has_entry

    program = result.program
    if has_entry(program):
        return entry_name(result), None
    d = result.definitions.get("main")
    if d is not None and d.kind == "fn" and d.file == program.file:
        required = [p.name for p in d.node.params if p.default is None]
        if not required:
            from ..frontend.names import py_local
            return py_local("main"), None
        return None, Diagnostic(NO_ENTRY, f"`fn main` takes arguments ({', '.join(required)}), "
                                          f"so `tritium run` cannot call it", d.node.span,
                                label="needs arguments",
                                help="give them defaults, or call `main(…)` from a top-level "
                                     "statement")
    return None, Diagnostic(NO_ENTRY, f"{program.file} has no statements to run", None,
                            help="add top-level statements (`print(…)`), a `main { … }` block "
                                 "or a `fn main()`; a model is trained with `tritium train`")


def run_file(path: str, *, use_cache: bool = True, error_format: str = "human") -> int:
    from ..argcheck import input_error
    from ..check import check_file

    bad = input_error(path)
    if bad is not None:
        from ..frontend.diagnostics import SourceMap
        emit_diagnostics([Diagnostic(*bad, None)], SourceMap(), error_format)
        return EXIT_USAGE
    checked = check_file(path)
    if not checked.ok or checked.program is None:
        emit_diagnostics(checked.diagnostics, checked.sources, error_format)
        return exit_code(checked.errors)
    entry, problem = find_entry(checked)
    if problem is not None:
        emit_diagnostics([*checked.diagnostics, problem], checked.sources, error_format)
        return EXIT_FAIL
    if checked.diagnostics:   # warnings
        emit_diagnostics(checked.diagnostics, checked.sources, error_format)
    from .compile import CompileError, compile_program
    try:
        # annotated: a `# line N:` comment above each statement maps a failure to its line
        result = compile_program(path, use_cache=use_cache, annotate=True)
        module = result.module           # imports torch, executes the definitions only
    except CompileError as err:
        emit_diagnostics(err.diagnostics, checked.sources, error_format)
        return exit_code(err.diagnostics)
    fn = getattr(module, entry, None)
    if not callable(fn):   # the generated module and the checked program disagree
        emit_diagnostics([Diagnostic("E0021", f"the generated module has no `{entry}`", None)],
                         checked.sources, error_format)
        return EXIT_FAIL
    try:
        fn()
        sys.stdout.flush()
    except KeyboardInterrupt:
        raise
    except RecursionError:
        return _failed("the program recursed too deeply", None, checked, error_format)
    except Exception as exc:   # the program's own failure at run time (a shape, a value)
        span = _tri_span(exc, entry, result.python, checked)
        return _failed(f"{type(exc).__name__}: {_one_line(str(exc))}", span, checked,
                       error_format)
    return EXIT_OK


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _failed(message: str, span, checked, error_format: str) -> int:
    """One diagnostic for a failure while running, at the `.tri` statement that raised it
    when known."""
    emit_diagnostics([Diagnostic(RUNTIME_ERROR, f"the program failed while running: {message}",
                                 span, label="failed here" if span else "")],
                     checked.sources, error_format)
    return EXIT_FAIL


def _tri_span(exc: BaseException, entry: str, python: str, checked):
    """The `.tri` line of the entry statement that raised `exc`: the entry's frame in the
    generated module (compiled with `annotate`, so a `# line N:` comment stands above every
    generated statement)."""
    from ..frontend.diagnostics import Span

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith("<generated from ") and f.name == entry]
    if not frames or frames[-1].lineno is None:
        return None
    lines = python.splitlines()
    for i in range(min(frames[-1].lineno, len(lines)) - 1, -1, -1):
        text = lines[i].strip()
        if text.startswith("# line "):
            n = text[len("# line "):].split(":", 1)[0]
            if n.isdigit():
                src = checked.sources.line(checked.program.file, int(n))
                width = len(src) if src else 1
                return Span(checked.program.file, int(n), 1, int(n), width + 1)
            return None
        if text.startswith("def "):
            return None
    return None
