"""Forms of issue 13 given to `stmt2`: `print(x, label=)`, quantizers that return a pair,
`if` over a tensor condition, `a with_gradient_from b`, constructing a layer by calling its
type, properties of a type alias, integer division stored into an int. Programs check,
compile to PyTorch, load and run, agree with a PyTorch reference, and (where the IR can
express them) with the IR interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tritium.cli import main as cli
from tritium.driver import compile_program


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITIUM_CACHE_DIR", str(tmp_path / "cache"))


def write(tmp_path: Path, text: str, name: str = "prog.tri") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def run_main(tmp_path: Path, src: str, capsys) -> list[str]:
    result = compile_program(write(tmp_path, src))
    capsys.readouterr()
    result.module.main()
    return capsys.readouterr().out.splitlines()


# ----------------------------------------------------------------------------- print(label=)

def test_print_label_prefixes_the_values(tmp_path, capsys) -> None:
    src = ('let x = Tensor[1, 2](0.5, 2.0)\n'
           'print(x, label="Tensor X")\n'
           'print(1, 2, label="pair", sep="|")\n'
           'let name = "n"\n'
           'print(3, label=name, end="!\\n")\n')
    out = run_main(tmp_path, src, capsys)
    assert out == [f"Tensor X: {torch.tensor([[0.5, 2.0]])}", "pair:|1|2", "n: 3!"]


def test_print_label_must_be_a_string(tmp_path, capsys) -> None:
    assert cli(["check", write(tmp_path, "print(1, label=2)\n")]) == 1
    err = capsys.readouterr().err
    assert "E0404" in err and "label" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- int division

INT_DIV = """
block Heads {
    params { dim: int, heads: int }
    head_dim: int = dim / heads
    layer fc: TernaryLinear { in_features: dim, out_features: head_dim }
    forward(x: Tensor) -> Tensor { return fc(x) }
}
model M {
    embed_dim: 8
    num_heads: 2
    patches: int = (embed_dim / num_heads) ** 2
    layer h: Heads { dim: embed_dim, heads: num_heads }
    layer out: TernaryLinear { in_features: 4, out_features: patches }
    forward(x: Tensor[b, 8]) -> Tensor[b, 16] { return out(h(x)) }
}
fn f(a: int, b: int) -> int {
    let q: int = a / b
    return q
}
let z: int = 9 / 3
print(z, 7 / 2, f(7, 2))
"""


def test_int_division_compiles_to_floor_division_and_agrees_with_the_ir(tmp_path, capsys) -> None:
    import numpy as np

    from tritium.check import check_source
    from tritium.ir import interpret
    from tritium.ir.lowering import lower

    path = write(tmp_path, INT_DIV)
    result = compile_program(path)
    assert "head_dim = dim // heads" in result.python
    assert "(embed_dim // num_heads) ** 2" in result.python
    assert "7 / 2" in result.python
    capsys.readouterr()
    result.module.main()
    assert capsys.readouterr().out == "3 3.5 3\n"
    model = result.module.M()
    assert model.h.fc.weight.shape == (4, 8) and model.out.weight.shape == (16, 4)
    model.eval()
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).numpy()
    checked = check_source(INT_DIV, path, Path(path))
    lowered = lower(checked, "M", None)
    state = model.state_dict()
    params = {n: state[n].detach().numpy() for n in lowered.params}
    got = interpret(lowered.module, lowered.entry, [x.numpy()], params=params)
    got = got[0] if isinstance(got, list | tuple) else got
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- pair quantizers

XNOR = """
layer XnorProj(w: Tensor<float32, [4, 3]>, x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 3]> {
    let (wq, w_scale) = xnor_quantize(w)
    let (xq, x_scale) = xnor_quantize(x)
    let single = xnor_quantize(w)
    return (xq @ wq) * w_scale * x_scale + x @ single
}
"""


def test_xnor_pair_agrees_with_torch_and_the_ir(tmp_path) -> None:
    import numpy as np

    from tritium.check import check_source
    from tritium.ir import interpret
    from tritium.ir.lowering import lower

    path = write(tmp_path, XNOR)
    result = compile_program(path)
    assert "trt.xnor_quantize_pair(" in result.python
    model = result.module.XnorProj()
    model.eval()
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(5, 4, generator=gen), torch.randn(4, 3, generator=gen)
    with torch.no_grad():
        got = model(w, x)
    sign = lambda t: torch.where(t >= 0, 1.0, -1.0)   # noqa: E731
    ref = (sign(x) @ sign(w)) * w.abs().mean() * x.abs().mean() + x @ (w.abs().mean() * sign(w))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    checked = check_source(XNOR, path, Path(path))
    lowered = lower(checked, "XnorProj", None)
    ir = interpret(lowered.module, lowered.entry, [w.numpy(), x.numpy()], params={})
    ir = ir[0] if isinstance(ir, list | tuple) else ir
    np.testing.assert_allclose(np.asarray(ir), ref.numpy(), rtol=1e-4, atol=1e-4)


def test_xnor_pair_gradient_is_straight_through_on_the_values(tmp_path) -> None:
    import tritium.runtime as trt

    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    values, scale = trt.xnor_quantize_pair(x)
    assert values.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0] and scale.item() == pytest.approx(1.0)
    values.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]   # clipped at |x| <= 1


# ----------------------------------------------------------------------------- alias properties

def test_alias_properties_run(tmp_path, capsys) -> None:
    src = ("type InputTensor = Tensor<float32, [784, 128]>\n"
           "let input_shape = InputTensor.shape\n"
           "let dtype = InputTensor.dtype\n"
           "let rank = InputTensor.rank\n"
           "let z = zeros(InputTensor.shape)\n"
           "print(input_shape, dtype, rank, z.shape[1])\n")
    assert run_main(tmp_path, src, capsys) == ["[784, 128] float32 2 128"]


# ----------------------------------------------------------------------------- with_gradient_from

STE = """
fn ste(x: Tensor<float32, [?, ?]>) -> TernaryTensor<trit, [?, ?]> {
    let quantized = threshold_quantize(x, 0.5)
    return quantized with_gradient_from x
}
layer SteLayer(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> {
    let shift = ones([4]) * 0.25
    return ste(x) * 3.0 + (shift with_gradient_from x)
}
"""


def test_with_gradient_from_is_the_straight_through_estimator(tmp_path) -> None:
    import numpy as np

    from tritium.check import check_source
    from tritium.ir import interpret
    from tritium.ir.lowering import lower

    path = write(tmp_path, STE)
    result = compile_program(path)
    assert "trt.with_gradient_from(" in result.python
    x = torch.tensor([[-1.0, -0.2, 0.3, 0.9], [0.6, -0.7, 0.0, 2.0]], requires_grad=True)
    got = result.module.ste(x)
    q = torch.where(x.abs() > 0.5, torch.sign(x), torch.zeros_like(x))
    assert torch.equal(got, q.detach())
    got.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))   # identity gradient to x
    model = result.module.SteLayer()
    xr = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(xr)
    qr = torch.where(xr.abs() > 0.5, torch.sign(xr), torch.zeros_like(xr))
    torch.testing.assert_close(ref, qr * 3.0 + 0.25)
    checked = check_source(STE, path, Path(path))
    lowered = lower(checked, "SteLayer", None)
    ir = interpret(lowered.module, lowered.entry, [xr.numpy()], params={})
    ir = ir[0] if isinstance(ir, list | tuple) else ir
    np.testing.assert_allclose(np.asarray(ir), ref.numpy(), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- elementwise if

SELECT = """
fn tq(x: Tensor<float32, [?, ?]>, threshold: float32 = 0.5) -> TernaryTensor<trit, [?, ?]> {
    return if abs(x) < threshold {
        trit(0)
    } else if x > 0 {
        trit(1)
    } else {
        trit(-1)
    }
}
layer Select(x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 4]> {
    let bias = ones([4]) * 0.5
    let leaky = if x > 0 { x } else { x * 0.1 + bias }
    return leaky * 2.0 + tq(x) * 1.0
}
"""


def test_elementwise_if_agrees_with_torch_where_and_the_ir(tmp_path) -> None:
    import numpy as np

    from tritium.check import check_source
    from tritium.ir import interpret
    from tritium.ir.lowering import lower

    path = write(tmp_path, SELECT)
    result = compile_program(path)
    assert "torch.where(" in result.python
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    q = result.module.tq(x)
    assert q.dtype == torch.int8
    ref_q = torch.where(x.abs() < 0.5, 0, torch.where(x > 0, 1, -1))
    assert torch.equal(q, ref_q.to(torch.int8))
    model = result.module.Select()
    with torch.no_grad():
        got = model(x)
    ref = torch.where(x > 0, x, x * 0.1 + 0.5) * 2.0 + ref_q.float()
    torch.testing.assert_close(got, ref)
    checked = check_source(SELECT, path, Path(path))
    lowered = lower(checked, "Select", None)
    ir = interpret(lowered.module, lowered.entry, [x.numpy()], params={})
    ir = ir[0] if isinstance(ir, list | tuple) else ir
    np.testing.assert_allclose(np.asarray(ir), ref.numpy(), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- layer construction

CONSTRUCT = """
layer Linear(
    weights: TernaryTensor<trit, [in_features, out_features]>,
    input: Tensor<float32, [batch, in_features]>
) -> Tensor<float32, [batch, out_features]> {
    return input @ weights
}
layer Scaled(w: TernaryTensor<trit, [4, 3]>, scale: float = 2.0,
             x: Tensor<float32, [?, 4]>) -> Tensor<float32, [?, 3]> {
    return x @ w * scale
}
let my_weights = Tensor[4, 3](1, 0, -1, 0, 1, 1, -1, -1, 0, 1, 1, 1)
let my_input = Tensor[2, 4](1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0)
let layer = Linear(weights: my_weights)
let output = layer(input: my_input)
print(output == my_input @ my_weights)
print(Scaled(my_weights, 1.0, my_input) == output)
let fresh = Scaled(scale: 3.0)
print(fresh(my_input).shape, Scaled()(my_input).shape)
"""


def test_constructed_layers_run_with_given_and_initialized_weights(tmp_path, capsys) -> None:
    out = run_main(tmp_path, CONSTRUCT, capsys)
    w = torch.tensor([1.0, 0, -1, 0, 1, 1, -1, -1, 0, 1, 1, 1]).reshape(4, 3)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0]).reshape(2, 4)
    # trits given as weights ternarize to themselves (TWN scale: mean of the kept |w| = 1)
    every = str(torch.ones(2, 3, dtype=torch.bool))
    assert "\n".join(out[0:2]) == every and "\n".join(out[2:4]) == every
    result = compile_program(write(tmp_path, CONSTRUCT))
    layer = result.module.trt.construct_layer(result.module.Linear, {}, {"in_features": (
        "weights", 0), "out_features": ("weights", 1)}, weights=w)
    torch.testing.assert_close(layer(x), x @ w)
    assert out[-1] == "[2, 3] [2, 3]"
    fresh = result.module.Scaled(scale=3.0)
    assert fresh.w.shape == (4, 3) and fresh.scale == 3.0


def test_a_layer_with_a_params_section_is_constructed_and_runs(tmp_path, capsys) -> None:
    src = """
layer Head {
    params { n: int, m: int = 2 }
    layer fc: Linear { in_features: n, out_features: m }
    forward(x: Tensor[b, n]) -> Tensor[b, m] { return fc(x) }
}
let h = Head(n: 3)
let g = Head(3, 5)
print(h(ones([1, 3])).shape, g(ones([4, 3])).shape)
"""
    assert run_main(tmp_path, src, capsys) == ["[1, 2] [4, 5]"]


# ----------------------------------------------------------------------------- gradient hooks

HOOKS = """
fn scale_grad(g: Tensor<float32, [?, ?]>) -> Tensor<float32, [?, ?]> {
    return g * 2.0
}
fn check_gradients(x: Tensor<float32, [?, ?]>) {
    x.register_hook(fn(grad) {
        print(f"Fraction zero: {sum(grad == 0) / grad.numel()}")
    })
}
fn doubled(x: Tensor<float32, [?, ?]>) -> Tensor<float32, [?, ?]> {
    let y = x * 1.0
    y.register_hook(scale_grad)
    return y
}
"""


def test_gradient_hooks_run_in_the_backward_pass(tmp_path, capsys) -> None:
    mod = compile_program(write(tmp_path, HOOKS)).module
    w = torch.tensor([[1.0, -2.0], [0.0, 3.0]], requires_grad=True)
    mod.check_gradients(w)
    (mod.doubled(w) * torch.tensor([[1.0, 0.0], [0.0, 1.0]])).sum().backward()
    assert torch.equal(w.grad, torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    assert capsys.readouterr().out == "Fraction zero: 0.5\n"
    mod.check_gradients(torch.zeros(2, 2))   # no gradient to hook: nothing happens
    assert "trt.register_hook(" in compile_program(write(tmp_path, HOOKS)).python


# ----------------------------------------------------------------------------- closures

CLOSURES = """
fn apply(f: fn(Tensor) -> Tensor, x: Tensor) -> Tensor {
    return f(x)
}
fn scaler(k: float) -> fn(Tensor) -> Tensor {
    return fn(z: Tensor) -> Tensor { return z * k }
}
fn g(x: Tensor, k: float) -> Tensor {
    fn reads(z: Tensor) -> Tensor { return z * k }
    let shift = fn(z: Tensor) -> Tensor { return z + k }
    return apply(reads, x) + apply(shift, x)
}
fn debug_gradients(x: Tensor<float32, [?, ?]>, name: str) -> Tensor<float32, [?, ?]> {
    x.register_hook(fn(grad) {
        print(f"{name} gradient: sum={grad.sum()}")
    })
    return x
}
model M {
    forward(x: Tensor[b, 3]) -> Tensor {
        return g(x, 2.0) + g(x, 3.0)
    }
}
main {
    let s = scaler(10.0)
    let t = scaler(0.5)
    print(s(ones([2])), t(ones([2])))
}
"""


def test_closures_keep_the_values_they_read(tmp_path, capsys) -> None:
    import numpy as np

    from tritium.check import check_source
    from tritium.ir import interpret
    from tritium.ir.lowering import lower

    path = write(tmp_path, CLOSURES)
    result = compile_program(path)
    assert "trt.closure(" in result.python and "lambda" not in result.python
    capsys.readouterr()
    result.module.main()
    assert capsys.readouterr().out == f"{torch.tensor([10.0, 10.0])} {torch.tensor([0.5, 0.5])}\n"
    x = torch.tensor([[1.0, -2.0, 0.5]])
    want = (x * 2 + x + 2) + (x * 3 + x + 3)
    torch.testing.assert_close(result.module.M()(x), want)
    w = torch.ones(2, 2, requires_grad=True)
    result.module.debug_gradients(w, "w")
    (w * 3.0).sum().backward()
    assert capsys.readouterr().out == "w gradient: sum=12.0\n"
    lowered = lower(check_source(CLOSURES, path, Path(path)), "M")
    ir = interpret(lowered.module, lowered.entry, [x.numpy()], params={})
    np.testing.assert_allclose(np.asarray(ir[0] if isinstance(ir, list) else ir), want.numpy())


# ----------------------------------------------------------------------------- int @ float

def test_matmul_with_an_integer_tensor_runs_on_floats(tmp_path, capsys) -> None:
    """`@` with an int8 / int64 operand is typed float32 by the checker, and so computed:
    torch's own `@` refuses mixed dtypes, which made a program that checked fail to run."""
    src = ("let x = ones([2, 4])\n"
           "let w = tensor([[1, 0, -1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype: int8)\n"
           "print(x @ w)\n"
           "print(arange(4) @ w)\n")
    out = "\n".join(run_main(tmp_path, src, capsys))
    w = torch.tensor([[1., 0, -1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    assert out == "\n".join([str(torch.ones(2, 4) @ w), str(torch.arange(4.) @ w)])
