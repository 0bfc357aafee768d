"""Output equivalence: the generated PyTorch module equals the IR reference interpreter.

For every example and for random programs: compile, instantiate the generated module with
random weights (and non-trivial batch-norm statistics), lower the same program to IR, run
the interpreter with the module's state_dict as parameters, and compare. Tolerance: 1e-4
relative + 1e-4 absolute in float32 (the interpreter computes in float64 and rounds per
op; attention and RMS norms accumulate in a different order).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import tritium
from tritium import vocab
from tritium.check import check_file, check_source
from tritium.ir import interpret, verify
from tritium.ir.lowering import lower
from tritium.ir.types import NUMPY_DTYPES
from tritium.passes import pipeline

# runs once per ISA path of this CPU (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("every_isa")

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
RTOL = ATOL = 1e-4


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)


def _input(*shape: int, seed: int = 0) -> torch.Tensor:
    """A fixed input. Quantizers are discontinuous: the float64 interpreter and float32 torch
    can round a value sitting on an int8 step boundary to neighbouring steps (about 3% of
    random inputs to the BitNet block do, one step = max|x|/127), so inputs are seeded and a
    failure is reproducible rather than a coin toss."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _compare(result, model: torch.nn.Module, inputs: list[torch.Tensor], opt: str | None = None,
             entry: str | None = None, hyper: dict | None = None, rtol: float = 0.0) -> None:
    lowered = lower(result, entry, hyper)
    module = lowered.module
    if opt is not None:
        pipeline(opt).run(module)
        verify(module)
    state = model.state_dict()
    missing = set(lowered.params) - set(state)
    assert not missing, f"IR parameters not in the module's state_dict: {sorted(missing)}"
    params = {n: state[n].detach().numpy() for n in lowered.params}
    model.eval()
    with torch.no_grad():
        ref = model(*inputs)
    got = interpret(module, lowered.entry, [x.numpy() for x in inputs], params=params)
    got = got[0] if isinstance(got, list | tuple) else got
    # the dtypes agree exactly: the IR's declared result type is the module's dtype, and the
    # interpreter stores it as that dtype's numpy storage (bf16 is stored as f32)
    ir_type = module.function(lowered.entry).result_types[0]
    assert _torch_dtype(ir_type.dtype) == ref.dtype, (ir_type, ref.dtype)
    assert np.asarray(got).dtype == NUMPY_DTYPES[ir_type.dtype], (np.asarray(got).dtype, ir_type)
    if not ref.is_floating_point():
        np.testing.assert_array_equal(np.asarray(got), ref.numpy())
        return
    # float32 rounding grows with the magnitude of the values summed (randomized deep nets
    # reach ~1e6), so the absolute tolerance scales with the output's largest magnitude
    # (bf16 has no numpy dtype: the interpreter keeps it in f32, so it is as exact as bf16's
    # own rounding of the module's result)
    scale = max(1.0, float(ref.abs().max()))
    tol = max(RTOL, torch.finfo(ref.dtype).eps, rtol)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64),
                               ref.to(torch.float64).numpy(), rtol=tol, atol=tol * scale)


def _torch_dtype(ir_dtype: str) -> torch.dtype:
    """The torch dtype of an IR dtype, through the one vocabulary (tritium.vocab)."""
    return getattr(torch, vocab.DTYPES[vocab.IR_TO_LANG[ir_dtype]].torch)


@pytest.mark.parametrize("name,shape,opt", [
    ("mlp", (3, 64), None), ("mlp", (3, 64), "O2"), ("mlp", (3, 64), "O3"),
    ("lenet5", (2, 1, 32, 32), None), ("lenet5", (2, 1, 32, 32), "O2"),
])
def test_examples_match_interpreter(name, shape, opt):
    path = EX / f"{name}.tri"
    model = tritium.load(path)
    _randomize(model, 0)
    _compare(check_file(path), model, [_input(*shape)], opt)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_conv_examples_match_interpreter(name):
    path = EX / f"{name}.tri"
    model = tritium.load(path)
    _randomize(model, 1)
    # both examples' convs (resnet18's all, mobilenetv2's pointwise ones) quantize their
    # inputs to int8 per image (act_quant "int8_image"): the interpreter's float64 values
    # round differently from float32 at a few near-ties, and through the quantized convs of a
    # randomized net that moves the output by up to ~1%
    _compare(check_file(path), model, [_input(1, 3, 32, 32)], "O2", rtol=3e-2)


