"""A frozen generated model whose forward is one chain runs as one plan
(tritium.runtime.chain): the compiler writes the steps, freezing installs the plan, and the
results are the generated forward's, bit for bit, on every ISA path of this CPU."""

from __future__ import annotations

import copy
import ctypes
import io
import textwrap
import threading

import pytest
import torch
from torch import nn

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu import ChainPlanArgs
from tritium.driver.models import build_model
from tritium.runtime import freeze_model, kernels
from tritium.runtime.chain import ChainForward, _LinearRun, install_chains
from tritium.runtime.native import _lib

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="no native kernels")

MLP = """
model M {
    layer fc1: TernaryLinear { in_features: 70, out_features: 48, act_quant: "AQ" }
    layer bn1: BatchNorm1d { num_features: 48 }
    layer fc2: TernaryLinear { in_features: 48, out_features: 33, act_quant: "AQ" }
    layer fc3: TernaryLinear { in_features: 33, out_features: 10, bias: false, act_quant: "AQ" }
    forward(x: Tensor[b, 70]) -> Tensor[b, 10] {
        x = relu(bn1(fc1(x)))
        x = ACT(fc2(x))
        return fc3(x)
    }
}
"""

CNN = """
model C {
    layer conv1: TernaryConv2d { in_channels: 2, out_channels: 6, kernel_size: 3, act_quant: "AQ" }
    layer bn1: BatchNorm2d { num_features: 6 }
    layer pool: MaxPool2d { kernel_size: 2 }
    layer fc1: TernaryLinear { in_features: 150, out_features: 20, act_quant: "AQ" }
    layer fc2: TernaryLinear { in_features: 20, out_features: 7, act_quant: "AQ" }
    forward(x: Tensor[b, 2, 12, 12]) -> Tensor[b, 7] {
        x = pool(relu6(bn1(conv1(x))))
        x = flatten(x, start_dim: 1)
        x = relu(fc1(x))
        return fc2(x)
    }
}
"""


