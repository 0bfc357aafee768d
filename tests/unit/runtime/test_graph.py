"""A frozen generated module whose forward is dataflow (residual blocks) runs the plan
tritium.runtime.graph builds from the ops its compiler wrote: the residual add, and the
relu/relu6 after it, fused into the conv that feeds it, the results the generated forward's,
bit for bit, on every ISA path of this CPU; the generated forward wherever the plan does not
hold."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from tritium.runtime import freeze_model, kernels
from tritium.runtime.chain import ChainForward
from tritium.runtime.graph import GraphForward, _Add, _Run, _RunResidual, install_forwards

from .test_chain import _build

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")

RESNET = """
block Basic {
    params { c_in: int, c_out: int, stride: int = 1 }
    layer conv1: TernaryConv2d { in_channels: c_in, out_channels: c_out, kernel_size: 3, stride: stride, padding: 1, act_quant: "AQ" }
    layer bn1: BatchNorm2d { num_features: c_out }
    layer conv2: TernaryConv2d { in_channels: c_out, out_channels: c_out, kernel_size: 3, padding: 1, act_quant: "AQ" }
    layer bn2: BatchNorm2d { num_features: c_out }
    layer shortcut: if stride != 1 or c_in != c_out {
        TernaryConv2d { in_channels: c_in, out_channels: c_out, kernel_size: 1, stride: stride, act_quant: "AQ" }
        BatchNorm2d { num_features: c_out }
    }
    forward(x: Tensor[b, c_in, h, w]) -> Tensor {
        identity = x
        if shortcut is not None {
            identity = shortcut(x)
        }
        out = relu(bn1(conv1(x)))
        out = bn2(conv2(out))
        BODY
    }
}

model R {
    layer b1: Basic { c_in: 4, c_out: 4 }
    layer b2: Basic { c_in: 4, c_out: 8, stride: 2 }
    forward(x: Tensor[b, 4, 10, 10]) -> Tensor[b, 8, 5, 5] { return b2(b1(x)) }
}
"""

INVERTED = """
block Body {
    params { c: int }
    layer expand: TernaryConv2d { in_channels: c, out_channels: 12, kernel_size: 1, act_quant: "int8_image" }
    layer bn1: BatchNorm2d { num_features: 12 }
    layer project: TernaryConv2d { in_channels: 12, out_channels: c, kernel_size: 1, act_quant: "int8_image" }
    layer bn2: BatchNorm2d { num_features: c }
    forward(x: Tensor) -> Tensor {
        x = relu6(bn1(expand(x)))
        return bn2(project(x))
    }
}

block Inverted {
    params { c: int, stride: int = 1 }
    layer body: Body { c: c }
    forward(inp: Tensor) -> Tensor {
        let out = body(inp)
        if stride == 1 and c > 2 { out = inp + out }
        return out
    }
}

model V {
    layer s1: Inverted { c: 6 }
    layer s2: Inverted { c: 6, stride: 2 }
    forward(x: Tensor[b, 6, 7, 7]) -> Tensor[b, 6, 7, 7] { return s2(s1(x)) }
}
"""


def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The generated forwards all the way down (what runs without the plans)."""
    plain = copy.deepcopy(model)
    for mod in plain.modules():
        mod.__dict__.pop("forward", None)
    return plain(x)


def _check(model: nn.Module, shape: tuple[int, ...], batches=(1, 3)) -> None:
    for b in batches:
        x = torch.randn(b, *shape)
        with torch.no_grad():
            got, ref = model(x), _reference(model, x)
        torch.testing.assert_close(got, ref, rtol=0, atol=0)


def _kinds(mod: nn.Module) -> list[tuple[str, str | None]]:
    prog = mod.forward.program[0]
    assert prog is not None, "the plan was not built"
    return [(type(op).__name__, getattr(op, "act", None)) for op in prog[0]]


@pytest.mark.usefixtures("every_isa")
@pytest.mark.parametrize("act_quant", ["none", "int8", "int8_image"])
@pytest.mark.parametrize("body, fused", [
    ("out += identity\n        return relu(out)", "relu"),
    ("return relu6(identity + out)", "relu6"),
    ("out = out + identity\n        return out", None),
    ("return out + identity + identity", None),
])
def test_residual_blocks_fuse_and_match_the_generated_forward(tmp_path, act_quant, body, fused):
    model = freeze_model(_build(tmp_path, RESNET, AQ=act_quant, BODY=body))
    assert isinstance(model.b1.__dict__["forward"], GraphForward)
    _check(model, (4, 10, 10))
    assert _kinds(model.b1)[0] == ("_Run", None)          # conv1 with its relu fused
    kinds = _kinds(model.b2)
    assert kinds[-2 if body.count("+") == 2 else -1] == ("_RunResidual", fused)
    assert model.b2.forward.program[0][0][-1 if body.count("+") < 2 else -1].__class__ in (
        _RunResidual, _Add)
    # the block with a shortcut conv: it runs first, then conv1, then conv2 with the residual
    assert [k for k, _ in kinds][:3] == ["_Run", "_Run", "_RunResidual"]


