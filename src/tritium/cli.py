"""The one entry point: `tritium check|fmt|…`.

Exit codes: 0 success, 1 the program or data is wrong, 2 usage error (bad flags, missing or
unreadable files). A mistake in a program or a command line never shows a Python traceback.
The compiler commands must not import torch; the commands that run models import it lazily.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .argcheck import number, path_arg, quote
from .driver.console import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    USAGE_CODES,
    emit_diagnostics,
    exit_code,
    parse_sets,
    usage_error,
)
from .driver.stages import GPU_STAGES, STAGES, TARGETS

_USAGE_CODES = USAGE_CODES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage errors exit with 2, as we want
        # one line: what is wrong, and where the options are described
        import re
        message = " ".join(message.split("\n"))
        message = re.sub(r"'([^']{60,})'", lambda m: repr(m.group(1)[:40] + "…"), message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _input_diagnostics(paths: list[str]) -> dict[str, list]:
    """The usage diagnostic of each input path that is not a readable regular file."""
    from .driver.console import input_diagnostic

    out: dict[str, list] = {}
    for path in paths:
        d = input_diagnostic(path)
        if d is not None:
            out[path] = [d]
    return out


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _summary_line(n_err: int, n_warn: int, what: str) -> str:
    parts = []
    if n_err:
        parts.append(f"{n_err} error{'s' if n_err != 1 else ''}")
    if n_warn:
        parts.append(f"{n_warn} warning{'s' if n_warn != 1 else ''}")
    return f"{what}: " + ", ".join(parts)


# ----------------------------------------------------------------------------- check

def cmd_check(args) -> int:
    from .check import check_file

    worst = EXIT_OK
    total_err = total_warn = 0
    bad = _input_diagnostics(args.files)
    for path in args.files:
        if path in bad:
            from .frontend.diagnostics import SourceMap
            emit_diagnostics(bad[path], SourceMap(), args.error_format)
            total_err += 1
            worst = max(worst, EXIT_USAGE)
            continue
        result = check_file(path)
        diags = result.diagnostics
        if args.deny_warnings:
            from .frontend.diagnostics import Severity
            for d in diags:
                if d.severity is Severity.WARNING:
                    d.severity = Severity.ERROR
        emit_diagnostics(diags, result.sources, args.error_format)
        errs = [d for d in diags if d.is_error]
        total_err += len(errs)
        total_warn += len(diags) - len(errs)
        if result.program is None and errs and errs[0].code in _USAGE_CODES:
            worst = max(worst, EXIT_USAGE)
        elif errs:
            worst = max(worst, EXIT_FAIL)
        elif args.error_format != "json" and not args.quiet:
            extra = f" ({len(diags)} warning{'s' if len(diags) != 1 else ''})" if diags else ""
            print(f"{path}: ok{extra}")
    if args.error_format != "json" and (total_err or total_warn) and len(args.files) > 1:
        print(_summary_line(total_err, total_warn, "total"), file=sys.stderr)
    return worst


def cmd_fmt(args) -> int:
    from .frontend.diagnostics import DiagnosticError
    from .frontend.formatter import format_source
    from .frontend.source import read_source

    worst = EXIT_OK
    bad = _input_diagnostics(args.files)
    for path in args.files:
        if path in bad:
            from .frontend.diagnostics import SourceMap
            emit_diagnostics(bad[path], SourceMap(), args.error_format)
            worst = max(worst, EXIT_USAGE)
            continue
        try:
            src = read_source(path)
            out = format_source(src.text, src.name)
        except DiagnosticError as err:
            emit_diagnostics(err.diagnostics, _sources_for(path), args.error_format)
            code = err.diagnostics[0].code if err.diagnostics else ""
            worst = max(worst, EXIT_USAGE if code in _USAGE_CODES else EXIT_FAIL)
            continue
        if args.check:
            if out != src.text:
                print(f"{path}: would reformat", file=sys.stderr)
                worst = max(worst, EXIT_FAIL)
        elif args.write:
            if out != src.text:
                import stat

                from .argcheck import write_output
                try:   # the file keeps its permissions
                    write_output(path, out, mode=stat.S_IMODE(os.stat(path).st_mode))
                except OSError as exc:
                    from .argcheck import show_path
                    worst = max(worst, usage_error(
                        f"cannot rewrite {show_path(path)}: {exc.strerror or exc}"))
                    continue
                print(f"reformatted {path}")
        else:
            sys.stdout.write(out)
    return worst


def _sources_for(path):
    from .frontend.diagnostics import SourceMap
    from .frontend.source import read_source

    sm = SourceMap()
    try:
        src = read_source(path)
        sm.add(src.name, src.text)
    except Exception:  # noqa: BLE001 - the diagnostic already explains the file problem
        pass
    return sm


def cmd_summary(args) -> int:
    import json

    from .argcheck import ArgError, check_name
    from .check import check_file
    from .check.summary import (
        MissingHyperparameters,
        pick_definition,
        render_summary,
        summarize_definition,
        summary_diagnostics,
    )

    try:
        hyper = parse_sets(args.set)
        check_name(args.model, "--model")
    except ArgError as exc:
        return usage_error(exc.message)
    bad = _input_diagnostics([args.file])
    if bad:
        from .frontend.diagnostics import SourceMap
        emit_diagnostics(bad[args.file], SourceMap(), "human")
        return EXIT_USAGE
    result = check_file(args.file)
    errs = [d for d in result.diagnostics if d.is_error]
    if errs:
        emit_diagnostics(errs, result.sources, "human")
        return EXIT_USAGE if result.program is None and errs[0].code in _USAGE_CODES else EXIT_FAIL
    d = pick_definition(result, args.model)
    if d is None:
        emit_diagnostics(summary_diagnostics(result, args.model), result.sources, "human")
        return EXIT_USAGE
    try:
        s = summarize_definition(result, d, hyper, args.format)
    except MissingHyperparameters as exc:
        return usage_error(str(exc))
    if args.json:
        print(json.dumps(s.to_json(), indent=2))
    else:
        render_summary(s)
    return EXIT_OK


def _compile_one(job: tuple) -> tuple[int, str, str, list]:
    """Compile one file through the driver's stages and print or write one of them (runs in
    a worker process with -j). Returns (exit code, stdout text, stderr message, diagnostics)."""
    path, opt, emit, target, no_cache, output, annotate = job
    from .driver.compile import CompileError, build_aot, compile_program
    from .driver.stages import AOT_STAGES

    try:
        result = compile_program(path, opt_level=opt, target=target, use_cache=not no_cache,
                                 stages=["ir-opt" if emit in AOT_STAGES else emit],
                                 annotate=annotate)
        if emit in AOT_STAGES:
            build = build_aot(result, target, use_cache=not no_cache)
            if not build.kernels:
                return EXIT_OK, "", f"{path}: no ternary kernels to compile", result.warnings
            if emit == "cubin":
                return EXIT_OK, _write_cubins(path, build, output), "", result.warnings
            text = build.dump(emit)
        else:
            text = result.stage(emit)
        if output is not None:
            from .argcheck import write_output
            try:
                write_output(output, text)
            except OSError as exc:
                from .argcheck import show_path
                return (EXIT_USAGE, "", f"tritium: error: -o {show_path(output)}: cannot "
                        f"write: {exc.strerror or exc}", [])
            text = ""
        return EXIT_OK, text, "", result.warnings
    except CompileError as err:
        return exit_code(err.diagnostics), "", "", [(err.diagnostics, err.sources)]


def _write_cubins(path: str, build, output: str) -> str:
    """Write every kernel's cubin under the directory `output`; one line per file."""
    from .argcheck import write_output

    lines = []
    for k in build.kernels:
        dest = Path(output) / f"{Path(path).stem}.{k.name}.{k.key[:10]}.cubin"
        write_output(dest, bytes(k.stages["cubin"]))
        lines.append(f"{dest}  {k.label()}\n")
    return "".join(lines)


