"""Language-model decoding paths: the int8 output head (kernel on every x86 path, layout,
layer, freeze option), the one-call frozen BitLinear, and the KV cache's growing buffers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu import isa as isa_mod
from tritium.runtime.decoding import DecodeSession
from tritium.runtime.layers.freeze import freeze_model
from tritium.runtime.layers.head import (
    Int8Head,
    pack_panels,
    quantize_head,
    quantize_rows_int8,
    unpack_panels,
)
from tritium.runtime.layers.ternary import BitLinear

_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bitnet_b158.tri"
ISAS = [i for i in ("avx512", "avx2", "scalar") if i in isa_mod.supported_isas()]


@pytest.fixture(scope="module", params=ISAS)
def lib(request):
    lib = cpu_backend.load(request.param)
    if lib is None:
        pytest.skip(f"the {request.param} kernels did not build: "
                    f"{cpu_backend.load_error(request.param)}")
    return lib


def _native_gemm(lib, xq: np.ndarray, w: np.ndarray, nthreads: int = 1) -> np.ndarray:
    n, k = w.shape
    m = xq.shape[0]
    panels = np.empty(lib.lib.tri_i8_bytes(n, k), np.int8)
    sums = np.empty(n, np.int32)
    assert lib.lib.tri_i8_pack(w.ctypes.data, n, k, panels.ctypes.data, sums.ctypes.data) == 0
    assert np.array_equal(sums, w.astype(np.int64).sum(axis=1))
    y = np.empty((m, n), np.int32)
    rc = lib.lib.tri_i8_gemm(xq.ctypes.data, m, k, panels.ctypes.data, n, sums.ctypes.data,
                             y.ctypes.data, nthreads)
    assert rc == 0
    return y


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 9), n=st.integers(1, 70), k=st.integers(1, 300),
       seed=st.integers(0, 2**31 - 1), threads=st.sampled_from([1, 2]))
@example(m=1, n=16, k=4, seed=0, threads=1)
@example(m=70, n=33, k=129, seed=1, threads=2)     # several token chunks, panel tails
def test_int8_gemm_is_exact_on_every_path(lib, m, n, k, seed, threads):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n, k), dtype=np.int8)
    xq = rng.integers(-127, 128, (m, k), dtype=np.int8)
    ref = xq.astype(np.int64) @ w.astype(np.int64).T
    assert np.array_equal(_native_gemm(lib, xq, w, threads), ref)


def test_int8_gemm_extremes_do_not_saturate(lib):
    """+-127 against +-127 over long rows: AVX2's byte products are summed in pairs in int16
    (at most 2 * 127 * 127), VNNI's unsigned offset of 128 is corrected by the row sums."""
    k = 4096
    w = np.array([[127] * k, [-127] * k, [127, -127] * (k // 2), [0] * k], np.int8)
    for xv in (127, -127):
        xq = np.full((3, k), xv, np.int8)
        xq[2, ::2] = -xv
        ref = xq.astype(np.int64) @ w.astype(np.int64).T
        assert np.array_equal(_native_gemm(lib, xq, w), ref)


def test_the_torch_panel_layout_is_the_kernels(lib):
    rng = np.random.default_rng(3)
    for n, k in ((1, 1), (17, 5), (40, 77), (32, 128)):
        q = torch.from_numpy(rng.integers(-127, 128, (n, k), dtype=np.int8))
        panels = np.empty(lib.lib.tri_i8_bytes(n, k), np.int8)
        lib.lib.tri_i8_pack(q.numpy().ctypes.data, n, k, panels.ctypes.data, None)
        assert np.array_equal(pack_panels(q).numpy(), panels)
        assert torch.equal(unpack_panels(pack_panels(q), n, k), q)


def _error_bound(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """|x.w - dequant(xq).dequant(wq)| per (token, row): each factor's rounding error is at
    most half its scale (max|.| / 127 / 2)."""
    ax, aw = x.abs().double(), w.abs().double()
    sx = ax.amax(dim=1, keepdim=True) / 127
    sw = aw.amax(dim=1, keepdim=True).T / 127
    k = x.shape[1]
    return (sx / 2) * aw.sum(dim=1)[None, :] + (sw / 2) * ax.sum(dim=1, keepdim=True) \
        + k * sx * sw / 4


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 768), (3, 100), (2, 5, 33)])
def test_int8_head_matches_its_reference_and_the_fp32_head_within_the_int8_error(bias, shape):
    torch.manual_seed(0)
    k = shape[-1]
    lin = nn.Linear(k, 531, bias=bias)
    head = Int8Head.from_linear(lin)
    x = torch.randn(*shape)
    with torch.no_grad():
        y = head(x)
        ref = head.reference(x.reshape(-1, k)).reshape(*shape[:-1], 531)
        f = lin(x)
    assert y.shape == f.shape
    if bias:   # the kernel may fuse the bias add into the multiply (one rounding less)
        torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(y, ref)
    err = (y - f).abs().reshape(-1, 531).double()
    bound = _error_bound(x.reshape(-1, k), lin.weight.detach())
    assert bool((err <= bound * 1.001 + 1e-5).all())


def test_int8_head_without_native_kernels_is_its_reference(monkeypatch):
    import tritium.runtime.layers.head as head_mod
    torch.manual_seed(1)
    lin = nn.Linear(40, 70, bias=False)
    head = Int8Head.from_linear(lin)
    x = torch.randn(4, 40)
    native = head(x)
    monkeypatch.setattr(head_mod, "_lib", lambda: None)
    assert torch.equal(head(x), native)


def test_quantize_rows_keeps_zero_rows_and_round_half_even():
    t = torch.tensor([[0.0, 0.0], [1.0, -0.5 / 127 * 1.0], [2.5, 127.0]])
    q, s = quantize_rows_int8(t)
    assert s[0] == 1 and q[0].tolist() == [0, 0]
    assert q[1].tolist() == [127, 0] and q[2].tolist() == [2, 127]   # 2.5 -> 2 (half even)


def _tiny(**kw):
    import tritium
    torch.manual_seed(0)
    return tritium.load(str(_EXAMPLE), "BitNetB158", dim=32, layers=2, heads=2, ffn=48,
                        **kw).eval()


def test_freeze_model_int8_head_and_its_state_dict():
    fp = freeze_model(_tiny())
    q = freeze_model(_tiny(), head="int8")
    assert type(fp.lm_head) is nn.Linear and isinstance(q.lm_head, Int8Head)
    ids = torch.randint(0, 256, (1, 9))
    with torch.no_grad():
        a, b = fp(ids), q(ids)
    bound = 0.05 * float(a.abs().max())
    assert float((a - b).abs().max()) <= bound
    # the state_dict is an nn.Linear's: loading it into an fp32 head and quantizing again
    # gives the same int8 weights and scales
    sd = q.state_dict()
    assert "lm_head.weight" in sd and sd["lm_head.weight"].dtype == torch.float32
    again = freeze_model(_tiny())
    again.load_state_dict(sd)
    assert quantize_head(again) == ["lm_head"]
    assert torch.equal(again.lm_head.weight_panels, q.lm_head.weight_panels)
    assert torch.equal(again.lm_head.weight_scale, q.lm_head.weight_scale)
    with pytest.raises(ValueError, match="unknown head"):
        freeze_model(_tiny(), head="int4")
    assert quantize_head(_tiny(), "fp32") == []


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 300), n=st.integers(1, 80), lead=st.sampled_from([(1,), (1, 1), (2, 3), (7,)]),
       seed=st.integers(0, 2**31 - 1), act=st.sampled_from([None, "relu"]))
