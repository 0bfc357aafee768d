"""One `Diagnostic` type for every user-facing error, rendered like rustc or as JSON lines.

    examples/mlp.tri:7:52: error[E0301]: unknown config key `out_feature` for `TernaryLinear`
       |
     7 |     layer fc1: TernaryLinear { in_features: 64, out_feature: 10 }
       |                                                ^^^^^^^^^^^ unknown key
       |
       = help: did you mean `out_features`?

Error codes are grouped by stage: E00xx usage/input, E01xx lexing, E02xx parsing,
E03xx names and config, E04xx types, E05xx shapes, E06xx imports, E07xx IR lowering,
W0xxx warnings.
The table of codes with a one-line meaning lives in `CODES` and in docs/language.md.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open region of one source file. Lines and columns are 1-based;
    `end_col` is the column just past the last character (on `end_line`)."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to(self, other: Span) -> Span:
        """The span from the start of `self` to the end of `other`."""
        return Span(self.file, self.line, self.col, other.end_line, other.end_col)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Label:
    span: Span
    message: str = ""


@dataclass(slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None
    severity: Severity = Severity.ERROR
    label: str = ""
    secondary: list[Label] = field(default_factory=list)
    help: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict:
        def span_json(s: Span | None) -> dict | None:
            if s is None:
                return None
            return {"file": s.file, "line": s.line, "col": s.col,
                    "end_line": s.end_line, "end_col": s.end_col}

        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "span": span_json(self.span),
            "label": self.label,
            "secondary": [{"span": span_json(lb.span), "message": lb.message}
                          for lb in self.secondary],
            "help": self.help,
            "notes": list(self.notes),
        }


class DiagnosticError(Exception):
    """Raised to abort a stage with one or more diagnostics already collected."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("; ".join(d.message for d in diagnostics))


