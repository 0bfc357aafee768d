"""PyTorch code generation: one readable `nn.Module` class per model, block and layer.

Builtin layer kinds become `torch.nn` modules or `tritium.runtime` layers (which carry the
quantizer, the straight-through estimator in training and, after `freeze()`, packed weights
and native kernels). Block and layer hyperparameters become keyword-only constructor
arguments, so one class serves every configuration; conditional layers and repetitions are
built in `__init__` (a repetition with a known count written out instance by instance).
Each class's docstring names the `.tri` file and line it came from; `annotate=True` adds a
comment echoing the `.tri` line above every statement. The generated source imports only
the parts of `torch` and `tritium.runtime` it uses, and passes the project's ruff config.

Names from the program pass through `tritium.frontend.names` (an injective mapping: no
keyword, builtin, import, internal name or `nn.Module` attribute can be shadowed, and two
names never meet), strings are emitted with `repr`, file names and source lines in comments
and docstrings through `text.escape`, and infinities as `float('inf')`, so nothing in a
`.tri` file or its file name can leave a string literal or an identifier. The finished
source is checked by `validate` (the shape this generator writes) before it is returned.

The generator is split by job: `classes` (one class or function per definition),
`expressions` (method bodies), `text` (header, literals, escaping, wrapping); this module
holds the driver and the templates of the builtin layer kinds and functions.
"""

from __future__ import annotations

import ast as pyast
import re

from ... import vocab
from ...check import CheckResult
from ...check import library as L
from ...check.builtins import FUNCTIONS, PY_CALL, BindError, bind, resolve
from ...check.checker import Checker, Definition, Scope
from ...check.checker.model import entry_statements, has_entry
from ...frontend import ast as A
from ...frontend.names import BadName, py_local
from .classes import DefinitionGen, atomic
from .expressions import BodyGen, Ctx
from .text import MAX_LINE, CodegenError, header, wrap
from .text import escape as _text
from .text import literal as _q
from .validate import UnsafeSourceError, validate

_QUANT_ALIASES = vocab.QUANTIZER_ALIASES