_FRONT_EMITS = ("tokens", "ast", "check", "ir", "ir-opt")
_GPU_EMITS = GPU_STAGES
_GPU_EXT = {"triton": ".triton.py", "ttir": ".ttir", "ttgir": ".ttgir", "llir": ".ll",
            "ptx": ".ptx"}


def _check_target_emit(args) -> str | None:
    """Fill in the target's default `--emit`; a message when target and stage do not match."""
    if args.emit is None:
        args.emit = {"pytorch": "py", "triton": "triton"}.get(args.target, "ptx")
    if args.emit in _FRONT_EMITS:
        return None
    if args.target == "pytorch" and args.emit != "py":
        need = "triton" if args.emit == "triton" else "cuda:sm_80|cuda:sm_90"
        return f"`--emit {args.emit}` needs `--target {need}`"
    if args.target == "triton" and args.emit != "triton":
        return (f"`--target triton` emits Triton source (`--emit triton`); `--emit {args.emit}` "
                "needs `--target cuda:sm_80|cuda:sm_90`")
    if args.target.startswith("cuda:") and args.emit not in _GPU_EMITS:
        return f"`--target {args.target}` emits {', '.join(_GPU_EMITS)}, not `{args.emit}`"
    if args.emit == "cubin" and not args.output:
        return "`--emit cubin` writes binary files: give an output directory with -o DIR"
    return None


