"""Differential test: random programs (linear/conv/matmul/elementwise chains with ternary
weights, batch norms, residuals, constants and redundancies) compute the same outputs in
the reference interpreter before and after every pipeline -O0..-O3."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.ir import (
    Module,
    ScalarType,
    Value,
    interpret,
    new_function,
    parse_module,
    print_module,
    tensor,
)
from tritium.passes import pipeline

EXAMPLES = int(os.environ.get("TRITIUM_FUZZ_EXAMPLES", "40"))
ACTS = ["relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "none"]


@st.composite
def programs(draw: st.DrawFn) -> tuple[Module, list[np.ndarray], int]:
    batch = draw(st.integers(1, 3))
    conv = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = draw(st.integers(1, 4))
    shape = (batch, c, draw(st.integers(3, 6)), draw(st.integers(3, 6))) if conv else (batch, draw(st.integers(1, 6)))
    # Non-constant weights become extra function arguments (at most n_w of them).
    n_w = 8
    weights: list[np.ndarray | None] = [None] * n_w
    arg_types = [("x", tensor(("b",) + shape[1:]))]
    f, b = new_function("f", arg_types)
    x = f.args[0]
    used = 0

    def weight(w_shape: tuple, positive: bool = False) -> Value:
        nonlocal used
        a = rng.standard_normal(w_shape).astype(np.float32)
        if positive:
            a = np.abs(a) + 0.5
        if used >= n_w or draw(st.booleans()):
            return b.constant(a, tensor(w_shape))
        v = Value(tensor(w_shape), f.body, len(f.body.args), f"w{used}")
        f.body.args.append(v)
        weights[used] = a
        used += 1
        return v

    outs = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["layer", "layer", "elementwise", "matmul"]))
        cur_c = x.type.shape[1]
        if kind == "layer":
            out_c = draw(st.sampled_from([cur_c, draw(st.integers(1, 5))]))
            if conv:
                k = draw(st.sampled_from([1, 3]))
                w = weight((out_c, cur_c, k, k))
            else:
                w = weight((out_c, cur_c))
            if draw(st.booleans()):
                t, s = b.quantize_ternary(w, per_channel=draw(st.booleans()))
                w = b.dequantize(t, s)
                if draw(st.booleans()):  # a redundant re-quantization
                    t2, s2 = b.quantize_ternary(w, per_channel=False)
                    w = b.dequantize(t2, s2) if draw(st.booleans()) else w
            bias = weight((out_c,)) if draw(st.booleans()) else None
            operands = [x, w] + ([bias] if bias is not None else [])
            y = b.conv2d(*operands, padding=[k // 2, k // 2]) if conv else b.linear(*operands)
            if draw(st.booleans()):
                y = b.batch_norm(y, weight((out_c,)), weight((out_c,), positive=True),
                                 weight((out_c,)), weight((out_c,)), eps=1e-5)
            if not conv and bias is None and draw(st.booleans()):
                y = b.add(y, weight((out_c,)))
            if out_c == cur_c and draw(st.booleans()):
                y = b.add(y, x) if draw(st.booleans()) else b.add(x, y)
            act = draw(st.sampled_from(ACTS))
            x = y if act == "none" else b.op(act, y)
        elif kind == "elementwise":
            zero = b.constant(0.0, ScalarType("f32"))
            one = b.constant(np.ones(x.type.shape[-1], np.float32), tensor((x.type.shape[-1],)))
            two = b.mul(b.constant(2.0, ScalarType("f32")), b.constant(0.25, ScalarType("f32")))
            y = b.mul(b.add(x, zero), one)
            y = b.neg(b.neg(y))
            z = b.mul(y, two)
            z2 = b.mul(y, two)  # duplicate for CSE
            x = b.add(b.tanh(z), b.sigmoid(z2))
        else:
            m = x.type.shape[-1]
            w = weight((m, m))
            x = b.matmul(x, b.transpose(b.transpose(w, dim0=0, dim1=1), dim0=1, dim1=0))
        if draw(st.booleans()):
            outs.append(x)
    outs.append(x)
    b.ret(*outs)
    f.result_types = [v.type for v in outs]
    inputs = [rng.standard_normal(shape).astype(np.float32)] + [w for w in weights if w is not None]
    return Module([f]), inputs, batch


def check(ref: list[np.ndarray], got: list[np.ndarray]) -> None:
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        scale = max(1.0, float(np.abs(r).max(initial=0)))
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * scale)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(), st.sampled_from(["0", "1", "2", "3", "3s"]))
def test_pipelines_preserve_semantics(prog: tuple[Module, list[np.ndarray], int], level: str) -> None:
    m, inputs, batch = prog
    text = print_module(m)
    ref = interpret(m, "f", inputs)
    opt = parse_module(text)
    bindings = {"b": batch} if level == "3s" else None
    pipeline(level[0], bindings=bindings, verify_each=True).run(opt)
    check(ref, interpret(opt, "f", inputs))


def test_o3_fuses_a_typical_block() -> None:
    """Not a vacuous property: on a ternary conv + bn + residual + relu, -O3 leaves one op."""
    f, b = new_function("f", [("x", tensor(("b", 4, 5, 5))), ("w", tensor((4, 4, 3, 3)))])
    x, w = f.args
    rng = np.random.default_rng(0)
    stats = [b.constant(rng.random(4).astype(np.float32) + 0.5, tensor((4,))) for _ in range(4)]
    t, s = b.quantize_ternary(w, per_channel=True)
    y = b.relu(b.add(b.batch_norm(b.conv2d(x, b.dequantize(t, s), padding=[1, 1]), *stats), x))
    b.ret(y)
    f.result_types = [y.type]
    m = Module([f])
    inputs = [rng.standard_normal((2, 4, 5, 5)).astype(np.float32), rng.standard_normal((4, 4, 3, 3)).astype(np.float32)]
    ref = interpret(m, "f", inputs)
    report = pipeline(3, verify_each=True).run(m)
    names = [op.name for op in m.walk()]
    assert names.count("fused_conv2d") == 1 and "batch_norm" not in names and "conv2d" not in names
    assert report.converged
    check(ref, interpret(m, "f", inputs))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_pipeline_levels_differ(level: int) -> None:
    from tritium.passes import pipeline_passes

    names = [p.name for p in pipeline_passes(level)]
    assert names[0] == {0: "verify", 1: "constant-fold", 2: "constant-fold", 3: "bn-fold"}[level]
    assert ("fuse" in names) == (level >= 2)
