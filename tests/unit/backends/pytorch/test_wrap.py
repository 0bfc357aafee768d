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


@pytest.mark.parametrize("line", [
    # a repetition Kind[24] of a block with many hyperparameters (an imported 24-layer LM)
    "        self.layers = nn.Sequential(DecoderLayer(hidden=hidden, heads=4, kv_heads=2, "
    "head_dim=16, ffn=128, eps=1e-05, rope_base=500000.0), *[DecoderLayer(hidden=hidden, "
    "heads=4, kv_heads=2, head_dim=16, ffn=128, eps=1e-05, rope_base=500000.0) for _i in "
    "range(23)])",
    "        y = torch.stack([aaaaaaaaaaaaaaaaaaaaaaaaaaa(bbbbbbbbbbbbbbbbbbbbbbbbbbb, i) for i in "
    "range(ccccccccccccccccc) if i > 0], dim=0)",
    "        z = f((gggggggggggggggggggggggggggggg(hhhhhhhhhhhhhhhhhhhhhhhhhh) for j in "
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk))",
])
def test_a_comprehension_is_one_element_without_a_trailing_comma(line):
    out = wrap(line)
    assert len(out) > 1
    assert ast.dump(ast.parse("\n".join(out).strip())) == ast.dump(ast.parse(line.strip()))


@pytest.mark.parametrize("line", [
    # pow(cos(...), 1.0): the template's parentheses after `return` were read as a call's
    # and wrapped with a trailing comma: the module returned a 1-tuple, not a tensor
    "        return (torch.cos(torch.tanh(torch.where(x > torch.sum(x * 0.5), x, x * 0.5))) ** "
    "torch.as_tensor(1.0))",
    "        y = not (torch.cos(torch.tanh(torch.where(x > torch.sum(x * 0.5), x, x * 0.5))) "
    "> torch.as_tensor(1.0))",
    "        y = aaaaaaaaaaaaaaaaaaaaaaaaa if bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb else "
    "(ccccccccccccccccccccc(d) ** e)",
])
def test_a_parenthesized_expression_after_a_keyword_stays_one_value(line):
    out = wrap(line)
    assert len(out) > 1
    assert ast.dump(ast.parse("\n".join(out).strip())) == ast.dump(ast.parse(line.strip()))
