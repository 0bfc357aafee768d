"""Native prefill of imported BitNet decoder blocks (`tri_lm_block_prefill`), the KV cache
kept once per k/v head (grouped-query attention) and in float16, and the prompt's forward
that projects only its last position through the head: the same greedy tokens as the
layer-by-layer path, logits within the int8 error, on every kernel path of this CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tritium.backends import cpu as cpu_backend
from tritium.backends.cpu import isa as isa_mod
from tritium.runtime import kernels
from tritium.runtime.decoding import DecodeSession
from tritium.runtime.layers import decoder as dec
from tritium.runtime.layers.head import quantize_head

ISAS = [i for i in ("avx512", "avx2", "scalar") if i in isa_mod.supported_isas()]
# (hidden, layers, heads, kv heads, ffn, vocab): grouped-query attention (5 query heads per
# k/v head) with sizes that are not multiples of the packed blocks, and multi-head attention
SHAPES = {"gqa": (160, 2, 10, 2, 200, 300), "mha": (128, 2, 4, 4, 256, 256)}


def _import(llm, work: Path, shape: tuple[int, ...]) -> str:
    """A random Hugging Face BitNet checkpoint of `shape` (benchmarks/llm.py's writer),
    imported with `tritium import hf`."""
    from tritium.driver.hf_import import import_hf
    d, layers, heads, kv, ffn, vocab = shape
    hf = llm.write_hf_checkpoint(work / "hf", llm.Size(d, layers, heads, ffn, vocab, kv), seed=5)
    return import_hf(hf, work / "model.safetensors")["checkpoint"]


def _blocks(model) -> list[dec.BlockDecoder]:
    return [m.__dict__["forward"] for m in model.modules()
            if isinstance(m.__dict__.get("forward"), dec.BlockDecoder)]


@pytest.fixture(scope="module", params=list(SHAPES))
def checkpoint(request, tmp_path_factory, benchmark_module):
    return _import(benchmark_module("llm"), tmp_path_factory.mktemp(request.param),
                   SHAPES[request.param])


def _model(checkpoint: str, lib=None):
    from tritium.driver.generate import load_language_model
    model, _, _ = load_language_model(checkpoint)
    quantize_head(model, "int8")
    if lib is not None:     # every projection's plan on this path's library
        for layer in model.modules():
            if getattr(layer, "frozen", False) and hasattr(layer, "_plan"):
                b = layer._buffers
                layer._plan = kernels.LinearPlan(lib, b["weight_packed"], layer.out_dim,
                                                 layer.reduce_dim, layer.format,
                                                 b["weight_scale"],
                                                 layer._parameters.get("bias"),
                                                 layer.act_quant)
    return model.eval()


def _run(model, prompt: list[int], steps: int, fused: bool, kv_dtype=None,
         chunks: int = 1, last_only: bool = False):
    """Greedy tokens, each forward's last logits and the session (after the run)."""
    tokens, logits = [], []
    with torch.no_grad(), DecodeSession(fused=fused, kv_dtype=kv_dtype) as s:
        bounds = [len(prompt) * i // chunks for i in range(chunks + 1)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            out = s.forward(model, torch.tensor([prompt[a:b]]), last_only=last_only)
        logits.append(out[0, -1].clone())
        for _ in range(steps):
            t = int(out[0, -1].argmax())
            tokens.append(t)
            out = s.forward(model, torch.tensor([[t]]))
            logits.append(out[0, -1].clone())
    return tokens, logits, s


def _close(a: list[torch.Tensor], b: list[torch.Tensor], frac: float = 0.02) -> None:
    for x, y in zip(a, b, strict=True):
        assert float((x - y).abs().max()) <= frac * float(y.abs().max())


PROMPT = [(11 * i + 5) % 256 for i in range(40)]


@pytest.mark.parametrize("isa", ISAS)
def test_native_prefill_gives_the_tokens_of_the_unfused_path(checkpoint, isa):
    lib = cpu_backend.load(isa)
    if lib is None:
        pytest.skip(f"the {isa} kernels did not build: {cpu_backend.load_error(isa)}")
    model = _model(checkpoint, lib)
    ref_tokens, ref_logits, ref = _run(model, PROMPT, 10, fused=False)
    tokens, logits, s = _run(model, PROMPT, 10, fused=True)
    blocks = _blocks(model)
    assert blocks and all(b.prefill_state == "on" and b.state == "on" for b in blocks)
    assert all(b._prefill_fn is lib.lib.tri_lm_block_prefill for b in blocks)
    assert tokens == ref_tokens
    _close(logits, ref_logits)
    # the cache: each k/v head once, the values of the unfused path's repeated heads
    heads, kv = model.layers[0].heads, model.layers[0].kv_heads
    for k, v, rk, rv in zip(s.keys, s.values, ref.keys, ref.values, strict=True):
        assert k.shape[1] == kv and rk.shape[1] == heads
        assert k.shape[2] == rk.shape[2] == len(PROMPT) + 10
        for got, want in ((k, rk[:, ::heads // kv]), (v, rv[:, ::heads // kv])):
            torch.testing.assert_close(got, want, atol=0.02 * float(want.abs().max()), rtol=0)


def test_a_prompt_in_chunks_gives_the_tokens_of_one_chunk(checkpoint):
    model = _model(checkpoint)
    one = _run(model, PROMPT, 8, fused=True)
    three = _run(model, PROMPT, 8, fused=True, chunks=3)
    assert all(b.prefill_state == "on" for b in _blocks(model))
    assert three[0] == one[0]
    _close(three[1], one[1])


def test_a_one_token_prompt_and_hooks_run_the_own_forward(checkpoint):
    model = _model(checkpoint)
    ref = _run(model, [42], 6, fused=False)
    assert _run(model, [42], 6, fused=True)[0] == ref[0]
    calls = []
    h = model.layers[0].o_proj.register_forward_hook(lambda *a: calls.append(1))
    try:
        tokens = _run(model, PROMPT, 3, fused=True)[0]
    finally:
        h.remove()
    assert len(calls) == 4      # the prompt and each step: the hooked block ran its forward
    assert tokens == _run(model, PROMPT, 3, fused=False)[0]


def test_the_unfused_path_reads_a_cache_kept_once_per_kv_head(checkpoint):
    """A fused prefill makes the slots (one entry per k/v head); decode steps through the
    blocks' own forward append to them and attend over them (grouped-query attention)."""
    model = _model(checkpoint)
    ref_tokens, ref_logits, _ = _run(model, PROMPT, 6, fused=False)
    with torch.no_grad(), DecodeSession() as s:
        out = s.forward(model, torch.tensor([PROMPT]))
        s.fused = False     # the decode steps layer by layer
        tokens, logits = [], [out[0, -1].clone()]
        for _ in range(6):
            t = int(out[0, -1].argmax())
            tokens.append(t)
            out = s.forward(model, torch.tensor([[t]]))
            logits.append(out[0, -1].clone())
        assert all(k.shape[1] == model.layers[0].kv_heads for k in s.keys)
    assert tokens == ref_tokens
    _close(logits, ref_logits)


def test_a_block_of_another_dataflow_keeps_its_forward_for_prompts(checkpoint):
    import torch.nn.functional as F
    model = _model(checkpoint)
    block = model.layers[0]
    own = type(block).forward

    class SiluGated(type(block)):
        def forward(self, x):
            saved = torch.relu
            try:
                torch.relu = F.silu
                return own(self, x)
            finally:
                torch.relu = saved

    block.__class__ = SiluGated
    ref = _run(model, PROMPT, 4, fused=False)
    got = _run(model, PROMPT, 4, fused=True)
    states = [b.prefill_state for b in _blocks(model)]
    assert states[0] == "off" and all(s == "on" for s in states[1:])
    assert got[0] == ref[0]
    _close(got[1], ref[1])


@pytest.mark.parametrize("isa", ISAS)
def test_a_float16_cache_gives_the_tokens_of_float32(checkpoint, isa):
    lib = cpu_backend.load(isa)
    if lib is None:
        pytest.skip(f"the {isa} kernels did not build: {cpu_backend.load_error(isa)}")
    model = _model(checkpoint, lib)
    f32 = _run(model, PROMPT, 10, fused=True)
    f16 = _run(model, PROMPT, 10, fused=True, kv_dtype=torch.float16)
    unfused16 = _run(model, PROMPT, 10, fused=False, kv_dtype=torch.float16)
    assert f16[0] == f32[0] == unfused16[0]
    # float16 rounding of the cache moves an int8 rounding step further than summation order
    # alone: within 5% of the largest logit on this 2-layer model
    _close(f16[1], f32[1], 0.05)
    _close(unfused16[1], f16[1])
    s16, s32 = f16[2], f32[2]
    assert all(k.dtype == torch.float16 for k in s16.keys + s16.values)
    # the first block's keys and values do not depend on the cache: the float32 ones rounded
    # to nearest even (the native conversion of this path, as torch's)
    assert torch.equal(s16.keys[0], s32.keys[0].half())
    assert torch.equal(s16.values[0], s32.values[0].half())


def test_the_prompt_projects_only_its_last_position(checkpoint):
    model = _model(checkpoint)
    with torch.no_grad():
        with DecodeSession() as s:
            full = s.forward(model, torch.tensor([PROMPT]))
        with DecodeSession() as s:
            last = s.forward(model, torch.tensor([PROMPT]), last_only=True)
            step = s.forward(model, torch.tensor([[3]]), last_only=True)
    assert full.shape[1] == len(PROMPT) and last.shape[1] == 1 and step.shape[1] == 1
    assert torch.equal(last[0, -1], full[0, -1])    # the int8 head: one row, the same sums


def test_a_model_that_uses_its_logits_gets_every_position(checkpoint):
    model = _model(checkpoint)
    plain = type(model).forward

    class Smoothed(type(model)):
        def forward(self, tokens):
            logits = plain(self, tokens)
            return logits.cumsum(dim=1)     # mixes positions after the head

    model.__class__ = Smoothed
    with torch.no_grad():
        with DecodeSession() as s:
            full = s.forward(model, torch.tensor([PROMPT]))
            n = s.cached
        with DecodeSession() as s:
            last = s.forward(model, torch.tensor([PROMPT]), last_only=True)
            assert s.cached == n and len(s.keys) == len(model.layers)
            assert all(k.shape[-2] == len(PROMPT) for k in s.keys)
    assert last.shape == full.shape
    torch.testing.assert_close(last, full, atol=0.02 * float(full.abs().max()), rtol=0)


def test_generate_tokens_with_a_float16_cache(checkpoint):
    from tritium.driver.generate import GenerateError, generate_tokens
    model = _model(checkpoint)
    a = generate_tokens(model, PROMPT[:9], 8, greedy=True)
    b = generate_tokens(model, PROMPT[:9], 8, greedy=True, kv_cache="f16")
    assert a.tokens == b.tokens and b.cache_used
    with pytest.raises(GenerateError):
        generate_tokens(model, PROMPT[:9], 2, kv_cache="bf16")

