"""`text.wrap`: long generated lines broken as black would, and still the same Python."""

from __future__ import annotations

import ast

import pytest

from tritium.backends.pytorch.text import MAX_LINE, wrap


@pytest.mark.parametrize("line", [
    "    def __init__(self, *, vocab: int = 256, dim: int = 128, layers: int = 2, heads: int = 4, "
    "ffn: int = 384) -> None:",
    "def f(x: torch.Tensor, shape: tuple[int, int] = (1, 2), name: str = 'a, b', "
    "scale: float = 1.0) -> torch.Tensor:",
    "        y = torch.cat([aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb, cccccccccccccccccc, "
    "dddddddddddddddd, eeeeeeeeeeeee], dim=1)",
])
def test_long_lines_wrap_to_the_same_code(line):
    out = wrap(line)
    assert len(out) > 1 and all(len(x) <= MAX_LINE for x in out)
    body = "\n".join(out).strip()
    orig = line.strip()
    if orig.endswith(":"):
        body, orig = body + "\n    pass", orig + "\n    pass"
    assert ast.dump(ast.parse(body)) == ast.dump(ast.parse(orig))


def test_short_lines_and_comments_stay():
    assert wrap("    def f(x) -> None:") == ["    def f(x) -> None:"]
    long_comment = "# " + "x, " * 60
    assert wrap(long_comment) == [long_comment]
