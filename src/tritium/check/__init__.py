"""The checker: resolves imports, then checks names, config keys, types, trits and shapes.

    result = check_file("examples/mlp.tri")
    result.ok            # no errors
    result.diagnostics   # errors and warnings, in source order
    result.program       # the AST of the main file
    result.definitions   # every model/block/layer/fn visible from it, imports included

Nothing here imports torch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..frontend import ast as A
from ..frontend.diagnostics import (
    Diagnostic,
    DiagnosticError,
    Label,
    Severity,
    SourceMap,
    did_you_mean,
)
from ..frontend.lift import program_names, rewrite
from ..frontend.lift_globals import lift_globals
from ..frontend.parser import parse, recursion_headroom
from ..frontend.partial import bind_partial_calls
from ..frontend.source import SourceFile, decode_source, read_source
from .checker import Checker, Definition
from .checker.model import check_entry, entry_statements
from .names import check_names
from .repetition import expand_table

__all__ = ["CheckResult", "Definition", "check_file", "check_source", "load_program"]

MAX_IMPORT_DEPTH = 64
MAX_SIBLINGS = 256   # the .tri files of the program's directory searched for a layer kind


@dataclass
class Module:
    source: SourceFile
    program: A.Program
    comments: list


@dataclass
class CheckResult:
    program: A.Program | None
    diagnostics: list[Diagnostic]
    sources: SourceMap
    definitions: dict[str, Definition] = field(default_factory=dict)
    modules: dict[str, Module] = field(default_factory=dict)   # by file name, main first
    # the spans of builtin-call arguments where a number stands for a tensor parameter
    scalar_tensor_args: frozenset = frozenset()
    # the form the checker chose for a builtin call by its arguments' types, by the call's
    # span (checker.calls_forms): `scalar` / `pair` max and min, `w_in_out` weights
    call_forms: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def files(self) -> list[str]:
        """Every file the program depends on (the main file and its imports, transitively)."""
        return list(self.modules)


class _Loader:
    def __init__(self) -> None:
        self.modules: dict[str, Module] = {}
        self.sources = SourceMap()
        self.diags: list[Diagnostic] = []
        self.defs: dict[str, Definition] = {}
        self.stack: list[str] = []
        self.taken: set[str] = set()   # names in use, for the functions lift.rewrite adds

    def key(self, src: SourceFile) -> str:
        return str(src.path) if src.path is not None else src.name

    def load(self, src: SourceFile) -> Module:
        key = self.key(src)
        main = not self.modules   # the first file loaded: its entry runs
        self.sources.add(src.name, src.text)
        program, diags, comments = parse(src.text, src.name)
        self.diags.extend(diags)
        mod = Module(src, program, comments)
        self.modules[key] = mod
        self.stack.append(key)
        try:
            for item in program.items:
                if isinstance(item, A.Import):
                    self.load_import(item, src)
            # a layer function called with some of its arguments bound (frontend.partial);
            # type aliases expanded, local and anonymous functions lifted (frontend.lift)
            bind_partial_calls(program, self.taken, lambda: program_names(program))
            self.diags.extend(rewrite(program, self.taken, main))
            if main:   # its functions see its top-level variables (frontend.lift_globals)
                self.taken |= program_names(program)
                lift_globals(program, self.taken)
            for item in program.items:
                if isinstance(item, A.ModelDef | A.BlockDef | A.LayerDef | A.FnDef):
                    prev = self.defs.get(item.name)
                    if prev is not None and prev.node is not item:
                        self.diags.append(Diagnostic(
                            "E0206", f"`{item.name}` is defined more than once", item.span,
                            label="second definition",
                            secondary=[Label(prev.node.span, "first defined here")],
                            help="rename one of them"))
                        continue
                    self.defs[item.name] = Definition(item.name, item, src.name)
        finally:
            self.stack.pop()
        return mod

    def load_import(self, imp: A.Import, importer: SourceFile) -> None:
        base = importer.path.parent if importer.path is not None else Path.cwd()
        target = (base / imp.path)
        if "\0" in imp.path or not imp.path.strip():
            self.diags.append(Diagnostic("E0602", f"cannot import {_shown(imp.path)}: not a valid "
                                                  f"file name", imp.span, label="imported here"))
            return
        try:
            resolved = str(target.resolve())
        except (OSError, RuntimeError, ValueError):
            resolved = str(target)
        if resolved in self.stack:
            chain = self.stack[self.stack.index(resolved):] + [resolved]
            names = " -> ".join(os.path.basename(c) for c in chain)
            self.diags.append(Diagnostic("E0601", f"import cycle: {names}", imp.span,
                                         label="this import closes the cycle",
                                         help="move the shared definitions into a third file "
                                              "that both import"))
            return
        if resolved in self.modules:
            return
        if len(self.stack) >= MAX_IMPORT_DEPTH:
            self.diags.append(Diagnostic("E0601", "imports nest too deeply", imp.span))
            return
        try:
            shown = os.path.relpath(target) if not os.path.isabs(imp.path) else imp.path
        except ValueError:
            shown = str(target)
        try:
            src = read_source(target, display=shown)
        except DiagnosticError as err:
            d = err.diagnostics[0]
            code = "E0602" if d.code in ("E0001", "E0002") else d.code
            near = None
            try:
                if code == "E0602" and target.parent.is_dir():
                    near = did_you_mean(target.name, [p.name for p in
                                                      target.parent.glob("*.tri")][:1000])
            except (OSError, ValueError):
                near = None
            self.diags.append(Diagnostic(code, f"cannot import {_shown(imp.path)}: {d.message}",
                                         imp.span, label="imported here",
                                         help=near or d.help or
                                         f"paths are relative to {importer.name}'s directory"))
            return
        self.load(src)


def _kind_uses(program: A.Program):
    """The layer kinds a program's layer declarations name, with the span of each use."""
    for item in program.items:
        for decl in getattr(item, "body", None) or ():
            if isinstance(decl, A.LayerDecl):
                for k in [*decl.kinds, *(k for b in decl.orelse for k in b.kinds)]:
                    yield k.kind, k.span


