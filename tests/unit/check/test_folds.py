"""Batch-norm fold legality (`tritium.check.folds`): the kinds and IR ops that fold, and
the `bn(layer(x))` pairs of a definition that nothing else sees."""

from __future__ import annotations

import pytest

from tritium.check import check_source
from tritium.check.folds import fold_pairs, fold_problem
from tritium.frontend import ast as A
from tritium.frontend.parser import parse

KINDS = {"TernaryLinear", "BitLinear", "TernaryConv2d", "BatchNorm1d", "BatchNorm2d",
         "Linear", "ReLU"}


@pytest.mark.parametrize("producer,norm,kw,ok", [
    ("TernaryLinear", "BatchNorm1d", {}, True),
    ("BitLinear", "BatchNorm1d", {}, True),
    ("TernaryConv2d", "BatchNorm2d", {}, True),
    ("TernaryConv2d", "BatchNorm1d", {}, False),
    ("TernaryLinear", "BatchNorm2d", {}, False),
    ("Linear", "BatchNorm1d", {}, False),        # the runtime folds into ternary layers only
    ("linear", None, {"rank": 2}, True),         # IR ops (passes/bn_fold.py)
    ("linear", None, {"rank": 3}, False),
    ("fused_conv2d", None, {"rank": 4}, True),
    ("fused_linear", None, {"epilogue": True}, False),
    ("conv2d", None, {"uses": 2}, False),
    ("matmul", None, {}, False),
])
def test_fold_problem(producer, norm, kw, ok) -> None:
    problem = fold_problem(producer, norm, **kw)
    assert (problem is None) == ok, problem
    if not ok:
        assert producer in problem


SOURCE = """
block Unit {
    params { c: int }
    layer conv: TernaryConv2d { in_channels: c, out_channels: c, kernel_size: 1 }
    layer bn: BatchNorm2d { num_features: c }
    forward(x: Tensor) -> Tensor { return relu(bn(conv(x))) }
}
model Net {
    layer fc1: TernaryLinear { in_features: 4, out_features: 4 }
    layer bn1: BatchNorm1d { num_features: 4 }
    layer fc2: TernaryLinear { in_features: 4, out_features: 4 }
    layer bn2: BatchNorm1d { num_features: 4 }
    layer fc3: Linear { in_features: 4, out_features: 4 }
    layer bn3: BatchNorm1d { num_features: 4 }
    layer fc4: TernaryLinear { in_features: 4, out_features: 4 }
    layer bn4: BatchNorm1d { num_features: 4 }
    layer reps: TernaryLinear[2] { in_features: 4, out_features: 4 }
    layer bn5: BatchNorm1d { num_features: 4 }
    forward(x: Tensor[b, 4]) -> Tensor[b, 4] {
        x = bn1(fc1(x))
        let y = fc2(x)
        x = bn2(y) + fc2(x)
        x = bn3(fc3(x))
        x = bn4(fc4(x)) + bn4(x)
        return bn5(reps(x))
    }
}
"""


def _pairs(name: str) -> list[tuple[str, str]]:
    result = check_source(SOURCE, "f.tri")
    assert result.ok, [(d.code, d.message) for d in result.errors]
    node = result.definitions[name].node
    fns = [i for i in node.body if isinstance(i, A.FnDef)]

    def kind_of(lk: A.LayerKind) -> str | None:
        return lk.kind if lk.kind in KINDS else None

    return fold_pairs(node.body, fns, kind_of)


def test_fold_pairs_are_exclusive_uses() -> None:
    # fc2 is used without its batch norm, fc3 is a float layer, bn4 also normalizes x,
    # reps is a repetition: only fc1/bn1 folds
    assert _pairs("Net") == [("fc1", "bn1")]
    assert _pairs("Unit") == [("conv", "bn")]


@pytest.mark.parametrize("shadow,folds", [
    ("", [("conv", "bn")]),
    ("for bn in 0..2 { x = x }", []),
    ("let conv = 1", []),
])
def test_a_shadowing_local_blocks_the_fold(shadow: str, folds: list) -> None:
    text = SOURCE.replace("return relu(bn(conv(x)))", shadow + "\n        return relu(bn(conv(x)))")
    prog, diags, _ = parse(text, "f.tri")
    assert not diags
    node = next(i for i in prog.items if isinstance(i, A.BlockDef))
    fns = [i for i in node.body if isinstance(i, A.FnDef)]
    assert fold_pairs(node.body, fns, lambda lk: lk.kind) == folds
