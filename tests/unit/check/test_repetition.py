"""The repetition rule (`tritium.check.repetition`): chaining of in/out pairs, the stride
reset, `repeat { }` clauses, evaluated in the previous instance's config."""

from __future__ import annotations

import pytest

from tritium.check.repetition import (
    chained_pairs,
    instance_configs,
    next_config,
    repeat_clause,
    repeat_entries,
)
from tritium.frontend import ast as A
from tritium.frontend.parser import parse


def ev(e: A.Expr, cfg: dict) -> object:
    """A small evaluator over constants: names, numbers, + and *."""
    if isinstance(e, A.Num):
        return e.value
    if isinstance(e, A.Name):
        return cfg[e.id]
    if isinstance(e, A.Binary):
        a, b = ev(e.left, cfg), ev(e.right, cfg)
        return {"+": a + b, "*": a * b}[e.op]
    raise AssertionError(f"unexpected {e!r}")


@pytest.mark.parametrize("params,pairs", [
    (["in_channels", "out_channels", "stride"], [("in_channels", "out_channels")]),
    (["in_features", "out_features"], [("in_features", "out_features")]),
    (["c_in", "c_out", "stride"], [("c_in", "c_out")]),
    (["ch_in", "ch_out"], [("ch_in", "ch_out")]),
    (["in_a", "out_a", "b_in", "b_out"], [("in_a", "out_a"), ("b_in", "b_out")]),
    (["in", "out", "in_", "out_", "_in", "_out"], []),    # no X: nothing chains
    (["in_channels", "out_features"], []),                # X differs
    (["out_channels"], []),
])
def test_chained_pairs(params: list[str], pairs: list[tuple[str, str]]) -> None:
    assert chained_pairs(params) == pairs


@pytest.mark.parametrize("params,first,second", [
    # in_X / out_X (the checker's old copy built `in__channels` here)
    (["in_channels", "out_channels"], {"in_channels": 8, "out_channels": 16},
     {"in_channels": 16, "out_channels": 16}),
    # X_in / X_out, stride reset although not given
    (["c_in", "c_out", "stride"], {"c_in": 64, "c_out": 128},
     {"c_in": 128, "c_out": 128, "stride": 1}),
    (["feat_in", "feat_out", "stride"], {"feat_in": 3, "feat_out": 5, "stride": 2},
     {"feat_in": 5, "feat_out": 5, "stride": 1}),
    # out not given: in keeps its value
    (["in_features", "out_features"], {"in_features": 4}, {"in_features": 4}),
])
def test_implicit_rule_chains_and_resets_stride(params, first, second) -> None:
    assert next_config(params, None, first, ev) == second
    cfgs = instance_configs(params, None, first, 3, ev)
    assert cfgs == [first, second, second]
    assert cfgs[0] is not first          # the caller's config is not mutated
    assert list(cfgs[1])[:len(first)] == list(first)   # new keys come after the old ones


BLOCKS = """
block Grow {
    params { c_in: int, c_out: int, stride: int = 2 }
    repeat { c_in: c_out, c_out: c_out * 2 }
    forward(x: Tensor) -> Tensor { return x }
}
block Plain {
    params { in_channels: int, out_channels: int, stride: int = 2 }
    forward(x: Tensor) -> Tensor { return x }
}
"""


def _block(name: str) -> A.BlockDef:
    prog, diags, _ = parse(BLOCKS, "b.tri")
    assert not diags
    return next(d for d in prog.items if isinstance(d, A.BlockDef) and d.name == name)


def test_clause_replaces_the_implicit_rule_and_reads_the_previous_config() -> None:
    node = _block("Grow")
    clause = repeat_clause(node)
    assert clause is not None and [e.key for e in clause.entries] == ["c_in", "c_out"]
    params = ["c_in", "c_out", "stride"]
    cfgs = instance_configs(params, clause, {"c_in": 3, "c_out": 4}, 4, ev)
    # both entries see the previous config (c_in gets the old c_out); no stride reset
    assert cfgs == [{"c_in": 3, "c_out": 4}, {"c_in": 4, "c_out": 8},
                    {"c_in": 8, "c_out": 16}, {"c_in": 16, "c_out": 32}]
    assert repeat_entries(params, clause, {"c_out"}) == list(clause.entries)


def test_no_clause() -> None:
    node = _block("Plain")
    assert repeat_clause(node) is None
    entries = repeat_entries(["in_channels", "out_channels", "stride"], None,
                             {"in_channels", "out_channels"})
    assert [(e.key, e.value) for e in entries] == [
        ("in_channels", A.Name("out_channels")), ("stride", A.Num(1))]
    # Stage[2] { in_channels: 8, out_channels: 16 } (issue 12)
    cfgs = instance_configs(["in_channels", "out_channels", "stride"], None,
                            {"in_channels": 8, "out_channels": 16}, 2, ev)
    assert cfgs[1] == {"in_channels": 16, "out_channels": 16, "stride": 1}


def test_values_are_opaque_to_the_rule() -> None:
    """The code generator passes Python expressions: the rule only moves them around."""
    def render(e: A.Expr, cfg: dict) -> str:
        return cfg[e.id] if isinstance(e, A.Name) else repr(e.value)
    cfgs = instance_configs(["c_in", "c_out", "stride"], None,
                            {"c_in": "width", "c_out": "2 * width"}, 2, render)
    assert cfgs[1] == {"c_in": "2 * width", "c_out": "2 * width", "stride": "1"}


def test_one_instance() -> None:
    assert instance_configs(["c_in", "c_out"], None, {"c_in": 1, "c_out": 2}, 1, ev) == [
        {"c_in": 1, "c_out": 2}]


STAGE = """
block Stage {
    params { in_channels: int, out_channels: int, stride: int = 2 }
    layer conv: TernaryConv2d { in_channels: in_channels, out_channels: out_channels, kernel_size: 3, stride: stride, padding: 1 }
    forward(x: Tensor) -> Tensor { return conv(x) }
}
"""


def test_the_checker_can_call_it_with_its_values() -> None:
    """The adapter in `next_config`'s docstring, with the checker's own values: constants,
    symbolic ints (a hyperparameter of the enclosing block) and unknown values."""
    from tritium.check import check_source
    from tritium.check.checker import Checker, Scope, SymInt
    from tritium.check.types import ANY, INT, Value

    result = check_source(STAGE, "s.tri")
    assert result.ok
    checker = Checker(result.definitions, [])
    node = result.definitions["Stage"].node
    params = [p.name for p in checker.user_params(node)]

    def evaluate(e, prev):
        env = Scope()
        for k, v in prev.items():
            env.vars[k] = v if isinstance(v, Value) else (
                Value(INT, v, False) if isinstance(v, SymInt) else Value.of(v))
        r = checker.eval_const(e, env)
        return r.const if r.known or isinstance(r.const, SymInt) else r

    assert instance_configs(params, repeat_clause(node),
                            {"in_channels": 8, "out_channels": 16}, 2, evaluate) == [
        {"in_channels": 8, "out_channels": 16},
        {"in_channels": 16, "out_channels": 16, "stride": 1}]
    w = SymInt("w")
    unknown = Value(ANY)
    second = next_config(params, None, {"in_channels": 3, "out_channels": w,
                                        "stride": unknown}, evaluate)
    assert second == {"in_channels": w, "out_channels": w, "stride": 1}
    assert next_config(params, None, {"in_channels": 3, "out_channels": unknown},
                       evaluate)["in_channels"] is unknown