def _build(tmp_path, source: str, **subst: str) -> nn.Module:
    for k, v in subst.items():
        source = source.replace(k, v)
    path = tmp_path / "m.tri"
    path.write_text(textwrap.dedent(source))
    torch.manual_seed(0)
    model = build_model(path).model
    model.train()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The generated forward, layer by layer (what runs without the chain)."""
    return type(model).forward(model, x)


def test_the_compiler_writes_the_steps(tmp_path):
    model = _build(tmp_path, MLP, AQ="none", ACT="relu")
    assert model.tritium_chain == [["layer", "fc1"], ["layer", "bn1"], ["call", "relu"],
                                   ["layer", "fc2"], ["call", "relu"], ["layer", "fc3"]]
    cnn = _build(tmp_path, CNN, AQ="none")
    assert ["call", "flatten", 1, -1] in cnn.tritium_chain


@pytest.mark.parametrize("body, graph", [
    ("x = fc1(x) + x\n        return fc2(x)", True),      # a residual: dataflow, no chain
    ("let h = fc1(x)\n        return fc2(h)", True),       # a second variable: the same
    ("x = double(fc1(x))\n        return fc2(x)", False),  # a user function
    ("x = flatten(fc1(x), start_dim: n)\n        return fc2(x)", False),  # a non-literal dim
])
def test_no_chain_for_other_forwards(tmp_path, body, graph):
    source = f"""
    fn double(t: Tensor) -> Tensor {{ return t * 2 }}
    model M {{
        n: 1
        layer fc1: TernaryLinear {{ in_features: 8, out_features: 8 }}
        layer fc2: TernaryLinear {{ in_features: 8, out_features: 4 }}
        forward(x: Tensor[b, 8]) -> Tensor[b, 4] {{
            {body}
        }}
    }}
    """
    model = _build(tmp_path, source)
    assert not hasattr(model, "tritium_chain")
    assert hasattr(model, "tritium_graph") == graph   # tritium.runtime.graph's
    freeze_model(model)
    assert ("forward" in model.__dict__) == graph
    assert not isinstance(model.__dict__.get("forward"), ChainForward) or graph


@pytest.mark.usefixtures("every_isa")
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
@pytest.mark.parametrize("act_quant", ["none", "int8"])
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_the_chain_matches_the_generated_forward(tmp_path, fmt, act_quant, act):
    model = freeze_model(_build(tmp_path, MLP, AQ=act_quant, ACT=act), fmt)
    assert isinstance(model.__dict__["forward"], ChainForward)
    ops = model.forward._program()[0]
    if act == "relu":   # three layers, one native call, the relus fused (exact)
        assert len(ops) == 1 and isinstance(ops[0], _LinearRun)
        assert ops[0].acts == ["relu", "relu", None]
    else:               # silu is torch's: the chain splits around it
        assert len(ops) == 3 and ops[1] is torch.nn.functional.silu
        assert ops[0].acts == ["relu", None] and ops[2].acts == [None]
    for m in (1, 2, 5, 64, 70):
        x = torch.randn(m, 70)
        with torch.inference_mode():
            got, ref = model(x), _reference(model, x)
        torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.usefixtures("every_isa")
def test_fused_relu_passes_nan_as_torch_does(tmp_path):
    model = freeze_model(_build(tmp_path, MLP, AQ="none", ACT="relu6"))
    x = torch.randn(3, 70)
    x[1, 5] = float("nan")
    with torch.no_grad():
        got, ref = model(x), _reference(model, x)
    assert got[1].isnan().all() and not got[0].isnan().any()
    torch.testing.assert_close(got, ref, rtol=0, atol=0, equal_nan=True)


@pytest.mark.usefixtures("every_isa")
@pytest.mark.parametrize("act_quant", ["none", "int8"])
def test_conv_pool_flatten_linear(tmp_path, act_quant):
    model = freeze_model(_build(tmp_path, CNN, AQ=act_quant))
    for m in (1, 3, 17):
        x = torch.randn(m, 2, 12, 12)
        with torch.no_grad():
            torch.testing.assert_close(model(x), _reference(model, x), rtol=0, atol=0)
    kinds = [type(op).__name__ for op in model.forward._program()[0]]
    assert kinds == ["_ConvStep", "function", "_LinearRun"]   # the max pool in the conv's call
    assert model.forward._program()[0][0].pool is not None


def test_fallbacks_keep_the_generated_semantics(tmp_path):
    model = freeze_model(_build(tmp_path, MLP, AQ="none", ACT="relu"))
    x = torch.randn(4, 70)
    with torch.no_grad():
        ref = _reference(model, x)
        torch.testing.assert_close(model(x), ref, rtol=0, atol=0)
        seen = []
        handle = model.fc2.register_forward_hook(lambda mod, i, o: seen.append(o.shape))
        torch.testing.assert_close(model(x), ref, rtol=0, atol=0)
        assert seen == [torch.Size([4, 33])]               # hooks fire: the layers ran
        handle.remove()
        model.fc3 = nn.Linear(33, 10)                        # a replaced module is used
        torch.testing.assert_close(model(x), _reference(model, x), rtol=0, atol=0)
        with pytest.raises(ValueError, match="71 features"):
            model(torch.randn(4, 71))                        # the layer's own error


def test_weights_changed_in_place_are_seen(tmp_path):
    a = freeze_model(_build(tmp_path, MLP, AQ="int8", ACT="relu"))
    torch.manual_seed(5)
    b = _build(tmp_path, MLP, AQ="int8", ACT="relu")
    with torch.no_grad():
        for p in b.parameters():
            p.uniform_(-1, 1)
    b = freeze_model(b)
    x = torch.randn(3, 70)
    with torch.no_grad():
        before = a(x)
        a.load_state_dict(b.state_dict())
        torch.testing.assert_close(a(x), _reference(b, x), rtol=0, atol=0)
        assert not torch.equal(a(x), before)


def test_autograd_copies_and_pickles(tmp_path):
    model = freeze_model(_build(tmp_path, MLP, AQ="none", ACT="relu"))
    x = torch.randn(2, 70, requires_grad=True)
    model(x).sum().backward()                               # the generated forward, with grads
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        ref = model(x.detach())
        dup = copy.deepcopy(model)
        assert dup.forward.module is dup
        torch.testing.assert_close(dup(x.detach()), ref, rtol=0, atol=0)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        torch.testing.assert_close(loaded(x.detach()), ref, rtol=0, atol=0)
    assert install_chains(model) == 1                       # idempotent


def test_a_subclass_with_its_own_forward_keeps_it(tmp_path):
    model = _build(tmp_path, MLP, AQ="none", ACT="relu")

    class Doubled(type(model)):
        def forward(self, x):
            return 2 * super().forward(x)

    sub = Doubled()
    sub.load_state_dict(model.state_dict())
    freeze_model(sub.eval())
    assert "forward" not in sub.__dict__
    x = torch.randn(2, 70)
    with torch.no_grad():
        torch.testing.assert_close(sub(x), 2 * _reference(freeze_model(model), x))


def test_tuned_resolver_runs_each_layers_plan(tmp_path):
    model = freeze_model(_build(tmp_path, MLP, AQ="int8", ACT="relu"))
    x = torch.randn(9, 70)
    seen = []

    def resolver(m, n, k, fmt, act_quant, isa):
        seen.append((n, k))

    kernels.set_config_resolver(resolver)
    try:
        with torch.no_grad():
            torch.testing.assert_close(model(x), _reference(model, x), rtol=0, atol=0)
    finally:
        kernels.set_config_resolver(None)
    assert (48, 70) in seen and (10, 33) in seen


@pytest.mark.parametrize("m", [1, 9])
def test_tuned_configs_keep_the_chain_fused(tmp_path, m):
    """A tuned config changes a layer's kernels, not the fusion: consecutive layers resolved
    to one library and thread cap run in one native call of that library's chain, and the
    results stay the default kernels' bit for bit."""
    from tritium.backends.cpu import KernelConfig, load

    model = freeze_model(_build(tmp_path, MLP, AQ="int8", ACT="relu"))
    x = torch.randn(m, 70)
    with torch.no_grad():
        ref = model(x)
    run = model.forward._current()[0]
    assert isinstance(run, _LinearRun)
    isa = _lib().isa
    # another library than the default: the portable build test_kernel_config builds too (the
    # int8 paths give the same bits on every ISA)
    tuned = KernelConfig(isa="scalar", tok_chunk=16, threads=1)
    tuned_lib = load(config=tuned)
    assert tuned_lib is not None
    cases = {
        # every layer the same tuned config: still one native call, of the tuned library
        "all": (lambda n, k: tuned, [(tuned_lib, [1, 1, 1])]),
        # only the first layer tuned: one call of the tuned library's chain, then one of the
        # default's (its layers uncapped)
        "first": (lambda n, k: tuned if (n, k) == (48, 70) else None,
                  [(tuned_lib, [1]), (_lib(), None)]),
        # only the middle layer tuned to a library-equal config with a thread cap: one call,
        # the cap on that layer alone
        "cap": (lambda n, k: KernelConfig(isa=isa, threads=1) if (n, k) == (33, 48) else None,
                [(_lib(), [0, 1, 0])]),
        # none tuned, or a config that only says what the default does: the default call
        "none": (lambda n, k: None, None),
        "default": (lambda n, k: KernelConfig(isa=isa), None),
    }
    for name, (pick, expected) in cases.items():
        kernels.set_config_resolver(lambda mb, n, k, fmt, aq, isa_, pick=pick: pick(n, k))
        try:
            with torch.no_grad():
                out = model(x)
            calls = run._tuned_calls(m)
        finally:
            kernels.set_config_resolver(None)
        torch.testing.assert_close(out, ref, rtol=0, atol=0, msg=name)
        if expected is None:
            assert calls is None, name
            continue
        got = []
        for fn, args_ptr, _n_out, gws_ptr, (args, _structs, _acts, caps, gws) in calls:
            assert args_ptr == ctypes.addressof(args)
            assert gws_ptr == ctypes.addressof(gws)
            assert (args.caps is None) == (caps is None)
            got.append((fn, None if caps is None else list(caps)))
        assert got == [(lib.call.tri_chain_planned, c) for lib, c in expected], name
        assert calls[-1][2] == 10


