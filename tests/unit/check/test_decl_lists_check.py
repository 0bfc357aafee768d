"""The checker on the seed's list forms (issue 13, `decl`): spread `...xs` (in a list literal
as in a call) and rest patterns `let [first, ...rest] = xs` are one E0900 each, and checking
goes on; `let [a, b] = xs`, `shuffle`, a tensor method on a list, a list repeated by a float
count."""

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


def diags(src: str):
    r = check_source(src)
    assert all(d.code in CODES for d in r.diagnostics), r.diagnostics
    return [d for d in r.diagnostics if d.code != "W0001"]


def test_a_spread_in_a_list_literal_is_one_e0900_naming_the_form() -> None:
    src = "let a = [1, 2]\nlet b = [...a, ...([0] * 3), 9]\n"
    (d,) = diags(src)   # one, though the literal has two spreads (the statement is skipped)
    assert (d.code, d.span.line, d.span.col) == ("E0900", 2, 10)
    assert d.message == "spread (`...xs`) has no meaning in .tri"
    assert "one by one" in d.help and "`a + b`" in d.help and "[..." not in d.help


def test_a_spread_in_a_call_is_e0900() -> None:
    assert [c for c, _ in codes("fn g(a: int) -> int { return a }\nlet y = g(...[1])\n")] \
        == ["E0900"]


def test_a_rest_pattern_is_one_e0900_with_the_indexing_to_write() -> None:
    for pattern in ["[first, ...rest]", "(first, ...rest)", "first, ...rest", "[...rest]",
                    "(h, ...mid, last)"]:
        (d,) = diags(f"let numbers = [1, 2, 3]\nlet {pattern} = numbers\n")
        assert (d.code, d.span.line) == ("E0900", 2), pattern
        assert d.message == "a rest pattern (`...rest`) has no meaning in .tri"
        assert "`let first = xs[0]`" in d.help and "`let rest = xs[1:]`" in d.help


def test_checking_goes_on_after_a_spread_or_a_rest_pattern() -> None:
    src = ("let xs = [1, 2, 3]\n"
           "let ys = [...xs, 4]\n"
           "let [first, ...rest] = xs\n"
           "let bad: int = \"s\"\n"
           "fn f(x: int) -> int {\n"
           "    let zs = [0, ...xs]\n"
           "    return undefined_name\n"
           "}\n")
    assert codes(src) == [("E0900", 2), ("E0900", 3), ("E0401", 4), ("E0900", 6)]


def test_plain_bracket_destructuring_takes_one_item_per_name() -> None:
    src = ("let numbers = [1, 2, 3]\n"
           "let [a, b, c] = numbers\n"
           "let k: int = a + b + c\n"
           "let t = zeros([k])\n"
           "let u: Tensor<float32, [6]> = t\n")
    assert codes(src) == []
    assert ("E0864", 1) in codes("let [a, b, c] = [1]\n")


def test_a_float_repeat_count_is_floored_with_a_warning() -> None:
    src = ("fn init(shape: [int, int]) -> TernaryTensor<trit, [?, ?]> {\n"
           "    let total = shape[0] * shape[1]\n"
           "    let per_value = total / 3\n"
           "    let values = ([trit(-1)] * per_value\n"
           "        + [trit(0)] * per_value\n"
           "        + [trit(1)] * per_value)\n"
           "    return shuffle(values).reshape(shape)\n"
           "}\n")
    assert codes(src) == []   # per_value is known at run time only: floored there
    known = src.replace("shape[0] * shape[1]", "12")
    assert codes(known) == [("W1034", 4), ("W1034", 5), ("W1034", 6)]


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
