"""A full-precision nn.Conv2d with the inference-form batch norm, relu/relu6 and pooling after
it in one native call (`tri_conv2d_f32`, runtime.plan.FloatConvPlan, the chain's
_FloatConvStep): the modules' values within float rounding (the sums run in another order than
oneDNN's), on every ISA path this CPU runs, for any geometry; and the modules themselves
whenever the plan does not hold (training mode, autograd, hooks, changed weights)."""

from __future__ import annotations

import re
import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tritium.driver.models import build_model
from tritium.runtime import freeze_model, kernels
from tritium.runtime.chain import _FloatConvStep
from tritium.runtime.plan import FloatConvPlan, pool_plan

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")


def _norm(channels: int, gen: torch.Generator, affine: bool = True) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, affine=affine).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1, generator=gen)
        bn.running_var.uniform_(0.3, 2.0, generator=gen)
        if affine:
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.uniform_(-0.5, 0.5, generator=gen)
    return bn


def _modules(conv, bn, act, pool, x):
    y = conv(x)
    if bn is not None:
        y = bn(y)
    if act is not None:
        y = {"relu": F.relu, "relu6": F.relu6}[act](y)
    return y if pool is None else pool(y)


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    # float sums of up to C*kh*kw terms in another order, then a folded affine map
    tol = 1e-5 * max(1.0, want.abs().max().item())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=tol)


geometry = st.fixed_dictionaries({
    "b": st.integers(1, 3), "cg": st.integers(1, 5), "og": st.integers(1, 9),
    "groups": st.sampled_from([1, 1, 2, 3]), "h": st.integers(1, 13), "w": st.integers(1, 13),
    "kh": st.integers(1, 5), "kw": st.integers(1, 5),
    "s": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "p": st.tuples(st.integers(0, 3), st.integers(0, 3)),
    "d": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "bias": st.booleans(), "bn": st.sampled_from([None, "affine", "plain"]),
    "act": st.sampled_from([None, "relu", "relu6"]),
    "pool": st.sampled_from([None, "max2", "avg3"]), "seed": st.integers(0, 2**31 - 1),
})


@pytest.mark.usefixtures("every_isa")
@settings(max_examples=60, deadline=None)
@given(geometry)
def test_the_native_float_conv_matches_the_modules(g) -> None:
    kh_ext = g["d"][0] * (g["kh"] - 1) + 1
    kw_ext = g["d"][1] * (g["kw"] - 1) + 1
    if g["h"] + 2 * g["p"][0] < kh_ext or g["w"] + 2 * g["p"][1] < kw_ext:
        return  # no output position
    gen = torch.Generator().manual_seed(g["seed"])
    c, o = g["cg"] * g["groups"], g["og"] * g["groups"]
    torch.manual_seed(g["seed"])
    conv = nn.Conv2d(c, o, (g["kh"], g["kw"]), g["s"], g["p"], g["d"], g["groups"],
                     bias=g["bias"])
    bn = None if g["bn"] is None else _norm(o, gen, affine=g["bn"] == "affine")
    pool = {None: None, "max2": nn.MaxPool2d(2), "avg3": nn.AvgPool2d(3, 1, 1)}[g["pool"]]
    x = torch.randn(g["b"], c, g["h"], g["w"], generator=gen)
    plan = FloatConvPlan(conv, bn)
    pp = None if pool is None else pool_plan(pool)
    with torch.no_grad():
        try:
            want = _modules(conv, bn, g["act"], pool, x)
        except RuntimeError as exc:   # a window larger than the plane: torch's own error
            with pytest.raises(RuntimeError, match=re.escape(str(exc)[:30])):
                plan(x, g["act"], pp)
            return
        got = plan(x, g["act"], pp)
    if got is None:   # only a long K on a short plane goes back to torch; none is drawn here
        pytest.fail("the plan did not take the call")
    assert got.shape == want.shape
    _close(got, want)


@pytest.mark.usefixtures("every_isa")
def test_a_first_layer_and_a_wide_one_match_the_modules() -> None:
    gen = torch.Generator().manual_seed(3)
    for c, o, k, s, p, hw, b in ((3, 32, 3, 2, 1, 32, 2), (1, 6, 5, 1, 2, 28, 5),
                                 (16, 24, 3, 1, 1, 9, 1)):
        conv = nn.Conv2d(c, o, k, s, p)
        bn = _norm(o, gen)
        x = torch.randn(b, c, hw, hw, generator=gen)
        with torch.no_grad():
            _close(FloatConvPlan(conv, bn)(x, "relu", None), _modules(conv, bn, "relu", None, x))


