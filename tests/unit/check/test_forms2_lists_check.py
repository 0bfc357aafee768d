"""List methods in the checker (issue 13, form 13): results and the list's new value are
known where the change surely runs once, and forgotten soundly where it may not (a branch
of a run-time condition, a loop not unrolled, an alias, a list inside another, a function
that changes lists)."""

from __future__ import annotations

import pytest

from tritium.check import check_source
from tritium.frontend.diagnostics import CODES


def errors(src: str) -> list[tuple[str, int]]:
    r = check_source(src)
    assert all(d.code in CODES for d in r.diagnostics), r.diagnostics
    return [(d.code, d.span.line) for d in r.errors]


def main(*lines: str) -> str:
    return "main {\n" + "\n".join("    " + ln for ln in lines) + "\n}\n"


def test_methods_known_in_straight_line_code() -> None:
    src = main("let xs = [1, 2]",
               "xs.append(3)",
               "xs.extend([4, 5])",
               "xs.insert(0, 7)",           # 7 1 2 3 4 5
               "let last = xs.pop()",       # 5
               "let first = xs.pop(0)",     # 7
               "xs.remove(2)",              # 1 3 4
               "xs.reverse()",              # 4 3 1
               "let ys = xs.copy()",
               "ys.sort()",                 # 1 3 4
               "assert len(xs) == 3 && xs[0] == 4 && last == 5 && first == 7",
               "assert ys[0] == 1 && xs[0] == 4 && xs.index(3) == 1 && xs.count(4) == 1",
               "assert xs[2] == 2, \"false\"",
               "xs.clear()",
               "assert len(xs) == 1, \"false\"")
    assert errors(src) == [("E0863", 14), ("E0863", 16)]


def test_a_known_list_gives_a_known_shape() -> None:
    src = main("let dims = [2]", "dims.append(3)", "let z: Tensor[2, 3] = zeros(dims)",
               "let bad: Tensor[2, 4] = zeros(dims)")
    assert errors(src) == [("E0401", 5)]


def test_an_alias_and_a_container_forget_and_distinct_lists_stay_known() -> None:
    src = main("let xs = [1]", "let alias = xs", "let outer = [xs]", "xs.append(2)",
               "assert len(alias) == 1, \"unknown now: no error\"",
               "assert len(outer[0]) == 1, \"unknown now: no error\"",
               "assert len(xs) == 1, \"unknown: it has an alias\"",
               "let other = [1]", "let more = [1]", "other.append(2)",
               "assert len(more) == 2, \"false\"",
               "alias.append(3)", "xs.append(4)", "outer[0].append(5)",
               "assert len(xs) == 1 && len(alias) == 1, \"unknown: no error\"")
    assert errors(src) == [("E0863", 12)]


def test_a_change_through_an_alias_is_seen_by_every_name() -> None:
    # after the first change both names are unknown and stay linked: the second change,
    # through the other name, must not leave `xs` known as [1, 2]
    src = main("let xs = [1]", "let ys = xs", "xs.append(2)", "ys.append(3)",
               "assert len(xs) == 2, \"unknown: no error\"",
               "let m = [[1]]", "let inner = m[0]", "m[0].append(2)",
               "assert len(inner) == 1, \"unknown: no error\"")
    assert errors(src) == []


def test_two_results_of_one_checked_call_are_distinct_lists() -> None:
    src = ("fn build(k: int) -> list[int] {\n"
           "    let xs = [k, 1]\n"
           "    return xs\n"
           "}\n" + main("let a = build(3)", "let b = build(3)", "a.sort()",
                        "assert a[0] == 1 && b[0] != 1"))
    assert errors(src) == []


def test_a_change_in_a_runtime_branch_is_forgotten() -> None:
    src = ("fn f(n: int) -> int {\n"
           "    let xs = [1]\n"
           "    if n > 2 { xs.append(2) } else { xs.append(3) }\n"
           "    assert len(xs) == 7, \"unknown: no error\"\n"
           "    return len(xs)\n"
           "}\n")
    assert errors(src) == []
    known = src.replace("n > 2", "1 > 2")
    assert errors(known) == [("E0863", 4)]


@pytest.mark.parametrize("loop", ["for i in 0..n { xs.append(0) }",
                                  "while len(xs) < n { xs.append(0) }"])
def test_a_change_in_a_loop_not_unrolled_is_forgotten(loop: str) -> None:
    src = ("fn f(n: int) -> int {\n"
           "    let xs = [1]\n"
           f"    {loop}\n"
           "    assert len(xs) == 2, \"unknown: no error\"\n"
           "    return len(xs)\n"
           "}\n")
    assert errors(src) == []


def test_an_unrolled_loop_keeps_the_list_known() -> None:
    src = main("let xs = []", "for i in 0..4 { xs.append(i * i) }",
               "assert xs[3] == 9 && len(xs) == 4", "assert xs[2] == 5, \"false\"")
    assert errors(src) == [("E0863", 5)]


def test_a_function_that_changes_lists_makes_the_caller_forget() -> None:
    src = ("fn grow(ys: list[int]) -> int {\n"
           "    ys.append(9)\n"
           "    return len(ys)\n"
           "}\n" + main("let xs = [1]", "let n = grow(xs)",
                        "assert len(xs) == 1, \"unknown after the call: no error\""))
    assert errors(src) == []


def test_errors_known_at_compile_time() -> None:
    src = main("let q = [1]", "q.pop()", "q.pop()", "let w = [1, 2]", "let i = w.index(7)",
               "w.remove(5)", "let m = [1, \"a\"]", "m.sort()", "[3].pop(5)")
    assert errors(src) == [("E0960", 4), ("E0961", 6), ("E0961", 7), ("E0961", 9),
                           ("E0960", 10)]


def test_arguments_and_element_types_are_checked() -> None:
    src = main("let t: list[int] = []", "t.append(\"no\")", "t.append()", "t.insert(\"a\", 1)",
               "t.extend(3)", "t.append(v: 1)", "let s = [1.0]", "s.frobnicate(1)")
    assert [c for c, _ in errors(src)] == ["E0401", "E0306", "E0404", "E0404", "E0307",
                                           "E0305"]


def test_list_methods_are_not_builtin_names() -> None:
    # the code generator tells a list method from a builtin called as a method by name
    from tritium.check.builtins import FUNCTIONS
    from tritium.check.list_methods import LIST_METHODS
    assert not set(LIST_METHODS) & set(FUNCTIONS)


def test_a_method_may_not_change_a_config_list_in_place() -> None:
    def model(body: str) -> str:
        return ("model M {\n    sizes: [2, 2]\n"
                "    forward(x: Tensor[b, 4]) -> Tensor {\n" + body +
                "        return x * len(sizes)\n    }\n}\n")
    assert errors(model("        sizes.append(1)\n")) == [("E0966", 4)]
    assert errors(model("        let s = sizes\n        s.pop()\n")) == [("E0966", 5)]
    assert errors(model("        let mine = sizes.copy()\n        mine.append(3)\n"
                        "        let rows = [[1], [2]]\n"
                        "        for r in rows { r.append(len(mine)) }\n")) == []
