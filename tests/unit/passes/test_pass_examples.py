"""The example programs, lowered by the front end, keep their interpreter results through
-O1..-O3 (random parameters; the examples chosen are numerically well conditioned)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritium.ir import Module, ScalarType, Type, clone_module, interpret, parse_module
from tritium.passes import pipeline

ROOT = Path(__file__).parents[3]
pytest.importorskip("tritium.ir.lowering")


def sample(t: Type, sizes: dict, rng: np.random.Generator) -> np.ndarray:
    assert not isinstance(t, ScalarType)
    shape = [d if isinstance(d, int) else sizes.setdefault(d, 2) for d in t.shape]
    return rng.standard_normal(shape).astype(np.float32)


def random_params(m: Module, layer_name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def collect(name: str, prefix: str) -> None:
        layer = m.layer(name)
        assert layer is not None
        for p in layer.params:
            v = sample(p.type, {}, rng)
            out[prefix + p.name] = np.abs(v) + 0.5 if "running_var" in p.name else v
        for s in layer.sublayers:
            if m.layer(s.kind) is not None:
                collect(s.kind, prefix + s.name + ".")

    collect(layer_name, "")
    return out


@pytest.mark.parametrize("example", ["mlp.tri", "lenet5.tri", "bitnet_block.tri"])
def test_example_pipelines(example: str) -> None:
    from tritium.driver.compile import compile_program

    res = compile_program(str(ROOT / "examples" / example), opt_level=0, use_cache=False)
    m = parse_module(res.stages["ir"])
    entry = res.entry
    f = m.function(f"{entry}.forward")
    assert f is not None
    rng = np.random.default_rng(0)
    sizes: dict = {}
    args = [sample(a.type, sizes, rng) for a in f.args]
    params = random_params(m, entry, rng)
    ref = interpret(m, f"{entry}.forward", args, params)
    for level in ("O1", "O2", "O3"):
        opt = clone_module(m)
        pipeline(level, verify_each=True).run(opt)
        for got, want in zip(interpret(opt, f"{entry}.forward", args, params), ref):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
