"""The compile driver: source → tokens → AST → checked program → PyTorch source, and
→ IR → optimized IR → Triton kernels → AOT stages (the table in :mod:`.stages`).

    result = compile_program("examples/mlp.tri", opt_level=2)
    result.python                  # the generated nn.Module source
    result.stages["ir-opt"]        # the optimized IR as text (lowered on first access)
    result.timings                 # seconds per stage that ran (none when served from cache)
    Model = result.classes["DigitsMLP"]

A stage runs only when something needs it: by default only `py` (`stages=` names others to
produce at once; every other stage is produced the first time ``result.stages[name]`` or
:meth:`CompileResult.stage` asks for it). The `compile` stages (py, ir, ir-opt, triton) are
kept as text in one content-addressed cache entry per program and options, keyed by the
compiler (a hash of its source files, :func:`compiler_fingerprint`), the options and the
main file's bytes; a stage produced later is added to the entry. The entry also records the
hash of every imported file and is only used when they all still match, so editing an
import invalidates its importers. Nothing here imports torch until the generated module is
executed.
"""

from __future__ import annotations

import hashlib
import linecache
import os
import sys
import time
import types
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .. import __version__
from ..cachedir import read_file_bounded
from ..compile_cache import CompileCache
from ..frontend.diagnostics import Diagnostic, SourceMap
from . import stages as S
from .stages import CACHED, STAGES, TARGETS, CompileError

__all__ = ["CompileError", "CompileResult", "STAGES", "TARGETS", "build_aot", "compile_program",
           "compiler_fingerprint", "fingerprint_sources", "load_module"]


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




class StageMap(Mapping):
    """The stages of one compile as text, by name. Iterating (and `in`) sees the stages
    produced so far; indexing a stage not produced yet produces it (and what it needs)."""

    def __init__(self, result: CompileResult, texts: dict[str, str]) -> None:
        self._result = result
        self._texts = texts

    def __getitem__(self, name: str) -> str:
        if name not in self._texts:
            if name not in STAGES or STAGES[name].binary or name in S.AOT_STAGES:
                raise KeyError(name)
            self._result._produce(name)
        return self._texts[name]

    def __contains__(self, name: object) -> bool:
        return name in self._texts

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def __repr__(self) -> str:
        return f"StageMap({sorted(self._texts)})"