def test_transformer_block_matches_interpreter():
    path = EX / "bitnet_block.tri"
    block = tritium.load(path, "BitNetBlock", dim=32, heads=4, ffn=64)
    _randomize(block, 2)
    _compare(check_file(path), block, [_input(2, 5, 32)], None, "BitNetBlock",
             {"dim": 32, "heads": 4, "ffn": 64})


def _random_program(rng: random.Random) -> tuple[str, int]:
    """A random MLP-like model over the builtin layers, with elementwise arithmetic,
    a residual, a static branch and a loop."""
    width = rng.choice([3, 8, 13])
    n_in = rng.choice([4, 7, 16])
    layers, body = [], []
    cur = n_in
    for i in range(rng.randint(1, 4)):
        kind = rng.choice(["TernaryLinear", "Linear", "TernaryLinear"])
        extra = rng.choice(["", ", per_channel: true", ", bias: false",
                            ', quantizer: "absmean"'])
        if kind == "Linear":
            extra = rng.choice(["", ", bias: false"])
        layers.append(f"    layer l{i}: {kind} {{ in_features: {cur}, out_features: {width}{extra} }}")
        act = rng.choice(["relu", "gelu", "silu", "tanh", "sigmoid"])
        body.append(f"        x = {act}(l{i}(x))")
        if rng.random() < 0.5:
            layers.append(f"    layer n{i}: BatchNorm1d {{ num_features: {width} }}")
            body.append(f"        x = n{i}(x)")
        cur = width
    if rng.random() < 0.5:
        body.append("        let y = x * 0.5 + 1.0")
        body.append("        x = x - y / 2.0")
    if rng.random() < 0.5:
        body.append("        for i in 0..2 {\n            x = x + 0.25 * x\n        }")
    if rng.random() < 0.5:
        body.append(f"        if {width} > 5 {{ x = relu(x) }} else {{ x = -x }}")
    src = ("model R {\n" + "\n".join(layers) + "\n"
           f"    forward(x: Tensor[batch, {n_in}]) -> Tensor[batch, {cur}] {{\n"
           + "\n".join(body) + "\n        return x\n    }\n}\n")
    return src, n_in


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_match_interpreter(seed, tmp_path):
    rng = random.Random(seed)
    src, n_in = _random_program(rng)
    f = tmp_path / "r.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f)
    _randomize(model, seed)
    _compare(result, model, [_input(4, n_in, seed=rng.randrange(2**31))], rng.choice([None, "O1", "O2", "O3"]))


CASTS = """
model C {
    layer fc: Linear { in_features: 4, out_features: 4 }
    forward(x: Tensor[batch, 4]) -> Tensor {
        return OUT
    }
}
"""


@pytest.mark.parametrize("expr", [
    'cast(fc(x), "float64")', 'cast(fc(x), "float64") * 2.0 + 1.0', 'float16(fc(x))',
    'cast(fc(x), "bfloat16")', 'cast(fc(x) * 10.0, "int16")', 'cast(fc(x) * 10.0, "int8")',
    'int32(fc(x) * 10.0)', 'cast(fc(x) * 10.0, "int64")', 'cast(fc(x), "uint8")',
    'trit(fc(x))', 'cast(fc(x), "bool")', 'cast(cast(fc(x) * 10.0, "int16"), "float64")',
])
def test_casts_keep_their_dtype(expr, tmp_path):
    """Every dtype a program can cast to reaches the IR as itself (float64 was f32 in the
    IR and int16 was i32), and the module and the interpreter agree on dtype and values."""
    src = CASTS.replace("OUT", expr)
    f = tmp_path / "c.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f)
    _randomize(model, 3)
    _compare(result, model, [_input(3, 4, seed=5)])


SEED = ROOT / "examples" / "seed"