def test_calls_the_plan_does_not_take_return_none() -> None:
    gen = torch.Generator().manual_seed(0)
    conv, bn = nn.Conv2d(2, 4, 3, padding=1), _norm(4, gen)
    x = torch.randn(1, 2, 6, 6)
    plan = FloatConvPlan(conv, bn)
    assert plan(x, None, None) is None              # autograd: the weights need gradients
    with torch.no_grad():
        assert plan(x, None, None) is not None
        bn.train()
        assert plan(x, None, None) is None          # batch statistics: the modules run
        bn.eval()
        assert plan(torch.randn(1, 3, 6, 6), None, None) is None   # the conv's own error
        assert plan(x.double(), None, None) is None
        for mode in ("reflect", "circular"):
            assert FloatConvPlan(nn.Conv2d(2, 4, 3, padding=1, padding_mode=mode), None)(
                x, None, None) is None
        assert FloatConvPlan(nn.Conv2d(2, 4, 3, padding="same"), None)(x, None, None) is None
        # a long K on a 2x2 output plane: the flat conv does not take it, torch's conv runs
        wide = nn.Conv2d(200, 8, 3)
        assert FloatConvPlan(wide, None)(torch.randn(1, 200, 4, 4), None, None) is None


def test_changed_weights_and_statistics_are_seen() -> None:
    gen = torch.Generator().manual_seed(1)
    conv, bn = nn.Conv2d(3, 5, 3), _norm(5, gen)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    plan = FloatConvPlan(conv, bn)
    with torch.no_grad():
        before = plan(x, None, None)
        conv.weight.mul_(-2.0)                      # in place: a new version
        bn.running_var.add_(1.0)
        bn.eps = 0.1
        after = plan(x, None, None)
        assert not torch.equal(before, after)
        _close(after, _modules(conv, bn, None, None, x))
        conv.bias = None                            # another tensor (none)
        _close(plan(x, None, None), _modules(conv, bn, None, None, x))


LENET = """
model L {
    layer conv1: Conv2d { in_channels: 1, out_channels: 6, kernel_size: 5, padding: 2 }
    layer bn1: BatchNorm2d { num_features: 6 }
    layer pool1: MaxPool2d { kernel_size: 2 }
    layer conv2: TernaryConv2d { in_channels: 6, out_channels: 8, kernel_size: 5 }
    layer bn2: BatchNorm2d { num_features: 8 }
    layer fc1: TernaryLinear { in_features: 128, out_features: 30 }
    layer fc2: Linear { in_features: 30, out_features: 10 }
    forward(x: Tensor[b, 1, 16, 16]) -> Tensor[b, 10] {
        x = pool1(relu(bn1(conv1(x))))
        x = relu(bn2(conv2(x)))
        x = flatten(x, start_dim: 1)
        x = relu(fc1(x))
        return fc2(x)
    }
}
"""


def _lenet(tmp_path) -> nn.Module:
    path = tmp_path / "l.tri"
    path.write_text(textwrap.dedent(LENET))
    torch.manual_seed(0)
    model = build_model(path).model
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-1, 1, generator=gen)
                mod.running_var.uniform_(0.5, 1.5, generator=gen)
    return freeze_model(model.eval())


@pytest.mark.usefixtures("every_isa")
def test_a_frozen_model_runs_its_first_conv_with_norm_relu_and_pool_in_one_call(tmp_path):
    model = _lenet(tmp_path)
    ops = model.forward._program()[0]
    step = ops[0]
    assert isinstance(step, _FloatConvStep)
    assert (step.conv, step.bn, step.act) == (model.conv1, model.bn1, "relu")
    assert step.pool is not None and step.pool.module is model.pool1
    for b in (1, 7):
        x = torch.randn(b, 1, 16, 16)
        with torch.no_grad():
            _close(model(x), type(model).forward(model, x))


def test_the_modules_run_when_the_plan_does_not_hold(tmp_path):
    model = _lenet(tmp_path)
    x = torch.randn(3, 1, 16, 16)
    generated = type(model).forward
    with torch.no_grad():
        model.bn1.train()                           # batch statistics, and they update
        mean = model.bn1.running_mean.clone()
        torch.testing.assert_close(model(x), generated(model, x), rtol=0, atol=0)
        assert not torch.equal(model.bn1.running_mean, mean)
        model.bn1.eval()
        seen = []
        handle = model.conv1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        torch.testing.assert_close(model(x), generated(model, x), rtol=0, atol=0)
        assert seen and seen[0] == torch.Size([3, 6, 16, 16])
        handle.remove()
    y = model(x)                                    # autograd: the modules' graph
    y.sum().backward()
    assert model.conv1.weight.grad is not None
