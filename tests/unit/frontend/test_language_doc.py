"""docs/language.md stays in step with the code: its tables of builtin layer kinds, builtin
functions and diagnostic codes are generated from tritium.check.library and
tritium.frontend.diagnostics.CODES, and every construct it shows parses.

Regenerate the tables after changing the library or the codes:

    .venv/bin/python tests/unit/frontend/test_language_doc.py --write
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "language.md"
BEGIN = "<!-- BEGIN GENERATED: library tables (tests/unit/frontend/test_language_doc.py) -->"
END = "<!-- END GENERATED -->"


def _value(v: object) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "`true`" if v else "`false`"
    if isinstance(v, str):
        return f'`"{v}"`'
    return f"`{v}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_tables() -> str:
    from tritium.check.builtins import FUNCTIONS
    from tritium.check.library import LAYER_ALIASES, LAYERS
    from tritium.frontend.diagnostics import CODES

    out: list[str] = [BEGIN, "", "### Builtin layer kinds", ""]
    out.append("| kind | what it is | ternary weights | positional order for `Kind(a, b, …)` |")
    out.append("|---|---|---|---|")
    for name, spec in LAYERS.items():
        pos = ", ".join(f"`{p}`" for p in spec.positional) or "—"
        ternary = "yes" if spec.ternary else "no"
        out.append(f"| `{name}` | {_cell(spec.doc)} | {ternary} | {pos} |")
    out.append("")
    aliases = ", ".join(f"`{a}` → `{b}`" for a, b in LAYER_ALIASES.items())
    out.append(f"Aliases: {aliases}.")
    out.append("")
    out.append("Config keys of each kind (`type` as in the checker: `pair` is an int or "
               "`[h, w]`, `ints` an int or a list of ints, `padding` a pair or "
               '`"same"`/`"valid"`):')
    out.append("")
    for name, spec in LAYERS.items():
        out.append(f"#### `{name}`")
        out.append("")
        if not spec.keys:
            out.append("No config keys.")
            out.append("")
            continue
        out.append("| key | type | default | required | allowed values / notes |")
        out.append("|---|---|---|---|---|")
        for key, k in spec.keys.items():
            notes = []
            if k.choices:
                notes.append(", ".join(_value(c) for c in k.choices))
            if k.min is not None and k.type in ("int", "float", "pair", "ints", "padding"):
                notes.append(f"≥ {k.min:g}")
            if k.max is not None:
                notes.append(f"≤ {k.max:g}")
            if k.doc:
                notes.append(k.doc)
            required = "yes" if k.required else "no"
            out.append(f"| `{key}` | {k.type} | {_value(k.default)} | {required} | "
                       f"{_cell('; '.join(notes))} |")
        out.append("")
    out.append("### Builtin functions")
    out.append("")
    out.append("Parameters are written `name: kind` (`tensor`, `int`, `float`, `bool`, `str`, "
               "`ints`, `shape` = list of dims, `tensors` = list of tensors, `any`); optional "
               "ones show their default. Every parameter can also be passed by name.")
    out.append("")
    out.append("| function | parameters | what it computes |")
    out.append("|---|---|---|")
    for name, fn in FUNCTIONS.items():
        params = []
        for p in fn.params:
            text = f"{p.name}: {p.kind}"
            if not p.required:
                text += f" = {_value(p.default).strip('`') if p.default is not None else 'None'}"
            params.append(text)
        if fn.variadic:
            params.append("…")
        out.append(f"| `{name}` | `{_cell(', '.join(params))}` | {_cell(fn.doc)} |")
    out.append("")
    out.append("### Diagnostic codes")
    out.append("")
    out.append("| code | meaning |")
    out.append("|---|---|")
    for code, meaning in CODES.items():
        out.append(f"| `{code}` | {_cell(meaning)} |")
    out.append("")
    out.append(END)
    return "\n".join(out)


def write() -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + render_tables() + text[end:], encoding="utf-8")


def test_generated_tables_are_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    current = text[text.index(BEGIN):text.index(END) + len(END)]
    assert current == render_tables(), (
        "docs/language.md is out of date: run "
        "`.venv/bin/python tests/unit/frontend/test_language_doc.py --write`")


def test_every_tri_example_in_the_doc_parses() -> None:
    from tritium.frontend.parser import parse

    blocks = re.findall(r"```tri\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 20
    for block in blocks:
        _, diagnostics, _ = parse(block)
        assert not diagnostics, f"{diagnostics[0].message} in\n{block}"


def test_grammar_mentions_every_keyword_and_operator() -> None:
    from tritium.frontend.lexer import KEYWORDS, OPERATORS

    text = DOC.read_text(encoding="utf-8")
    grammar = text[text.index("```ebnf"):]
    grammar = grammar[:grammar.index("```", 7)]
    for kw in KEYWORDS:
        assert f'"{kw}"' in grammar, f"keyword {kw} missing from the grammar"
    for op in OPERATORS:
        if op not in ("...", "|"):
            assert f'"{op}"' in grammar, f"operator {op} missing from the grammar"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    if "--write" in sys.argv:
        write()
    else:
        print(render_tables())