class PyTorchCodegen(DefinitionGen, BodyGen):
    """The code generator: one instance per checked program (`generate`)."""

    def __init__(self, result: CheckResult, annotate: bool = False):
        if not result.ok:
            raise CodegenError("the program has errors; run `tritium check`")
        self.result = result
        self.annotate = annotate
        self.defs = {n: d for n, d in result.definitions.items()}
        self.checker = Checker(result.definitions, [])
        self.out: list[str] = []
        self.class_names = {n: py_local(n) for n in self.defs}
        self.scope = Scope()   # the known constants of the definition being generated
        # False while writing a module function (a `fn`, the entry): there is no `self`, so
        # a template's `self.training` is inference (False)
        self.in_class = True

    # ------------------------------------------------------------------ driver
    def generate(self) -> str:
        from ... import __version__
        files = _text(", ".join(sorted({d.file for d in self.defs.values()})))
        parts = []
        for d in self.ordered():
            self.out = []
            self.in_class = d.kind != "fn"
            if d.kind == "fn":
                self.gen_function(d)
            else:
                self.gen_class(d)
            parts.append("\n".join(self.out))
        if has_entry(self.result.program):
            self.out = []
            self.in_class = False
            self.gen_entry()
            parts.append("\n".join(self.out))
        names = [self.class_names[d.name] for d in self.ordered() if d.kind != "fn"]
        parts.append("__all__ = [" + ", ".join(repr(n) for n in names) + "]")
        body = "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
        try:
            # the names the code uses decide the imports (program names never map to the
            # imported ones: frontend.names reserves them)
            used = {n.id for n in pyast.walk(pyast.parse(body)) if isinstance(n, pyast.Name)}
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise CodegenError(f"internal error: {exc}") from None
        # isort's blank lines after the imports: two before a definition, else one
        gap = "\n" if body.startswith("__all__") else "\n\n"
        source = header(__version__, files, used) + gap + body
        try:
            validate(source)
        except UnsafeSourceError as exc:   # a code generator bug, never a program's fault
            raise CodegenError(f"internal error: {exc}") from None
        return source

    def ordered(self) -> list[Definition]:
        """Definitions with every dependency before its users (a stable topological order)."""
        done: list[Definition] = []
        seen: set[str] = set()

        def deps(d: Definition) -> list[str]:
            out = []
            for item in getattr(d.node, "body", []):
                if isinstance(item, A.LayerDecl):
                    out.extend(k.kind for k in item.kinds if k.kind in self.defs)
                    out.extend(k.kind for b in item.orelse for k in b.kinds if k.kind in self.defs)
            stack = list(getattr(d.node, "body", []))
            while stack:
                x = stack.pop()
                if isinstance(x, A.Call) and isinstance(x.func, A.Name) and x.func.id in self.defs:
                    out.append(x.func.id)
                if hasattr(x, "__slots__"):
                    for s in x.__slots__:
                        v = getattr(x, s, None)
                        if isinstance(v, list):
                            stack.extend(v)
                        elif hasattr(v, "__slots__") and not isinstance(v, str):
                            stack.append(v)
            return out

        def visit(d: Definition, depth: int = 0) -> None:
            if d.name in seen or depth > 200:
                return
            seen.add(d.name)
            for n in deps(d):
                visit(self.defs[n], depth + 1)
            done.append(d)

        for d in sorted(self.defs.values(), key=lambda d: (d.node.span.file, d.node.span.line)):
            visit(d)
        return done

    def gen_entry(self) -> None:
        """The program's entry (its top-level statements and `main { }` blocks, in source
        order) as a module function that runs nothing on import: `tritium run` calls it."""
        program = self.result.program
        name = entry_name(self.result)
        self.emit(0, f"def {name}():")
        self.emit(1, f'"""The statements of {_text(program.file)}, run by `tritium run`."""')
        self.block(entry_statements(program), Ctx(), 1)

    def emit(self, indent: int, line: str) -> None:
        if not line:
            self.out.append("")
            return
        self.out.extend(wrap("    " * indent + line))

    def origin(self, indent: int, node) -> None:
        """With `annotate`, a comment with the `.tri` line number and (shortened) source line
        that `node` came from; without, the one line per class or function, its docstring,
        names the file and line."""
        span = getattr(node, "span", None)
        if not self.annotate or span is None or span.line == 0:
            return
        text = self.result.sources.line(span.file, span.line)
        if text is None:
            return
        # the file is the one the class's (or function's) docstring names
        head = f"# line {span.line}: "
        text = _text(text.strip())
        room = MAX_LINE - 4 * indent - len(head)
        if len(text) > room:
            text = text[:max(room - 3, 0)].rstrip("\\") + "..."
        self.emit(indent, head + text)

    def builtin_ctor(self, spec: L.LayerSpec, given: dict[str, str]) -> str:
        """A builtin layer kind's constructor call, from its record's `torch` entry
        (tritium.check.library): positional keys, keyword keys the program gives, keys
        always written, literal extras; quantizer aliases become canonical names."""
        t = spec.torch
        for alias, key in spec.key_aliases:
            if alias in given:
                given.setdefault(key, given.pop(alias))
        if "quantizer" in given:
            q = given["quantizer"]
            for alias, canon in _QUANT_ALIASES.items():
                if q == repr(alias):
                    given["quantizer"] = repr(canon)
                    if vocab.quantizer_per_channel(alias) and "per_channel" in spec.keys:
                        given.setdefault("per_channel", "True")   # `adaptive_ternary`
        if t.ctor.startswith("trt.") and given.get("padding") in ("'same'", "'valid'"):
            given["padding"] = self.static_padding(given)   # the runtime's convs take numbers
        args = [given[k] for k in t.args if k in given]
        for k in t.kwargs:
            key = spec.keys.get(k)
            if k in given:
                args.append(f"{k}={given[k]}")
            elif k in t.always and key is not None and key.default is not None:
                args.append(f"{k}={_q(key.default)}")
        args.extend(t.extra)
        call = f"{t.ctor}({', '.join(args)})"
        if "format" in given and "format" in spec.keys:
            return f"trt.with_format({call}, {given['format']})"
        return call

    @staticmethod
    def static_padding(given: dict[str, str]) -> str:
        if given["padding"] == "'valid'":
            return "0"
        k = given.get("kernel_size", "1")
        d = given.get("dilation", "1")
        return f"trt.same_padding({k}, {d})"

    def canonical_quantizer(self, name: str) -> str:
        """The runtime's name of a quantizer (`deterministic` -> `threshold`, ...)."""
        return _QUANT_ALIASES.get(name, name)

    def builtin(self, n: str, pos: list[str], kw: dict[str, str], span=None) -> str:
        """A builtin function call: its record's PyTorch template (tritium.check.builtins)
        filled with the arguments' source, a missing argument with its default; the form
        the checker chose by the arguments' types (`CheckResult.call_forms`) when it did."""
        n = resolve(n, [(None, p) for p in pos] + list(kw.items()))
        spec = FUNCTIONS[n]
        form = self.result.call_forms.get(span) if span is not None else None
        if spec.torch == PY_CALL:   # named arguments are the record's (the checker says so)
            names = {p.name for p in spec.params}
            extra = [f"{k}={v}" for k, v in kw.items() if k in names and k != "label"]
            if n == "print" and "label" in kw:   # the seed's print(x, label="X"): `X: x`
                pos = [f"str({kw['label']}) + ':'", *pos]
            # an alias (`length` of `len`) calls the Python builtin it stands for
            return f"{spec.of or n}({', '.join([*pos, *extra])})"
        if spec.pair_op and form == "scalar":
            return f"{'max' if spec.pair_op == 'maximum' else 'min'}({pos[0]}, {pos[1]})"
        if spec.pair_op and form == "pair":
            return (f"torch.{spec.pair_op}(torch.as_tensor({pos[0]}), "
                    f"torch.as_tensor({pos[1]}))")
        try:
            given, _where = bind(spec, [(None, p) for p in pos] + list(kw.items()))
        except BindError as exc:   # the checker reports these; never reached for checked code
            raise CodegenError(f"`{n}`: the arguments do not fit ({exc.kind} "
                               f"{exc.name or ''})") from None
        args = {p.name: given[p.name] if p.name in given else _q(p.default) for p in spec.params}
        marks: dict[str, str] = {}   # placeholder -> an argument's source (see `fill`)
        for k, src in args.items():
            if atomic(src) != src:   # `a - b`, `-a`: not safe next to an operator
                marks[mark := f"\x00{len(marks)}\x00"] = src
                args[k] = mark
        if callable(spec.torch):
            out = spec.torch(args, set(given) | ({f"@{form}"} if form else set()))
        else:
            out = spec.torch.format(**args)
        out = fill(out, marks)
        if not self.in_class:   # a module-level function has no `self`
            out = out.replace("training=self.training", "training=False")
        return out


