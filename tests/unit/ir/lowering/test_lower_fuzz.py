"""Random programs. From the front-end fuzzer's generator: every one that checks clean either
lowers to verified IR or is refused with a LoweringError (never another exception, never an
internal error). From a generator of well-formed models: they lower, run in the interpreter
and keep their results through -O1..-O3."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "property"))
from strategies import programs  # noqa: E402

from tritium.check import check_source  # noqa: E402
from tritium.ir import interpret, verify  # noqa: E402
from tritium.ir.lowering import LoweringError, lower  # noqa: E402
from tritium.passes import pipeline  # noqa: E402

EXAMPLES = int(os.environ.get("TRITIUM_FUZZ_EXAMPLES", "80"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs())
def test_checked_programs_lower_or_fail_cleanly(src: str) -> None:
    try:
        result = check_source(src)
    except Exception:   # a checker problem: tested in tests/property/test_fuzz.py
        return
    if not result.ok:
        return
    try:
        low = lower(result)
    except LoweringError as e:
        assert "internal error" not in e.message, (src, e.message)
        return
    verify(low.module)
    assert low.module.function(low.entry) is not None


# ----------------------------------------------------------------------------- checkable models

_ACTS = ["relu", "gelu", "silu", "sigmoid", "tanh", "relu6"]


@st.composite
def mlp_models(draw) -> str:
    """A well-formed model: a chain of feature-preserving or resizing layers with activations,
    residual adds, an unrolled loop and a constant condition, over [batch, width] inputs."""
    width = draw(st.sampled_from([4, 6, 8]))
    layers: list[str] = []
    stmts: list[str] = []
    cur = width
    n = draw(st.integers(1, 4))
    for i in range(n):
        kind = draw(st.sampled_from(["TernaryLinear", "Linear", "BitLinear", "Int8Linear",
                                     "BatchNorm1d", "LayerNorm", "TernaryActivation",
                                     "Dropout"]))
        name = f"l{i}"
        if kind in ("TernaryLinear", "Linear", "BitLinear", "Int8Linear"):
            out = draw(st.sampled_from([cur, 4, 8]))
            extra = ""
            if kind == "TernaryLinear":
                q = draw(st.sampled_from(['"twn"', '"absmean"', '"stochastic"']))
                extra = f", quantizer: {q}, per_channel: {draw(st.sampled_from(['true', 'false']))}"
            layers.append(f"layer {name}: {kind} {{ in_features: {cur}, out_features: {out}{extra} }}")
            cur_out = out
        elif kind == "BatchNorm1d":
            layers.append(f"layer {name}: BatchNorm1d {{ num_features: {cur} }}")
            cur_out = cur
        elif kind == "LayerNorm":
            layers.append(f"layer {name}: LayerNorm {{ normalized_shape: {cur} }}")
            cur_out = cur
        elif kind == "TernaryActivation":
            layers.append(f"layer {name}: TernaryActivation {{ threshold: 0.5 }}")
            cur_out = cur
        else:
            layers.append(f"layer {name}: Dropout {{ p: 0.1 }}")
            cur_out = cur
        act = draw(st.sampled_from(_ACTS))
        form = draw(st.integers(0, 3))
        if form == 0 or cur_out != cur:
            stmts.append(f"x = {act}({name}(x))")
        elif form == 1:
            stmts.append(f"x = x + {name}(x) * 0.5")
        elif form == 2:
            k = draw(st.integers(1, 3))
            stmts.append(f"for i in 0..{k} {{ x = {act}({name}(x)) + i }}")
        else:
            stmts.append(f"if width > {draw(st.integers(3, 9))} {{ x = {name}(x) }} else "
                         f"{{ x = {act}(x) }}")
        cur = cur_out
    body = "\n        ".join(stmts)
    decls = "\n    ".join(layers)
    return f"""
model Rand {{
    width: {width}
    {decls}
    forward(x: Tensor[batch, {width}]) -> Tensor[batch, {cur}] {{
        {body}
        return x
    }}
}}"""


@settings(max_examples=min(EXAMPLES, 25), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(mlp_models(), st.sampled_from([1, 2, 3]))
def test_random_models_lower_run_and_optimize(src: str, level: int) -> None:
    result = check_source(src)
    assert result.ok, (src, [d.message for d in result.errors])
    low = lower(result)
    f = low.module.function(low.entry)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, f.arg_types[0].shape[1])).astype(np.float32)
    params = {}
    for name, (shape, _dt, _init, _q) in low.params.items():
        v = rng.standard_normal(shape) * 0.5
        params[name] = (np.abs(v) + 0.5 if name.endswith("running_var") else v).astype(np.float32)
    before = interpret(low.module, low.entry, [x], params)[0]
    assert before.shape[0] == 2 and np.all(np.isfinite(before))
    pipeline(level, verify_each=True).run(low.module)
    after = interpret(low.module, low.entry, [x], params)[0]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)
