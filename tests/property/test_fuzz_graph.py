"""Fuzzing the dataflow plans of frozen models (tritium.runtime.graph): random forwards of
residual form -- locals defined and redefined, `+` and `+=` of any two values, ternary convs
(each with a random activation quantizer) and activations nested on them, `if`s on a
hyperparameter -- compiled, frozen and run: the plan's result is the generated forward's,
bit for bit, whatever it fused. TRITIUM_FUZZ_EXAMPLES sets the number of examples."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from torch import nn

from tritium.driver.models import build_model
from tritium.runtime import freeze_model, kernels
from tritium.runtime.chain import ChainForward
from tritium.runtime.graph import GraphForward

sys.path.insert(0, str(Path(__file__).parent))  # the shared fuzz settings (any import mode)
from fuzzing import fuzz  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")

_CONVS = 3
_ACTS = ["relu", "relu6", "tanh"]


@st.composite
def expressions(draw, defined: list[str], depth: int = 2) -> str:
    kind = draw(st.sampled_from(["var", "conv", "act", "add"] if depth else ["var"]))
    if kind == "var":
        return draw(st.sampled_from(defined))
    inner = draw(expressions(defined, depth - 1))
    if kind == "conv":
        bn = draw(st.booleans())
        i = draw(st.integers(0, _CONVS - 1))
        return f"bn{i}(conv{i}({inner}))" if bn else f"conv{i}({inner})"
    if kind == "act":
        return f"{draw(st.sampled_from(_ACTS))}({inner})"
    return f"{inner} + {draw(expressions(defined, depth - 1))}"


@st.composite
def forwards(draw) -> str:
    defined = ["x"]
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["assign", "assign", "plus", "if"]))
        if kind == "if":
            target = draw(st.sampled_from(defined))
            then = draw(expressions(defined))
            other = draw(expressions(defined))
            lines.append(f"if flag == 1 {{ {target} = {then} }} else {{ {target} = {other} }}")
            continue
        value = draw(expressions(defined))
        if kind == "plus":
            target = draw(st.sampled_from(defined))
            lines.append(f"{target} += {value}")
            continue
        target = draw(st.sampled_from(["a", "b", "c", "x"]))
        lines.append(f"{target} = {value}")
        if target not in defined:
            defined.append(target)
    lines.append(f"return {draw(expressions(defined))}")
    return "\n        ".join(lines)


def _program(body: str, quants: list[str], flag: int) -> str:
    layers = "\n    ".join(
        f'layer conv{i}: TernaryConv2d {{ in_channels: 3, out_channels: 3, kernel_size: 3, '
        f'padding: 1, act_quant: "{q}" }}\n    layer bn{i}: BatchNorm2d {{ num_features: 3 }}'
        for i, q in enumerate(quants))
    return f"""
block G {{
    params {{ flag: int }}
    {layers}
    forward(x: Tensor[n, 3, 5, 5]) -> Tensor {{
        {body}
    }}
}}

model M {{
    layer g: G {{ flag: {flag} }}
    forward(x: Tensor[n, 3, 5, 5]) -> Tensor {{ return g(x) }}
}}
"""


@fuzz(25)
@given(forwards(), st.lists(st.sampled_from(["none", "int8", "int8_image"]), min_size=_CONVS,
                            max_size=_CONVS), st.integers(0, 1), st.integers(1, 3))
def test_graph_plans_compute_what_the_generated_forward_computes(body, quants, flag, batch):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.tri"
        path.write_text(_program(body, quants, flag))
        torch.manual_seed(0)
        model = build_model(path).model.eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 1.5)
    frozen = freeze_model(model)
    plain = copy.deepcopy(frozen)
    for mod in plain.modules():
        mod.__dict__.pop("forward", None)
    x = torch.randn(batch, 3, 5, 5)
    with torch.no_grad():
        got, ref = frozen(x), plain(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=0, equal_nan=True)
    # everything drawn is inside the grammar: with a layer in it, a plan was built (the
    # generated forward did not merely run in its place); one value threaded through is a chain
    forward = frozen.g.__dict__.get("forward")
    if "conv" in body:
        assert isinstance(forward, ChainForward) and forward.program[0] is not None, body
    if isinstance(forward, GraphForward):
        fused = sum(type(op).__name__ == "_RunResidual" for op in forward.program[0][0])
        event(f"fused residuals: {fused}")