# Every code the compiler emits, with what it means. Tests check each is reachable.
CODES: dict[str, str] = {
    "E0001": "file not found",
    "E0002": "path is a directory",
    "E0003": "file cannot be read",
    "E0004": "file is not valid UTF-8",
    "E0005": "input too large",
    "E0006": "invalid compiler option (target, optimization level or stage)",
    "E0020": "generated module failed validation",
    "E0021": "PyTorch code generation failed",
    "E0022": "kernel build failed",
    "E0023": "backend package not installed",
    "E0101": "unexpected character",
    "E0102": "unterminated string literal",
    "E0103": "unterminated block comment",
    "E0104": "invalid escape sequence in string",
    "E0105": "malformed number literal",
    "E0106": "number literal out of range",
    "E0201": "unexpected token",
    "E0202": "expected a specific token",
    "E0203": "nesting too deep",
    "E0204": "invalid top-level item",
    "E0205": "invalid assignment target",
    "E0206": "duplicate definition",
    "E0301": "unknown config key",
    "E0302": "missing required config key",
    "E0303": "unknown layer kind",
    "E0304": "undefined name",
    "E0305": "undefined function",
    "E0306": "wrong number of arguments",
    "E0307": "unknown named argument",
    "E0308": "config value has the wrong type",
    "E0309": "invalid config value",
    "E0310": "layer used before definition or not callable",
    "E0311": "name not allowed",
    "E0312": "compile-time value too large",
    "E0313": "a conditional layer called where its condition is false",
    "E0401": "type mismatch",
    "E0402": "implicit float-to-int conversion",
    "E0403": "trit value outside {-1, 0, 1}",
    "E0404": "argument has the wrong type",
    "E0405": "operator not defined for these types",
    "E0406": "condition is not a bool",
    "E0407": "missing return",
    "E0501": "tensor literal value count disagrees with its shape",
    "E0502": "matmul inner dimensions differ",
    "E0503": "layer input shape mismatch",
    "E0504": "returned shape disagrees with declared return type",
    "E0505": "shapes cannot be broadcast",
    "E0506": "invalid reshape",
    "E0507": "rank mismatch",
    "E0508": "invalid dimension or index",
    "E0509": "non-positive output size",
    "E0601": "import cycle",
    "E0602": "imported file not found",
    "E0701": "program cannot be lowered to IR",
    "E0800": "unmatched brace in an f-string",
    "E0801": "empty expression in an f-string",
    "E0802": "invalid format spec in an f-string",
    "E0803": "unknown conversion in an f-string",
    "E0804": "format spec does not apply to the value",
    "E0805": "no statements to run (`tritium run`)",
    "E0806": "the program failed while running (`tritium run`)",
    "E0807": "comment inside an f-string field",
    "E0820": "a builtin's numeric argument is out of its range (temperature, threshold, steps)",
    "E0821": "tensor data is not a rectangular list of numbers (or of trits for dtype trit)",
    "E0822": "split sizes do not add up to the size of the dim",
    "E0823": "a shape argument does not match the tensor (normalized_shape, weight, bias)",
    "E0840": "variable used before it is assigned",
    "E0841": "declaration without a value where one is needed",
    "E0842": "generic type parameter bound not satisfied",
    "E0843": "generic type parameter cannot be bound",
    "E1040": "call of a function whose body is only `pass`",
    "E1041": "dict key that is not a string, number or bool",
    "E1042": "dict has no such key",
    "E1043": "`state` spec with a key or init a buffer does not take",
    "W1040": "function declares a result but its body is only `pass`",
    "W1041": "a rank-1 tensor added to a conv output lines up with its last dim, not channels",
    "E0860": "a range step is zero",
    "E0861": "a `while` loop does not end at compile time",
    "E0862": "`break` or `continue` outside a loop",
    "E0863": "an assertion is false at compile time",
    "E0864": "cannot unpack a value into that many names",
    "E0865": "a block used as a value in a place it cannot be",
    "E0880": "learned weight or parameter without a static shape",
    "E0881": "invalid parameter init spec",
    "E0882": "invalid value in a parameter init spec",
    "E0883": "invalid `state` declaration",
    "E0900": "form with no meaning for a tensor compiler (struct, trait, impl, global, extends, throws, spread)",
    "E0901": "section setting not supported",
    "E0960": "`pop` from an empty list, or at a position out of range",
    "E0961": "a list method's value is not in the list (`index`, `remove`) or the items do not compare (`sort`)",
    "E0962": "invalid type alias (a builtin type's name, defined twice, or referring to itself)",
    "E0964": "`with` of a context other than `no_grad()`",
    "E0965": "an anonymous function outside a function body",
    "E0966": "a method changes a list of the module (a config constant) in place",
    "E0970": "invalid QAT schedule (`qat_schedule`, `quantization_schedule`) in `training { }`",
    "E0990": "`/` of known ints that is not exact, stored into an int",
    "E0991": "a property of a type alias (`.shape`, `.rank`, …) that the type does not fix",
    "E0992": "`with_gradient_from` between values that are not a tensor and a tensor or number",
    "E0993": "an `if` over a tensor condition with a branch that is not a value to select",
    "E0994": "a layer constructed by calling its type with a weight that does not fit",
    "W0001": "unused variable",
    "W0002": "layer declared but never used",
    "W0003": "unused parameter",
    "W0004": "unknown section or section key",
    "W0900": "`//` starts a comment where a floor division may have been meant",
    "W0901": "a comment hides the closer of an open bracket",
    "W0980": "a `where` constraint on shapes that is parsed but not checked",
    "W0990": "`/` of ints not known yet, stored into an int, taken as integer division",
    "E1000": "a layer kind defined in several files of the program's directory, imported by none",
    "W1000": "a layer kind read from the one file of the program's directory that defines it (no import)",
    "W1001": "`//` read as floor division inside a list whose `]` a comment would hide",
    "E1010": "a value that is not a layer where a layer type (`Layer`, `Model`, …) is declared",
    "E1011": "a layer value called with another number of arguments than one tensor, or by name",
    "E1012": "a layer value called on something that is not a tensor",
    "E1013": "an attribute a layer value does not have, or one that cannot be assigned",
    "E1014": "a layer's `.weights` assigned something that is not a tensor",
    "E1015": "`Model(…)` / `Sequential(…)` not given one list of layers",
    "E1031": "a tensor type where a value is expected",
    "E1032": "a tensor constructed by its type (`Tensor<int32, [2, 2]>()`) with arguments or no shape",
    "W1034": "a list repeated by a float count (repeated floor(count) times)",
}


