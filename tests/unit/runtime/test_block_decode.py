"""Fused one-token decoder blocks (`tritium.runtime.layers.decoder`, `tri_lm_block_decode`):
models imported from Hugging Face BitNet checkpoints (written here with random weights)
decode the same greedy tokens as the unfused path, with logits within the int8 error, on
every kernel path of this CPU; blocks of another dataflow, hooked blocks, prefill and calls
outside a session keep their own forward."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu import isa as isa_mod
from tritium.runtime import kernels
from tritium.runtime.decoding import DecodeSession
from tritium.runtime.layers import decoder as dec
from tritium.runtime.layers.head import quantize_head

ISAS = [i for i in ("avx512", "avx2", "scalar") if i in isa_mod.supported_isas()]

# (hidden, layers, heads, kv heads, ffn, vocab): grouped-query attention with sizes that are
# not multiples of the packed blocks, and plain multi-head attention
SHAPES = {"gqa": (160, 2, 5, 1, 200, 300), "mha": (128, 3, 4, 4, 256, 256)}


def _import(llm, work: Path, shape: tuple[int, ...]) -> str:
    """A random Hugging Face BitNet checkpoint of `shape` (benchmarks/llm.py's writer),
    imported with `tritium import hf`."""
    from tritium.driver.hf_import import import_hf
    d, layers, heads, kv, ffn, vocab = shape
    hf = llm.write_hf_checkpoint(work / "hf", llm.Size(d, layers, heads, ffn, vocab, kv), seed=3)
    return import_hf(hf, work / "model.safetensors")["checkpoint"]


@pytest.fixture(scope="module", params=list(SHAPES))
def checkpoint(request, tmp_path_factory, benchmark_module):
    return _import(benchmark_module("llm"), tmp_path_factory.mktemp(request.param),
                   SHAPES[request.param])


def _model(checkpoint: str):
    from tritium.driver.generate import load_language_model
    model, _, _ = load_language_model(checkpoint)
    quantize_head(model, "int8")
    return model.eval()


def _blocks(model) -> list[dec.BlockDecoder]:
    return [m.__dict__["forward"] for m in model.modules()
            if isinstance(m.__dict__.get("forward"), dec.BlockDecoder)]


def _decode(model, prompt: list[int], steps: int, fused: bool, cache: list | None = None
            ) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy tokens and each step's logits, with or without the fused blocks (`cache`:
    receives each slot's cached keys and values at the end)."""
    tokens, logits = [], []
    with torch.no_grad(), DecodeSession(fused=fused) as s:
        out = s.forward(model, torch.tensor([prompt]))
        for _ in range(steps):
            t = int(out[0, -1].argmax())
            tokens.append(t)
            out = s.forward(model, torch.tensor([[t]]))
            logits.append(out[0, -1].clone())
        if cache is not None:
            for i, (k, v) in enumerate(zip(s.keys, s.values, strict=True)):
                # views of the slot's buffer, as the unfused path keeps them
                assert k.data_ptr() == s._kbuf[i].data_ptr()
                assert v.data_ptr() == s._vbuf[i].data_ptr()
                cache.append((k.clone(), v.clone()))
    return tokens, logits


def test_fused_blocks_decode_the_same_greedy_tokens(checkpoint):
    model = _model(checkpoint)
    prompt = [(7 * i + 3) % 256 for i in range(58)]     # the cache grows past 64 positions
    ref_cache, cache = [], []
    ref_tokens, ref_logits = _decode(model, prompt, 16, fused=False, cache=ref_cache)
    assert _blocks(model) == []
    tokens, logits = _decode(model, prompt, 16, fused=True, cache=cache)
    blocks = _blocks(model)
    assert len(blocks) == len(model.layers) and all(b.state == "on" for b in blocks)
    assert tokens == ref_tokens
    for a, b in zip(logits, ref_logits, strict=True):
        assert float((a - b).abs().max()) <= 0.02 * float(b.abs().max())
    # the cache the fused blocks wrote: every position, each k/v head once (the unfused
    # path keeps the generated code's repeated heads)
    assert len(cache) == len(ref_cache) == len(model.layers)
    blk = model.layers[0]
    rep = blk.heads // blk.kv_heads
    for (k, v), (rk, rv) in zip(cache, ref_cache, strict=True):
        assert k.shape == (1, blk.kv_heads, len(prompt) + 16, blk.head_dim)
        assert rk.shape == (1, blk.heads, len(prompt) + 16, blk.head_dim)
        rk, rv = rk[:, ::rep], rv[:, ::rep]
        torch.testing.assert_close(k, rk, atol=0.02 * float(rk.abs().max()), rtol=0)
        torch.testing.assert_close(v, rv, atol=0.02 * float(rv.abs().max()), rtol=0)


def test_generate_tokens_runs_the_fused_blocks(checkpoint):
    from tritium.driver.generate import generate_tokens
    model = _model(checkpoint)
    prompt = [5, 17, 99, 3, 42]
    r = generate_tokens(model, prompt, 12, greedy=True)
    assert r.cache_used and all(b.state == "on" for b in _blocks(model))
    assert r.tokens == _decode(model, prompt, 12, fused=False)[0]


@pytest.mark.parametrize("isa", ISAS)
def test_every_kernel_path_agrees_with_the_unfused_block(checkpoint, isa):
    lib = cpu_backend.load(isa)
    if lib is None:
        pytest.skip(f"the {isa} kernels did not build: {cpu_backend.load_error(isa)}")
    model = _model(checkpoint)
    for layer in model.modules():   # every projection's plan on this path's library
        if getattr(layer, "frozen", False) and hasattr(layer, "_plan"):
            b = layer._buffers
            layer._plan = kernels.LinearPlan(lib, b["weight_packed"], layer.out_dim,
                                             layer.reduce_dim, layer.format, b["weight_scale"],
                                             layer._parameters.get("bias"), layer.act_quant)
    prompt = [1, 2, 3, 200, 4]
    ref_tokens, ref_logits = _decode(model, prompt, 8, fused=False)
    tokens, logits = _decode(model, prompt, 8, fused=True)
    assert all(b.state == "on" and b._fn is lib.lib.tri_lm_block_decode for b in _blocks(model))
    assert tokens == ref_tokens
    for a, b in zip(logits, ref_logits, strict=True):
        assert float((a - b).abs().max()) <= 0.02 * float(b.abs().max())


def test_a_block_of_another_dataflow_keeps_its_forward(checkpoint):
    model = _model(checkpoint)
    block = model.layers[0]
    own = type(block).forward

    class SiluGated(type(block)):
        def forward(self, x):
            # the same children, SiLU gating instead of ReLU squared
            saved = torch.relu
            try:
                torch.relu = F.silu
                return own(self, x)
            finally:
                torch.relu = saved

    block.__class__ = SiluGated
    prompt = [9, 8, 7, 6]
    ref_tokens, ref_logits = _decode(model, prompt, 6, fused=False)
    tokens, logits = _decode(model, prompt, 6, fused=True)
    states = [b.state for b in _blocks(model)]
    assert states[0] == "off" and all(s == "on" for s in states[1:])
    assert tokens == ref_tokens


def test_hooked_children_see_their_calls(checkpoint):
    model = _model(checkpoint)
    prompt = [11, 12, 13]
    _decode(model, prompt, 3, fused=True)       # blocks installed and checked
    calls = []
    h = model.layers[0].o_proj.register_forward_hook(lambda *a: calls.append(1))
    try:
        _decode(model, prompt, 3, fused=True)
    finally:
        h.remove()
    assert len(calls) == 4      # the prefill and each of the 3 steps


def test_models_with_fused_blocks_copy_and_pickle(checkpoint):
    model = _model(checkpoint)
    prompt = [21, 22, 23, 24]
    tokens, _ = _decode(model, prompt, 5, fused=True)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        blocks = _blocks(other)
        assert blocks and all(b.state == "check" and b.block in set(other.modules())
                              for b in blocks)
        assert _decode(other, prompt, 5, fused=True)[0] == tokens
        assert all(b.state == "on" for b in _blocks(other))


def test_changed_weights_rebuild_the_block_plan(checkpoint):
    model = _model(checkpoint)
    prompt = [31, 32, 33]
    _decode(model, prompt, 2, fused=True)
    with torch.no_grad():
        model.layers[0].attn_sub_norm.weight.mul_(0.5)
        model.layers[1].down_proj.weight_scale.mul_(3.0)
    ref_tokens, ref_logits = _decode(model, prompt, 6, fused=False)
    tokens, logits = _decode(model, prompt, 6, fused=True)
    assert tokens == ref_tokens
    for a, b in zip(logits, ref_logits, strict=True):
        assert float((a - b).abs().max()) <= 0.02 * float(b.abs().max())


def test_sessions_in_threads_share_a_model(checkpoint):
    """Each session keeps its blocks' scratch: two generations with one model at once give
    what each gives alone."""
    import threading
    model = _model(checkpoint)
    prompts = [[40, 41, 42, 43], [90, 3, 7]]
    alone = [_decode(model, p, 12, fused=True)[0] for p in prompts]
    got: dict[int, list[int]] = {}

    def run(i: int) -> None:
        got[i] = _decode(model, prompts[i], 12, fused=True)[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[0], got[1]] == alone


def test_two_threads_give_the_tokens_of_one(tmp_path, benchmark_module):
    """gate/up of this block are worth two threads together (one parallel region for both),
    q/k/v are not: the pool's split must not change a value. (The prefill runs on one
    thread both times: PyTorch's own ops may sum in another order on two.)"""
    model = _model(_import(benchmark_module("llm"), tmp_path, (512, 1, 8, 8, 6144, 256)))
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    before = torch.get_num_threads()

    def run(threads: int) -> list[torch.Tensor]:
        out = []
        with torch.no_grad(), DecodeSession() as s:
            torch.set_num_threads(1)
            logits = s.forward(model, torch.tensor([prompt]))
            torch.set_num_threads(threads)
            for _ in range(8):
                logits = s.forward(model, logits[:, -1:].argmax(-1))
                out.append(logits[0, -1].clone())
        return out

    try:
        run(1)      # past each block's first call (checked against its own forward)
        one, two = run(1), run(2)
    finally:
        torch.set_num_threads(before)
    assert all(b.state == "on" for b in _blocks(model))
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def test_a_tuning_archive_leaves_the_blocks_fused_where_it_has_no_config(checkpoint):
    """An installed config resolver (the tuning archive of any model) keeps the fused blocks
    while their projections resolve to the default kernels; a tuned config for a projection
    at one token runs that projection's own call (the block's forward) at that size."""
    from tritium.backends.cpu import KernelConfig
    model = _model(checkpoint)
    prompt = [41, 42, 43, 44, 45]
    tokens, _ = _decode(model, prompt, 4, fused=True)       # installed, checked, "on"
    q = model.layers[0].q_proj
    calls = {"decode": 0}

    def counting(blk):
        fn = blk._fn

        def run(*a):
            calls["decode"] += 1
            return fn(*a)
        return run

    isa = _blocks(model)[0]._plans[0].lib.isa
    for name, resolver, fused in [
            ("no config", lambda m, n, k, fmt, aq, isa_: None, True),
            ("q_proj at one token", lambda m, n, k, fmt, aq, isa_:
             KernelConfig(isa=isa, threads=1)
             if (m, n, k) == (1, q.out_features, q.in_features) else None, False)]:
        kernels.set_config_resolver(resolver)
        try:
            for blk in _blocks(model):
                blk._plan(1)        # the plan as the resolver sees it, then count its calls
                blk._fn = counting(blk)
            calls["decode"] = 0
            assert _decode(model, prompt, 4, fused=True)[0] == tokens, name
        finally:
            kernels.set_config_resolver(None)
        n_blocks = len(model.layers)
        assert calls["decode"] == (4 * n_blocks if fused else 0), name


@pytest.mark.parametrize("change", ["replaced", "new data", "eps"])
def test_a_block_changed_after_a_fused_step_decodes_as_changed(checkpoint, change):
    # the fused block's native arguments were built from its layers, their tensors and the
    # norms' eps: a replaced layer, `t.data = other` (same tensor object and version) or a
    # new eps must rebuild them, not decode with the old ones
    model = _model(checkpoint)
    prompt = [5, 17, 99, 3, 42]
    _decode(model, prompt, 2, fused=True)
    blk = model.layers[0]
    if change == "replaced":
        new = copy.deepcopy(blk.o_proj)
        with torch.no_grad():
            new.weight_scale.mul_(-2.0)
        blk.o_proj = new
    elif change == "new data":
        blk.down_proj.weight_scale.data = blk.down_proj.weight_scale.data * -2.0
    else:
        blk.post_attention_layernorm.eps = 4.0
    ref_tokens, ref_logits = _decode(model, prompt, 4, fused=False)
    tokens, logits = _decode(model, prompt, 4, fused=True)
    assert all(b.state == "on" for b in _blocks(model))
    assert tokens == ref_tokens
    for a, b in zip(logits, ref_logits, strict=True):
        assert float((a - b).abs().max()) <= 0.02 * float(b.abs().max())
