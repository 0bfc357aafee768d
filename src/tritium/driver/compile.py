"""The compile pipeline: source → tokens → AST → checked program → IR → optimized IR → Python.

    result = compile_program("examples/mlp.tri", opt_level=2)
    result.python                  # the generated nn.Module source
    result.stages["ir-opt"]        # the optimized IR as text
    result.timings                 # seconds per stage (empty stages were cached)
    Model = result.classes["DigitsMLP"]

Every stage is kept as text in a content-addressed cache entry keyed by the compiler (a hash
of its source files, :func:`compiler_fingerprint`), the options and the main file's bytes; the entry also records the hash of every imported
file and is only used when they all still match, so editing an import invalidates its
importers. Nothing here imports torch until the generated module is executed.
"""

from __future__ import annotations

import hashlib
import linecache
import os
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..cachedir import read_file_bounded
from ..frontend.diagnostics import Diagnostic, SourceMap
from .cache import CompileCache

STAGES = ("tokens", "ast", "ir", "ir-opt", "py")
TARGETS = ("pytorch",)


class CompileError(Exception):
    """The program (or the request) is wrong: carries diagnostics for rendering."""

    def __init__(self, diagnostics: list[Diagnostic], sources: SourceMap | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or SourceMap()
        super().__init__("; ".join(d.message for d in diagnostics))


def _validate_generated(python: str, file: str) -> None:
    """Every generated module is checked before it runs, cached or not: it must have the
    shape the code generator writes (backends.pytorch.validate), so a damaged or planted
    cache entry or a code generator bug cannot run arbitrary Python."""
    from ..backends.pytorch.validate import UnsafeSourceError, validate
    try:
        validate(python)
    except UnsafeSourceError as exc:
        raise CompileError([Diagnostic("E0020", f"the generated module for {file} was not "
                                                f"loaded: {exc}", None,
                                       help="clear the compile cache (`tritium cache clear`) "
                                            "and compile again")]) from None


@dataclass
class CompileResult:
    file: str
    entry: str | None                     # the default definition (`tritium.load` picks it)
    python: str
    stages: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    files: list[str] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    pass_report: str = ""
    _module: types.ModuleType | None = None

    @property
    def module(self) -> types.ModuleType:
        """The generated source executed as a Python module (imports torch)."""
        if self._module is None:
            digest = hashlib.sha256(self.python.encode()).hexdigest()[:16]
            name = f"tritium_generated_{digest}"
            mod = sys.modules.get(name)
            if mod is None:
                _validate_generated(self.python, self.file)
                mod = types.ModuleType(name)
                mod.__file__ = f"<tritium:{self.file}>"
                filename = f"<generated from {self.file}>"
                # tracebacks through generated code show its lines
                linecache.cache[filename] = (len(self.python), None,
                                             self.python.splitlines(True), filename)
                code = compile(self.python, filename, "exec")
                exec(code, mod.__dict__)
                sys.modules[name] = mod
            self._module = mod
        return self._module

    @property
    def classes(self) -> dict[str, type]:
        mod = self.module
        return {n: getattr(mod, n) for n in getattr(mod, "__all__", [])}


def _read(path: Path) -> bytes:
    """A source file the cache records (an import): a regular file of at most the source
    size limit (links followed: they are the user's files, not the cache's)."""
    from ..frontend.source import MAX_SOURCE_BYTES

    return read_file_bounded(path, MAX_SOURCE_BYTES, follow_symlinks=True)


def _valid_payload(payload: dict) -> str | None:
    """Why a compile cache payload cannot be served (a forged or foreign entry that passed
    the checksum), or None."""
    if not isinstance(payload.get("python"), str):
        return "no generated source"
    stages = payload.get("stages")
    if not isinstance(stages, dict) or not all(
            k in STAGES and isinstance(v, str) for k, v in stages.items()):
        return "malformed stages"
    if not isinstance(payload.get("entry"), str | None):
        return "malformed entry name"
    deps = payload.get("deps", {})
    if not isinstance(deps, dict) or not all(
            isinstance(k, str) and "\0" not in k and isinstance(v, str) for k, v in deps.items()):
        return "malformed dependency list"
    if not isinstance(payload.get("pass_report", ""), str):
        return "malformed pass report"
    return None


_COMPILER_FINGERPRINT: str | None = None
_NOT_COMPILER = ("runtime", "data", "tune")


def fingerprint_sources(root: Path) -> str:
    """sha256 over the version and every ``.py`` file under ``root`` (the package) except
    the runtime, the data sets and the tuner, names and bytes, in a fixed order."""
    h = hashlib.sha256(__version__.encode())
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/", 1)[0] in _NOT_COMPILER:
            continue
        h.update(rel.encode() + b"\0")
        try:
            h.update(p.read_bytes())
        except OSError:
            h.update(b"unreadable")
        h.update(b"\0")
    return h.hexdigest()


def compiler_fingerprint() -> str:
    """The hash of the compiler's own source files (:func:`fingerprint_sources` of this
    package), part of every cache key, so an entry written by a different compiler -- an
    upgrade or a local edit of the same version -- is never served. Computed once per
    process (a few milliseconds)."""
    global _COMPILER_FINGERPRINT
    if _COMPILER_FINGERPRINT is None:
        _COMPILER_FINGERPRINT = fingerprint_sources(Path(__file__).resolve().parent.parent)
    return _COMPILER_FINGERPRINT


def _options_key(opt_level: int, target: str, with_ir: bool) -> str:
    return f"O{opt_level}|{target}|ir={with_ir}"


def _dump_tokens(text: str, file: str) -> str:
    from ..frontend.lexer import tokenize
    lines = []
    for t in tokenize(text, file).tokens:
        shown = t.text.replace("\n", "\\n")
        lines.append(f"{t.line}:{t.col}\t{t.kind.name}\t{shown}")
    return "\n".join(lines) + "\n"


def _dump_ast(node, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(node, list):
        if not node:
            return "[]"
        return "[\n" + "".join(f"{pad}  {_dump_ast(x, indent + 1)}\n" for x in node) + pad + "]"
    if hasattr(node, "__dataclass_fields__"):
        fields = [f for f in node.__dataclass_fields__ if f != "span"]
        span = getattr(node, "span", None)
        where = f" @{span.line}:{span.col}" if span is not None and span.line else ""
        inner = "".join(f"{pad}  {f}: {_dump_ast(getattr(node, f), indent + 1)}\n"
                        for f in fields)
        return f"{type(node).__name__}{where}\n{inner}".rstrip("\n")
    return repr(node)


def compile_program(path: str | Path | None = None, *, source: str | None = None,
                    opt_level: int = 2, target: str = "pytorch", use_cache: bool = True,
                    with_ir: bool = True, file: str | None = None, print_ir_after_all=None,
                    cache: CompileCache | None = None) -> CompileResult:
    """Compile the .tri file at `path`, or the program text `source` (shown in diagnostics
    as `file`, default `<input>`). Exactly one of the two: a path is always read as a file,
    whatever characters its name holds, and text is never taken for a path."""
    from ..frontend.diagnostics import DiagnosticError
    from ..frontend.source import decode_source, read_source

    if (path is None) == (source is None):
        raise TypeError("compile_program takes a path or source=..., exactly one of them")
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source must be program text (str), got {type(source).__name__}")
    if path is not None and not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if target not in TARGETS:
        raise CompileError([Diagnostic("E0309", f"unknown target `{target}`", None,
                                       help=f"targets: {', '.join(TARGETS)}")])
    if opt_level not in (0, 1, 2, 3):
        raise CompileError([Diagnostic("E0309", f"unknown optimization level -O{opt_level}", None,
                                       help="use -O0, -O1, -O2 or -O3")])
    t0 = time.perf_counter()
    try:
        if source is not None:
            src = decode_source(source.encode("utf-8", "surrogatepass"), file or "<input>")
        else:
            from ..argcheck import input_error
            bad = input_error(path)
            if bad is not None:
                raise CompileError([Diagnostic(*bad, None)])
            src = read_source(path)
    except DiagnosticError as err:
        raise CompileError(err.diagnostics) from None
    timings = {"read": time.perf_counter() - t0}

    key = hashlib.sha256("\0".join([
        compiler_fingerprint(), _options_key(opt_level, target, with_ir), src.name,
        hashlib.sha256(src.text.encode()).hexdigest()]).encode()).hexdigest()
    store = None
    if use_cache and print_ir_after_all is None:
        try:
            store = cache or CompileCache()
        except OSError:
            store = None
    if store is not None:
        t = time.perf_counter()
        hit = store.get(key, _valid_payload)
        if hit is not None and _deps_unchanged(hit.get("deps", {})):
            timings["cache"] = time.perf_counter() - t
            return CompileResult(src.name, hit.get("entry"), hit["python"], hit["stages"],
                                 timings, True, list(hit.get("deps", {})),
                                 pass_report=hit.get("pass_report", ""))
    result = _compile_uncached(src, opt_level, with_ir, timings, print_ir_after_all)
    if store is not None:
        deps = {}
        for f in result.files:
            try:
                deps[str(f)] = hashlib.sha256(_read(Path(f))).hexdigest()
            except OSError:
                continue
        try:
            store.put(key, {"python": result.python, "stages": result.stages,
                            "entry": result.entry, "deps": deps,
                            "pass_report": result.pass_report})
        except OSError:
            pass
    return result


def _deps_unchanged(deps: dict[str, str]) -> bool:
    for f, digest in deps.items():
        try:
            if hashlib.sha256(_read(Path(f))).hexdigest() != digest:
                return False
        except (OSError, ValueError):
            return False
    return True


def _compile_uncached(src, opt_level: int, with_ir: bool, timings: dict,
                      print_ir_after_all) -> CompileResult:
    from ..backends.pytorch.codegen import CodegenError, generate
    from ..check import _check
    from ..check.summary import pick_definition
    from ..frontend.parser import recursion_headroom

    t = time.perf_counter()
    result = _check(src)
    timings["parse+check"] = time.perf_counter() - t
    errors = [d for d in result.diagnostics if d.is_error]
    if errors:
        raise CompileError(result.diagnostics, result.sources)
    stages: dict[str, str] = {}
    t = time.perf_counter()
    try:
        with recursion_headroom():
            python = generate(result)
    except CodegenError as exc:
        raise CompileError([Diagnostic("E0310", f"cannot generate PyTorch code: {exc}", None)],
                           result.sources) from None
    except RecursionError:
        raise CompileError([Diagnostic("E0203", "the program nests too deeply to generate code",
                                       None, help="split long expressions into `let`s")],
                           result.sources) from None
    timings["codegen"] = time.perf_counter() - t
    stages["py"] = python
    entry = pick_definition(result, None)
    files = [str(m.source.path) for m in result.modules.values() if m.source.path is not None]
    out = CompileResult(src.name, entry.name if entry else None, python, stages, timings, False,
                        files, [d for d in result.diagnostics if not d.is_error])
    if with_ir:
        _ir_stages(result, out, opt_level, print_ir_after_all)
    return out


def _ir_stages(result, out: CompileResult, opt_level: int, print_ir_after_all) -> None:
    try:
        from ..ir.lowering import LoweringError, lower
    except ImportError:
        return
    from ..ir import print_module
    from ..passes import pipeline

    if out.entry is None:
        return
    t = time.perf_counter()
    try:
        lowered = lower(result)
    except LoweringError as exc:
        out.stages["ir"] = f"// lowering failed: {exc}\n"
        out.timings["lower"] = time.perf_counter() - t
        return
    out.stages["ir"] = print_module(lowered.module)
    out.timings["lower"] = time.perf_counter() - t
    t = time.perf_counter()
    pm = pipeline(f"O{opt_level}")
    if print_ir_after_all is not None:
        pm.print_ir_after_all = print_ir_after_all
    report = pm.run(lowered.module)
    out.stages["ir-opt"] = print_module(lowered.module)
    out.pass_report = report.table()
    out.timings["passes"] = time.perf_counter() - t


def stage_text(result: CompileResult, stage: str, source_text: str | None = None) -> str:
    """The text of one `--emit` stage."""
    if stage in result.stages:
        return result.stages[stage]
    raise CompileError([Diagnostic("E0310", f"the `{stage}` stage is not available for "
                                            f"{result.file}", None)])


def emit_front_stage(path: str, stage: str) -> str:
    """`--emit tokens` and `--emit ast` (cheap, never cached)."""
    from ..frontend.diagnostics import DiagnosticError
    from ..frontend.parser import parse
    from ..frontend.source import read_source

    try:
        src = read_source(path)
    except DiagnosticError as err:
        raise CompileError(err.diagnostics) from None
    if stage == "tokens":
        return _dump_tokens(src.text, src.name)
    prog, diags, _ = parse(src.text, src.name)
    errors = [d for d in diags if d.is_error]
    if errors:
        sm = SourceMap()
        sm.add(src.name, src.text)
        raise CompileError(errors, sm)
    return _dump_ast(prog) + "\n"


def load_module(path: str | Path | None = None, name: str | None = None, *,
                source: str | None = None, file: str | None = None, **hyperparameters):
    """An instantiated module: the named model/block/layer of the file at `path` (or of the
    program text `source`, shown as `file`), or its only model (else its last top-level
    layer), built with the given hyperparameters."""
    from ..frontend.names import BadName, class_name, py_local

    result = compile_program(path, source=source, file=file, with_ir=False)
    classes = result.classes
    target = name or result.entry
    if target is None or class_name(target) not in classes:
        from ..frontend.diagnostics import did_you_mean
        what = f"no model, block or layer named `{name}`" if name else \
            "the file has several models; pass name=…"
        raise CompileError([Diagnostic("E0304", f"{result.file}: {what}", None,
                                       help=did_you_mean(name or "", list(classes)) or
                                       f"defined: {', '.join(classes) or 'nothing'}")])
    cls = classes[class_name(target)]
    try:
        return cls(**{py_local(k): v for k, v in hyperparameters.items()})
    except (TypeError, BadName) as exc:
        raise CompileError([Diagnostic("E0306", f"cannot build `{target}`: {exc}", None,
                                       help="pass its hyperparameters as keyword arguments")]
                           ) from None