_MARK = re.compile("\x00([0-9]+)\x00")
#: what precedes an argument written where a call's argument stands: `(`, `[`, `, `, `name=`
_ARG_BEFORE = re.compile(r"(?:[(\[,]|[(,]\s*[A-Za-z_][A-Za-z0-9_]*=)\s*$")
_ARG_AFTER = re.compile(r"\s*[)\],]")


def fill(out: str, marks: dict[str, str]) -> str:
    """A builtin's filled template with each placeholder of `marks` replaced by its argument's
    source: as written where a call's argument stands (`torch.relu(a + b)`), in parentheses
    anywhere else (`(a + b).permute(...)`, `(a - b) ** 2`), so no template can change how an
    argument's operators bind."""
    def put(m: re.Match) -> str:
        src = marks[m.group(0)]
        before, after = out[:m.start()], out[m.end():]
        if _ARG_BEFORE.search(before) and _ARG_AFTER.match(after) and not _tuple(src):
            return src
        return f"({src})"
    return _MARK.sub(put, out) if marks else out


def _tuple(src: str) -> bool:
    """Whether `src` is a tuple without its parentheses (`a, b`), which a call would read as
    two arguments."""
    try:
        return isinstance(pyast.parse(src.strip(), mode="eval").body, pyast.Tuple)
    except SyntaxError:
        return False


def entry_name(result: CheckResult) -> str:
    """The generated module's function holding the program's entry: `main`, or `_main` when
    a definition of the program is itself called `main` (`_main` is in the code generator's
    own namespace: no program name maps to it, see frontend.names)."""
    taken = {py_local(n) for n in result.definitions}
    return "_main" if "main" in taken else "main"


def generate(result: CheckResult, annotate: bool = False) -> str:
    """The PyTorch source for every model, block, layer and function of a checked program.
    Each class's and function's docstring names the `.tri` file and line it came from; with
    `annotate`, every statement also follows a comment echoing its `.tri` line."""
    try:
        return PyTorchCodegen(result, annotate).generate()
    except BadName as exc:      # the checker reports such names (E0311); never emitted
        raise CodegenError(str(exc)) from None
