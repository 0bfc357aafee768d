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
from .argcheck import number, path_arg

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
_USAGE_CODES = {"E0001", "E0002", "E0003", "E0004", "E0005"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage errors exit with 2, as we want
        # one line: what is wrong, and where the options are described
        import re
        message = " ".join(message.split("\n"))
        message = re.sub(r"'([^']{60,})'", lambda m: repr(m.group(1)[:40] + "…"), message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def usage_error(message: str) -> int:
    """Print a one-line usage error (`tritium: error: ...`); returns exit code 2."""
    print(f"tritium: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _input_diagnostics(paths: list[str]) -> dict[str, list]:
    """A usage diagnostic (E0001-E0003) for each input path that is not a readable regular
    file: missing, a directory, a FIFO or device, a name too long. Checked before reading,
    so nothing blocks on a FIFO or reads `/dev/zero` forever."""
    from .argcheck import input_error
    from .frontend.diagnostics import Diagnostic

    out: dict[str, list] = {}
    for path in paths:
        err = input_error(path)
        if err is not None:
            out[path] = [Diagnostic(*err, None)]
    return out


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _color(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR") or os.environ.get("CLICOLOR_FORCE"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def emit_diagnostics(diags, sources, error_format: str) -> None:
    from .frontend.diagnostics import render, render_json

    out = sys.stderr
    if error_format == "json":
        for d in diags:
            print(render_json(d), file=sys.stdout)
        return
    color = _color(out)
    for d in diags:
        print(render(d, sources, color=color), file=out)
        print(file=out)


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


_MAX_SET_INT = 2**31 - 1      # a hyperparameter is a size, a count or a flag


def _parse_sets(items: list[str]) -> dict:
    """`--set NAME=VALUE` items: ints, finite floats, true/false or strings (ArgError)."""
    import math

    from .argcheck import ArgError, quote

    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier() or any(ord(c) < 32 or ord(c) == 0x7F
                                                    for c in raw) or len(raw) > 1000:
            raise ArgError(f"--set expects NAME=VALUE (a plain value), got {quote(item)}")
        for conv in (int, float):
            try:
                value = conv(raw)
            except ValueError:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise ArgError(f"--set {key}: {quote(raw)} is not a finite number")
            if isinstance(value, int) and abs(value) > _MAX_SET_INT:
                raise ArgError(f"--set {key}: {quote(raw)} is out of range (at most {_MAX_SET_INT} "
                               "in magnitude)")
            out[key] = value
            break
        else:
            out[key] = {"true": True, "false": False}.get(raw, raw)
    return out


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
        hyper = _parse_sets(args.set)
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
    """Compile one file (runs in a worker process with -j)."""
    path, opt, emit, no_cache, output = job
    from .driver.compile import CompileError, compile_program, emit_front_stage

    try:
        if emit in ("tokens", "ast"):
            return EXIT_OK, emit_front_stage(path, emit), "", []
        result = compile_program(path, opt_level=opt, use_cache=not no_cache,
                                 with_ir=emit in ("ir", "ir-opt"))
        lowered = result.stages.get("ir", "")
        if emit in ("ir", "ir-opt") and lowered.startswith("// lowering failed: "):
            return EXIT_FAIL, "", f"error: {lowered[len('// lowering failed: '):].strip()}", []
        text = result.stages.get(emit)
        if text is None:
            return EXIT_FAIL, "", f"{path}: the `{emit}` stage is not available", []
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
        code = EXIT_USAGE if err.diagnostics and err.diagnostics[0].code in _USAGE_CODES \
            else EXIT_FAIL
        return code, "", "", [(err.diagnostics, err.sources)]


_FRONT_EMITS = ("tokens", "ast", "ir", "ir-opt")
_GPU_EMITS = ("triton", "ttir", "ttgir", "llir", "ptx", "cubin")
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


def _compile_gpu(args) -> int:
    """`--emit triton` (generated kernel source) and the AOT stages ttir … cubin."""
    from pathlib import Path

    from .argcheck import write_output
    from .driver.compile import CompileError, compile_program

    files, worst = _readable_inputs(args)
    where = args.out_where
    several = where is not None and where[0] == "dir"
    if several:
        where[1].mkdir(parents=True, exist_ok=True)
    for path in files:
        try:
            result = compile_program(path, opt_level=args.opt, use_cache=not args.no_cache,
                                     with_ir=True)
        except CompileError as err:
            emit_diagnostics(err.diagnostics, err.sources, args.error_format)
            code = err.diagnostics[0].code if err.diagnostics else ""
            worst = max(worst, EXIT_USAGE if code in _USAGE_CODES else EXIT_FAIL)
            continue
        ir_text = result.stages.get("ir-opt", "")
        if not ir_text or ir_text.startswith("// lowering failed"):
            print(f"{path}: no optimized IR to generate kernels from "
                  f"{ir_text.strip() or '(lowering unavailable)'}", file=sys.stderr)
            worst = max(worst, EXIT_FAIL)
            continue
        from .ir import parse_module

        module = parse_module(ir_text)
        if args.emit == "triton":
            from .backends.triton.extract import model_source

            text = model_source(module, f"{Path(path).name}, -O{args.opt}")
        else:
            try:
                from .backends.triton.aot import AotError, build_model
            except ImportError as exc:
                print(f"tritium: error: the {args.target} target needs triton "
                      f"(pip install 'tritium[gpu]'): {exc}", file=sys.stderr)
                return EXIT_FAIL
            try:
                build = build_model(module, args.target, use_cache=not args.no_cache)
            except AotError as exc:
                print(f"{path}: {exc}", file=sys.stderr)
                worst = max(worst, EXIT_FAIL)
                continue
            if not build.kernels:
                print(f"{path}: no ternary kernels to compile", file=sys.stderr)
                continue
            if args.emit == "cubin":
                for k in build.kernels:
                    dest = Path(args.output) / f"{Path(path).stem}.{k.name}.{k.key[:10]}.cubin"
                    write_output(dest, bytes(k.stages["cubin"]))
                    print(f"{dest}  {k.label()}")
                continue
            text = build.dump(args.emit)
        if args.output is None:
            sys.stdout.write(text)
        elif several:
            write_output(Path(args.output) / (Path(path).stem + _GPU_EXT[args.emit]), text)
        else:
            write_output(args.output, text)
    return worst


_OUT_EXT = {"py": ".py", "ir": ".ir", "ir-opt": ".opt.ir", "tokens": ".tokens", "ast": ".ast",
            **_GPU_EXT, "cubin": ".cubin"}
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
    if args.emit in _GPU_EMITS:
        return _compile_gpu(args)
    files, worst = _readable_inputs(args)
    outputs: list[str | None] = [None] * len(files)
    if args.out_where is not None:
        kind, where = args.out_where
        if kind == "file":
            outputs = [str(where)]
        else:
            where.mkdir(parents=True, exist_ok=True)
            outputs = [str(where / (Path(f).stem + _OUT_EXT[args.emit])) for f in files]
    if not files:
        return worst
    if args.print_ir_after_all:
        from .driver.compile import CompileError, compile_program

        def dump(name: str, text: str) -> None:
            print(f"// -----// IR Dump After {name} //----- //\n{text}", file=sys.stderr)
        try:
            compile_program(files[0], opt_level=args.opt, use_cache=False,
                            print_ir_after_all=dump)
        except CompileError as err:
            emit_diagnostics(err.diagnostics, err.sources, args.error_format)
            return EXIT_FAIL
    jobs = [(f, args.opt, args.emit, args.no_cache, o) for f, o in zip(files, outputs)]
    if args.jobs > 1 and len(jobs) > 1:
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
    kernels_ = sorted({s["kernel"] for s in studies})
    return (f"{where}: {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}{size}"
            + (f" ({', '.join(kernels_)})" if kernels_ else ""))


def _clear_area(area: str) -> str:
    from .cachedir import cache_root

    if area == "compile":
        from .driver.cache import CompileCache

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
    from .driver.cache import CompileCache

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
        compile_program(args.file, opt_level=args.opt, use_cache=False)
    except CompileError as err:
        emit_diagnostics(err.diagnostics, err.sources, "human")
        return EXIT_FAIL
    first = time.perf_counter() - t
    imported = len(sys.modules) - before
    tracemalloc.start()
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    result = compile_program(args.file, opt_level=args.opt, use_cache=False)
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
                        description="Compile through every stage; print or write one of them.",
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
                        help=f"optimization level {level}" + (" (default)" if level == 2 else ""))
    co.set_defaults(opt=2)
    co.add_argument("--emit", choices=("tokens", "ast", "ir", "ir-opt", "py", *_GPU_EMITS),
                    default=None,
                    help="the stage to output (default: py for pytorch, triton for triton, "
                         "ptx for cuda:*)")
    co.add_argument("--target", choices=("pytorch", "triton", "cuda:sm_80", "cuda:sm_90"),
                    default="pytorch",
                    help="pytorch (nn.Module source), triton (kernel source) or a CUDA "
                         "architecture for ahead-of-time kernel builds")
    co.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
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
    ca.add_argument("areas", nargs="*", type=_cache_area, metavar="AREA",
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
    from .driver.train_cli import register as _register_train
    _register_train(sub, _formatter)
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
