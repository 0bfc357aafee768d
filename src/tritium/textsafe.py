"""Text from a program or a file name (untrusted) made safe for the comments and docstrings of
generated Python source: one home for both code generators (the PyTorch modules and the
Triton kernels), which sit in different layers of the import graph."""

from __future__ import annotations

__all__ = ["escape"]


def escape(s: str) -> str:
    """Program text (a file name, a source line) made safe for a comment or a triple-quoted
    docstring: a backslash, a quote and every non-printable character (newlines, U+2028,
    lone surrogates, …) are written as escapes, so the text can neither end the comment or
    the docstring nor change what the docstring says."""
    out = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c.isprintable():
            out.append(c)
        elif "\ud800" <= c <= "\udfff":
            # a lone surrogate (a file name's undecodable byte): its escape, read back, would
            # be the surrogate again, which no encoder takes; the text shows the escape instead
            out.append(f"\\\\u{ord(c):04x}")
        else:
            out.append(c.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)