def test_an_empty_native_chain_is_refused():
    lib = _lib()
    args = ChainPlanArgs(nlayers=0, layers=None, acts=None, max_n=1)
    assert lib.call.tri_chain_planned(ctypes.addressof(args), None, 1, None, 1, None) == 2


TWO_CONVS = """
model C2 {
    layer conv1: TernaryConv2d { in_channels: 3, out_channels: 8, kernel_size: 3, padding: 1, act_quant: "AQ" }
    layer bn1: BatchNorm2d { num_features: 8 }
    layer conv2: TernaryConv2d { in_channels: 8, out_channels: 8, kernel_size: 3, groups: 8, padding: 1 }
    layer conv3: TernaryConv2d { in_channels: 8, out_channels: 5, kernel_size: 1, act_quant: "AQ" }
    forward(x: Tensor[b, 3, 9, 9]) -> Tensor[b, 5, 9, 9] {
        x = relu6(bn1(conv1(x)))
        x = relu6(conv2(x))
        return conv3(x)
    }
}
"""


@pytest.mark.usefixtures("every_isa")
@pytest.mark.parametrize("act_quant", ["none", "int8", "int8_image"])
def test_a_conv_output_that_dies_in_the_plan_reuses_its_buffer(tmp_path, act_quant):
    model = freeze_model(_build(tmp_path, TWO_CONVS, AQ=act_quant))
    ops = model.forward._program()[0]
    assert [op.reuse is not None for op in ops] == [True, True, False]   # never the result
    x = torch.randn(3, 3, 9, 9)
    with torch.no_grad():
        first = model(x)
        bufs = [op.reuse.out.data_ptr() for op in ops[:2]]
        keep = first.clone()
        first.fill_(7.0)                    # the caller owns the result: the plan never reuses it
        second = model(x)
        assert [op.reuse.out.data_ptr() for op in ops[:2]] == bufs   # written in place
        torch.testing.assert_close(second, keep, rtol=0, atol=0)
        torch.testing.assert_close(second, _reference(model, x), rtol=0, atol=0)
        third = model(torch.randn(5, 3, 9, 9))                      # another batch: new buffers
        assert third.shape == (5, 5, 9, 9) and ops[0].reuse.out.shape[0] == 5

    # each thread has its own buffers: concurrent calls do not write into each other's
    inputs = [torch.randn(2 + i % 3, 3, 9, 9) for i in range(8)]
    with torch.no_grad():
        want = [_reference(model, t) for t in inputs]
    got: list = [None] * len(inputs)

    def work(i: int) -> None:
        with torch.no_grad():
            for _ in range(20):
                got[i] = model(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


WIDE = """
model W {
    layer fc1: TernaryLinear { in_features: 64, out_features: 128, act_quant: "int8" }
    layer bn1: BatchNorm1d { num_features: 128 }
    layer fc2: TernaryLinear { in_features: 128, out_features: 96, act_quant: "int8" }
    layer fc3: TernaryLinear { in_features: 96, out_features: 10, act_quant: "int8" }
    forward(x: Tensor[b, 64]) -> Tensor[b, 10] {
        x = relu(bn1(fc1(x)))
        x = relu6(fc2(x))
        return fc3(x)
    }
}
"""


@pytest.mark.usefixtures("every_isa")
@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_an_int8_chain_runs_as_one_parallel_region_bit_for_bit(tmp_path, fmt):
    """With two threads and enough tokens, an all-int8 chain on the G2 GEMM runs as one
    parallel region (each thread takes its tokens through every layer): the pool sees one
    call that asks for a team, not one a layer, and the results are the layer-by-layer
    chain's and the generated forward's, bit for bit."""
    model = freeze_model(_build(tmp_path, WIDE), fmt)
    run = model.forward._program()[0][0]
    assert isinstance(run, _LinearRun) and run.acts == ["relu", "relu6", None]
    lib = _lib()
    region = lib.isa in ("avx2", "avx512")   # the paths with a G2 GEMM
    lib.configure_pool(adaptive=False)
    try:
        for m in (1, 5, 17, 40, 64, 130, 300):
            x = torch.randn(m, 64)
            with torch.inference_mode():
                ref = _reference(model, x)
                model(x)                    # builds the plan
            gws = run._g2_layouts() if m >= run.g2_min else None
            outs = {}
            for threads in (1, 2):
                y = torch.empty(m, 10)
                before = lib.pool_stats()["calls"]
                assert run.fn(run.args_ptr, x.data_ptr(), m, y.data_ptr(), threads, gws) == 0
                asked = lib.pool_stats()["calls"] - before
                outs[threads] = y
                if threads == 2 and region and m >= 40:
                    assert asked == 1, m    # one region for the three layers
            torch.testing.assert_close(outs[1], ref, rtol=0, atol=0)
            torch.testing.assert_close(outs[2], ref, rtol=0, atol=0)
    finally:
        lib.configure_pool(adaptive=cpu_backend._env_flag("TRITIUM_POOL_ADAPTIVE", True))