class CompileResult:
    """One program compiled at one set of options; stages are produced on demand."""

    def __init__(self, src, opt_level: int, *, annotate: bool = False, texts=None,
                 entry: str | None = None, files=(), cached: bool = False,
                 pass_report: str = "", timings: dict | None = None, store=None,
                 key: str | None = None, print_ir_after_all=None) -> None:
        self.file: str = src.name
        self.opt_level = opt_level
        self.annotate = annotate
        self.entry = entry                 # the default definition (`tritium.load` picks it)
        self.files: list[str] = list(files)
        self.cached = cached
        self.pass_report = pass_report
        self.timings: dict[str, float] = timings if timings is not None else {}
        self.warnings: list[Diagnostic] = []
        self._src = src
        self._texts: dict[str, str] = dict(texts or {})
        self.stages = StageMap(self, self._texts)
        self._checked = None
        self._ir = None                    # the lowered module, while no pass has run
        self._store = store
        self._key = key
        self._print_ir_after_all = print_ir_after_all
        self._module: types.ModuleType | None = None

    # ------------------------------------------------------------------ stages

    @property
    def python(self) -> str:
        """The generated PyTorch source (the `py` stage)."""
        return self.stages["py"]

    @python.setter
    def python(self, text: str) -> None:
        """Replace the source (it is validated again before it runs, as every module is)."""
        self._texts["py"] = text
        self._module = None

    def stage(self, name: str) -> str:
        """The text of stage `name`, produced if needed (CompileError when it cannot be)."""
        if name in S.AOT_STAGES:
            raise S.option_error(f"`{name}` is an ahead-of-time stage: build it with "
                                 "tritium.driver.build_aot(result, target)")
        if name not in STAGES:
            raise S.option_error(f"unknown stage `{name}`",
                                 help=f"stages: {', '.join(STAGES)}")
        return self.stages[name]

    def checked(self):
        """The checked program (parsed and checked again when the result came from cache)."""
        if self._checked is None:
            from ..check import _check
            from ..check.summary import pick_definition

            t = time.perf_counter()
            checked = _check(self._src)
            self.timings["parse+check"] = time.perf_counter() - t
            if any(d.is_error for d in checked.diagnostics):
                raise CompileError(checked.diagnostics, checked.sources)
            entry = pick_definition(checked, None)
            self.entry = entry.name if entry else None
            self.files = [str(m.source.path) for m in checked.modules.values()
                          if m.source.path is not None]
            self.warnings = [d for d in checked.diagnostics if not d.is_error]
            self._checked = checked
        return self._checked

    def _produce(self, name: str) -> None:
        kept = {k for k in self._texts if k in CACHED}
        for step in S.chain(name):
            if step in self._texts or step in ("tokens", "ast") and name != step:
                continue
            self._run(step)
        if {k for k in self._texts if k in CACHED} != kept:
            self._save()

    def _run(self, step: str) -> None:
        t = time.perf_counter()
        if step == "tokens":
            self._texts[step] = S.dump_tokens(self._src.text, self._src.name)
        elif step == "ast":
            from ..frontend.parser import parse

            prog, diags, _ = parse(self._src.text, self._src.name)
            errors = [d for d in diags if d.is_error]
            if errors:
                sm = SourceMap()
                sm.add(self._src.name, self._src.text)
                raise CompileError(errors, sm)
            self._texts[step] = S.dump_ast(prog) + "\n"
        elif step == "check":
            self._texts[step] = S.dump_check(self.checked())
            return
        elif step == "py":
            checked = self.checked()
            t = time.perf_counter()
            self._texts[step] = S.generate_python(checked, self.annotate)
            self.timings["codegen"] = time.perf_counter() - t
            return
        elif step == "ir":
            from ..ir import print_module

            checked = self.checked()
            t = time.perf_counter()
            self._ir = S.lower_program(checked)
            self._texts[step] = print_module(self._ir)
            self.timings["lower"] = time.perf_counter() - t
            return
        elif step == "ir-opt":
            from ..ir import parse_module, print_module

            module, self._ir = self._ir or parse_module(self._texts["ir"]), None
            self.pass_report = S.optimize(module, self.opt_level, self._print_ir_after_all)
            self._texts[step] = print_module(module)
            self.timings["passes"] = time.perf_counter() - t
            return
        elif step == "triton":
            title = f"{Path(self.file).name}, -O{self.opt_level}"
            self._texts[step] = S.triton_source(self._texts["ir-opt"], title)
        self.timings[step] = time.perf_counter() - t

    def _save(self) -> None:
        """Add the cacheable stages produced so far to this program's cache entry."""
        if self._store is None or self._key is None:
            return
        texts = {k: v for k, v in self._texts.items() if k in CACHED}
        deps = {}
        for f in self.files:
            try:
                deps[str(f)] = hashlib.sha256(_read(Path(f))).hexdigest()
            except OSError:
                continue
        payload = {"stages": texts, "entry": self.entry, "deps": deps,
                   "pass_report": self.pass_report}
        if "py" in texts:
            payload["python"] = texts["py"]
        try:
            self._store.put(self._key, payload)
        except OSError:
            pass

    # ------------------------------------------------------------------ running it

    @property
    def module(self) -> types.ModuleType:
        """The generated source executed as a Python module (imports torch)."""
        if self._module is None:
            python = self.python
            digest = hashlib.sha256(python.encode()).hexdigest()[:16]
            name = f"tritium_generated_{digest}"
            mod = sys.modules.get(name)
            if mod is None:
                _validate_generated(python, self.file)
                mod = types.ModuleType(name)
                mod.__file__ = f"<tritium:{self.file}>"
                filename = f"<generated from {self.file}>"
                # tracebacks through generated code show its lines
                linecache.cache[filename] = (len(python), None,
                                             python.splitlines(True), filename)
                code = compile(python, filename, "exec")
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
    stages = payload.get("stages")
    if not isinstance(stages, dict) or not all(
            k in CACHED and isinstance(v, str) for k, v in stages.items()):
        return "malformed stages"
    if "python" in payload and payload["python"] != stages.get("py"):
        return "no generated source" if not isinstance(payload["python"], str) \
            else "generated source disagrees with its stage"
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


def _options_key(opt_level: int, annotate: bool) -> str:
    return f"O{opt_level}|annotate={annotate}"


