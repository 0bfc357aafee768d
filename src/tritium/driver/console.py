"""What every `tritium` subcommand shares, below `tritium.cli` so that the CLI and the
driver's own commands (`driver.train_cli`) import it without importing each other: exit
codes, the usage codes, rendering diagnostics to the terminal, and `--set NAME=VALUE`."""

from __future__ import annotations

import os
import sys

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
USAGE_CODES = frozenset({"E0001", "E0002", "E0003", "E0004", "E0005", "E0006"})
"""Diagnostic codes of a bad command line or input file rather than a bad program (exit 2)."""


def exit_code(diagnostics) -> int:
    """EXIT_USAGE when the first diagnostic is a usage problem, else EXIT_FAIL."""
    return EXIT_USAGE if diagnostics and diagnostics[0].code in USAGE_CODES else EXIT_FAIL


def color(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR") or os.environ.get("CLICOLOR_FORCE"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def emit_diagnostics(diags, sources, error_format: str = "human") -> None:
    """Render diagnostics on stderr (or as JSON lines on stdout)."""
    from ..frontend.diagnostics import render, render_json

    out = sys.stderr
    if error_format == "json":
        for d in diags:
            print(render_json(d), file=sys.stdout)
        return
    use_color = color(out)
    for d in diags:
        print(render(d, sources, color=use_color), file=out)
        print(file=out)


def usage_error(message: str) -> int:
    """Print a one-line usage error (`tritium: error: ...`); returns exit code 2."""
    print(f"tritium: error: {message}", file=sys.stderr)
    return EXIT_USAGE


_MAX_SET_INT = 2**31 - 1      # a hyperparameter is a size, a count or a flag


def parse_sets(items: list[str] | None) -> dict:
    """`--set NAME=VALUE` items: ints, finite floats, true/false or strings (ArgError)."""
    import math

    from ..argcheck import ArgError, quote

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


def input_diagnostic(path: str):
    """The usage diagnostic (E0001-E0003) for an input path that is not a readable regular
    file (missing, a directory, a FIFO or device, a name too long), else None. Checked
    before reading, so nothing blocks on a FIFO or reads `/dev/zero` forever."""
    from ..argcheck import input_error
    from ..frontend.diagnostics import Diagnostic

    err = input_error(path)
    return None if err is None else Diagnostic(*err, None)
