"""Every example and DESIGN.md dialect snippet lowers, verifies, and runs in the reference
interpreter with the checker's output shape and finite values; -O0..-O3 keep the results."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lowering_helpers import (  # noqa: E402
    DATA,
    EXAMPLES,
    assert_shape,
    checked,
    declared_output,
    run,
)

from tritium.ir import TensorType, interpret, parse_module, print_module, verify  # noqa: E402
from tritium.ir.lowering import LoweringError, lower  # noqa: E402
from tritium.passes import bindings_for, pipeline  # noqa: E402

SIZES = {"batch": 2, "b": 2, "seq": 5, "s": 5, "N": 3, "batch_size": 2}
# ResNet-18 and MobileNetV2 interpret at 32x32 with batch 1 (a few seconds in numpy)
FAST = ["mlp.tri", "lenet5.tri", "bitnet_block.tri"]
SNIPPETS = [
    ("design_intro.tri", None, None),
    ("design_intro.tri", "Residual", {"channels": 4}),
    ("design_intro.tri", "Scaled", {"in_features": 8, "out_features": 3}),
    ("dialect_a_proj.tri", None, None),
    ("dialect_b_affine.tri", "Affine", {"n_in": 8, "n_out": 4}),
    ("dialect_c_tiny.tri", None, None),
    ("dialect_d_down.tri", None, None),
    ("dialect_e_head.tri", None, None),
]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_lowers_and_verifies(path: Path) -> None:
    low = lower(checked(path))
    verify(low.module)
    assert low.module.function(low.entry) is not None
    # the textual form round-trips, and lowering is deterministic
    text = print_module(low.module)
    assert print_module(parse_module(text)) == text
    assert print_module(lower(checked(path)).module) == text
    for name, (shape, dtype, init, _q) in low.params.items():
        assert all(isinstance(d, int) and d > 0 for d in shape), name
        assert dtype == "f32" and init


def _check_run(path: Path, entry: str | None = None, hyper: dict | None = None,
               sizes: dict | None = None) -> None:
    result = checked(path)
    low = lower(result, entry, hyper)
    sizes = sizes or SIZES
    outs, _, _ = run(low, sizes)
    assert len(outs) == 1
    assert np.all(np.isfinite(outs[0]))
    assert_shape(outs[0].shape, declared_output(result, entry, hyper), sizes)


@pytest.mark.parametrize("name", FAST)
def test_example_interprets(name: str) -> None:
    _check_run(Path(EXAMPLES[0]).parent / name)


@pytest.mark.parametrize("name", ["resnet18.tri", "mobilenetv2.tri"])
def test_big_example_interprets(name: str) -> None:
    _check_run(Path(EXAMPLES[0]).parent / name, sizes={"batch": 1})


@pytest.mark.parametrize("file,entry,hyper", SNIPPETS,
                         ids=[f"{f}:{e}" for f, e, _ in SNIPPETS])
def test_design_snippets_lower_and_run(file: str, entry: str | None, hyper: dict | None) -> None:
    _check_run(DATA / file, entry, hyper)


def test_unshaped_entry_input_is_a_clean_error() -> None:
    with pytest.raises(LoweringError, match="needs a declared shape") as e:
        lower(checked(DATA / "dialect_a_proj.tri"), "Proj", {"in_features": 8, "out_features": 3})
    assert e.value.span is not None and e.value.span.line == 4


def test_input_types_for_an_unshaped_entry() -> None:
    low = lower(checked(DATA / "dialect_a_proj.tri"), "Proj", {"in_features": 8, "out_features": 3},
                input_types=[TensorType(("batch", 8), "f16")])
    f = low.module.function(low.entry)
    assert [str(t) for t in f.arg_types] == ["tensor<[batch, 8], f16>"]
    assert [str(t) for t in f.result_types] == ["tensor<[batch, 3], f16>"]
    outs, _, _ = run(low, {"batch": 2})
    assert outs[0].shape == (2, 3)


def test_bad_hyperparameter_value_is_a_clean_error() -> None:
    with pytest.raises(LoweringError, match="cannot be instantiated") as e:
        lower(checked(DATA / "design_intro.tri"), "Residual", {"channels": "wide"})
    assert "internal" not in e.value.message


def test_missing_hyperparameter_is_a_clean_error() -> None:
    with pytest.raises(LoweringError, match="`n_in`"):
        lower(checked(DATA / "dialect_b_affine.tri"), "Affine")
    with pytest.raises(LoweringError, match="no hyperparameter `nope`"):
        lower(checked(DATA / "dialect_b_affine.tri"), "Affine", {"nope": 1})


# ----------------------------------------------------------------------------- passes


def _opt_agree(path: Path, level: int, sizes: dict, rtol: float) -> None:
    result = checked(path)
    low = lower(result)
    before, xs, params = run(low, sizes, seed=level)
    f = low.module.function(low.entry)
    assert f is not None
    bindings = bindings_for(f, [x.shape for x in xs]) if level == 3 else None
    pipeline(level, bindings=bindings, verify_each=True).run(low.module)
    after = interpret(low.module, low.entry, xs, params)
    np.testing.assert_allclose(after[0], before[0], rtol=rtol, atol=rtol)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("name", FAST)
def test_pipelines_preserve_results(name: str, level: int) -> None:
    rtol = 1e-3 if name == "bitnet_block.tri" else 1e-4
    _opt_agree(Path(EXAMPLES[0]).parent / name, level, SIZES, rtol)


@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("file", ["dialect_c_tiny.tri", "dialect_d_down.tri",
                                  "dialect_e_head.tri", "design_intro.tri"])
def test_pipelines_preserve_snippet_results(file: str, level: int) -> None:
    _opt_agree(DATA / file, level, SIZES, 1e-4)


@pytest.mark.parametrize("name", ["resnet18.tri", "mobilenetv2.tri"])
def test_pipelines_preserve_big_examples(name: str) -> None:
    _opt_agree(Path(EXAMPLES[0]).parent / name, 3, {"batch": 1}, 1e-3)