def _resolve_siblings(loader: _Loader, main: Module) -> set[str]:
    """A layer kind that nothing defines or imports, defined in exactly one other .tri file
    of the main program's directory, is read from that file, with a warning that names it
    (W1000); defined in several, it is an error that names them (E1000). Only the main
    file's directory is searched (no subdirectory, no link), and each file is read as an
    import is (bounded). Returns the kinds reported as ambiguous."""
    path = main.source.path
    if path is None:
        return set()
    from .library import LAYER_ALIASES, LAYERS
    known = set(LAYERS) | set(LAYER_ALIASES) | {"Sequential"}
    ambiguous: set[str] = set()
    texts: dict[Path, str] | None = None
    done: set[str] = set()
    for _ in range(MAX_SIBLINGS):   # a file read may name more kinds: until none is new
        missing = {}
        for m in list(loader.modules.values()):
            for kind, span in _kind_uses(m.program):
                if kind not in loader.defs and kind not in known and kind not in done:
                    missing.setdefault(kind, span)
        if not missing:
            break
        if texts is None:
            texts = _sibling_texts(path, set(loader.modules))
        kind, span = next(iter(missing.items()))
        done.add(kind)
        pat = re.compile(rf"^[ \t]*(?:layer|block|model)[ \t]+{re.escape(kind)}\b", re.M)
        found = sorted(p for p, text in texts.items() if pat.search(text))
        if len(found) == 1:
            src = read_source(found[0], display=str(found[0].name))
            loader.diags.append(Diagnostic(
                "W1000", f"layer kind `{kind}` is defined in `{found[0].name}`, which this "
                         f"program does not import: read from there", span,
                severity=Severity.WARNING, label="defined in a sibling file",
                help=f"add `import \"{found[0].name}\"` at the top of the file"))
            texts.pop(found[0], None)
            loader.load(src)
        elif len(found) > 1:
            ambiguous.add(kind)
            names = ", ".join(f"`{p.name}`" for p in found)
            loader.diags.append(Diagnostic(
                "E1000", f"layer kind `{kind}` is not defined here, and several files of this "
                         f"directory define it: {names}", span, label="which one?",
                help=f"import the one you mean, e.g. `import \"{found[0].name}\"`"))
    return ambiguous


def _sibling_texts(main: Path, loaded: set[str]) -> dict[Path, str]:
    """The text of the other regular .tri files in `main`'s directory (not links, not
    already loaded), at most MAX_SIBLINGS of them, each read with read_source's bounds."""
    out: dict[Path, str] = {}
    try:
        entries = sorted(main.parent.iterdir())
    except OSError:
        return out
    for p in entries:
        if len(out) >= MAX_SIBLINGS:
            break
        try:
            if p.suffix != ".tri" or p.is_symlink() or not p.is_file() \
                    or str(p.resolve()) in loaded or p.resolve() == main.resolve():
                continue
            out[p] = read_source(p).text
        except (OSError, DiagnosticError):
            continue
    return out