def test_the_residual_of_a_child_chain_and_a_condition_on_hyperparameters(tmp_path):
    model = freeze_model(_build(tmp_path, INVERTED))
    assert isinstance(model.s1.body.__dict__["forward"], ChainForward)
    _check(model, (6, 7, 7), batches=(1, 2, 5))
    fused = model.s1.forward.program[0][0]
    assert len(fused) == 1 and isinstance(fused[0], _RunResidual) and fused[0].kind == "chain"
    assert model.s1.forward.program[3] == (("stride", 1), ("c", 6))
    # stride 2: the condition is false, the body runs alone
    assert [type(op) for op in model.s2.forward.program[0][0]] == [_Run]
    assert model.s2.forward.program[3] == (("stride", 2),)
    # a hyperparameter changed after freezing: the plan is rebuilt for it
    model.s2.stride = 1
    _check(model, (6, 7, 7))
    assert isinstance(model.s2.forward.program[0][0][0], _RunResidual)
    # a hook on the child's last conv: the child's generated forward runs, the hook sees it
    seen = []
    handle = model.s1.body.project.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    _check(model, (6, 7, 7), batches=(2,))
    handle.remove()
    assert seen == [torch.Size([2, 6, 7, 7])] * 2


def test_a_residual_of_another_shape_is_added_separately(tmp_path):
    source = """
    model P {
        layer conv: TernaryConv2d { in_channels: 3, out_channels: 5, kernel_size: 3, padding: 1 }
        layer pool: Sequential {
            Conv2d { in_channels: 3, out_channels: 5, kernel_size: 1 }
            AdaptiveAvgPool2d { output_size: 1 }
        }
        forward(x: Tensor[b, 3, 6, 6]) -> Tensor[b, 5, 6, 6] {
            let p = pool(x)
            let y = conv(x) + p
            return relu(y)
        }
    }
    """
    model = freeze_model(_build(tmp_path, source))
    _check(model, (3, 6, 6))            # (b, 5, 1, 1) broadcasts: added after the conv
    assert _kinds(model) == [("_Run", None), ("_RunResidual", "relu")]


def test_fallbacks_keep_the_generated_semantics(tmp_path):
    model = freeze_model(_build(tmp_path, RESNET, AQ="int8_image",
                                BODY="out += identity\n        return relu(out)"))
    x = torch.randn(2, 4, 10, 10)
    with torch.no_grad():
        ref = _reference(model, x)
        torch.testing.assert_close(model(x), ref, rtol=0, atol=0)
        seen = []
        handle = model.b2.conv2.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        torch.testing.assert_close(model(x), ref, rtol=0, atol=0)
        assert seen == [torch.Size([2, 8, 5, 5])]     # hooks fire: the layer ran unfused
        handle.remove()
        model.b2.shortcut = None                       # an optional layer removed
        with pytest.raises(RuntimeError):
            model(x)                                   # the generated code's own error
        model.b2.shortcut = nn.Conv2d(4, 8, 1, stride=2)
        # the new shortcut, a full-precision conv, runs as the native float conv: its sums in
        # another order than oneDNN's
        torch.testing.assert_close(model(x), _reference(model, x), rtol=1e-5, atol=1e-6)
    # a subclass swapped in whose forward is another: that forward runs
    plan = type(model.b1)

    class Doubled(plan):
        def forward(self, x):
            return plan.forward(self, x) * 2

    model.b1.__class__ = Doubled
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference(model, x), rtol=1e-5, atol=1e-6)
    model.b1.__class__ = plan
    # autograd: the generated forward, with gradients
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_copies_pickles_and_a_second_install(tmp_path):
    model = freeze_model(_build(tmp_path, RESNET, AQ="int8",
                                BODY="out += identity\n        return relu(out)"))
    x = torch.randn(3, 4, 10, 10)
    with torch.no_grad():
        ref = model(x)
        dup = copy.deepcopy(model)
        assert dup.b1.forward.module is dup.b1
        torch.testing.assert_close(dup(x), ref, rtol=0, atol=0)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        torch.testing.assert_close(loaded(x), ref, rtol=0, atol=0)
    assert install_forwards(model) == 2                 # idempotent: the two blocks


def test_malformed_graph_data_runs_the_generated_forward(tmp_path):
    model = _build(tmp_path, RESNET, AQ="none", BODY="out += identity\n        return relu(out)")
    model.b1.tritium_graph = [["input", "x"], ["add", "y", "x", "nope"], ["return", "y"]]
    model.b2.tritium_graph = [["input", "x"], ["exec", "print('hi')"], ["return", "x"]]
    freeze_model(model)
    _check(model, (4, 10, 10))
    assert model.b1.forward.program[0] is None and model.b2.forward.program[0] is None