_OUT_EXT = {"py": ".py", "ir": ".ir", "ir-opt": ".opt.ir", "tokens": ".tokens", "ast": ".ast",
            "check": ".check.txt", **_GPU_EXT, "cubin": ".cubin"}
_FILE_SUFFIXES = {".py", ".ir", ".tokens", ".ast", ".ptx", ".ll", ".ttir", ".ttgir", ".cubin",
                  ".tri", ".txt"}


def _compile_output(args) -> tuple[str, Path] | None:
    """Where `compile` writes, checked before anything is compiled: None (stdout),
    ("file", PATH) or ("dir", PATH). One input and `-o NAME` write the file NAME, unless NAME
    is an existing directory or ends in `/`; several inputs (or `--emit cubin`) need `-o` to
    be a directory, and a name that looks like a file (`one.py`) is refused rather than
    created as a directory."""
    from .argcheck import ArgError, check_output_dir, check_output_file, show_path

    text = args.output
    if text is None:
        return None
    several = len(args.files) > 1 or args.emit == "cubin"
    is_dir = os.path.isdir(text)
    if several or is_dir or text.endswith("/"):
        if several and not is_dir and Path(text).suffix.lower() in _FILE_SUFFIXES:
            why = f"{len(args.files)} inputs" if len(args.files) > 1 else "`--emit cubin`"
            raise ArgError(f"-o {show_path(text)}: {why} are written to a directory and "
                           f"`{Path(text).name}` looks like a file name; give a directory, "
                           "e.g. -o build/")
        return "dir", check_output_dir(text, "-o")
    out = check_output_file(text, "-o")
    for f in args.files:
        try:
            same = os.path.exists(text) and os.path.samefile(f, text)
        except OSError:
            same = False
        if same:
            raise ArgError(f"-o {show_path(text)} is the input file {show_path(f)}; writing "
                           "there would overwrite the program")
    return "file", out


def _readable_inputs(args) -> tuple[list[str], int]:
    """The inputs that are readable files; the others get their usage diagnostic (exit 2)."""
    bad = _input_diagnostics(args.files)
    if not bad:
        return list(args.files), EXIT_OK
    from .frontend.diagnostics import SourceMap
    for path in args.files:
        if path in bad:
            emit_diagnostics(bad[path], SourceMap(), args.error_format)
    return [f for f in args.files if f not in bad], EXIT_USAGE


