"""`tritium opt FILE.ir`: the pass pipeline on textual IR, as `mlir-opt` runs MLIR's.

The golden tests' RUN lines are commands of this form (tests/golden), e.g.

    tritium opt %s --split-input-file --passes canonicalize,dce | filecheck %s

Importing this module is cheap; the command imports the IR and the passes when it runs.
"""

from __future__ import annotations

import sys

from ..argcheck import path_arg
from .console import EXIT_FAIL, EXIT_OK, EXIT_USAGE, emit_diagnostics, input_diagnostic, usage_error


def register(sub, formatter_class) -> None:
    """Add `opt` to the `tritium` subcommands."""
    op = sub.add_parser("opt", help="run IR passes on a textual IR file",
                        formatter_class=formatter_class,
                        description="Parse and verify textual Tritium IR (as `tritium compile "
                                    "--emit ir` prints it), run passes or a pipeline, verify "
                                    "after each pass and print the result.",
                        epilog="examples:\n  tritium opt model.ir --passes canonicalize,dce\n"
                               "  tritium opt model.ir --passes 'constant-fold{max_elements=4}'\n"
                               "  tritium opt model.ir -O3\n"
                               "  tritium opt model.ir --pipeline 'O3{batch=1}'\n"
                               "  tritium opt model.ir              # parse and verify only")
    op.add_argument("file", metavar="FILE", type=path_arg("input-file"))
    op.add_argument("--passes", default=None, metavar="PASSES",
                    help="comma-separated passes, each optionally with {key=value,...}")
    for level in range(4):
        op.add_argument(f"-O{level}", dest="opt", action="store_const", const=level,
                        help=f"the -O{level} pipeline")
    op.set_defaults(opt=None)
    op.add_argument("--pipeline", default=None, metavar="SPEC",
                    help="a pipeline with shape bindings, e.g. 'O3{batch=1}'")
    op.add_argument("--split-input-file", action="store_true",
                    help="treat each part between `// -----` lines as its own input (as "
                         "mlir-opt does); outputs are separated the same way")
    op.add_argument("-o", "--output", default=None, type=path_arg("output"),
                    help="write the IR to this file instead of stdout (nothing is written "
                         "when an input has an error)")
    op.set_defaults(func=cmd_opt)


def cmd_opt(args) -> int:
    """`tritium opt FILE.ir --passes a,b{k=v}` / `-O2` / `--pipeline 'O3{batch=1}'`: parse
    textual IR, verify it, run the passes (verifying after each) and print the result."""
    import re

    from ..argcheck import ArgError, check_output_file, quote, show_path
    from ..frontend.diagnostics import DiagnosticError, SourceMap
    from ..frontend.source import read_source
    from ..ir import ParseError, VerifyError
    from ..passes import PassError, run_opt

    if args.passes is not None and (args.opt is not None or args.pipeline is not None) or (
            args.opt is not None and args.pipeline is not None):
        return usage_error("give one of --passes, -O0..-O3 and --pipeline")
    for flag, value in (("--passes", args.passes), ("--pipeline", args.pipeline)):
        if value is not None and (not value.strip() or len(value) > 1000 or any(
                ord(c) < 32 or ord(c) == 0x7F for c in value)):
            return usage_error(f"{flag}: {quote(value)} is not a list of passes")
    try:
        out_path = None if args.output is None else check_output_file(args.output, "-o")
    except ArgError as exc:
        return usage_error(exc.message)
    bad = input_diagnostic(args.file)
    if bad is not None:
        emit_diagnostics([bad], SourceMap(), "human")
        return EXIT_USAGE
    try:
        text = read_source(args.file).text
    except DiagnosticError as err:
        emit_diagnostics(err.diagnostics, SourceMap(), "human")
        return EXIT_USAGE
    pipeline = args.pipeline if args.pipeline is not None else (
        f"O{args.opt}" if args.opt is not None else None)
    passes = (args.passes if args.passes is not None else []) if pipeline is None else None
    try:            # the passes and options first, on no IR: their errors are usage errors
        run_opt("", passes, pipeline)
    except ValueError as exc:
        flag, value = ("--pipeline", args.pipeline) if args.pipeline is not None else (
            "--passes", args.passes)
        message = str(exc)
        if len(message) > 300 or any(ord(c) < 32 for c in message):
            message = f"{quote(value)} is not a list of known passes"
        return usage_error(f"{flag}: {message}")
    chunks, starts, line = [], [], 1
    for part in (re.split(r"(?m)^// -----[ \t]*\n?", text) if args.split_input_file else [text]):
        chunks.append(part)
        starts.append(line - 1)
        line += part.count("\n") + 1
    outs: list[str] = []
    errors: list[str | None] = []
    for chunk, offset in zip(chunks, starts):
        error = None
        try:
            outs.append(run_opt(chunk, passes, pipeline))
        except ParseError as exc:
            error = f"{args.file}:{exc.line + offset}:{exc.col}: error: {exc.msg}"
        except (VerifyError, PassError, ValueError) as exc:   # the passes were checked above
            error = f"{args.file}: error: {exc}"
        if error is not None:
            outs.append("")
        errors.append(error)
    text_out = "// -----\n".join(o for o, e in zip(outs, errors) if e is None)
    if out_path is not None and not any(errors):
        from ..argcheck import write_output
        try:
            write_output(out_path, text_out)
        except OSError as exc:
            return usage_error(f"-o {show_path(args.output)}: cannot write: "
                               f"{exc.strerror or exc}")
        return EXIT_OK
    for k, (o, e) in enumerate(zip(outs, errors)):      # errors in place, on stderr
        if out_path is None and k:
            sys.stdout.write("// -----\n")
        if e is None:
            if out_path is None:
                sys.stdout.write(o)
        else:
            sys.stdout.flush()
            print(e, file=sys.stderr)
    return EXIT_FAIL if any(errors) else EXIT_OK