@pytest.mark.parametrize("entry,shapes,opt", [
    ("QuantDense", [(10, 32), (10,), (3, 32)], None),
    ("QuantDense", [(10, 32), (10,), (3, 32)], "O2"),
    ("QuantConv", [(8, 1, 3, 3), (8,), (8,), (2, 1, 28, 28)], None),
    ("Projection", [(16, 4), (3, 16)], "O1"),
])
def test_seed_builtin_layers_match_interpreter(entry, shapes, opt):
    """The seed language's builtins (examples/seed/builtins_layers.tri) in the generated
    module and in the IR interpreter (the running variance is kept positive)."""
    path = SEED / "builtins_layers.tri"
    model = tritium.load(path, entry)
    inputs = [_input(*s, seed=i) for i, s in enumerate(shapes)]
    if entry == "QuantConv":
        inputs[2] = inputs[2].abs() + 0.5
    _compare(check_file(path), model, inputs, opt, entry)


def test_seed_learned_quantize_matches_interpreter():
    path = SEED / "builtins_quantizers.tri"
    model = tritium.load(path, "LearnedStep")
    _randomize(model, 4)
    scale = torch.tensor([0.4])
    _compare(check_file(path), model, [scale, _input(3, 8)], None, "LearnedStep")


ROPE = """
layer Rotate(x: Tensor<float32, [b, h, s, 8]>) -> Tensor<float32, [b, h, s, 8]> {
    return rope(x, base: 500.0) * 2.0
}
"""


@pytest.mark.parametrize("opt", [None, "O2"])
def test_rope_matches_interpreter(opt, tmp_path):
    f = tmp_path / "rope.tri"
    f.write_text(ROPE)
    result = check_source(ROPE, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f, "Rotate")
    _compare(result, model, [_input(2, 3, 7, 8, seed=6)], opt, "Rotate")


ARGS = """
layer F(x: Tensor[3, 4]) -> Tensor {
    return OUT
}
"""


@pytest.mark.parametrize("expr", [
    "pow(x - 1.0, 2.0)", "pow(-x, 2.0)", "pow(2.0, x - 1.0)", "floordiv(x, x - 1.5)",
    "permute(x + 1.0, [1, 0])", "(x - 1.0).permute([1, 0])", "layer_norm(x * 2.0 - 1.0)",
    "rms_norm(x * 2.0 + 1.0)", "x * float(numel(x - 1.0))",
    # a long line: `return (... ** ...)` wrapped with a trailing comma returned a 1-tuple
    "pow(cos(tanh(where(x > sum(x * 0.5), x, x * 0.5))), 1.0)",
])
def test_a_builtin_template_keeps_its_arguments_operators(expr, tmp_path):
    """A builtin's PyTorch template puts its arguments next to operators (`({x} ** {e})`,
    `{x}.permute(...)`, `{x}.shape`): an argument with an operator of its own is
    parenthesized there (`pow(x - 1.0, 2.0)` was `x - 1.0 ** 2.0`, i.e. x - 1)."""
    src = ARGS.replace("OUT", expr)
    f = tmp_path / "a.tri"
    f.write_text(src)
    result = check_source(src, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    _compare(result, tritium.load(f, "F"), [_input(3, 4, seed=7)], None, "F")


RESERVED = """
block forward {
    layer state_dict: Linear { in_features: 4, out_features: 4 }
    layer fc_: TernaryLinear { in_features: 4, out_features: 4 }
    param type: Tensor[4] { init: "normal", mean: 1.0, std: 0.02 }
    param TernaryTensor: TernaryTensor[4, 4] { init: "kaiming" }
    forward(x: Tensor[n, 4]) -> Tensor[n, 4] {
        return fc_(state_dict(x)) * type + x @ TernaryTensor
    }
}
model main {
    layer training: forward
    layer lambda_: forward
    forward(x: Tensor[n, 4]) -> Tensor[n, 4] {
        return lambda_(training(x))
    }
}
"""


def test_ir_parameter_names_are_the_state_dict_keys_for_reserved_names(tmp_path):
    """Layer and parameter names that the generated module renames (`training` → `training_`,
    `fc_` → `fc__`, `type` → `type_`: frontend.names.py_attr) have the same names in the IR,
    so a state_dict feeds the interpreter (the IR had `training.state_dict.weight` where the
    module has `training_.state_dict_.weight`)."""
    f = tmp_path / "r.tri"
    f.write_text(RESERVED)
    result = check_source(RESERVED, str(f), f)
    assert result.ok, [d.message for d in result.diagnostics]
    model = tritium.load(f, "main")
    _randomize(model, 5)
    _compare(result, model, [_input(3, 4, seed=8)], "O2", "main")
