"""The table of compile stages and how each one is produced from the one before it.

    tokens ─► ast ─► check ─┬─► py                              (--target pytorch)
                            └─► ir ─► ir-opt ─┬─► triton        (--target triton)
                                              └─► ttir ─► ttgir ─► llir ─► ptx ─► cubin
                                                                   (--target cuda:sm_80|sm_90)

Like OpenAI Triton's ``compile()``, a stage is produced only when something asks for it (a
requested ``--emit``, or a later stage that consumes it), each is timed, and each can be
dumped as text (``cubin`` as bytes). Where a stage is kept is part of its row: ``compile``
stages live in the compile cache entry of the program (:mod:`tritium.driver.compile`), the
AOT stages in the Triton build cache (:mod:`tritium.backends.triton.aot`), and the cheap
front stages are recomputed.

A stage that fails raises :class:`CompileError` with diagnostics: a program the IR lowering
cannot handle is ``E0701`` with the span the lowering points at, a code generator failure
``E0021``, a kernel build failure ``E0022``, a backend whose package is missing ``E0023``.
Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..frontend.diagnostics import Diagnostic, SourceMap


class CompileError(Exception):
    """The program (or the request) is wrong: carries diagnostics for rendering."""

    def __init__(self, diagnostics: list[Diagnostic], sources: SourceMap | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or SourceMap()
        super().__init__("; ".join(d.message for d in diagnostics))


@dataclass(frozen=True)
class Stage:
    name: str
    after: str | None        # the stage whose output this one consumes
    what: str                # one line for --help and the docs
    cache: str | None        # "compile" (compile cache entry), "aot" (Triton build cache), None
    binary: bool = False


_TABLE = (
    Stage("tokens", None, "the token stream, one token a line", None),
    Stage("ast", "tokens", "the syntax tree", None),
    Stage("check", "ast", "the checked definitions and the warnings", None),
    Stage("py", "check", "the generated PyTorch nn.Module source", "compile"),
    Stage("ir", "check", "the Tritium IR as lowered", "compile"),
    Stage("ir-opt", "ir", "the IR after the -O pipeline", "compile"),
    Stage("triton", "ir-opt", "generated Triton kernel source", "compile"),
    Stage("ttir", "ir-opt", "Triton IR of every kernel", "aot"),
    Stage("ttgir", "ttir", "Triton GPU IR", "aot"),
    Stage("llir", "ttgir", "LLVM IR", "aot"),
    Stage("ptx", "llir", "PTX assembly", "aot"),
    Stage("cubin", "ptx", "CUDA binaries (written to a directory)", "aot", binary=True),
)
STAGES: dict[str, Stage] = {s.name: s for s in _TABLE}
"""Every stage by name, in pipeline order."""

CACHED = tuple(s.name for s in _TABLE if s.cache == "compile")
AOT_STAGES = tuple(s.name for s in _TABLE if s.cache == "aot")
GPU_STAGES = ("triton", *AOT_STAGES)
IR_STAGES = ("ir", "ir-opt", *GPU_STAGES)
"""The stages that need the program lowered to IR."""

TARGETS = ("pytorch", "triton", "cuda:sm_80", "cuda:sm_90")


def chain(stage: str) -> list[str]:
    """`stage` and every stage before it, first stage first."""
    out = []
    name: str | None = stage
    while name is not None:
        out.append(name)
        name = STAGES[name].after
    return out[::-1]


def target_stages(target: str) -> tuple[str, ...]:
    """The stages `target` can emit besides the front and IR stages."""
    if target == "pytorch":
        return ("py",)
    if target == "triton":
        return ("triton",)
    return AOT_STAGES


def option_error(message: str, help: str | None = None) -> CompileError:  # noqa: A002
    """An unusable compiler option (an unknown target, level or stage): E0006."""
    return CompileError([Diagnostic("E0006", message, None, help=help)])


# ----------------------------------------------------------------------------- dumps

def dump_tokens(text: str, file: str) -> str:
    from ..frontend.lexer import tokenize
    lines = []
    for t in tokenize(text, file).tokens:
        shown = t.text.replace("\n", "\\n")
        lines.append(f"{t.line}:{t.col}\t{t.kind.name}\t{shown}")
    return "\n".join(lines) + "\n"


def dump_ast(node, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(node, list):
        if not node:
            return "[]"
        return "[\n" + "".join(f"{pad}  {dump_ast(x, indent + 1)}\n" for x in node) + pad + "]"
    if hasattr(node, "__dataclass_fields__"):
        fields = [f for f in node.__dataclass_fields__ if f != "span"]
        span = getattr(node, "span", None)
        where = f" @{span.line}:{span.col}" if span is not None and span.line else ""
        inner = "".join(f"{pad}  {f}: {dump_ast(getattr(node, f), indent + 1)}\n"
                        for f in fields)
        return f"{type(node).__name__}{where}\n{inner}".rstrip("\n")
    return repr(node)


def dump_check(checked) -> str:
    """The `check` stage: one line per checked definition (kind, name, file), then the
    warnings, one line each (rendered in full by `tritium check`)."""
    lines = [f"{d.kind} {d.name}\t{d.file}" for d in checked.definitions.values()]
    for d in checked.diagnostics:
        where = f"{d.span}: " if d.span is not None else ""
        lines.append(f"{where}{d.severity.value}[{d.code}]: {d.message}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- producers

def generate_python(checked, annotate: bool = False) -> str:
    """The `py` stage. `annotate` asks the code generator for a source echo above every
    statement, where the installed code generator offers it (a `generate(..., annotate=)`
    keyword); elsewhere its default output is returned."""
    from ..backends.pytorch.codegen import CodegenError, generate
    from ..frontend.parser import recursion_headroom

    kwargs = {"annotate": True} if annotate and codegen_annotates() else {}
    try:
        with recursion_headroom():
            return generate(checked, **kwargs)
    except CodegenError as exc:
        raise CompileError([Diagnostic("E0021", f"cannot generate PyTorch code: {exc}", None)],
                           checked.sources) from None
    except RecursionError:
        raise CompileError([Diagnostic("E0203", "the program nests too deeply to generate code",
                                       None, help="split long expressions into `let`s")],
                           checked.sources) from None


def codegen_annotates() -> bool:
    """Whether the PyTorch code generator takes `annotate=` (per-statement source echoes)."""
    import inspect

    from ..backends.pytorch.codegen import generate
    return "annotate" in inspect.signature(generate).parameters


def lower_program(checked):
    """The `ir` stage as a module: a LoweringError becomes diagnostic E0701 at its span."""
    from ..frontend.parser import recursion_headroom
    from ..ir.lowering import LoweringError, lower

    try:
        with recursion_headroom():
            return lower(checked).module
    except LoweringError as exc:
        raise CompileError([Diagnostic("E0701", f"cannot lower to IR: {exc.message}", exc.span,
                                       help=exc.help)], checked.sources) from None
    except RecursionError:
        raise CompileError([Diagnostic("E0203", "the program nests too deeply to lower to IR",
                                       None, help="split long expressions into `let`s")],
                           checked.sources) from None


def optimize(module, opt_level: int, print_ir_after_all=None) -> str:
    """Run the -O pipeline on `module` in place; returns the pass report table."""
    from ..passes import pipeline

    pm = pipeline(f"O{opt_level}")
    if print_ir_after_all is not None:
        pm.print_ir_after_all = print_ir_after_all
    return pm.run(module).table()


def triton_source(ir_opt: str, title: str) -> str:
    """The `triton` stage: the Triton source of every kernel the optimized IR needs."""
    from ..backends.triton.extract import model_source
    from ..ir import parse_module

    return model_source(parse_module(ir_opt), title)


def aot_build(ir_opt: str, target: str, use_cache: bool, file: str):
    """The AOT stages (ttir … cubin) of every kernel, built for `target` (cached by the
    Triton backend): an ``AotBuild``. A missing `triton` package is E0023, a kernel that does
    not build E0022."""
    from ..ir import parse_module

    try:
        from ..backends.triton.aot import AotError, build_model
    except ImportError as exc:
        raise CompileError([Diagnostic(
            "E0023", f"the {target} target needs the `triton` package: {exc}", None,
            help="pip install 'tritium[gpu]'")]) from None
    try:
        return build_model(parse_module(ir_opt), target, use_cache=use_cache)
    except AotError as exc:
        raise CompileError([Diagnostic("E0022", f"{file}: {exc}", None)]) from None