def test_frozen_bitlinear_one_call_path_matches_the_unfused_path(k, n, lead, seed, act):
    """The native RMSNorm + int8 + GEMV call against torch's rms_norm then the layer's plan:
    the same up to the norm's float rounding; any leading dims are tokens."""
    torch.manual_seed(seed)
    layer = BitLinear(k, n).freeze()
    x = torch.randn(*lead, k) * 3
    with torch.no_grad():
        y = layer(x, act)
        x2 = torch.nn.functional.rms_norm(x.reshape(-1, k), (k,), eps=layer.eps)
        ref = layer._current_plan()(x2.contiguous(), act, None).reshape(*lead, n)
        per_token = torch.stack([layer(t, act) for t in x.reshape(-1, k)[:, None, :]])
    assert y.shape == (*lead, n)
    scale = 1.0 + float(ref.abs().max())
    assert float((y - ref).abs().max()) <= 2e-2 * scale   # an int8 rounding may flip
    assert torch.equal(per_token.reshape(*lead, n), y)    # batch-1 calls: the same bits


def test_frozen_bitlinear_keeps_autograd_on_the_general_path():
    layer = BitLinear(16, 8).freeze()
    x = torch.randn(2, 16, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_kv_cache_buffers_grow_and_keep_full_recompute_logits():
    model = freeze_model(_tiny())
    ids = torch.randint(0, 256, (1, 150))
    with torch.no_grad():
        full = model(ids)
        with DecodeSession() as s:
            parts = [s.forward(model, ids[:, :5])]
            for i in range(5, 150):      # 145 single steps: the buffers grow twice
                parts.append(s.forward(model, ids[:, i:i + 1]))
            assert s.keys[0].shape[-2] == 150 and s._kbuf[0].shape[-2] >= 150
            # a view of the buffer, not a concatenated copy
            assert s.keys[0].untyped_storage().data_ptr() == \
                s._kbuf[0].untyped_storage().data_ptr()
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)


def test_rope_in_a_session_uses_its_tables_with_the_same_bits():
    from tritium.runtime import rope
    x = torch.randn(1, 3, 2, 48)
    with DecodeSession() as s:
        for off in (0, 7, 255, 256, 700):      # the tables grow past 256 positions
            s.offset = off
            assert torch.equal(rope(x), rope(x, offset=off))
        assert s._rope and next(iter(s._rope.values()))[0].shape[0] >= 702