def cmd_compile(args) -> int:
    import os

    from .argcheck import ArgError

    problem = _check_target_emit(args)
    if problem is not None:
        print(f"tritium: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        args.out_where = _compile_output(args)
    except ArgError as exc:
        return usage_error(exc.message)
    if args.opt is None:
        args.opt = 2
    elif args.emit == "py":
        print(f"tritium: note: -O{args.opt} does not change `--emit py`: the PyTorch module is "
              "generated from the checked program, and -O0..-O3 optimize the IR stages "
              "(ir-opt, triton, ptx, cubin); every level gives the same source", file=sys.stderr)
    if args.annotate and args.emit != "py":
        return usage_error("--annotate applies to the generated PyTorch source (`--emit py`)")
    if args.annotate:
        from .driver.stages import codegen_annotates
        if not codegen_annotates():
            return usage_error("--annotate needs a PyTorch code generator with per-statement "
                               "source echoes, which this installation does not have")
    files, worst = _readable_inputs(args)
    outputs: list[str | None] = [None] * len(files)
    if args.out_where is not None:
        kind, where = args.out_where
        if kind == "file":
            outputs = [str(where)]
        else:
            where.mkdir(parents=True, exist_ok=True)
            outputs = [str(where) if args.emit == "cubin" else
                       str(where / (Path(f).stem + _OUT_EXT[args.emit])) for f in files]
    if not files:
        return worst
    if args.print_ir_after_all:
        from .driver.compile import CompileError, compile_program

        def dump(name: str, text: str) -> None:
            print(f"// -----// IR Dump After {name} //----- //\n{text}", file=sys.stderr)
        try:
            compile_program(files[0], opt_level=args.opt, use_cache=False, stages=["ir-opt"],
                            print_ir_after_all=dump)
        except CompileError as err:
            emit_diagnostics(err.diagnostics, err.sources, args.error_format)
            return exit_code(err.diagnostics)
    jobs = [(f, args.opt, args.emit, args.target, args.no_cache, o, args.annotate)
            for f, o in zip(files, outputs)]
    if args.jobs > 1 and len(jobs) > 1 and args.emit not in _GPU_EMITS:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=min(args.jobs, os.cpu_count() or 1,
                                                 len(jobs))) as pool:
            results = list(pool.map(_compile_one, jobs))
    else:
        results = [_compile_one(j) for j in jobs]
    for code, text, message, diags in results:
        if text:
            sys.stdout.write(text)
        if message:
            print(message, file=sys.stderr)
        for item in diags:
            if isinstance(item, tuple):
                emit_diagnostics(item[0], item[1], args.error_format)
        worst = max(worst, code)
    return worst


CACHE_AREAS = ("compile", "kernels", "triton", "tune")


def _cache_area(text: str) -> str:
    if text not in CACHE_AREAS:
        raise argparse.ArgumentTypeError(
            f"unknown cache area {text!r} (choose from {', '.join(CACHE_AREAS)})")
    return text


