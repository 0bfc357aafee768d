"""The one record per builtin (tritium.check.builtins, tritium.check.library) drives every
stage: each record is complete for the checker, the lowering and the PyTorch template, and a
builtin added as a record alone checks, generates PyTorch, lowers and interprets to the
same values (the recipe of docs/architecture.md)."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch

import tritium
from tritium.check import check_source
from tritium.check import library as L
from tritium.check.builtins import FUNCTIONS, IR, PY_CALL, Builtin, FnParam, elementwise_rule
from tritium.ir import interpret
from tritium.ir.lowering import lower
from tritium.ir.lowering.builtins import _BUILTIN_FNS
from tritium.ir.lowering.layers import FAMILIES
from tritium.ir.ops import OPS


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_builtin_function_record_is_complete(name):
    spec = FUNCTIONS[name]
    assert spec.name == name and callable(spec.rule) and spec.doc
    params = {p.name for p in spec.params}
    if spec.ir is not None:
        assert spec.ir.op in OPS, spec.ir.op
        assert set(spec.ir.operands) <= params
        assert {p for p, _a, _k in spec.ir.attrs} <= params
        for _p, attr, _k in spec.ir.attrs:
            assert attr in OPS[spec.ir.op].attrs, (spec.ir.op, attr)
    else:
        assert name in _BUILTIN_FNS or spec.of in _BUILTIN_FNS or name == "print", \
            f"`{name}` has no lowering"
    if isinstance(spec.torch, str) and spec.torch != PY_CALL:
        fields = {f for _t, f, _s, _c in string.Formatter().parse(spec.torch) if f}
        assert fields <= params, (name, fields - params)
    if spec.pair_op:
        assert spec.pair_op in OPS and spec.pair_op in FUNCTIONS


@pytest.mark.parametrize("kind", sorted(L.LAYERS))
def test_every_layer_kind_record_is_complete(kind):
    spec = L.LAYERS[kind]
    assert spec.lowering in FAMILIES, (kind, spec.lowering)
    assert spec.torch is not None and spec.torch.ctor.startswith(("nn.", "trt."))
    for k in (*spec.torch.args, *spec.torch.kwargs, *spec.torch.always):
        assert k in spec.keys, (kind, k)
    for alias, key in spec.key_aliases:
        assert alias in spec.keys and key in spec.keys
    if spec.lowering in ("op", "pool"):
        assert spec.ir_op in OPS
    assert spec.weights in ("float", "ternary", "bitnet", "int8", "int4")


@pytest.fixture
def square():
    """A builtin added the way docs/architecture.md says, as one record and nothing else:
    it maps onto the existing IR op `mul` (x times itself)."""
    FUNCTIONS["square"] = Builtin(
        "square", (FnParam("x", "tensor"),), "x * x", elementwise_rule, "({x} * {x})",
        ir=IR("mul", ("x", "x")), py=lambda x, y: x * y)
    yield
    del FUNCTIONS["square"]


SRC = """
model M {
    layer fc: Linear { in_features: 4, out_features: 3 }
    forward(x: Tensor[batch, 4]) -> Tensor[batch, 3] {
        return square(fc(x)) + square(2.0)
    }
}
"""


def test_a_builtin_added_as_one_record_works_in_every_stage(square, tmp_path):
    f = tmp_path / "s.tri"
    f.write_text(SRC)
    result = check_source(SRC, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f)
    model.eval()
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    lowered = lower(result)
    state = {n: t.detach().numpy() for n, t in model.state_dict().items()}
    got = interpret(lowered.module, lowered.entry, [x.numpy()],
                    params={n: state[n] for n in lowered.params})
    got = got[0] if isinstance(got, list | tuple) else got
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-5)
    expected = (x @ model.fc.weight.T + model.fc.bias) ** 2 + 4.0
    np.testing.assert_allclose(ref.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-5)