def compile_program(path: str | Path | None = None, *, source: str | None = None,
                    opt_level: int = 2, target: str = "pytorch", use_cache: bool = True,
                    stages: Iterable[str] | None = None, with_ir: bool | None = None,
                    file: str | None = None, print_ir_after_all=None,
                    cache: CompileCache | None = None, annotate: bool = False) -> CompileResult:
    """Compile the .tri file at `path`, or the program text `source` (shown in diagnostics
    as `file`, default `<input>`). Exactly one of the two: a path is always read as a file,
    whatever characters its name holds, and text is never taken for a path.

    `stages` names the stages to produce now (default: the target's first stage, `py` for
    pytorch); any other is produced when first asked for. `with_ir=True` is the older
    spelling of ``stages=("py", "ir", "ir-opt")``. `annotate` asks for a source echo above
    every generated statement (where the code generator supports it)."""
    from ..frontend.diagnostics import DiagnosticError
    from ..frontend.source import decode_source, read_source

    if (path is None) == (source is None):
        raise TypeError("compile_program takes a path or source=..., exactly one of them")
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source must be program text (str), got {type(source).__name__}")
    if path is not None and not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if target not in TARGETS:
        raise S.option_error(f"unknown target `{target}`", help=f"targets: {', '.join(TARGETS)}")
    if opt_level not in (0, 1, 2, 3):
        raise S.option_error(f"unknown optimization level -O{opt_level}",
                             help="use -O0, -O1, -O2 or -O3")
    wanted = list(stages) if stages is not None else [
        {"pytorch": "py", "triton": "triton"}.get(target, "ir-opt")]
    if with_ir:
        wanted += ["ir", "ir-opt"]
    for name in wanted:
        if name not in STAGES:
            raise S.option_error(f"unknown stage `{name}`", help=f"stages: {', '.join(STAGES)}")
        if name in S.AOT_STAGES:
            raise S.option_error(f"`{name}` is an ahead-of-time stage: build it with "
                                 "tritium.driver.build_aot(result, target)")
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
        compiler_fingerprint(), _options_key(opt_level, annotate), src.name,
        hashlib.sha256(src.text.encode()).hexdigest()]).encode("utf-8", "surrogatepass")
    ).hexdigest()   # a file name the system gave undecodable bytes holds lone surrogates
    store = None
    if use_cache and print_ir_after_all is None:
        try:
            store = cache or CompileCache()
        except OSError:
            store = None
    hit = None
    if store is not None:
        t = time.perf_counter()
        hit = store.get(key, _valid_payload)
        if hit is not None and not _deps_unchanged(hit.get("deps", {})):
            hit = None
        if hit is not None:
            timings["cache"] = time.perf_counter() - t
    result = CompileResult(src, opt_level, annotate=annotate, timings=timings, store=store,
                           key=key, print_ir_after_all=print_ir_after_all)
    if hit is not None:
        result._texts.update(hit["stages"])
        result.entry = hit.get("entry")
        result.files = list(hit.get("deps", {}))
        result.pass_report = hit.get("pass_report", "")
    missing = [n for n in wanted if n not in result._texts]
    result.cached = hit is not None and not missing
    for name in missing:
        result._produce(name)
    return result


def build_aot(result: CompileResult, target: str, use_cache: bool = True):
    """The ahead-of-time stages (ttir … cubin) of every kernel of `result` for `target`
    (`cuda:sm_80` or `cuda:sm_90`): a ``tritium.backends.triton.aot.AotBuild``
    (``build.dump(stage)``, ``kernel.stages["cubin"]``)."""
    if target not in TARGETS or not target.startswith("cuda:"):
        raise S.option_error(f"`{target}` is not an ahead-of-time target",
                             help="targets: cuda:sm_80, cuda:sm_90")
    t = time.perf_counter()
    build = S.aot_build(result.stages["ir-opt"], target, use_cache, result.file)
    result.timings["aot"] = time.perf_counter() - t
    return build


def _deps_unchanged(deps: dict[str, str]) -> bool:
    for f, digest in deps.items():
        try:
            if hashlib.sha256(_read(Path(f))).hexdigest() != digest:
                return False
        except (OSError, ValueError):
            return False
    return True




def load_module(path: str | Path | None = None, name: str | None = None, *,
                source: str | None = None, file: str | None = None, **hyperparameters):
    """An instantiated module: the named model/block/layer of the file at `path` (or of the
    program text `source`, shown as `file`), or its only model (else its last top-level
    layer), built with the given hyperparameters."""
    from ..frontend.names import BadName, class_name, py_local

    result = compile_program(path, source=source, file=file)
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