def suggest(name: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The closest candidate to a misspelled name, or None."""
    matches = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates) -> str | None:
    best = suggest(name, candidates)
    return f"did you mean `{best}`?" if best else None


class SourceMap:
    """Source texts by file name, for rendering the lines a diagnostic points at."""

    def __init__(self) -> None:
        self._texts: dict[str, list[str]] = {}

    def add(self, name: str, text: str) -> None:
        self._texts[name] = text.split("\n")

    def line(self, name: str, lineno: int) -> str | None:
        lines = self._texts.get(name)
        if lines is None or not (1 <= lineno <= len(lines)):
            return None
        return lines[lineno - 1].rstrip("\r")


def _display_width_prefix(line: str, col: int) -> int:
    # Tabs are shown as 4 spaces in the rendered source line; keep the caret aligned.
    prefix = line[: max(col - 1, 0)]
    return len(prefix.expandtabs(4))


def _safe(text: str, newlines: bool = False) -> str:
    """Text from a program or a file name as a terminal shows it: control characters
    (escape sequences), line and paragraph separators, bidirectional overrides and other
    invisible characters are written as `\\x1b`, `\\u202e`, … so that a program cannot
    move the cursor, recolor or hide text in the terminal that prints its diagnostics."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (newlines and c == "\n")
                   else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def render(diag: Diagnostic, sources: SourceMap | None = None, color: bool = False) -> str:
    """rustc-style text: header, the source line(s), carets, labels, help."""
    sev = diag.severity.value
    if color:
        colors = {"error": "\x1b[1;31m", "warning": "\x1b[1;33m", "note": "\x1b[1;36m"}
        c, b, r, blue = colors[sev], "\x1b[1m", "\x1b[0m", "\x1b[1;34m"
    else:
        c = b = r = blue = ""
    where = f"{_safe(str(diag.span))}: " if diag.span else ""
    out = [f"{b}{where}{r}{c}{sev}[{diag.code}]{r}{b}: {_safe(diag.message)}{r}"]
    labels: list[tuple[Span, str, bool]] = []
    if diag.span is not None:
        labels.append((diag.span, diag.label, True))
    labels.extend((lb.span, lb.message, False) for lb in diag.secondary)
    shown = [(s, m, p) for (s, m, p) in labels if sources and sources.line(s.file, s.line) is not None]
    if shown:
        width = max(len(str(s.line)) for s, _, _ in shown)
        pad = " " * width
        out.append(f"{blue}{pad} |{r}")
        last_file = diag.span.file if diag.span else None
        last_line: tuple[str, int] | None = None
        for span, msg, primary in shown:
            if span.file != last_file:
                out.append(f"{blue}{pad}::: {r}{_safe(str(span))}")
                last_file = span.file
            text = sources.line(span.file, span.line) or ""
            if (span.file, span.line) != last_line:
                out.append(f"{blue}{str(span.line).rjust(width)} |{r} "
                           f"{_safe(text.expandtabs(4))}")
            last_line = (span.file, span.line)
            start = _display_width_prefix(text, span.col)
            if span.end_line == span.line:
                end = _display_width_prefix(text, span.end_col)
            else:
                end = len(text.expandtabs(4))
            n = max(end - start, 1)
            mark = "^" if primary else "-"
            col = c if primary else blue
            tail = f" {_safe(msg)}" if msg else ""
            out.append(f"{blue}{pad} |{r} {' ' * start}{col}{mark * n}{tail}{r}")
        out.append(f"{blue}{pad} |{r}")
        prefix = f"{blue}{pad} = {r}"
    else:
        prefix = "  = "
    for note in diag.notes:
        out.append(f"{prefix}{b}note{r}: {_safe(note, newlines=True)}")
    if diag.help:
        out.append(f"{prefix}{b}help{r}: {_safe(diag.help, newlines=True)}")
    return "\n".join(out)


def render_json(diag: Diagnostic) -> str:
    return json.dumps(diag.to_json(), sort_keys=True)