def _shown(path: str) -> str:
    """An import path as diagnostics show it: quoted, one line, escapes for the invisible."""
    text = path if len(path) <= 80 else path[:60] + "…" + path[-15:]
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else
                         c.encode("unicode_escape").decode("ascii") if c != '"' else '\\"'
                         for c in text) + '"'


def load_program(src: SourceFile) -> _Loader:
    loader = _Loader()
    loader.load(src)
    return loader


def _check(src: SourceFile) -> CheckResult:
    loader = load_program(src)
    main = loader.modules[loader.key(src)]
    ambiguous = _resolve_siblings(loader, main)
    diags = loader.diags
    parse_errors = any(d.is_error for d in diags)
    checker = Checker(loader.defs, diags)
    checker.rejected = set().union(*(m.program.rejected for m in loader.modules.values()),
                                   main.program.rejected, ambiguous)
    checker.unparsed = main.program.unparsed
    _expand_tables(loader, checker)
    # Only the main file's definitions are checked here; imported files are checked when
    # they are the main file, and through every use of them from this one.
    with recursion_headroom():
        # functions, then blocks and layers, then models: a power checked in a body of its own
        # with its arguments or params not known is a float (checker.powers), which a use
        # checked before it would not know
        items = sorted(main.program.items, key=lambda i: 0 if isinstance(i, A.FnDef) else
                       1 if isinstance(i, A.BlockDef | A.LayerDef) else 2)
        for item in items:
            d = loader.defs.get(getattr(item, "name", None))
            if d is not None and d.node is item:
                try:
                    checker.check_definition(d)
                except RecursionError:
                    diags.append(Diagnostic(
                        "E0203", f"`{d.name}` nests too deeply to check", item.span,
                        help="split long expressions into several `let` statements"))
        try:
            check_entry(checker, main.program)   # top-level statements and `main { }`
        except RecursionError:
            diags.append(Diagnostic("E0203", "the program's statements nest too deeply to "
                                             "check", None))
        # names reach generated code from every definition, imported ones included
        for d in loader.defs.values():
            check_names(d.node, checker.report)
        for stmt in entry_statements(main.program):
            check_names(stmt, checker.report)
    del parse_errors
    diags.sort(key=lambda d: (d.span is not None, d.span.file if d.span else "",
                              d.span.line if d.span else 0, d.span.col if d.span else 0))
    ordered = {loader.key(src): main}
    ordered.update(loader.modules)
    return CheckResult(main.program, _dedupe(diags), loader.sources, loader.defs,
                       {m.source.name: m for m in ordered.values()},
                       frozenset(checker.scalar_tensor_args), dict(checker.call_forms))


def _expand_tables(loader: _Loader, checker: Checker) -> None:
    """The rows of every table `Kind[] { … }` as named instances (check.repetition)."""
    def params_of(kind: str):
        d = loader.defs.get(kind)
        if d is None or not isinstance(d.node, A.ModelDef | A.BlockDef | A.LayerDef):
            return None
        return [p.name for p in checker.user_params(d.node)]

    for m in loader.modules.values():
        for item in m.program.items:
            if isinstance(item, A.ModelDef | A.BlockDef | A.LayerDef):
                for decl in item.body:
                    if isinstance(decl, A.LayerDecl):
                        expand_table(decl, item.body, params_of)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen = set()
    out = []
    for d in diags:
        key = (d.code, d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def check_source(text: str, file: str = "<input>", path: Path | None = None) -> CheckResult:
    """Check program text. Never raises for bad input: problems come back as diagnostics."""
    return _check(SourceFile(file, text, path))


def check_bytes(data: bytes, file: str = "<input>") -> CheckResult:
    try:
        src = decode_source(data, file)
    except DiagnosticError as err:
        return CheckResult(None, err.diagnostics, SourceMap())
    return _check(src)


def check_file(path: str | os.PathLike[str]) -> CheckResult:
    try:
        src = read_source(path)
    except DiagnosticError as err:
        return CheckResult(None, err.diagnostics, SourceMap())
    return _check(src)
