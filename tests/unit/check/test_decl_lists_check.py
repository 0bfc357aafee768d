"""The checker on the seed's list forms (issue 13, `decl`): spread items in list literals,
rest patterns, `shuffle`, a tensor method on a list, a list repeated by a float count."""

from __future__ import annotations

import random

from tritium.check import check_source
from tritium.check.builtins.decl import permutation
from tritium.frontend.diagnostics import CODES
from tritium.runtime.decl_ops import shuffle


def codes(src: str) -> list[tuple[str, int]]:
    r = check_source(src)
    assert all(d.code in CODES for d in r.diagnostics), r.diagnostics
    return [(d.code, d.span.line) for d in r.diagnostics if d.code != "W0001"]


def test_spread_lists_have_their_items_in_place() -> None:
    src = ("let a = [1, 2]\nlet b = [...a, ...([0] * 3), 9, ...(0..2)]\n"
           "let n = len(b)\nlet z = zeros([n])\nlet w: Tensor<float32, [8]> = z\n")
    assert codes(src) == []
    assert codes(src.replace("[8]", "[7]")) != []


def test_a_spread_of_a_number_is_e1033_and_in_a_call_e0900() -> None:
    assert ("E1033", 2) in codes("let n = 3\nlet b = [...n, 1]\n")
    assert [c for c, _ in codes("fn g(a: int) -> int { return a }\nlet y = g(...[1])\n")] \
        == ["E0900"]


def test_rest_patterns_take_the_items_between() -> None:
    src = ("let numbers = [1, 2, 3, 4, 5]\n"
           "let [first, ...rest] = numbers\n"
           "let (h, ...mid, last) = numbers\n"
           "let k: int = first + h + last + len(rest) + len(mid)\n"
           "let t = zeros([k])\n"
           "let u: Tensor<float32, [14]> = t\n")   # 1 + 1 + 5 + 4 + 3
    assert codes(src) == []
    assert ("E0864", 1) in codes("let [a, b, c, ...r] = [1]\n")


def test_a_float_repeat_count_is_floored_with_a_warning() -> None:
    src = ("fn init(shape: [int, int]) -> TernaryTensor<trit, [?, ?]> {\n"
           "    let total = shape[0] * shape[1]\n"
           "    let per_value = total / 3\n"
           "    let values = [\n"
           "        ...([trit(-1)] * per_value),\n"
           "        ...([trit(0)] * per_value),\n"
           "        ...([trit(1)] * per_value)\n"
           "    ]\n"
           "    return shuffle(values).reshape(shape)\n"
           "}\n")
    assert codes(src) == []   # per_value is known at run time only: floored there
    known = src.replace("shape[0] * shape[1]", "12")
    assert codes(known) == [("W1034", 5), ("W1034", 6), ("W1034", 7)]


def test_shuffle_is_the_same_permutation_in_every_stage() -> None:
    for n, seed in [(0, 0), (1, 3), (9, 0), (30, 7)]:
        xs = list(range(100, 100 + n))
        assert [xs[i] for i in permutation(n, seed)] == shuffle(xs, seed)
        want = xs[:]
        assert sorted(shuffle(xs, seed)) == want
    assert permutation(5, 1) == random.Random(1).sample(range(5), 5)
    # the checker knows the shuffled constants
    src = "let s = shuffle([1, 2, 3, 4], seed=2)\nlet n: int = s[0]\nlet z = zeros([n])\n"
    first = shuffle([1, 2, 3, 4], 2)[0]
    assert codes(src + f"let w: Tensor<float32, [{first}]> = z\n") == []
    assert ("E0404", 1) in codes("let s = shuffle(zeros([3]))\n")