def _ungrouped(model):
    import copy
    twin = copy.deepcopy(model)
    for layer in twin.modules():
        layer.__dict__.pop("_group", None)
    return twin


def _decode(model, ids, prompt):
    with torch.no_grad(), DecodeSession() as s:
        parts = [s.forward(model, ids[:, :prompt])]
        for i in range(prompt, ids.shape[1]):
            parts.append(s.forward(model, ids[:, i:i + 1]))
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("fmt", ["t2", "t1.6"])
def test_shared_input_groups_give_the_bits_of_separate_calls(fmt):
    model = freeze_model(_tiny(), fmt)
    block = model.blocks[0]
    group = block.q_proj._group
    assert group is block.gate_proj._group and block.down_proj.__dict__.get("_group") is None
    ids = torch.randint(0, 256, (1, 24))
    grouped, plain = _decode(model, ids, 6), _decode(_ungrouped(model), ids, 6)
    assert torch.equal(grouped, plain)
    names = {id(m): n for n, m in block.named_children()}
    clusters = {tuple(names[id(group.members[j])] for j in c) for c in group.clusters.values()}
    assert clusters == {("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")}
    assert group.state == "fused" and group.misses == 0


def test_shared_input_groups_stay_fused_under_a_tuning_archive_without_their_configs():
    """An installed config resolver (any tuning archive) leaves a group fused while its
    members resolve to the default kernels; a tuned config for a member at that batch size
    runs each member's own call."""
    from tritium.backends.cpu import KernelConfig
    from tritium.runtime import kernels

    model = freeze_model(_tiny())
    block = model.blocks[0]
    group = block.q_proj._group
    ids = torch.randint(0, 256, (1, 12))
    plain = _decode(_ungrouped(model), ids, 4)
    served = []
    run = group._run

    def counting(cluster, x):
        out = run(cluster, x)
        served.append(out is not None)
        return out

    group._run = counting
    q = block.q_proj
    isa = q._current_plan().lib.isa
    for name, resolver, fused in [
            ("no config", lambda m, n, k, fmt, aq, isa_: None, True),
            ("q_proj tuned", lambda m, n, k, fmt, aq, isa_: KernelConfig(isa=isa, threads=1)
             if (n, k) == (q.out_features, q.in_features) else None, False)]:
        served.clear()
        kernels.set_config_resolver(resolver)
        try:
            got = _decode(model, ids, 4)
        finally:
            kernels.set_config_resolver(None)
        assert served, name
        if fused:
            assert all(served) and torch.equal(got, plain), name
        else:
            # the q/k/v cluster runs alone, gate/up (no config) stays fused; a member's own
            # call is the RMSNorm in torch, then the product (the fused call sums the squares
            # in double): an activation near an int8 rounding step may round the other way
            assert not all(served) and any(served), name
            assert float((got - plain).abs().max()) <= 0.02 * float(plain.abs().max()), name


def test_a_group_whose_members_take_other_inputs_turns_itself_off():
    from tritium.runtime.layers.freeze import group_shared_inputs

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = BitLinear(16, 8), BitLinear(16, 8)

        def forward(self, x, y):
            return self.a(x), self.b(x if self.same else y)

    torch.manual_seed(0)
    m = Two()
    m.same = True
    m.a.freeze(), m.b.freeze()
    assert group_shared_inputs(m) == 1
    x = torch.randn(1, 16)
    with torch.no_grad():
        m(x, x), m(x, x)                     # observed together: one cluster
        assert m.a._group.state == "fused"
        m.same = False
        for _ in range(6):
            xa, xb = torch.randn(1, 16), torch.randn(1, 16)
            ga, gb = m(xa, xb)
            ref_a = m.a._rms_native(xa, None)
            ref_b = m.b._rms_native(xb, None)
            assert torch.equal(ga, ref_a) and torch.equal(gb, ref_b)
        assert m.a._group.state == "off"


def test_grouped_models_copy_and_pickle():
    import copy
    import pickle
    model = freeze_model(_tiny())
    ids = torch.randint(0, 256, (1, 10))
    ref = _decode(model, ids, 3)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        g = twin.blocks[0].q_proj._group
        assert g is twin.blocks[0].k_proj._group and g is not model.blocks[0].q_proj._group
        assert g.state == "observe"
        assert torch.equal(_decode(twin, ids, 3), ref)


def test_a_checkpoint_of_an_int8_head_model_loads_and_quantizes_back(tmp_path):
    from tritium.runtime import load_checkpoint, save_checkpoint
    model = freeze_model(_tiny(), head="int8")
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, float16_scales=False)
    again = freeze_model(_tiny())
    load_checkpoint(path, again)
    assert type(again.lm_head) is nn.Linear          # stored as an fp32 head
    freeze_model(again, head="int8")
    ids = torch.randint(0, 256, (1, 7))
    with torch.no_grad():
        assert torch.equal(model(ids), again(ids))