def _dir_usage(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path`` (0, 0 when it does not exist); links are not followed."""
    files = size = 0
    if path.is_dir():
        for p in path.rglob("*"):
            try:
                st = p.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return files, size


def _archive_summary() -> str:
    """The tuning archive in one line: where, how big, how many studies."""
    from .tune.archive import Archive, ArchiveError, default_db_path, default_url

    path = default_db_path()
    if path is not None and not path.is_file():
        return f"{path} (none yet)"
    where = str(path) if path is not None else default_url()
    try:
        ar = Archive(default_url())
        try:
            studies = ar.find_studies()
        finally:
            ar.close()
    except (ArchiveError, ImportError, OSError) as exc:
        return f"{where} (unreadable: {exc})"
    size = f", {path.stat().st_size:,} bytes" if path is not None else ""
    # kernel names come from the archive (untrusted): never a control character raw
    kernels_ = sorted({k if isinstance(k, str) and k.isprintable() and len(k) <= 128
                       else quote(k) for k in (s["kernel"] for s in studies)})
    return (f"{where}: {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}{size}"
            + (f" ({', '.join(kernels_)})" if kernels_ else ""))


def _clear_area(area: str) -> str:
    from .cachedir import cache_root

    if area == "compile":
        from .compile_cache import CompileCache

        cache = CompileCache()
        n = cache.clear()
        return f"removed {n} compile cache entr{'y' if n == 1 else 'ies'} from {cache.root}"
    if area == "tune":
        from .cachedir import tuned_configs_path
        from .tune.archive import default_db_path, default_url

        records = tuned_configs_path()   # the winners the runtime reads go with the archive
        if records.is_file() or records.is_symlink():
            records.unlink()
        path = default_db_path()
        if path is None:
            return (f"left the tuning archive at {default_url()} alone: it is not a local file "
                    "(drop its tables with the database's own tools)")
        removed = 0
        for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed += 1
        return (f"removed the tuning archive {path}" if removed
                else f"no tuning archive at {path}")
    root = cache_root() / area
    files, size = _dir_usage(root)
    if root.is_dir():
        shutil.rmtree(root)
    what = "kernel binaries" if area == "kernels" else "generated Triton sources"
    return f"removed {files} file(s) of {what} ({size:,} bytes) from {root}"


def cmd_cache(args) -> int:
    from .cachedir import cache_root
    from .compile_cache import CompileCache

    if args.action == "clear":
        for area in args.areas or CACHE_AREAS:
            print(_clear_area(area))
        return EXIT_OK
    if args.areas:
        print("tritium cache: error: `info` takes no areas (they name what `clear` removes)",
              file=sys.stderr)
        return EXIT_USAGE
    st = CompileCache().stats()
    print(f"cache root: {cache_root()} (TRITIUM_CACHE_DIR)")
    print(f"compile cache: {st.path}")
    print(f"  entries: {st.entries}")
    print(f"  size:    {st.bytes:,} bytes (cap {st.max_bytes:,}; TRITIUM_CACHE_MAX_BYTES)")
    for area, what in (("kernels", "kernel binaries"), ("triton", "Triton sources")):
        files, size = _dir_usage(cache_root() / area)
        print(f"{what}: {cache_root() / area}: {files} file(s), {size:,} bytes")
    print(f"tuning archive: {_archive_summary()}")
    from .tune.dispatch import enabled

    print("  tuned configs at run time: "
          + ("on (exact shapes of this machine only; TRITIUM_TUNED_CONFIGS=0 turns them off)"
             if enabled() else "off (TRITIUM_TUNED_CONFIGS)"))
    return EXIT_OK


_PROFILED = ("py", "ir", "ir-opt")


def cmd_profile(args) -> int:
    import cProfile
    import io
    import pstats
    import time
    import tracemalloc

    from .driver.compile import CompileError, compile_program

    bad = _input_diagnostics([args.file])
    if bad:
        from .frontend.diagnostics import SourceMap
        emit_diagnostics(bad[args.file], SourceMap(), "human")
        return EXIT_USAGE
    # A first compile in this process pays for importing the compiler's modules (and
    # one-time set-up): measured apart, so that the headline and the profile below are
    # the compile itself.
    before = len(sys.modules)
    t = time.perf_counter()
    try:
        compile_program(args.file, opt_level=args.opt, use_cache=False,
                        stages=_PROFILED)
    except CompileError as err:
        emit_diagnostics(err.diagnostics, err.sources, "human")
        return EXIT_FAIL
    first = time.perf_counter() - t
    imported = len(sys.modules) - before
    tracemalloc.start()
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    result = compile_program(args.file, opt_level=args.opt, use_cache=False,
                        stages=_PROFILED)
    prof.disable()
    total = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{args.file}: compiled at -O{args.opt} in {total * 1000:.1f} ms, "
          f"peak traced memory {peak / 1e6:.1f} MB")
    print(f"  (the first compile in this process took {first * 1000:.1f} ms: "
          f"{max(0.0, first - total) * 1000:.1f} ms more, for importing {imported} modules "
          "and one-time set-up; not in the figures below)")
    print("stage            ms")
    for stage, secs in result.timings.items():
        print(f"  {stage:<14} {secs * 1000:8.2f}")
    if result.pass_report:
        print(result.pass_report)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(args.top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    print(f"top {args.top} functions by cumulative time:")
    print("\n".join(lines[start:start + args.top + 1]))
    return EXIT_OK


# ----------------------------------------------------------------------------- parser

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tritium", formatter_class=_formatter,
                description="Tritium: a compiler and runtime for ternary neural networks.",
                epilog="examples:\n"
                       "  tritium train examples/mlp.tri --out runs/mlp\n"
                       "  tritium check examples/*.tri\n"
                       "  tritium compile examples/resnet18.tri --emit ir-opt -O3\n"
                       "  tritium summary examples/resnet18.tri\n"
                       "  tritium tune --kernel cpu.linear --shape 1,4096,4096\n\n"
                       "Run `tritium COMMAND --help` for the options of one command.")
    p.add_argument("--version", action="version", version=f"tritium {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser("check", help="check .tri files for errors", formatter_class=_formatter,
                       description="Check types, shapes, config keys and the ternary constraint.",
                       epilog="examples:\n  tritium check examples/mlp.tri\n"
                              "  tritium check --error-format json examples/*.tri\n"
                              "  tritium check -D warnings model.tri   # warnings fail too")
    c.add_argument("files", nargs="+", metavar="FILE", type=path_arg("input-file"))
    c.add_argument("--error-format", choices=("human", "json"), default="human",
                   help="human-readable (default) or one JSON object per line on stdout")
    c.add_argument("-D", dest="deny", choices=("warnings",), default=None,
                   help="`-D warnings` turns warnings into errors")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing for clean files")
    c.set_defaults(func=cmd_check)

    f = sub.add_parser("fmt", help="format .tri files canonically", formatter_class=_formatter,
                       description="Print each file in the one canonical layout (like gofmt).",
                       epilog="examples:\n  tritium fmt model.tri            # print formatted\n"
                              "  tritium fmt --write examples/*.tri\n"
                              "  tritium fmt --check examples/*.tri  # exit 1 if any would change")
    f.add_argument("files", nargs="+", metavar="FILE", type=path_arg("input-file"))
    mode = f.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is not formatted")
    mode.add_argument("-w", "--write", action="store_true", help="rewrite the files in place")
    f.add_argument("--error-format", choices=("human", "json"), default="human")
    f.set_defaults(func=cmd_fmt)

    s = sub.add_parser("summary", help="per-layer shapes, parameters by bit width and sizes",
                       formatter_class=_formatter,
                       description="Summarize a model statically: output shape per layer, "
                                   "parameters by bit width, MACs (and their ternary share), "
                                   "packed in-memory, checkpoint and fp32 sizes.",
                       epilog="examples:\n  tritium summary examples/resnet18.tri\n"
                              "  tritium summary examples/resnet18.tri --model BasicBlock "
                              "--set c_in=64 --set c_out=128\n"
                              "  tritium summary examples/mlp.tri --json")
    s.add_argument("file", metavar="FILE", type=path_arg("input-file"))
    s.add_argument("--model", default=None, help="the model, block or layer to summarize")
    s.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter of the block or layer (repeatable)")
    s.add_argument("--format", choices=("t2", "t1.6"), default="t2",
                   help="ternary packing of the in-memory size (default t2; a layer's own "
                        "`format:` key wins)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_summary)

    co = sub.add_parser("compile", help="compile .tri files to PyTorch (or dump a stage)",
                        formatter_class=_formatter,
                        description="Run the stages the requested one needs (tokens, ast, check, py, "
                                    "ir, ir-opt, triton … cubin); print or write it.",
                        epilog="examples:\n  tritium compile examples/mlp.tri -o mlp.py\n"
                               "  tritium compile examples/resnet18.tri --emit ir-opt -O3\n"
                               "  tritium compile examples/*.tri -o build/ -j 2\n"
                               "  tritium compile model.tri --emit ir --print-ir-after-all\n"
                               "  tritium compile examples/mlp.tri --target triton --emit triton\n"
                               "  tritium compile examples/resnet18.tri --target cuda:sm_90 "
                               "--emit ptx\n"
                               "  tritium compile examples/mlp.tri --target cuda:sm_80 "
                               "--emit cubin -o build/")
    co.add_argument("files", nargs="+", metavar="FILE", type=path_arg("input-file"))
    co.add_argument("-o", "--output", default=None, type=path_arg("output"),
                    help="output file (one input) or directory (several inputs)")
    for level in range(4):
        co.add_argument(f"-O{level}", dest="opt", action="store_const", const=level,
                        help=f"optimization level {level} of the IR stages" +
                        (" (default)" if level == 2 else ""))
    co.set_defaults(opt=None)
    co.add_argument("--emit", choices=tuple(STAGES),
                    default=None,
                    help="the stage to output (default: py for pytorch, triton for triton, "
                         "ptx for cuda:*)")
    co.add_argument("--target", choices=TARGETS,
                    default="pytorch",
                    help="pytorch (nn.Module source), triton (kernel source) or a CUDA "
                         "architecture for ahead-of-time kernel builds")
    co.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    co.add_argument("--annotate", action="store_true",
                    help="echo every .tri statement as a comment above its generated Python "
                         "(--emit py)")
    co.add_argument("--print-ir-after-all", action="store_true",
                    help="print the IR after every pass to stderr")
    co.add_argument("-j", "--jobs", type=number("jobs"), default=1,
                    help="compile files in N processes")
    co.add_argument("--error-format", choices=("human", "json"), default="human")
    co.set_defaults(func=cmd_compile)

    ca = sub.add_parser("cache", help="show or clear the caches and the tuning archive",
                        formatter_class=_formatter,
                        epilog="examples:\n  tritium cache info\n  tritium cache clear\n"
                               "  tritium cache clear compile kernels   # keep the tuning archive")
    ca.add_argument("action", choices=("info", "clear"))
    ca.add_argument("areas", nargs="*", default=[], type=_cache_area, metavar="AREA",
                    help=f"with clear: only these areas ({', '.join(CACHE_AREAS)}; "
                         "default: all of them)")
    ca.set_defaults(func=cmd_cache)

    pr = sub.add_parser("profile", help="time and measure every compile stage",
                        formatter_class=_formatter,
                        epilog="examples:\n  tritium profile examples/resnet18.tri\n"
                               "  tritium profile examples/mlp.tri -O3 --top 30")
    pr.add_argument("file", metavar="FILE", type=path_arg("input-file"))
    for level in range(4):
        pr.add_argument(f"-O{level}", dest="opt", action="store_const", const=level)
    pr.set_defaults(opt=2)
    pr.add_argument("--top", type=number("top"), default=15, help="how many functions to list")
    pr.set_defaults(func=cmd_profile)
    from .driver.opt_cli import register as _register_opt
    _register_opt(sub, _formatter)
    from .driver.run import register as _register_run
    _register_run(sub, _formatter)
    from .driver.train_cli import register as _register_train
    _register_train(sub, _formatter)
    from .driver.generate import register as _register_generate
    _register_generate(sub, _formatter)
    from .driver.hf_import import register as _register_import
    _register_import(sub, _formatter)
    from .tune.cli import register as _register_tune
    _register_tune(sub, _formatter)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (2), or --help/--version (0): a return code
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None
                                                           else EXIT_USAGE)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if hasattr(args, "deny"):
        args.deny_warnings = args.deny == "warnings"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
