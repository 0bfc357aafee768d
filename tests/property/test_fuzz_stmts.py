"""Fuzzing statement-list programs, `main { }` blocks and f-strings (issue 13, forms 1 and
8): whatever the text, checking gives diagnostics with known codes and no traceback; a
program that checks formats to text that parses back to the same AST, generates a module
that validates, imports without running anything, and whose entry prints exactly what the
same computation prints in Python (hostile literal text included, which never runs).

The number of examples comes from TRITIUM_FUZZ_EXAMPLES (`make fuzz` runs 20,000 per
target), like tests/property/test_fuzz_hostile.py.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import sys
import types
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tritium.backends.pytorch.codegen import generate
from tritium.backends.pytorch.validate import validate
from tritium.check import check_source
from tritium.frontend.diagnostics import CODES
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse

sys.path.insert(0, str(Path(__file__).parent))
from strategies import SENTINEL, hostile_text, tri_string  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402

NAMES = ["a", "b", "total", "x1", "step", "main", "print_", "self", "len_", "_tmp"]
SPECS = ["", ">4", "<6", "^5", "+", "05", ".2", ",", "_", "*>7", "#x", "08.3f", ".1%", "e",
         "d", "s", "{", "}", "'", "\\", "!", ":", "x{1}", "=>3", "z"]
CONVS = ["", "!r", "!s", "!a", "!q", "!"]

ints = st.integers(-10**6, 10**6)


def _escape_text(text: str) -> str:
    """The .tri f-string text (inside the quotes) whose value is `text`."""
    out = []
    for ch in text:
        if ch in "{}":
            out.append(ch * 2)
        else:
            out.append(tri_string(ch)[1:-1])
    return "".join(out)


@st.composite
def scripts(draw) -> tuple[str, list[str]]:
    """A program of top-level statements over ints and strings, with the lines Python
    prints for it (the oracle)."""
    env: dict[str, object] = {}
    lines: list[str] = []
    expected: list[str] = []
    in_main = draw(st.booleans())
    body: list[str] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.integers(0, 3))
        if kind == 0 or not env:
            name = draw(st.sampled_from(NAMES))
            if draw(st.booleans()):
                v: object = draw(ints)
                src = str(v)
            else:
                v = draw(hostile_text)
                src = tri_string(v)
            typed = ": int" if isinstance(v, int) and draw(st.booleans()) else ""
            stmt = f"let {name}{typed} = {src}" if draw(st.booleans()) else f"{name} = {src}"
            env[name] = v
            body.append(stmt)
        elif kind == 1:
            name = draw(st.sampled_from(sorted(env)))
            other = draw(st.sampled_from(sorted(env)))
            if isinstance(env[name], int) and isinstance(env[other], int):
                body.append(f"{name} += {other}")
                env[name] = env[name] + env[other]
        else:
            parts = []
            out = []
            for _ in range(draw(st.integers(0, 4))):
                text = draw(hostile_text)
                parts.append(_escape_text(text))
                out.append(text)
                name = draw(st.sampled_from(sorted(env)))
                v = env[name]
                spec = draw(st.sampled_from([s for s in SPECS if s in ("", ">4", "<6", "^5",
                                                                         "*>7", "=>3")]
                                            if isinstance(v, str) else
                                            [s for s in SPECS if s in ("", ">4", "+", "05",
                                                                       ",", "_", "#x", "08.3f",
                                                                       ".1%", "e", "d")]))
                parts.append("{" + name + (":" + spec if spec else "") + "}")
                out.append(format(v, spec))
            body.append(f'print(f"{"".join(parts)}")')
            expected.append("".join(out))
    if in_main:
        lines.append("main {")
        lines.extend("    " + s for s in body)
        lines.append("}")
    else:
        lines.extend(body)
    return "\n".join(lines) + "\n", expected


def _run_entry(python: str) -> str:
    validate(python)
    mod = types.ModuleType("tritium_fuzz_stmts")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(python, "<fuzz>", "exec"), mod.__dict__)
        assert buf.getvalue() == "", "importing the module ran statements"
        entry = getattr(mod, "_main", None) or mod.main
        entry()
    assert not hasattr(builtins, SENTINEL), "a payload ran"
    return buf.getvalue()


@fuzz(300)
@given(scripts())
def test_fuzz_scripts_run_and_print_what_python_prints(case) -> None:
    src, expected = case
    result = check_source(src)
    assert all(d.code in CODES for d in result.diagnostics)
    assert result.ok, (src, [(d.code, d.message) for d in result.errors])
    out = format_source(src)
    assert parse(out)[0] == parse(src)[0]
    printed = _run_entry(generate(result))
    assert printed == "".join(line + "\n" for line in expected)


@st.composite
def fstring_soup(draw) -> str:
    """f-strings assembled from braces, quotes, specs, conversions and expression bits."""
    bits = draw(st.lists(st.one_of(
        st.sampled_from(["{", "}", "{{", "}}", "{a}", "{a:", "{b!r}", "\\", "\\u{41}", "'",
                         '"', ":", "!", "a + 1", "[1, 2]", "f(", ")", "//", "#", " ", "x"]),
        st.sampled_from(SPECS), st.sampled_from(CONVS), hostile_text),
        max_size=10))
    quote = draw(st.sampled_from(['"', "'"]))
    field = "".join(bits)
    head = draw(st.sampled_from(["let a = 1\nlet b = \"s\"\n", "fn f(a: int) -> int {\n",
                                 "main {\n", ""]))
    tail = {"fn f(a: int) -> int {\n": "\nreturn a\n}\n", "main {\n": "\n}\n"}.get(head, "\n")
    return f"{head}print(f{quote}{field}{quote}){tail}"


@fuzz(600)
@given(fstring_soup())
def test_fuzz_fstring_soup_gives_diagnostics_or_runs(src: str) -> None:
    result = check_source(src)
    assert all(d.code in CODES for d in result.diagnostics), \
        [d.code for d in result.diagnostics]
    if not result.ok:
        return
    out = format_source(src)
    assert parse(out)[0] == parse(src)[0], (src, out)
    python = generate(result)
    validate(python)
    if "def main" in python or "def _main" in python:
        try:
            _run_entry(python)
        except (TypeError, ValueError, NameError) as exc:
            # only what Python's format() refuses for an unknown value may fail at run time
            assert "format" in str(exc) or "Unknown" in str(exc), (src, exc)


@fuzz(400)
@given(st.text(alphabet=st.sampled_from(list("let x=1\nprint(f\"{}:!r.3f\\')main{ }#/+")),
               max_size=80))
def test_fuzz_top_level_text_never_raises(src: str) -> None:
    result = check_source(src)
    assert all(d.code in CODES for d in result.diagnostics)
    if result.ok:
        validate(generate(result))
