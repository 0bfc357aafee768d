"""More of the seed's written forms: `Tuple<A, B>` / `List<T>` with angle brackets, a range
with a `:` step before a loop body (`0..100:2`), and forms with no meaning reported once
each without a cascade: a layer that `extends` another (its uses are not reported again),
a top-level `optimizer Name { }`, the effect `mutates State`."""

from __future__ import annotations

from tritium.check import check_source
from tritium.frontend import ast as A
from tritium.frontend.formatter import format_source
from tritium.frontend.parser import parse


def _errors(src: str) -> list[tuple[str, int]]:
    return [(d.code, d.span.line) for d in check_source(src, "t.tri").diagnostics
            if d.severity.name == "ERROR"]


def test_angle_bracket_collection_types() -> None:
    src = ("fn both<P, Q>(p: P, q: Q) -> Tuple<P, Q> {\n    return (p, q)\n}\n"
           "fn head<E>(xs: List<E>) -> E {\n    return xs[0]\n}\n"
           "let h = head([4, 5])\nlet t = both(1, 2.5)\n")
    assert _errors(src) == []
    prog, diags, _ = parse(src, "t.tri")
    fn = prog.items[0]
    assert fn.ret.name == "tuple" and [a.name for a in fn.ret.args] == ["P", "Q"]


def test_colon_step_of_a_loop_range() -> None:
    src = "let total = 0\nfor i in 1..10:3 {\n    total += i\n}\nprint(total)\n"
    prog, diags, _ = parse(src, "t.tri")
    loop = next(i for i in prog.items if isinstance(i, A.For))
    assert isinstance(loop.iter, A.Range) and loop.iter.step.value == 3
    assert _errors(src) == []
    out = format_source(src, "t.tri")
    assert parse(out, "t.tri")[0] == prog
    # not a step: a conditional expression's `:` stays its own
    prog2, diags2, _ = parse("let c = true\nlet r = c ? 0..3 : 1..4\n", "t.tri")
    assert not [d for d in diags2 if d.is_error]


def test_extends_is_reported_once_not_at_each_use() -> None:
    src = ("layer Half extends Linear {\n    dtype: \"float16\"\n}\n"
           "model M {\n    layer a: Half { in_features: 4, out_features: 2 }\n"
           "    layer b: Half { in_features: 2, out_features: 2 }\n"
           "    forward(x: Tensor[n, 4]) -> Tensor {\n        return b(a(x))\n    }\n}\n")
    assert _errors(src) == [("E0900", 1)]


def test_optimizer_block_and_mutates_effect() -> None:
    src = ("optimizer Search {\n    population_size: 20\n}\n"
           "fn bump(c: int) -> int mutates State {\n    return c + 1\n}\nprint(bump(1))\n")
    assert _errors(src) == [("E0900", 1), ("E0900", 4)]


def test_dtype_special_values(tmp_path, monkeypatch, capsys) -> None:
    from tritium.driver import compile_program
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))
    src = ("let big = float32.inf\nlet odd = float64.nan\n"
           "fn cap(x: Tensor<float32, [?]>) -> Tensor<float32, [?]> {\n"
           "    return clamp(x, -float32.inf, 2.0)\n}\n"
           "print(big, odd != odd, cap(tensor([5.0, -7.0])).sum())\n")
    assert _errors(src) == []
    f = tmp_path / "s.tri"
    f.write_text(src)
    compile_program(str(f)).module.main()
    assert capsys.readouterr().out == "inf True tensor(-5.)\n"


def test_several_bindings_in_one_let() -> None:
    src = "let a = 1, b = 2.5, c = \"x\"\nprint(a, b, c)\n"
    prog, diags, _ = parse(src, "t.tri")
    node = prog.items[0]
    assert isinstance(node, A.Unpack) and node.targets == ["a", "b", "c"] and node.declare
    assert _errors(src) == []
    out = format_source(src, "t.tri")
    assert parse(out, "t.tri")[0] == prog
    assert [d.code for d in parse("let p = 1, p = 2\n", "t.tri")[1]] == ["E0206"]
